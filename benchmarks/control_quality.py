"""Does the demo's silhouette ControlNet put the shape where the control says, on paths no caption names?
(issue 17, item 2)

Every video is a shape of the world (its colour, shape and size drawn from ``--seed``) moving along a path the
world's captions cannot say: a **diagonal** line (at 25 to 65 degrees from an axis) or an **arc** (a quarter
circle to a half). The renderer draws its silhouettes (the control video, white on black) and its true clip; the
prompt names the colour, the shape and the path's main direction (``"a red circle moving right"`` for a path
down and to the right). The demo keyframes stage makes the video with the ControlNet (``--controlnet``,
trained by ``configs/demo_adapters/controlnet_silhouette.yaml`` on the world's straight paths only) and without it,
from the same noise. Scored per video:

- **IoU**: the generated shape's mask (pixels at least 0.5 from the frame's median colour in some channel)
  against the control's (coverage >= 0.5), mean over frames; target >= 0.7. The true clip's own mask gives
  the ceiling of this reading.
- **colour**, **shape**: read by :func:`cascade.data.analyze_video` as prompted; target (colour) >= 95%.
- **track distance**: mean distance between the generated and the true centroid tracks, in frame widths.
- seconds per video (batched), median of ``--repeats`` calls.

    python benchmarks/control_quality.py                       # weights/demo, 32 videos
    python benchmarks/control_quality.py --videos 4 --steps 3 --output c.json --sheet c.png

Prints a markdown table; ``--output`` writes every number as JSON; ``--sheet`` writes a contact sheet.
"""

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from conditioning_quality import track_distance
from contact_sheet import contact_sheet
from diffusers import ControlNetModel
from output_flags import add_output_flags, check_output_flags, write_outputs

from cascade.data import analyze_video
from cascade.data.shapes_render import pixel_coverage
from cascade.data.shapes_world import COLORS, PALETTE, SHAPES, SIZE_RANGE, make_caption
from cascade.pipelines.keyframes import KeyframesPipeline
from cascade.utils.devices import describe_machine

REPO = Path(__file__).resolve().parent.parent
FRAMES, SIZE = 8, 16
PATHS = ("diagonal", "arc")
MASK_THRESHOLD = 0.5


def diagonal_path(rng: np.random.Generator, size: float) -> np.ndarray:  # (F, 2)
    """Centres ``(x, y)`` of a straight path at 25 to 65 degrees from an axis, 0.35 to 0.5 of the frame long,
    the whole shape in the frame throughout."""
    angle = math.radians(rng.uniform(25, 65) + 90 * rng.integers(4))
    length = rng.uniform(0.35, 0.5)
    step = np.array([math.cos(angle), math.sin(angle)]) * length
    low, high = size / 2 + np.maximum(-step, 0), 1 - size / 2 - np.maximum(step, 0)
    start = rng.uniform(low, high)
    return start + np.linspace(0, 1, FRAMES)[:, None] * step


def arc_path(rng: np.random.Generator, size: float) -> np.ndarray:  # (F, 2)
    """Centres ``(x, y)`` on a circle about a point near the middle, through 90 to 180 degrees in either sense,
    its radius (0.18 up to what keeps the whole shape in the frame) drawn."""
    centre = 0.5 + rng.uniform(-0.04, 0.04, size=2)
    radius = rng.uniform(0.18, 0.5 - size / 2 - 0.04)
    sweep = math.radians(rng.uniform(90, 180)) * rng.choice([-1, 1])
    angles = rng.uniform(0, 2 * math.pi) + np.linspace(0, sweep, FRAMES)
    return centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def main_direction(path: np.ndarray) -> str:
    """The caption word nearest the path's overall displacement (y grows downwards)."""
    dx, dy = path[-1] - path[0]
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def silhouettes(shape: str, size: float, path: np.ndarray) -> np.ndarray:  # (F, H, W)
    """The renderer's coverage of the shape at each centre of ``path``."""
    half = size * SIZE / 2
    return np.stack([pixel_coverage(shape, x * SIZE, y * SIZE, half, SIZE, SIZE) for x, y in path])


def draw_videos(count: int, seed: int) -> list[dict]:
    """``count`` videos, alternating diagonal and arc paths: colour, shape, size, path, silhouettes, truth."""
    rng = np.random.default_rng(seed)
    videos = []
    for index in range(count):
        kind = PATHS[index % len(PATHS)]
        color, shape = COLORS[rng.integers(len(COLORS))], SHAPES[rng.integers(len(SHAPES))]
        size = float(rng.uniform(*SIZE_RANGE))
        path = (diagonal_path if kind == "diagonal" else arc_path)(rng, size)
        coverage = silhouettes(shape, size, path)  # (F, H, W)
        truth = (coverage[..., None] * np.asarray(PALETTE[color])).astype(np.float32)  # (F, H, W, 3)
        caption = make_caption(color, shape, main_direction(path))
        videos.append(
            {
                "path": kind,
                "color": color,
                "shape": shape,
                "caption": caption,
                "coverage": coverage,
                "truth": truth,
            }
        )
    return videos


def shape_mask(frames: np.ndarray) -> np.ndarray:  # (F, H, W) bool
    """Pixels at least :data:`MASK_THRESHOLD` from their frame's median colour in some channel."""
    background = np.median(frames.reshape(frames.shape[0], -1, 3), axis=1)[:, None, None]  # (F, 1, 1, 3)
    return np.abs(frames - background).max(axis=-1) >= MASK_THRESHOLD


