"""Shapes-world fidelity: does a video show the colour, shape and motion direction its caption names?

A caption of the shapes world (``"a red circle moving left"``, :func:`cascade.data.parse_caption`)
states the ground truth; :func:`cascade.data.analyze_video` reads colour, shape and direction back
from the frames, and each attribute scores 1 when it matches, else 0. The same analysis of the
renderer's own clip of the caption, at the video's frame count and size, gives the *ceiling*: what a
perfect generator would score at that resolution, where the analysis itself may misread.
"""

import numpy as np

from cascade.data import analyze_video, parse_caption, render_clip, sample_params

ATTRIBUTES = ("color", "shape", "direction")


def parse_shapes_prompts(prompts: list[str]) -> list[dict[str, str]] | None:
    """``parse_caption`` of every prompt, or ``None`` unless all of them are shapes-world captions."""
    try:
        return [parse_caption(prompt) for prompt in prompts]
    except ValueError:
        return None


def shapes_fidelity(frames: np.ndarray, target: dict[str, str]) -> dict[str, float | str | None]:
    """Scores ``frames`` ``(F, H, W, 3)`` (float in [0, 1]) against ``target`` (``parse_caption``'s dict).

    Returns ``shapes_{color,shape,direction}`` (1.0 or 0.0) and ``shapes_seen_{...}``, what the
    analysis read (``None`` where it found no shape or no motion).
    """
    analysis = analyze_video(frames)
    scores = {f"shapes_{name}": float(getattr(analysis, name) == target[name]) for name in ATTRIBUTES}
    scores.update({f"shapes_seen_{name}": getattr(analysis, name) for name in ATTRIBUTES})
    return scores


def shapes_ceiling(target: dict[str, str], seed: int, num_frames: int, height: int, width: int) -> dict:
    """:func:`shapes_fidelity` of the renderer's clip of ``target`` (path drawn with ``seed``) at
    ``num_frames`` frames of ``height`` x ``width``: the analysis's own accuracy at that size."""
    params = sample_params(np.random.default_rng(seed), **target)
    return shapes_fidelity(render_clip(params, num_frames, height, width), target)  # (F, H, W, 3)
