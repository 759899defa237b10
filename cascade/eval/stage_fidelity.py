"""Per-stage fidelity on the shapes world: how well each conditioning stage of a cascade does its own
job, given the ground truth's input, against a classical baseline.

The shapes-world renderer draws the same clip at any resolution and frame count
(:mod:`cascade.data.shapes_render`), so every stage gets an exact input and an exact target:

- **interpolation** receives every ``factor``-th frame of the full-rate render (the keyframes, at the
  keyframes stage's frame size) and is scored by the PSNR of the frames it inserts against the render;
  the baseline is linear frame blending of the two neighbouring keyframes.
- **spatiotemporal / spatial super-resolution** receive the render at the stage's input size (its
  output size over ``upscale_factor``: the previous stage's output size) and are scored by the PSNR of
  every output frame against the render at the output size; the baseline is bicubic upsampling
  (``torch.nn.functional.interpolate(mode="bicubic")``, clamped to [0, 1]).

Frame counts and sizes are the ones the stage sees inside the cascade: ``num_frames`` keyframes of the
keyframes stage's size (its UNet's ``sample_size`` times its VAE scale factor), ``(F - 1) * factor + 1``
frames after interpolation, sizes multiplied by each super-resolution stage's ``upscale_factor``. The
clips are ``ShapesWorld(CLIPS_SEED)[0 .. N - 1]`` for every model and every run, so models trained on
the shapes world are compared on the same clips; each stage is prompted with the clip's caption and
seeded with ``seed + clip index``. PSNR is averaged over the scored frames of all clips (in dB; the
difference is stage minus baseline, positive when the stage beats the baseline).
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cascade.data import ShapesWorld, render_clip
from cascade.eval.image_quality import psnr
from cascade.pipelines.stages import stage
from cascade.utils.checks import check_int

CLIPS_SEED = 1000  # the ShapesWorld seed of the evaluation clips: fixed, the same for every model
BASELINES = {"known_frames": "linear frame blending", "low_res": "bicubic upsampling"}  # by conditioning


@dataclass(frozen=True)
class StageShape:
    """Frames and square frame size a stage takes in and gives out within the cascade."""

    input_frames: int
    input_size: int
    output_frames: int
    output_size: int


def stage_shapes(
    cascade, num_frames: int, stage_kwargs: dict | None = None, keyframe_size: int | None = None
) -> dict[str, StageShape]:
    """What every conditioning stage of ``cascade`` takes in and gives out (each stage's ``output_shape``),
    from ``num_frames`` keyframes of ``keyframe_size`` (default: the keyframes stage's ``default_size``) and
    the per-stage ``stage_kwargs`` (e.g. ``interpolation_factor``)."""
    keyframes = next((p for name, p in cascade.stages.items() if not stage(name).takes_video), None)
    if keyframe_size is None:
        keyframe_size = None if keyframes is None else keyframes.default_size
        if keyframe_size is None:
            raise ValueError(
                "the keyframe size is not known: the cascade has no keyframes stage with a UNet "
                "sample_size; pass keyframe_size"
            )
    frames, size, shapes = num_frames, keyframe_size, {}
    for name, pipeline in cascade.stages.items():
        if stage(name).takes_video:
            output = pipeline.output_shape(frames, size, (stage_kwargs or {}).get(name, {}))
            shapes[name] = StageShape(frames, size, *output)
            frames, size = output
    return shapes


def blend_frames(keyframes: np.ndarray, factor: int) -> np.ndarray:
    """Linear frame blending: ``(F, H, W, 3)`` keyframes to ``(F - 1) * factor + 1`` frames, output frame
    ``i * factor + j`` being ``(1 - j / factor) * keyframe[i] + j / factor * keyframe[i + 1]``."""
    weights = np.arange(factor, dtype=np.float64)[:, None, None, None] / factor  # (factor, 1, 1, 1)
    start, end = keyframes[:-1, None].astype(np.float64), keyframes[1:, None].astype(np.float64)
    between = (1 - weights) * start + weights * end  # (F - 1, factor, H, W, 3)
    frames = np.concatenate([between.reshape(-1, *keyframes.shape[1:]), keyframes[-1:]])
    return frames.astype(np.float32)  # ((F - 1) * factor + 1, H, W, 3)


def bicubic_upsample(frames: np.ndarray, size: int) -> np.ndarray:
    """``(F, h, w, 3)`` frames upsampled to ``size`` x ``size`` by ``F.interpolate(mode="bicubic",
    align_corners=False)``, clamped to [0, 1]."""
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (F, 3, h, w)
    upsampled = F.interpolate(pixels, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    return upsampled.permute(0, 2, 3, 1).numpy()  # (F, size, size, 3)


def _frame_psnr(frames: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return psnr(frames[None], truth[None]).values[0]  # (F,)


def _summary(stage: list[np.ndarray], baseline: list[np.ndarray]) -> dict:
    stage_mean, baseline_mean = float(np.mean(stage)), float(np.mean(baseline))
    return {"psnr": stage_mean, "baseline_psnr": baseline_mean, "difference_db": stage_mean - baseline_mean}


def stage_fidelity(
    cascade,
    num_clips: int,
    num_frames: int,
    seed: int = 0,
    stage_kwargs: dict[str, dict] | None = None,
    clips_seed: int = CLIPS_SEED,
    keyframe_size: int | None = None,
) -> dict[str, dict]:
    """Scores every conditioning stage of ``cascade`` on ``num_clips`` shapes-world clips (see the module
    docstring); ``stage_kwargs`` are per-stage settings as :class:`~cascade.CascadePipeline` takes them
    (e.g. ``num_inference_steps``, ``guidance_scale``, ``interpolation_factor``).

    Returns ``{stage: {"input": {"frames", "size"}, "output": {"frames", "size"}, "baseline": name,
    "psnr", "baseline_psnr", "difference_db", "clips": [{"index", "caption", "psnr", "baseline_psnr",
    "difference_db"}]}}`` for the stages the cascade has; PSNR in dB.
    """
    check_int("num_clips", num_clips, minimum=1)
    stage_kwargs = stage_kwargs or {}
    shapes = stage_shapes(cascade, num_frames, stage_kwargs, keyframe_size)
    world = ShapesWorld(clips_seed)
    scores = {name: ([], [], []) for name in shapes}  # stage -> (stage PSNRs, baseline PSNRs, clip rows)
    for index in range(num_clips):
        params = world[index]
        for name, shape in shapes.items():
            pipeline = cascade.stages[name]
            settings = {key: value for key, value in stage_kwargs.get(name, {}).items() if key != "seed"}
            truth = render_clip(params, shape.output_frames, shape.output_size, shape.output_size)
            if stage(name).conditioning == "known_frames":
                factor = (shape.output_frames - 1) // (shape.input_frames - 1)
                given = truth[::factor]  # (F, S, S, 3): the keyframes of the full-rate render
                baseline = blend_frames(given, factor)
                scored = np.arange(shape.output_frames) % factor != 0  # the in-between frames
            else:
                given = render_clip(params, shape.input_frames, shape.input_size, shape.input_size)
                baseline = bicubic_upsample(given, shape.output_size)
                scored = np.ones(shape.output_frames, dtype=bool)
            output = pipeline(
                prompt=params.caption,
                video=given[None],
                generator=torch.Generator().manual_seed(seed + index),
                output_type="np",
                **settings,
            ).frames[0]  # (F', S, S, 3)
            stage_psnr = _frame_psnr(output[scored], truth[scored])
            baseline_psnr = _frame_psnr(baseline[scored], truth[scored])
            scores[name][0].append(stage_psnr)
            scores[name][1].append(baseline_psnr)
            row = {"index": index, "caption": params.caption, **_summary([stage_psnr], [baseline_psnr])}
            scores[name][2].append(row)
    return {
        name: {
            "input": {"frames": shape.input_frames, "size": shape.input_size},
            "output": {"frames": shape.output_frames, "size": shape.output_size},
            "baseline": BASELINES[stage(name).conditioning],
            **_summary(scores[name][0], scores[name][1]),
            "clips": scores[name][2],
        }
        for name, shape in shapes.items()
    }
