"""Does DreamBooth on the demo keyframes teach a new subject that the temporal layers then move? (issue 17,
item 3)

The personalized keyframes stage (``--model``, from ``configs/demo_adapters/dreambooth_cross.yaml``: the stage's 2D
UNet fine-tuned on five still images of a yellow cross, a shape the world does not have, captioned "a sks ...",
then put back under the trained temporal layers) makes ``"a sks moving <direction>"`` for each direction and
``--seeds`` seeds; so does the shipped stage (``--base``) from the same noise, for contrast. Scored per video
(:func:`cascade.data.analyze_video` and the cross's template):

- **cross**: most frames with a shape read as the cross, the best match among the cross and the world's three shapes by
  the template reading of :mod:`cascade.data.shapes_analysis` (each shape drawn at the frame's area and
  centroid, the one whose coverage differs least wins); target >= 80% with "moving left".
- **direction** read as prompted, **colour** read as yellow (the subject's).
- **prior**: the world's own captions (``--prior-prompts`` held-out ones) still read as prompted (colour,
  shape, direction), against the shipped stage: what prior preservation keeps.

    python benchmarks/dreambooth_quality.py --model runs/demo/dreambooth_cross/model
    python benchmarks/dreambooth_quality.py --model M --seeds 2 --prior-prompts 4 --steps 3 --sheet d.png

Prints markdown tables; ``--output`` writes every number as JSON; ``--sheet`` writes a contact sheet.
"""

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from contact_sheet import contact_sheet, stack_vertically
from output_flags import add_output_flags, check_output_flags, write_outputs

from cascade.data import (
    DIRECTIONS,
    ShapesWorld,
    SubjectImages,
    analyze_frame,
    analyze_video,
    subject_coverage,
)
from cascade.data.shapes_render import pixel_coverage
from cascade.data.shapes_world import SIZE_RANGE
from cascade.pipelines.keyframes import KeyframesPipeline
from cascade.utils.devices import describe_machine

REPO = Path(__file__).resolve().parent.parent
FRAMES = 8
SUBJECT, SUBJECT_COLOR, PROMPT = "cross", "yellow", "a zq moving {direction}"
HELD_OUT_SEED = 5000
# Side of each shape's bounding square from its area (the world's shapes as shapes_analysis reads them;
# the cross covers 5/9 of its square).
SIDE_FROM_AREA = {
    "circle": lambda area: np.sqrt(4 * area / np.pi),
    "square": np.sqrt,
    "triangle": lambda area: np.sqrt(2 * area),
    SUBJECT: lambda area: np.sqrt(9 * area / 5),
}


def frame_shape(frame: np.ndarray) -> str | None:
    """The shape among the world's and the cross whose template best matches ``frame`` ``(H, W, 3)``: the
    template of the frame's shape area centred on its centroid, as :mod:`cascade.data.shapes_analysis` reads
    the world's shapes, with the cross's added. ``None`` where no shape is found, or one of less than half
    the area of the smallest cross the subject's images show (a speck matches any template)."""
    analysis = analyze_frame(frame)
    if analysis.shape is None:
        return None
    height, width = frame.shape[:2]
    coverage = np.clip(frame.max(axis=-1) - np.median(frame.reshape(-1, 3), axis=0).max(), 0, 1)  # (H, W)
    area = coverage.sum()
    if area < 0.5 * 5 / 9 * (SIZE_RANGE[0] * min(height, width)) ** 2:
        return None
    x, y = analysis.centroid[0] * width, analysis.centroid[1] * height
    errors = {}
    for shape, side_of in SIDE_FROM_AREA.items():
        side = float(side_of(area))
        if shape == SUBJECT:
            template = subject_coverage(shape, x, y, side / 2, height, width)
        else:
            center_y = y - side / 6 if shape == "triangle" else y  # a triangle's centroid is below its centre
            template = pixel_coverage(shape, x, center_y, side / 2, height, width)
        errors[shape] = float(((coverage - template) ** 2).sum() / max(area, 1e-6))
    return min(errors, key=errors.get)


def video_shape(frames: np.ndarray) -> str | None:
    """The majority of :func:`frame_shape` over the frames ``(F, H, W, 3)``."""
    counts = Counter(shape for shape in map(frame_shape, frames) if shape is not None)
    return counts.most_common(1)[0][0] if counts else None


def generate(pipe, prompts: list[str], args) -> np.ndarray:  # (N, F, H, W, 3)
    settings = {"num_frames": FRAMES, "num_inference_steps": args.steps, "guidance_scale": args.guidance}
    return pipe(prompts, generator=torch.Generator().manual_seed(args.seed), **settings).frames