def mean_iou(mask: np.ndarray, control: np.ndarray) -> float:
    """Intersection over union of two ``(F, H, W)`` masks, per frame, averaged (1 where both are empty)."""
    union = (mask | control).sum(axis=(1, 2))
    intersection = (mask & control).sum(axis=(1, 2))
    return float(np.where(union > 0, intersection / np.maximum(union, 1), 1.0).mean())


def scores(frames: np.ndarray, video: dict) -> dict:
    analysis = analyze_video(frames)
    return {
        "iou": mean_iou(shape_mask(frames), video["coverage"] >= MASK_THRESHOLD),
        "color": analysis.color == video["color"],
        "shape": analysis.shape == video["shape"],
        "track_distance": track_distance(frames, video["truth"]),
    }


def generate(pipe, videos, args, control: bool) -> tuple[np.ndarray, float]:
    """Keyframes ``(N, F, H, W, 3)`` for ``videos``, with their silhouettes as control or without; the median
    seconds per video over ``args.repeats`` calls."""
    settings = {"num_frames": FRAMES, "num_inference_steps": args.steps, "guidance_scale": args.guidance}
    if control:
        control_video = np.stack(
            [np.repeat(v["coverage"][..., None], 3, axis=-1) for v in videos]
        )  # (N, F, H, W, 3)
        settings.update(control_video=control_video, controlnet_conditioning_scale=args.scale)
    prompts = [video["caption"] for video in videos]
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        frames = pipe(prompts, generator=torch.Generator().manual_seed(args.seed), **settings).frames
        seconds.append((time.perf_counter() - start) / len(videos))
    return frames, statistics.median(seconds)


def summary(rows: list[dict]) -> dict:
    return {
        "iou": float(np.mean([row["iou"] for row in rows])),
        "iou_at_least_0.7": float(np.mean([row["iou"] >= 0.7 for row in rows])),
        "color": float(np.mean([row["color"] for row in rows])),
        "shape": float(np.mean([row["shape"] for row in rows])),
        "track_distance": float(np.mean([row["track_distance"] for row in rows])),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "weights" / "demo", help="a saved cascade")
    parser.add_argument(
        "--controlnet", type=Path, default=REPO / "weights" / "demo_controlnet", help="a saved ControlNet"
    )
    parser.add_argument("--videos", type=int, default=32, help="videos, half on diagonals, half on arcs")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--scale", type=float, default=1.0, help="controlnet_conditioning_scale")
    parser.add_argument("--seed", type=int, default=4000, help="the videos' and the noise's seed")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per method")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    for name in ("videos", "steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not (args.model / "keyframes" / "model_index.json").is_file():
        parser.error(f"--model {str(args.model)!r} is not a saved cascade (no keyframes/model_index.json)")
    if not (args.controlnet / "config.json").is_file():
        parser.error(f"--controlnet {str(args.controlnet)!r} is not a saved ControlNet (no config.json)")
    check_output_flags(parser, args)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    print(describe_machine(), flush=True)
    controlnet = ControlNetModel.from_pretrained(args.controlnet, use_safetensors=True)
    controlled = KeyframesPipeline.from_pretrained(args.model / "keyframes", controlnet=controlnet)
    plain = KeyframesPipeline(**{**controlled.components, "controlnet": None})
    for pipe in (controlled, plain):
        pipe.set_progress_bar_config(disable=True)
    videos = draw_videos(args.videos, args.seed)
    outputs, results = (
        {},
        {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}},
    )
    truth_iou = [mean_iou(shape_mask(v["truth"]), v["coverage"] >= MASK_THRESHOLD) for v in videos]
    results["ground_truth_iou"] = float(np.mean(truth_iou))
    for name, pipe, control in (("controlnet", controlled, True), ("prompt only", plain, False)):
        frames, seconds = generate(pipe, videos, args, control)
        rows = [{"path": v["path"], **scores(clip, v)} for clip, v in zip(frames, videos, strict=True)]
        results[name] = {
            "all": summary(rows),
            **{kind: summary([row for row in rows if row["path"] == kind]) for kind in PATHS},
            "seconds_per_video": seconds,
            "videos": rows,
        }
        outputs[name] = frames
    results["machine"] = describe_machine()
    print(markdown(results))
    write_outputs(args, results, lambda: sheet_of(videos, outputs))
    return results


def sheet_of(videos: list[dict], outputs: dict, count: int = 4):
    """The first ``count`` videos: the control silhouettes, the true clip, each method's output."""
    labels = ("control", "ground truth", *outputs)
    examples = [
        (
            f"{video['path']}: {video['caption']}",
            [
                np.repeat(video["coverage"][..., None], 3, axis=-1),
                video["truth"],
                *(o[i] for o in outputs.values()),
            ],
        )
        for i, video in enumerate(videos[:count])
    ]
    return contact_sheet(examples, labels, columns=2)


def markdown(results: dict) -> str:
    """The README's table."""
    lines = [
        "| keyframes | paths | IoU with the control | IoU >= 0.7 | colour | shape | track distance | s / video |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in ("controlnet", "prompt only"):
        for kind in ("all", *PATHS):
            row = results[name][kind]
            seconds = f"{results[name]['seconds_per_video']:.2f}" if kind == "all" else ""
            lines.append(
                f"| {name} | {kind} | {row['iou']:.2f} | {row['iou_at_least_0.7']:.0%} | {row['color']:.0%} "
                f"| {row['shape']:.0%} | {row['track_distance']:.3f} | {seconds} |"
            )
    lines.append(f"\nThe true clip's own mask against the control: IoU {results['ground_truth_iou']:.2f}.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
