"""Does conditioning on given frames work? Image-to-video, extension, interpolation and long videos with the
demo keyframes stage alone, scored against the shapes world's renderer (issue 18, item 4 and 5).

Every task starts from held-out clips (``ShapesWorld(3000)[i]``, 8 frames of 16x16, the keyframes stage's
size) and compares the ways of giving frames to a model never trained to take them
(:mod:`cascade.pipelines.known_frames`; Ho et al. 2022, "Video Diffusion Models", sec. 3.1):
``replacement`` (VDM's baseline) and ``reconstruction`` (reconstruction guidance, weight ``--weight``),
against ``none`` (the prompt alone) or the task's own baseline:

- **image-to-video**: the clip's first frame given. Scored: first-frame PSNR against it (target >= 30 dB),
  direction and colour read as prompted (:func:`cascade.data.analyze_video`; target >= 90%), PSNR of the
  other frames against the renderer's clip, and the mean distance between the centroid tracks of the output
  and the true clip (frame widths).
- **extension**: the clip's first 4 frames given, 8 made; the last 4 scored against the true clip.
- **interpolation**: frames 0, 2, 4, 6 of the clip given, 7 made; the in-betweens 1, 3, 5 scored against the
  true clip, beside the trained interpolation stage (``--interpolation-model``, factor 2, its cascade
  defaults) and the linear blend of the neighbours.
- **long**: ``--long-frames`` keyframes (64) from the prompt: ``plain`` (all frames at once) against windows of
  8 frames, each given the last 4 of the one before (``extend``, by replacement and by reconstruction), and
  ``coarse_to_fine`` (8 frames spread over the video, then the frames between from their blend, in windows of
  8 overlapping by 4; :mod:`cascade.pipelines.coarse_to_fine`). Scored: direction read as prompted over the
  whole video (target >= 90%), and the largest centroid step at a seam over the median step (target <= 2):
  the step into the first frame each window adds (extension), the steps into and out of each coarse frame
  (coarse to fine), beside the largest step anywhere over the median; seconds and peak memory (resident set
  growth of a fresh process) at ``--long-frames`` against 8 frames.
- **in-betweens** (the coarse-to-fine fill against the world's truth): the renderer's ``--long-frames``-frame
  clip (the same motion in more frames: frame ``9 k`` of 64 is frame ``k`` of 8) with its 8 coarse frames
  given; the frames between scored against the renderer's, beside the linear blend of the coarse frames.

    python benchmarks/conditioning_quality.py                     # weights/demo, 16 clips, 8 long videos
    python benchmarks/conditioning_quality.py --clips 2 --long-clips 1 --steps 3 --output c.json --sheet c.png

Prints markdown tables; ``--output`` writes every number as JSON; ``--sheet`` writes a contact sheet.
"""

import argparse
import json
import multiprocessing
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from contact_sheet import contact_sheet, stack_vertically
from output_flags import add_output_flags, check_output_flags, write_outputs
from PIL import Image

from cascade.data import analyze_video
from cascade.data.shapes_render import render_clip
from cascade.data.shapes_world import ShapesWorld
from cascade.eval.image_quality import psnr
from cascade.ops.windows import window_starts
from cascade.pipelines.coarse_to_fine import blend_between, coarse_positions
from cascade.pipelines.interpolation import InterpolationPipeline
from cascade.pipelines.keyframes import KeyframesPipeline
from cascade.utils.devices import describe_machine

REPO = Path(__file__).resolve().parent.parent
HELD_OUT_SEED = 3000  # neither training's world seeds, stage_fidelity's nor demo_quality's
FRAMES, SIZE, WINDOW, OVERLAP = 8, 16, 8, 4
METHODS = ("replacement", "reconstruction")
LONG_METHODS = ("plain", *METHODS, "coarse_to_fine")  # replacement, reconstruction: window after window
GIVEN_EVERY_OTHER = [0, 2, 4, 6]


