"""What the web app shows of a generation, written into the request's cache folder: each stage's frames as a
picture, beside the shapes-world renderer's clip of the prompt at the same frame count and size (the ground
truth only this project's world has), what the shapes-world analysis reads in each, and the video as mp4 and
gif.

The ground truth is the renderer's clip of the prompt's colour, shape and direction, its size and path drawn
from the request's seed (:func:`cascade.data.sample_params`): the model may draw the shape anywhere, so the
clip shows what the prompt asks for, not where. The analysis (:func:`cascade.eval.shapes_fidelity
.shapes_fidelity`) reads colour, shape and direction back from the frames, the renderer's clip included (its
ceiling at that size).

The Edit tab shows a video's keyframes above the edited keyframes with :func:`write_rows_picture`, and its
result with :func:`write_videos` like Generate.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cascade.data import render_clip, sample_params
from cascade.data.frame_checks import check_rgb_frames
from cascade.data.media_io import write_video
from cascade.eval.shapes_fidelity import ATTRIBUTES, parse_shapes_prompts, shapes_fidelity
from cascade.utils.atomic import write_atomically
from cascade.utils.checks import check_int

from .pictures import frame_grid, to_uint8

VIDEO_SUFFIXES = (".mp4", ".gif")


@dataclass(frozen=True)
class StageView:
    """One finished stage as the app shows it.

    Attributes:
        name: the stage.
        shape: ``(frames, height, width)`` of its output.
        picture: its frames as a grid (PNG).
        truth: the renderer's clip at the same shape (PNG), or ``None`` for a prompt outside the shapes world.
        reading: :func:`~cascade.eval.shapes_fidelity.shapes_fidelity` of its frames (``None`` likewise).
        truth_reading: the same of the renderer's clip.
    """

    name: str
    shape: tuple[int, int, int]
    picture: Path
    truth: Path | None
    reading: dict | None
    truth_reading: dict | None


def shapes_target(prompt: str) -> dict[str, str] | None:
    """The prompt's colour, shape and direction when it is a shapes-world caption, else ``None``."""
    targets = parse_shapes_prompts([prompt])
    return None if targets is None else targets[0]


def _write_png(picture: np.ndarray, path: Path) -> Path:
    write_atomically(path, lambda partial: Image.fromarray(picture).save(partial))
    return path


def stage_view(name: str, frames: np.ndarray, target: dict | None, seed: int, folder: Path) -> StageView:
    """Writes ``folder/<name>.png`` (the frames ``(F, H, W, 3)`` in [0, 1]) and, for a shapes-world ``target``,
    ``folder/<name>.truth.png`` (the renderer's clip, its path drawn with ``seed``); returns the view."""
    if not isinstance(folder, Path) or not folder.is_dir():
        raise ValueError(f"`folder` must be an existing folder (a Path), got {folder!r}.")
    frames = check_rgb_frames("frames", frames, ndim=4)  # (F, H, W, 3) in [0, 1]
    count, height, width = frames.shape[:3]
    picture = _write_png(frame_grid(frames), folder / f"{name}.png")
    if target is None:
        return StageView(name, (count, height, width), picture, None, None, None)
    check_int("seed", seed, minimum=0)
    clip = render_clip(sample_params(np.random.default_rng(seed), **target), count, height, width)
    truth = _write_png(frame_grid(clip), folder / f"{name}.truth.png")
    reading, truth_reading = shapes_fidelity(frames, target), shapes_fidelity(clip, target)
    return StageView(name, (count, height, width), picture, truth, reading, truth_reading)


def _cell(reading: dict, attribute: str) -> str:
    seen = reading[f"shapes_seen_{attribute}"] or "none"
    return f"{seen} {'✓' if reading[f'shapes_{attribute}'] else '✗'}"


def readings_table(views: list[StageView], target: dict | None) -> str:
    """A markdown table of what the analysis reads in each stage's frames and in the renderer's clip (✓: the
    prompt's value), or a line saying why there is none."""
    if not isinstance(views, list) or not all(isinstance(view, StageView) for view in views):
        raise ValueError(f"`views` must be a list of StageView, got {views!r}.")
    if target is None:
        return (
            "*No ground truth: the renderer draws prompts of the form "
            "'a &lt;colour&gt; &lt;shape&gt; moving &lt;direction&gt;'.*"
        )
    lines = [
        f"What the shapes-world analysis reads (prompt: {', '.join(target[a] for a in ATTRIBUTES)})",
        "",
        "| frames | size | " + " | ".join(ATTRIBUTES) + " |",
        "|---|---|" + "---|" * len(ATTRIBUTES),
    ]
    for view in views:
        count, height, width = view.shape
        for label, reading in ((view.name, view.reading), (f"{view.name}, renderer", view.truth_reading)):
            cells = " | ".join(_cell(reading, attribute) for attribute in ATTRIBUTES)
            lines.append(f"| {label} | {count} x {height}x{width} | {cells} |")
    return "\n".join(lines)


def write_rows_picture(rows: list, path: Path) -> Path:
    """Writes ``path`` (PNG): each of ``rows`` (frames ``(F, H, W, 3)``, uint8 or float in [0, 1], all of one
    shape) as one row of a :func:`~cascade.app.pictures.frame_grid`, so that frame ``k`` of every row lies in
    column ``k``, one above the other (a video's frames above what became of them)."""
    if not isinstance(rows, list | tuple) or not rows:
        raise ValueError(f"`rows` must be a non-empty list of frame arrays (F, H, W, 3), got {rows!r}.")
    if not isinstance(path, Path) or path.suffix != ".png" or not path.parent.is_dir():
        raise ValueError(f"`path` must be a .png Path in an existing folder, got {path!r}.")
    rows = [to_uint8(row) for row in rows]  # each (F, H, W, 3)
    shapes = sorted({row.shape for row in rows})
    if len(shapes) > 1:
        raise ValueError(f"`rows` must all have one shape (F, H, W, 3), got {shapes}.")
    return _write_png(frame_grid(np.concatenate(rows), columns=len(rows[0])), path)


def write_videos(frames: np.ndarray, folder: Path, fps: int, stem: str = "video") -> list[Path]:
    """Writes ``frames`` ``(F, H, W, 3)`` in [0, 1] as ``folder/<stem>.mp4`` and ``.gif`` at ``fps``."""
    fps = check_int("fps", fps, minimum=1)
    frames = to_uint8(frames)  # (F, H, W, 3)
    paths = [folder / f"{stem}{suffix}" for suffix in VIDEO_SUFFIXES]
    for path in paths:
        write_video(frames, path, fps)
    return paths
