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

import inspect
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cascade.data import ShapesWorld, render_clip
from cascade.eval.image_quality import psnr

CLIPS_SEED = 1000  # the ShapesWorld seed of the evaluation clips: fixed, the same for every model
CONDITIONING_STAGES = ("interpolation", "spatiotemporal_sr", "spatial_sr")
BASELINES = {
    "interpolation": "linear frame blending",
    "spatiotemporal_sr": "bicubic upsampling",
    "spatial_sr": "bicubic upsampling",
}


@dataclass(frozen=True)
class StageShape:
    """Frames and square frame size a stage takes in and gives out within the cascade."""

    input_frames: int
    input_size: int
    output_frames: int
    output_size: int


def interpolation_factor(cascade, stage_kwargs: dict | None = None) -> int:
    """The interpolation stage's factor: ``stage_kwargs["interpolation"]["interpolation_factor"]`` if
    set, else the default of the stage's ``__call__``."""
    settings = (stage_kwargs or {}).get("interpolation", {})
    if "interpolation_factor" in settings:
        return settings["interpolation_factor"]
    call = inspect.signature(cascade.stages["interpolation"].__call__)
    return call.parameters["interpolation_factor"].default


def stage_shapes(
    cascade, num_frames: int, factor: int | None = None, keyframe_size: int | None = None
) -> dict[str, StageShape]:
    """What every conditioning stage of ``cascade`` takes in and gives out, from ``num_frames`` keyframes
    of ``keyframe_size`` (default: the keyframes stage's ``unet.sample_size * vae_scale_factor``) and an
    interpolation ``factor`` (default :func:`interpolation_factor`)."""
    if keyframe_size is None:
        keyframes = cascade.stages.get("keyframes")
        if keyframes is None or not keyframes.unet.sample_size:
            raise ValueError(
                "the keyframe size is not known: the cascade has no keyframes stage with a UNet "
                "sample_size; pass keyframe_size"
            )
        keyframe_size = keyframes.unet.sample_size * keyframes.vae_scale_factor
    if "interpolation" in cascade.stages and factor is None:
        factor = interpolation_factor(cascade)
    frames, size, shapes = num_frames, keyframe_size, {}
    for name, stage in cascade.stages.items():
        if name == "interpolation":
            shapes[name] = StageShape(frames, size, (frames - 1) * factor + 1, size)
        elif name in ("spatiotemporal_sr", "spatial_sr"):
            shapes[name] = StageShape(frames, size, frames, size * stage.config.upscale_factor)
        else:
            continue
        frames, size = shapes[name].output_frames, shapes[name].output_size
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
    if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips <= 0:
        raise ValueError(f"`num_clips` must be a positive int, got {num_clips!r}")
    stage_kwargs = stage_kwargs or {}
    factor = interpolation_factor(cascade, stage_kwargs) if "interpolation" in cascade.stages else None
    shapes = stage_shapes(cascade, num_frames, factor, keyframe_size)
    world = ShapesWorld(clips_seed)
    scores = {name: ([], [], []) for name in shapes}  # stage -> (stage PSNRs, baseline PSNRs, clip rows)
    for index in range(num_clips):
        params = world[index]
        for name, shape in shapes.items():
            stage = cascade.stages[name]
            settings = {key: value for key, value in stage_kwargs.get(name, {}).items() if key != "seed"}
            truth = render_clip(params, shape.output_frames, shape.output_size, shape.output_size)
            if name == "interpolation":
                given = truth[::factor]  # (F, S, S, 3): the keyframes of the full-rate render
                baseline = blend_frames(given, factor)
                scored = np.arange(shape.output_frames) % factor != 0  # the in-between frames
            else:
                given = render_clip(params, shape.input_frames, shape.input_size, shape.input_size)
                baseline = bicubic_upsample(given, shape.output_size)
                scored = np.ones(shape.output_frames, dtype=bool)
            output = stage(
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
            "baseline": BASELINES[name],
            **_summary(scores[name][0], scores[name][1]),
            "clips": scores[name][2],
        }
        for name, shape in shapes.items()
    }