def track_distance(frames: np.ndarray, truth: np.ndarray) -> float:
    """Mean distance between the centroid tracks of ``frames`` and ``truth`` ``(F, H, W, 3)`` in frame widths;
    1 (the frame's width) for a frame where no shape is found."""
    distances = np.linalg.norm(analyze_video(frames).centroids - analyze_video(truth).centroids, axis=-1)
    return float(np.nan_to_num(distances, nan=1.0).mean())


def seam_ratio(frames: np.ndarray, seams: list[int]) -> float:
    """The largest centroid step of ``frames`` ``(F, H, W, 3)`` among the steps ``seams`` (step ``i`` goes from
    frame ``i`` to ``i + 1``) over the median step; over all steps when there are no seams. ``inf`` when a
    frame shows no shape."""
    centroids = analyze_video(frames).centroids  # (F, 2)
    steps = np.linalg.norm(np.diff(centroids, axis=0), axis=-1)  # (F - 1,)
    if np.isnan(steps).any():
        return float("inf")
    seams = seams or list(range(len(steps)))
    return float(steps[seams].max() / max(np.median(steps), 1e-6))


def seams_of(method: str, num_frames: int) -> list[int]:
    """The seam steps of a ``num_frames`` video made by ``method``: into the first frame each window after the
    first adds (window after window), into and out of each coarse frame (coarse to fine), none (plain)."""
    if method == "plain":
        return []
    if method == "coarse_to_fine":
        positions = coarse_positions(num_frames, WINDOW)
        return sorted({p - 1 for p in positions[1:]} | {p for p in positions[:-1]})
    return [start + OVERLAP - 1 for start in window_starts(num_frames, WINDOW, OVERLAP)[1:]]


def reads(frames: np.ndarray, params) -> dict:
    analysis = analyze_video(frames)
    return {"direction": analysis.direction == params.direction, "color": analysis.color == params.color}


def generate(pipe, prompts, args, seed, **kwargs) -> np.ndarray:
    """Keyframes ``(N, F, H, W, 3)`` for ``prompts`` at the benchmark's settings."""
    settings = {"num_frames": FRAMES, "num_inference_steps": args.steps, "guidance_scale": args.guidance}
    return pipe(prompts, generator=torch.Generator().manual_seed(seed), **{**settings, **kwargs}).frames


def conditioning(method: str, args) -> dict:
    """The keyframes call's arguments for ``method`` (``none`` gives no frames)."""
    if method == "replacement":
        return {"conditioning_method": "replacement"}
    return {"conditioning_method": "reconstruction", "reconstruction_guidance_scale": args.weight}


def image_to_video(pipe, params, truths, args) -> tuple[dict, dict]:
    rows, outputs = {}, {}
    for method in ("none", *METHODS):
        given = {} if method == "none" else {"image": truths[:, 0], **conditioning(method, args)}
        frames = generate(pipe, [p.caption for p in params], args, 0, **given)  # (N, F, H, W, 3)
        outputs[method] = frames
        read = [reads(clip, p) for clip, p in zip(frames, params, strict=True)]
        rows[method] = {
            "first_frame_psnr": float(psnr(frames[:, :1], truths[:, :1]).mean),
            "rest_psnr": float(psnr(frames[:, 1:], truths[:, 1:]).mean),
            "direction": float(np.mean([r["direction"] for r in read])),
            "color": float(np.mean([r["color"] for r in read])),
            "track_distance": float(
                np.mean([track_distance(c, t) for c, t in zip(frames, truths, strict=True)])
            ),
        }
        print(f"image-to-video by {method}: done", flush=True)
    return rows, outputs


