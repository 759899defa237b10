"""The README's demo study: the demo cascade against a weaker baseline in a blind pairwise preference study,
voted by simulated raters that judge with the shapes world's own analysis, end to end through ``cascade
rate``'s server and report, without people.

- **A**: the demo cascade (``weights/demo``) with its own sampling settings.
- **B**, the baseline: the same cascade with its keyframes stage's temporal layers reset to the identity: its
  own 2D UNet re-inflated (``cascade.inflate(keyframes.unet.unet, **the shipped VideoUNet options)``),
  everything else shared (text encoder, sampler, interpolation and both super-resolution stages). The 2D base
  the demo was inflated from is not shipped; this removes exactly what the keyframes stage learned about time,
  so each keyframe is drawn on its own (the README's "2D base just inflated" row measured such a model's
  direction at about chance).
- Prompts: the captions of ``ShapesWorld(2000)[0 .. N - 1]`` (held out from training, as in
  ``demo_quality.py``); batch ``b`` of both models is generated with seed ``10_000 + b``, the same noise for A
  and B. Videos are written as ``cascade eval`` names them (``{index:05d}.mp4``, 29 frames of 64x64, 8 fps).
- Raters: ``--raters`` simulated raters (:class:`cascade.rating.simulated.ShapesJudge`, error rate
  ``--error-rate``) rate every prompt concurrently over HTTP on 127.0.0.1, with 10% attention checks, the
  server's draws seeded with ``--seed``; then ``cascade rate report`` (bootstrap over prompts).

    python benchmarks/rate_demo_study.py --output rate-demo --docs docs     # ~20 min on 2 CPU cores

Writes ``OUTPUT/a``, ``OUTPUT/b``, ``OUTPUT/prompts.txt``, ``OUTPUT/study.sqlite`` and ``OUTPUT/report/``;
with ``--docs``, copies the chart to ``DOCS/rate_demo.png``. Prints the report's markdown.
"""

import argparse
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cascade import CascadePipeline, KeyframesPipeline, inflate
from cascade.data import ShapesWorld
from cascade.data.media_io import write_video
from cascade.pipelines.cascade import DEMO_MODEL, load_cascade
from cascade.rating.report import build_report, markdown, write_report
from cascade.rating.server import create_app, serving
from cascade.rating.simulated import ShapesJudge, SimulatedRater
from cascade.rating.store import VoteStore, read_study_votes
from cascade.rating.study import load_study
from cascade.utils.atomic import write_atomically
from cascade.utils.devices import describe_machine

HELD_OUT_SEED = 2000
SEED_OFFSET = 10_000
FPS = 8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEMO_MODEL, help="saved cascade (default: the demo)")
    parser.add_argument("--output", type=Path, required=True, help="work folder (must not exist)")
    parser.add_argument("--docs", type=Path, help="also copy the chart to DOCS/rate_demo.png")
    parser.add_argument("--prompts", type=int, default=20, help="shapes-world prompts (default 20)")
    parser.add_argument("--raters", type=int, default=10, help="simulated raters (default 10)")
    parser.add_argument("--error-rate", type=float, default=0.1, help="the raters' error rate (default 0.1)")
    parser.add_argument("--batch-size", type=int, default=10, help="prompts per cascade call (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the server's draws and the raters")
    args = parser.parse_args(argv)
    if args.output.exists():
        parser.error(f"--output {str(args.output)!r} exists; give a new folder")
    for flag in ("prompts", "raters", "batch_size"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    if not 0 <= args.error_rate <= 1:
        parser.error("--error-rate must be in [0, 1]")
    return args


def baseline(cascade: CascadePipeline) -> CascadePipeline:
    """``cascade`` with its keyframes UNet re-inflated from its own 2D UNet: identity temporal layers."""
    keyframes = cascade.stages["keyframes"]
    options = {k: v for k, v in keyframes.unet.config.items() if not k.startswith("_") and k != "unet_config"}
    components = {**keyframes.components, "unet": inflate(keyframes.unet.unet, **options)}
    stages = {**cascade.stages, "keyframes": KeyframesPipeline(**components)}
    result = CascadePipeline(stage_defaults=cascade.stage_defaults, **stages)
    result.set_progress_bar_config(disable=True)
    return result


def generate(models: dict[str, CascadePipeline], prompts: list[str], folder: Path, batch_size: int) -> float:
    """Writes each model's video of every prompt to ``folder/<model>/{index:05d}.mp4``; seconds per video."""
    started = time.perf_counter()
    for name in models:
        (folder / name).mkdir(parents=True)
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        for name, model in models.items():
            frames = model(batch, seed=SEED_OFFSET + start).frames  # (B, F, H, W, 3) in [0, 1]
            for offset, video in enumerate(frames):
                path = folder / name / f"{start + offset:05d}.mp4"
                write_video((video * 255).round().astype(np.uint8), path, FPS)
        print(f"generated {min(start + batch_size, len(prompts))}/{len(prompts)} prompts", flush=True)
    return (time.perf_counter() - started) / (len(models) * len(prompts))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    print(describe_machine())
    demo = load_cascade(args.model)
    demo.set_progress_bar_config(disable=True)
    world = ShapesWorld(HELD_OUT_SEED)
    prompts = [world[index].caption for index in range(args.prompts)]
    args.output.mkdir(parents=True)
    prompts_file = args.output / "prompts.txt"
    write_atomically(prompts_file, lambda partial: partial.write_text("\n".join(prompts) + "\n"))
    seconds = generate({"a": demo, "b": baseline(demo)}, prompts, args.output, args.batch_size)
    print(f"{seconds:.1f} s a video")

    study = load_study(
        args.output / "a", args.output / "b", prompts_file, name="demo cascade vs keyframes reset"
    )
    store = VoteStore(args.output / "study.sqlite")
    app = create_app(study, store, check_share=0.1, seed=args.seed)
    judge = ShapesJudge(error_rate=args.error_rate)

    def rate(seed: int) -> int:
        rater = SimulatedRater(base_url, judge, seed=seed)
        try:
            return len(rater.rate())
        finally:
            rater.close()

    with serving(app, "127.0.0.1", free_port()) as base_url, ThreadPoolExecutor(args.raters) as pool:
        cast = sum(pool.map(rate, range(args.seed, args.seed + args.raters)))
    print(f"{args.raters} simulated raters cast {cast} votes")
    study_row, votes = read_study_votes(store.path)
    report = build_report(study_row, votes)
    paths = write_report(args.output / "report", report)
    print(markdown(report))
    if args.docs is not None:
        write_atomically(args.docs / "rate_demo.png", lambda partial: shutil.copyfile(paths[2], partial))
        print(f"wrote {args.docs / 'rate_demo.png'}")
    return report


if __name__ == "__main__":
    main()
