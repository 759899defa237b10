"""Does editing work? One-word edits of rendered shapes-world clips with the demo keyframes stage, scored
against the renderer's clip with that word changed (issue 16, item 4).

For each of ``--clips`` held-out clips (``ShapesWorld(3000)[i]``, 8 frames of 16x16, the keyframes stage's
size) two edits are made: the colour word changed (to the colour ``(i % 6) + 1`` places further along
:data:`~cascade.data.shapes_world.COLORS`), and the shape word changed (the harder case: the object's outline
must change while it keeps moving the same way). The ground truth of an edit is the renderer's clip of the
same parameters with that one word changed. Every edit is scored with
:func:`cascade.data.analyze_video`:

- **attribute**: the edited word (colour or shape) read back as the target;
- **motion kept**: the mean distance, over the frames, between the edited clip's centroid track and the
  source clip's, as the analysis reads them (in frame widths; a frame where no shape is found counts as a
  miss); target <= 0.05 of the frame in >= 90% of the edits;
- **PSNR** of the edited clip against the ground-truth edit;
- **reconstruction**: the clip edited with the source prompt as the target, PSNR against the source clip
  (target >= 30 dB).

Methods, each on the same clips (:meth:`cascade.pipelines.editing.EditingMixin.edit`): ``inversion`` (ours:
DDIM inversion of the first ``--strength`` of the steps, the source branch held on the inversion and its
correction carried to the target branch, self-attention injection for the first ``--injection`` of the
steps, negative-prompt inversion at guidance ``--guidance``), ``plain_inversion`` (the whole inverted noise
regenerated under the target prompt at guidance 1, as the issue measured it), and ``sdedit`` (noised to
``--sdedit-strength``, denoised under the target prompt at ``--guidance``). Seconds per edit
are the median over batches of a call's seconds over its clips.

    python benchmarks/edit_quality.py                          # weights/demo/keyframes, 40 clips
    python benchmarks/edit_quality.py --clips 2 --steps 4 --output edits.json --sheet sheet.png

Prints a markdown table; ``--output`` writes every number as JSON; ``--sheet`` writes a contact sheet (per
example clip, a block: source, ground-truth edit, then each method's edit; frames enlarged 4x).
"""

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from contact_sheet import contact_sheet
from output_flags import add_output_flags, check_output_flags, write_outputs

from cascade.data import analyze_video
from cascade.data.shapes_render import render_clip
from cascade.data.shapes_world import COLORS, SHAPES, ShapesWorld
from cascade.eval.image_quality import psnr
from cascade.pipelines.keyframes import KeyframesPipeline
from cascade.utils.devices import describe_machine

REPO = Path(__file__).resolve().parent.parent
HELD_OUT_SEED = 3000  # neither training's world seeds, stage_fidelity's nor demo_quality's
FRAMES, SIZE = 8, 16
METHODS = ("inversion", "plain_inversion", "sdedit")
ATTRIBUTE_TARGET, MOTION_TARGET, MOTION_SHARE_TARGET, RECONSTRUCTION_TARGET_DB = 0.9, 0.05, 0.9, 30.0


def edited_params(params, kind: str, index: int):
    """``params`` with its ``kind`` word (``"color"`` or ``"shape"``) changed, deterministically by ``index``."""
    words = COLORS if kind == "color" else SHAPES
    position = words.index(getattr(params, kind))
    shift = index % (len(words) - 1) + 1
    return dataclasses.replace(params, **{kind: words[(position + shift) % len(words)]})