def extension(pipe, params, truths, args) -> tuple[dict, dict]:
    rows, outputs = {}, {}
    for method in ("none", *METHODS):
        given = (
            {} if method == "none" else {"conditioning_frames": truths[:, :4], **conditioning(method, args)}
        )
        frames = generate(pipe, [p.caption for p in params], args, 1, **given)  # (N, F, H, W, 3)
        outputs[method] = frames
        rows[method] = {
            "new_frames_psnr": float(psnr(frames[:, 4:], truths[:, 4:]).mean),
            "direction": float(
                np.mean([reads(clip, p)["direction"] for clip, p in zip(frames, params, strict=True)])
            ),
            "track_distance": float(
                np.mean([track_distance(c[4:], t[4:]) for c, t in zip(frames, truths, strict=True)])
            ),
        }
        print(f"extension by {method}: done", flush=True)
    return rows, outputs


def interpolation(pipe, interpolator, params, truths, args) -> tuple[dict, dict]:
    truths = truths[:, :7]  # (N, 7, H, W, 3): frames 0, 2, 4, 6 given, 1, 3, 5 made
    given = truths[:, GIVEN_EVERY_OTHER]  # (N, 4, H, W, 3)
    prompts = [p.caption for p in params]
    outputs = {"linear": truths.copy()}
    outputs["linear"][:, 1::2] = (given[:, :-1] + given[:, 1:]) / 2
    for method in METHODS:
        outputs[method] = generate(
            pipe,
            prompts,
            args,
            2,
            num_frames=7,
            conditioning_frames=given,
            conditioning_frame_indices=GIVEN_EVERY_OTHER,
            **conditioning(method, args),
        )
    if interpolator is not None:
        outputs["interpolation_stage"] = interpolator(
            prompts,
            video=given,
            interpolation_factor=2,
            generator=torch.Generator().manual_seed(2),
            **args.interpolation_defaults,
        ).frames
    rows = {
        method: {
            "in_between_psnr": float(psnr(frames[:, 1::2], truths[:, 1::2]).mean),
            "track_distance": float(
                np.mean([track_distance(c, t) for c, t in zip(frames, truths, strict=True)])
            ),
        }
        for method, frames in outputs.items()
    }
    print("interpolation: done", flush=True)
    return rows, {"truth": truths, **outputs}


def long_settings(method: str, args) -> dict:
    if method == "plain":
        return {}
    if method == "coarse_to_fine":
        return {"window": WINDOW, "window_overlap": OVERLAP, "long_video_method": "coarse_to_fine"}
    return {"window": WINDOW, "window_overlap": OVERLAP, **conditioning(method, args)}


def long_videos(pipe, params, args) -> tuple[dict, dict]:
    rows, outputs = {}, {}
    for method in LONG_METHODS:
        frames = generate(
            pipe,
            [p.caption for p in params],
            args,
            3,
            num_frames=args.long_frames,
            **long_settings(method, args),
        )  # (N, F, H, W, 3)
        outputs[method] = frames
        ratios = [seam_ratio(clip, seams_of(method, args.long_frames)) for clip in frames]
        rows[method] = {
            "direction": float(
                np.mean([reads(clip, p)["direction"] for clip, p in zip(frames, params, strict=True)])
            ),
            "median_seam_ratio": float(np.median(ratios)),
            "seam_ratio_within_2": float(np.mean([ratio <= 2 for ratio in ratios])),
            "median_largest_step_ratio": float(np.median([seam_ratio(clip, []) for clip in frames])),
        }
        print(f"{args.long_frames} keyframes by {method}: done", flush=True)
    return rows, outputs