def subject_scores(pipe, args) -> tuple[dict, dict]:
    """Per direction: the share of seeds whose video reads as the cross, moving that way, in yellow."""
    results, videos = {}, {}
    for direction in DIRECTIONS:
        prompts = [PROMPT.format(direction=direction)] * args.seeds
        frames = generate(pipe, prompts, args)
        analyses = [analyze_video(clip) for clip in frames]
        shapes = [video_shape(clip) for clip in frames]
        results[direction] = {
            "cross": float(np.mean([shape == SUBJECT for shape in shapes])),
            "direction": float(np.mean([a.direction == direction for a in analyses])),
            "color": float(np.mean([a.color == SUBJECT_COLOR for a in analyses])),
            "cross_and_direction": float(
                np.mean(
                    [s == SUBJECT and a.direction == direction for s, a in zip(shapes, analyses, strict=True)]
                )
            ),
            "shapes": dict(Counter(str(shape) for shape in shapes)),
        }
        videos[direction] = frames
    return results, videos


def prior_scores(pipe, args) -> dict:
    """The world's held-out captions: the share read as prompted, for colour, shape and direction."""
    world = ShapesWorld(HELD_OUT_SEED)
    params = [world[index] for index in range(args.prior_prompts)]
    frames = generate(pipe, [p.caption for p in params], args)
    analyses = [analyze_video(clip) for clip in frames]
    return {
        name: float(
            np.mean([getattr(a, name) == getattr(p, name) for a, p in zip(analyses, params, strict=True)])
        )
        for name in ("color", "shape", "direction")
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the personalized keyframes pipeline")
    parser.add_argument("--base", type=Path, default=REPO / "weights" / "demo" / "keyframes")
    parser.add_argument("--seeds", type=int, default=16, help="videos per direction")
    parser.add_argument("--prior-prompts", type=int, default=32)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    add_output_flags(parser)
    args = parser.parse_args(argv)
    for name in ("seeds", "prior_prompts", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for flag in ("model", "base"):
        if not (getattr(args, flag) / "model_index.json").is_file():
            parser.error(f"--{flag} {str(getattr(args, flag))!r} is not a saved keyframes pipeline")
    check_output_flags(parser, args)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    print(describe_machine(), flush=True)
    results = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    outputs = {}
    for name, folder in (("dreambooth", args.model), ("shipped keyframes", args.base)):
        pipe = KeyframesPipeline.from_pretrained(folder, use_safetensors=True)
        pipe.set_progress_bar_config(disable=True)
        results[name], outputs[name] = subject_scores(pipe, args)
        results[name]["prior"] = prior_scores(pipe, args)
    results["machine"] = describe_machine()
    print(markdown(results))
    write_outputs(args, results, lambda: sheet_of(outputs))
    return results


def sheet_of(outputs: dict, count: int = 3):
    """The subject's training images, then per direction ``count`` seeds of each model."""
    images = SubjectImages(5, shape=SUBJECT, color=SUBJECT_COLOR)  # the recipe's images (its seed 0)
    stills = np.stack([(images[i]["pixel_values"][:, 0].permute(1, 2, 0).numpy() + 1) / 2 for i in range(5)])
    training = contact_sheet(
        [("the five training images, captioned 'a zq moving <any>'", [stills])], ("images",)
    )
    blocks = [
        (
            f"{PROMPT.format(direction=direction)}, seed {seed}",
            [frames[direction][seed] for frames in outputs.values()],
        )
        for direction in DIRECTIONS
        for seed in range(count)
    ]
    return stack_vertically([training, contact_sheet(blocks, tuple(outputs), columns=2)])


def markdown(results: dict) -> str:
    lines = [
        "| keyframes | prompt | cross | direction | cross and direction | yellow |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name in ("dreambooth", "shipped keyframes"):
        for direction in DIRECTIONS:
            row = results[name][direction]
            lines.append(
                f"| {name} | {PROMPT.format(direction=direction)} | {row['cross']:.0%} | {row['direction']:.0%} "
                f"| {row['cross_and_direction']:.0%} | {row['color']:.0%} |"
            )
    lines += ["", "| keyframes | world prompts: colour | shape | direction |", "| --- | ---: | ---: | ---: |"]
    for name in ("dreambooth", "shipped keyframes"):
        prior = results[name]["prior"]
        lines.append(f"| {name} | {prior['color']:.0%} | {prior['shape']:.0%} | {prior['direction']:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