def track_distance(edited: np.ndarray, source: np.ndarray) -> float:
    """Mean distance between the centroid tracks of two clips ``(F, H, W, 3)``, in frame widths; ``inf``
    when a frame of ``edited`` shows no shape."""
    found = analyze_video(edited).centroids  # (F, 2)
    expected = analyze_video(source).centroids  # (F, 2)
    distances = np.linalg.norm(found - expected, axis=-1)  # (F,)
    return float("inf") if np.isnan(distances).any() else float(distances.mean())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "weights" / "demo" / "keyframes")
    parser.add_argument("--clips", type=int, default=40, help="held-out clips (each edited twice)")
    parser.add_argument("--steps", type=int, default=50, help="inversion and editing steps")
    parser.add_argument("--guidance", type=float, default=2.0, help="guidance of inversion and sdedit")
    parser.add_argument("--injection", type=float, default=0.6, help="inversion: attention injection")
    parser.add_argument("--strength", type=float, default=0.8, help="inversion: strength")
    parser.add_argument("--sdedit-strength", type=float, default=0.6, help="sdedit: strength")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per edit call")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="default: all")
    add_output_flags(parser)
    parser.add_argument("--sheet-clips", type=int, default=2, help="clips per edit kind on the sheet")
    args = parser.parse_args(argv)
    for name in ("clips", "steps", "batch_size", "sheet_clips"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not (args.model / "model_index.json").is_file():
        parser.error(f"--model {str(args.model)!r} is not a saved keyframes pipeline (no model_index.json)")
    check_output_flags(parser, args)
    return args


def edit_all(pipe, sources, source_prompts, target_prompts, method: str, args) -> tuple[np.ndarray, list]:
    """Every clip of ``sources`` ``(N, F, H, W, 3)`` edited by ``method``, in batches; and seconds per edit of
    each batch."""
    settings = {
        "inversion": {
            "guidance_scale": args.guidance,
            "attention_injection": args.injection,
            "strength": args.strength,
        },
        "plain_inversion": {"guidance_scale": 1.0, "strength": 1.0},
        "sdedit": {"guidance_scale": args.guidance, "strength": args.sdedit_strength},
    }[method]
    edited, seconds = [], []
    for start in range(0, len(sources), args.batch_size):
        end = start + args.batch_size
        began = time.perf_counter()
        frames = pipe.edit(
            sources[start:end],
            target_prompts[start:end],
            source_prompts[start:end],
            method=method,
            num_inference_steps=args.steps,
            generator=torch.Generator().manual_seed(start),
            **settings,
        ).frames  # (b, F, H, W, 3)
        seconds.append((time.perf_counter() - began) / len(frames))
        edited.append(frames)
    return np.concatenate(edited), seconds


def score_edits(
    kind: str, edited: np.ndarray, sources: np.ndarray, truths: np.ndarray, targets: list[str]
) -> dict:
    """Per-edit readings and their summary for one method and edit kind."""
    rows = []
    for frames, source, truth, target in zip(edited, sources, truths, targets, strict=True):
        reading = getattr(analyze_video(frames), kind)
        rows.append(
            {
                "target": target,
                "read": reading,
                "track_distance": track_distance(frames, source),
                "psnr": float(psnr(frames[None], truth[None]).mean),
            }
        )
    distances = [row["track_distance"] for row in rows]
    return {
        "attribute": float(np.mean([row["read"] == row["target"] for row in rows])),
        "motion_kept": float(np.mean([distance <= MOTION_TARGET for distance in distances])),
        "mean_track_distance": float(np.mean([min(distance, 1.0) for distance in distances])),
        "psnr": float(np.mean([row["psnr"] for row in rows])),
        "edits": rows,
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    print(describe_machine(), flush=True)
    pipe = KeyframesPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    world = ShapesWorld(HELD_OUT_SEED)
    params = [world[index] for index in range(args.clips)]
    sources = np.stack([render_clip(p, FRAMES, SIZE, SIZE) for p in params])  # (N, F, H, W, 3)
    captions = [p.caption for p in params]
    results = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    results["edits"], results["reconstruction"], results["seconds_per_edit"] = {}, {}, {}
    examples, seconds = [], {method: [] for method in args.methods}
    for kind in ("color", "shape"):
        targets = [edited_params(p, kind, index) for index, p in enumerate(params)]
        truths = np.stack([render_clip(p, FRAMES, SIZE, SIZE) for p in targets])  # (N, F, H, W, 3)
        outputs = {}
        for method in args.methods:
            edited, timing = edit_all(pipe, sources, captions, [p.caption for p in targets], method, args)
            seconds[method] += timing
            outputs[method] = edited
            words = [getattr(p, kind) for p in targets]
            results["edits"].setdefault(method, {})[kind] = score_edits(kind, edited, sources, truths, words)
            print(f"{kind} edits by {method}: done", flush=True)
        for index in range(min(args.sheet_clips, args.clips)):
            label = f"{captions[index]}\n-> {targets[index].caption}"  # two lines
            clips = [sources[index], truths[index], *(outputs[method][index] for method in args.methods)]
            examples.append((label, clips))
    for method in [method for method in args.methods if method != "sdedit"]:
        rebuilt, _ = edit_all(pipe, sources, captions, captions, method, args)
        results["reconstruction"][method] = float(psnr(rebuilt, sources).mean)
    results["seconds_per_edit"] = {method: statistics.median(values) for method, values in seconds.items()}
    results["machine"] = describe_machine()
    print(markdown(results))
    write_outputs(args, results, lambda: contact_sheet(examples, ("source", "ground truth", *args.methods)))
    return results


def markdown(results: dict) -> str:
    """The README's table: one row per method."""
    lines = [
        "| method | colour read | colour: motion kept | colour PSNR | shape read | shape: motion kept "
        "| shape PSNR | reconstruction | s / edit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for method in results["edits"]:
        color, shape = results["edits"][method]["color"], results["edits"][method]["shape"]
        rebuilt = results["reconstruction"].get(method)
        lines.append(
            f"| {method} | {color['attribute']:.0%} | {color['motion_kept']:.0%} | {color['psnr']:.1f} dB "
            f"| {shape['attribute']:.0%} | {shape['motion_kept']:.0%} | {shape['psnr']:.1f} dB "
            f"| {'-' if rebuilt is None else f'{rebuilt:.1f} dB'} | {results['seconds_per_edit'][method]:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