def in_betweens(pipe, params, args) -> tuple[dict, dict]:
    """The coarse-to-fine fill from the renderer's coarse frames, against the renderer's long clip."""
    positions = coarse_positions(args.long_frames, WINDOW)
    between = [index for index in range(args.long_frames) if index not in positions]
    truths = np.stack([render_clip(p, args.long_frames, SIZE, SIZE) for p in params])  # (N, F, H, W, 3)
    coarse = truths[:, positions]  # (N, W, H, W, 3)
    blend = blend_between(torch.from_numpy(coarse).permute(0, 4, 1, 2, 3), positions, args.long_frames)
    outputs = {"truth": truths, "linear blend": blend.permute(0, 2, 3, 4, 1).numpy()}
    for method in METHODS:
        outputs[f"coarse to fine, {method}"] = generate(
            pipe,
            [p.caption for p in params],
            args,
            4,
            num_frames=args.long_frames,
            conditioning_frames=coarse,
            conditioning_frame_indices=positions,
            **long_settings("coarse_to_fine", args),
            **conditioning(method, args),
        )  # (N, F, H, W, 3)
    rows = {
        name: {
            "in_between_psnr": float(psnr(frames[:, between], truths[:, between]).mean),
            "track_distance": float(
                np.mean([track_distance(c, t) for c, t in zip(frames, truths, strict=True)])
            ),
        }
        for name, frames in outputs.items()
        if name != "truth"
    }
    print("in-betweens: done", flush=True)
    return rows, outputs


