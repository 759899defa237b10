"""Does the demo cascade work? Shapes-world fidelity on held-out prompts, and per-stage PSNR vs baselines.

Issue #4, item 4 ("It must actually work"), measured against the shapes-world renderer's ground truth.

The demo cascade works in pixel space in four stages: 8 keyframes of 16x16, interpolation x4 to 29
frames, spatiotemporal super-resolution x2 to 32x32, spatial super-resolution x2 to 64x64. Measured:

1. **Full cascade.** One video per prompt; :func:`cascade.eval.shapes_fidelity.shapes_fidelity` reads
   the colour, shape and motion direction back from its frames and scores each against the caption.
   Accuracy per attribute, next to the renderer's ceiling at the same frame count and size
   (:func:`~cascade.eval.shapes_fidelity.shapes_ceiling`: the analysis of a rendered clip of the same
   caption, i.e. what a perfect generator would score). Targets: colour >= 95%, shape >= 90%,
   direction >= 90%.
2. **Before temporal training.** The 2D text-to-image base (``--base``) inflated as it is before the
   keyframes stage is trained (identity temporal layers: every frame is generated on its own), run as a
   ``KeyframesPipeline`` with the keyframes stage's scheduler, text encoder and tokenizer, against the
   trained keyframes stage, on the same prompts and the same noise. Direction accuracy of their 8
   keyframes: the inflated base should be near chance (25%), since nothing ties its frames together; the
   trained stage is what temporal training bought. The trained keyframes are those the full cascade
   starts from (its keyframes stage's output).
3. **Per stage.** :func:`cascade.eval.stage_fidelity.stage_fidelity` on ``--stage-clips`` rendered
   clips: interpolation against linear frame blending, each super-resolution stage against bicubic
   upsampling, each given the render's exact input (PSNR in dB). Targets: each stage >= its baseline
   + 2 dB.

Held-out prompts and seeds: training drew its clips from ``ShapesWorld`` seeds 0-5 and 7 (one per recipe of
``configs/demo``) and ``cascade.eval.stage_fidelity`` uses seed 1000, so the prompts here are the captions
of ``ShapesWorld(2000)[0 .. N - 1]``. The caption language has only 7 x 3 x 4 = 84 sentences, all of
which training saw; what is new is the draw, and the noise: batch ``b`` (prompts ``i .. i + B - 1``) is
generated with cascade seed ``10_000 + i``, which seeds stage ``k`` with ``10_000 + i + k`` (seeds training
never used). With ``--batch-size 1`` video ``i`` has seed ``10_000 + i``; with larger batches one seed
draws the noise of the whole batch, so numbers are reproducible for a given ``--batch-size``.

    python benchmarks/demo_quality.py                  # weights/demo, 100 prompts, 25 steps
    python benchmarks/demo_quality.py --model DIR --base DIR --prompts 2 --steps 2 --stage-clips 1 \\
        --output quality.json

Prints a markdown table (metric | value | target | pass) and the generation time per video (the median
over batches of a full-cascade call's seconds over its prompts; the first batch includes warm-up);
``--output`` writes every number (per video and per clip too) as JSON.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from cascade.commands.generation import stage_settings
from cascade.data import ShapesWorld, parse_caption
from cascade.eval.report import _json_safe
from cascade.eval.shapes_fidelity import ATTRIBUTES, shapes_ceiling, shapes_fidelity
from cascade.eval.stage_fidelity import CLIPS_SEED, stage_fidelity
from cascade.pipelines.stages import STAGE_NAMES
from cascade.utils.atomic import write_atomically
from cascade.utils.devices import describe_machine

REPO = Path(__file__).resolve().parent.parent
TRAINING_WORLD_SEEDS = (0, 1, 2, 3, 4, 5, 7)  # configs/demo: data seeds of steps 1 .. 6 and 3b
HELD_OUT_SEED = 2000  # ShapesWorld seed of the prompts: neither training's nor stage_fidelity's CLIPS_SEED
SEED_OFFSET = 10_000  # generation seeds start here
KEYFRAMES = 8
ACCURACY_TARGETS = {"color": 0.95, "shape": 0.90, "direction": 0.90}
PSNR_TARGET_DB = 2.0
ISSUE_PROMPTS = 100  # the issue's minimum number of prompts


def held_out_prompts(count: int) -> list[str]:
    """Captions of ``ShapesWorld(HELD_OUT_SEED)[0 .. count - 1]``."""
    world = ShapesWorld(HELD_OUT_SEED)
    return [world[index].caption for index in range(count)]


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=REPO / "weights" / "demo", help="saved 4-stage cascade folder"
    )
    parser.add_argument(
        "--base",
        type=Path,
        default=REPO / "runs" / "demo" / "text_to_image" / "model",
        help="2D text-to-image base (its unet/, text_encoder/ and tokenizer/) for the before-temporal-training row; "
        "skipped with a note if missing (default: the repository's runs/demo/text_to_image/model)",
    )
    parser.add_argument(
        "--prompts", type=positive_int, default=ISSUE_PROMPTS, metavar="N", help="held-out prompts (>= 1)"
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="denoising steps of every stage (default: the cascade's own sampling settings)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=10, help="prompts per cascade call")
    parser.add_argument(
        "--stage-clips", type=positive_int, default=20, help="rendered clips per stage for the PSNR rows"
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="default: cuda if available"
    )
    parser.add_argument("--output", type=Path, metavar="FILE.json", help="write every number here")
    args = parser.parse_args(argv)
    if not (args.model / "cascade_index.json").is_file():
        parser.error(f"--model {str(args.model)!r} is not a saved cascade (no cascade_index.json)")
    if args.base.exists() and not (args.base / "unet").is_dir():
        parser.error(f"--base {str(args.base)!r} has no unet/ subfolder; is it a text-to-image model?")
    if args.output is not None:
        folder = args.output.parent
        if args.output.suffix != ".json" or not folder.is_dir():
            parser.error(f"--output must be a .json file in an existing folder, got {str(args.output)!r}")
    try:
        torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device: {error}")
    return args


def load_cascade(model: Path, device: str):
    import diffusers
    import transformers

    from cascade import CascadePipeline

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    cascade = CascadePipeline.from_pretrained(model)
    missing = [name for name in STAGE_NAMES if name not in cascade.stages]
    if missing:
        raise SystemExit(f"--model {str(model)!r} lacks stage(s) {', '.join(missing)}; this needs all four")
    cascade.set_progress_bar_config(disable=True)
    return cascade.to(device)


def inflated_base(base: Path, keyframes):
    """The 2D base inflated with identity temporal layers, as a ``KeyframesPipeline`` with the base's own
    text encoder and tokenizer (the keyframes stage trains its encoder further) and a copy of the keyframes
    stage's scheduler."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from cascade import KeyframesPipeline, inflate

    unet = inflate(UNet2DConditionModel.from_pretrained(base, subfolder="unet"))
    trained = keyframes.unet.unet.config
    for key in ("in_channels", "sample_size", "cross_attention_dim"):
        if unet.unet.config[key] != trained[key]:
            raise SystemExit(
                f"--base {str(base)!r}: its UNet's {key} is {unet.unet.config[key]}, the keyframes stage's "
                f"{trained[key]}; is it the keyframes stage's base?"
            )
    scheduler = type(keyframes.scheduler).from_config(keyframes.scheduler.config)
    pipe = KeyframesPipeline(
        unet=unet,
        scheduler=scheduler,
        text_encoder=CLIPTextModel.from_pretrained(base, subfolder="text_encoder", use_safetensors=True),
        tokenizer=CLIPTokenizer.from_pretrained(base, subfolder="tokenizer"),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(keyframes.device)


def score(frames: np.ndarray, prompt: str, seed: int) -> dict:
    """Fidelity of ``frames`` ``(F, H, W, 3)`` to ``prompt`` and the renderer's ceiling at that size."""
    target = parse_caption(prompt)
    scores = shapes_fidelity(frames, target)
    ceiling = shapes_ceiling(target, seed, *frames.shape[:3])
    return {
        **{name: scores[f"shapes_{name}"] for name in ATTRIBUTES},
        "seen": {name: scores[f"shapes_seen_{name}"] for name in ATTRIBUTES},
        "ceiling": {name: ceiling[f"shapes_{name}"] for name in ATTRIBUTES},
    }


def accuracy(rows: list[dict]) -> dict:
    """Mean score and mean ceiling per attribute over ``rows`` of :func:`score`."""
    return {
        "accuracy": {name: float(np.mean([row[name] for row in rows])) for name in ATTRIBUTES},
        "ceiling": {name: float(np.mean([row["ceiling"][name] for row in rows])) for name in ATTRIBUTES},
    }


def merged_settings(cascade, steps: int | None) -> dict[str, dict]:
    """Every stage's sampling settings: the cascade's ``stage_defaults`` under ``--steps`` and the keyframe
    count, as a cascade call would merge them."""
    settings = stage_settings(cascade, steps, KEYFRAMES, None)
    return {name: {**cascade.stage_defaults.get(name, {}), **settings[name]} for name in cascade.stages}


def generate(
    cascade, base, prompts: list[str], steps: int | None, batch_size: int
) -> tuple[list[dict], list]:
    """Per-video rows (full cascade, trained keyframes, inflated base keyframes) and the seconds per video
    of each batch's cascade call. The inflated base samples with the keyframes stage's settings."""
    settings = merged_settings(cascade, steps)
    rows, seconds = [], []
    for start in range(0, len(prompts), batch_size):
        batch, seed = prompts[start : start + batch_size], SEED_OFFSET + start
        began = time.perf_counter()
        result = cascade(batch, stage_kwargs=settings, seed=seed, output_type="np", return_stage_outputs=True)
        seconds.append((time.perf_counter() - began) / len(batch))
        keyframes = result.stage_frames["keyframes"].permute(0, 1, 3, 4, 2).cpu().numpy()  # (B, F, H, W, 3)
        before = None
        if base is not None:
            generator = torch.Generator().manual_seed(seed)  # the keyframes stage's seed in the cascade
            before = base(
                batch, generator=generator, output_type="np", **settings["keyframes"]
            ).frames  # (B, F, H, W, 3)
        for offset, prompt in enumerate(batch):
            index = start + offset
            row = {"index": index, "prompt": prompt, "batch_seed": seed}
            row["cascade"] = score(result.frames[offset], prompt, SEED_OFFSET + index)
            row["keyframes"] = score(keyframes[offset], prompt, SEED_OFFSET + index)
            if before is not None:
                row["inflated_base"] = score(before[offset], prompt, SEED_OFFSET + index)
            rows.append(row)
        print(f"generated {start + len(batch)}/{len(prompts)} videos", flush=True)
    return rows, seconds


def target_rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(metric, value, target, pass) rows of the table; ``pass`` is ``yes``/``no``, or ``-`` for context."""
    percent = "{:.1%}".format
    video = results["cascade"]
    shape = f"{video['frames']} frames of {video['size']}x{video['size']}"
    rows = []
    for name, goal in ACCURACY_TARGETS.items():
        value, ceiling = video["accuracy"][name], video["ceiling"][name]
        passed = "yes" if value >= goal else "no"
        rows.append(
            (
                f"{name}, full cascade ({shape})",
                f"{percent(value)} (ceiling {percent(ceiling)})",
                f">= {goal:.0%}",
                passed,
            )
        )
    trained = results["keyframes"]["trained"]["accuracy"]["direction"]
    rows.append(("direction, trained keyframes stage (8 keyframes)", percent(trained), "-", "-"))
    before = results["keyframes"]["inflated_base"]
    if before is not None:
        value = before["accuracy"]["direction"]
        rows.append(
            (
                "direction, 2D base just inflated (before temporal training)",
                percent(value),
                "~25% (chance)",
                "-",
            )
        )
        rows.append(
            ("direction gain from temporal training", f"{(trained - value) * 100:+.1f} pts", "-", "-")
        )
    for name, stage in results["stages"].items():
        difference = stage["difference_db"]
        label = f"{name} PSNR - {stage['baseline']} ({stage['psnr']:.2f} - {stage['baseline_psnr']:.2f} dB)"
        passed = "yes" if difference >= PSNR_TARGET_DB else "no"
        rows.append((label, f"{difference:+.2f} dB", f">= +{PSNR_TARGET_DB:.0f} dB", passed))
    return rows


def markdown(results: dict, rows: list[tuple[str, str, str, str]]) -> str:
    timing, settings = results["seconds_per_video"], results["settings"]
    lines = [
        *settings["machine"].splitlines(),
        "",
        "| metric | value | target | pass |",
        "| --- | ---: | ---: | :---: |",
    ]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    lines += [
        "",
        f"All targets met: {'yes' if results['passed'] else 'no'}.",
        f"Median seconds per video: {timing['median']:.2f} ({settings['steps'] or 'default'} steps per stage, batches of "
        f"{settings['batch_size']}, {settings['device']}).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    machine = describe_machine()
    cascade = load_cascade(args.model, args.device)
    base = None
    if args.base.exists():
        base = inflated_base(args.base, cascade.stages["keyframes"])
    else:
        print(f"note: --base {str(args.base)!r} does not exist; skipping the before-temporal-training row")
    if args.prompts < ISSUE_PROMPTS:
        print(f"note: {args.prompts} prompts; the issue's measurement uses at least {ISSUE_PROMPTS}")
    prompts = held_out_prompts(args.prompts)
    rows, seconds = generate(cascade, base, prompts, args.steps, args.batch_size)
    settings = merged_settings(cascade, args.steps)
    stages = stage_fidelity(cascade, args.stage_clips, KEYFRAMES, seed=SEED_OFFSET, stage_kwargs=settings)
    last = stages["spatial_sr"]["output"]
    results = {
        "settings": {
            "model": str(args.model),
            "base": str(args.base) if base is not None else None,
            "prompts": args.prompts,
            "distinct_prompts": len(set(prompts)),
            "steps": args.steps,
            "stage_settings": settings,
            "batch_size": args.batch_size,
            "stage_clips": args.stage_clips,
            "device": args.device,
            "machine": machine,
            "keyframes": KEYFRAMES,
            "prompts_world_seed": HELD_OUT_SEED,
            "training_world_seeds": list(TRAINING_WORLD_SEEDS),
            "seed_offset": SEED_OFFSET,
            "stage_clips_world_seed": CLIPS_SEED,
        },
        "cascade": {"frames": last["frames"], "size": last["size"], **accuracy([r["cascade"] for r in rows])},
        "keyframes": {
            "trained": accuracy([row["keyframes"] for row in rows]),
            "inflated_base": accuracy([row["inflated_base"] for row in rows]) if base is not None else None,
        },
        "stages": stages,
        "seconds_per_video": {"median": statistics.median(seconds), "batches": seconds},
        "targets": {**ACCURACY_TARGETS, **{f"{name}_difference_db": PSNR_TARGET_DB for name in stages}},
        "videos": rows,
    }
    table = target_rows(results)
    results["passed"] = all(passed == "yes" for *_, passed in table if passed != "-")
    print(markdown(results, table))
    if args.output is not None:
        text = json.dumps(_json_safe(results), indent=2) + "\n"
        write_atomically(args.output, lambda path: path.write_text(text))
        print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