def memory_kib(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def footprint(model: str, num_frames: int, settings: dict, steps: int, repeats: int) -> dict:
    """In a fresh process: median seconds of one keyframes call, and the peak of the resident set during the
    calls over the resident set of the loaded model, in MiB (Linux: the peak is reset after loading)."""
    torch.set_num_threads(1)
    pipe = KeyframesPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    before = memory_kib("VmRSS")
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        pipe("a red circle moving right", num_frames=num_frames, num_inference_steps=steps, **settings)
        seconds.append(time.perf_counter() - began)
    return {"seconds": statistics.median(seconds), "peak_mib": (memory_kib("VmHWM") - before) / 1024}


def costs(args) -> dict:
    """Seconds and peak memory at 8 frames and at ``--long-frames`` for each long-video method, each in a
    fresh process (spawned: a forked copy of a process whose thread pool ran can hang)."""
    context = multiprocessing.get_context("spawn")
    rows = {}
    for method in LONG_METHODS:
        for frames in (FRAMES, args.long_frames):
            settings = long_settings(method, args) if frames > FRAMES else {}
            with context.Pool(1) as pool:
                rows.setdefault(method, {})[frames] = pool.apply(
                    footprint, (str(args.model / "keyframes"), frames, settings, args.steps, args.repeats)
                )
        print(f"costs of {method}: done", flush=True)
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "weights" / "demo", help="a saved cascade")
    parser.add_argument("--clips", type=int, default=16, help="held-out clips per task")
    parser.add_argument("--long-clips", type=int, default=8, help="long videos per method")
    parser.add_argument("--long-frames", type=int, default=64)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--weight", type=float, default=20.0, help="reconstruction guidance weight w_r")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per cost measurement")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    for name in ("clips", "long_clips", "steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.long_frames <= WINDOW:
        parser.error(f"--long-frames must be more than a window ({WINDOW}), got {args.long_frames}")
    if not (args.model / "keyframes" / "model_index.json").is_file():
        parser.error(f"--model {str(args.model)!r} is not a saved cascade (no keyframes/model_index.json)")
    check_output_flags(parser, args)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    print(describe_machine(), flush=True)
    pipe = KeyframesPipeline.from_pretrained(args.model / "keyframes")
    pipe.set_progress_bar_config(disable=True)
    interpolator = None
    if (args.model / "interpolation" / "model_index.json").is_file():
        interpolator = InterpolationPipeline.from_pretrained(args.model / "interpolation")
        interpolator.set_progress_bar_config(disable=True)
        defaults = json.loads((args.model / "cascade_index.json").read_text())["stage_defaults"][
            "interpolation"
        ]
        args.interpolation_defaults = {k: v for k, v in defaults.items() if k != "interpolation_factor"}
    world = ShapesWorld(HELD_OUT_SEED)
    params = [world[index] for index in range(args.clips)]
    truths = np.stack([render_clip(p, FRAMES, SIZE, SIZE) for p in params])  # (N, F, H, W, 3)
    results = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    results["image_to_video"], i2v = image_to_video(pipe, params, truths, args)
    results["extension"], extended = extension(pipe, params, truths, args)
    results["interpolation"], interpolated = interpolation(pipe, interpolator, params, truths, args)
    results["long"], long = long_videos(pipe, params[: args.long_clips], args)
    results["in_betweens"], _ = in_betweens(pipe, params, args)
    results["costs"] = costs(args)
    results["machine"] = describe_machine()
    print(markdown(results))
    write_outputs(args, results, lambda: sheet_of(params[0], truths[0], i2v, extended, interpolated, long))
    return results


def sheet_of(params, truth, i2v, extended, interpolated, long) -> Image.Image:
    """One clip per task: the truth, then each method's output (long videos: every 4th frame)."""
    caption = params.caption
    blocks = [
        (f"image-to-video: {caption}", ["ground truth", *i2v], [truth, *(v[0] for v in i2v.values())]),
        (
            f"extension of 4 frames: {caption}",
            ["ground truth", *extended],
            [truth, *(v[0] for v in extended.values())],
        ),
        (f"interpolation of 0,2,4,6: {caption}", list(interpolated), [v[0] for v in interpolated.values()]),
        (f"long, every 4th frame: {caption}", list(long), [v[0][::4] for v in long.values()]),
    ]
    sheets = [contact_sheet([(title, clips)], tuple(labels), columns=1) for title, labels, clips in blocks]
    return stack_vertically(sheets)


def decibels(value: float) -> str:
    return f"{value:.1f} dB" if np.isfinite(value) else "exact"


def markdown(results: dict) -> str:
    """The README's tables."""
    lines = [
        "| image-to-video | first frame PSNR | direction | colour | other frames PSNR | track distance |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for method, row in results["image_to_video"].items():
        lines.append(
            f"| {method} | {decibels(row['first_frame_psnr'])} | {row['direction']:.0%} | {row['color']:.0%} "
            f"| {row['rest_psnr']:.1f} dB | {row['track_distance']:.3f} |"
        )
    lines += [
        "",
        "| extension (4 -> 8 frames) | new frames PSNR | direction | track distance |",
        "| --- | ---: | ---: | ---: |",
    ]
    for method, row in results["extension"].items():
        lines.append(
            f"| {method} | {row['new_frames_psnr']:.1f} dB | {row['direction']:.0%} | {row['track_distance']:.3f} |"
        )
    lines += [
        "",
        "| interpolation (4 -> 7 frames) | in-betweens PSNR | track distance |",
        "| --- | ---: | ---: |",
    ]
    for method, row in results["interpolation"].items():
        lines.append(f"| {method} | {row['in_between_psnr']:.1f} dB | {row['track_distance']:.3f} |")
    frames = results["settings"]["long_frames"]
    lines += [
        "",
        f"| {frames} keyframes | direction | median seam ratio | seam ratio <= 2 | largest step ratio "
        f"| s at {FRAMES} | s at {frames} | peak MiB at {FRAMES} | peak MiB at {frames} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for method, row in results["long"].items():
        cost = results["costs"][method]
        lines.append(
            f"| {method} | {row['direction']:.0%} | {row['median_seam_ratio']:.2f} | {row['seam_ratio_within_2']:.0%} "
            f"| {row['median_largest_step_ratio']:.2f} | {cost[FRAMES]['seconds']:.2f} | {cost[frames]['seconds']:.2f} | {cost[FRAMES]['peak_mib']:.0f} "
            f"| {cost[frames]['peak_mib']:.0f} |"
        )
    lines += [
        "",
        f"| in-betweens ({WINDOW} true frames -> {frames}) | in-betweens PSNR | track distance |",
        "| --- | ---: | ---: |",
    ]
    for method, row in results["in_betweens"].items():
        lines.append(f"| {method} | {row['in_between_psnr']:.1f} dB | {row['track_distance']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
