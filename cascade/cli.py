"""The ``cascade`` command line.

    cascade generate PROMPT -o OUT.mp4 [--model DIR] [--stages ...] [--frames N] [--steps N] [--seed N]
                     [--fps N] [--guidance G] [--save-intermediates]
    cascade init-tiny DIR [--latent]
    cascade eval --prompts FILE (--model DIR | --videos DIR) -o OUTDIR [--metrics ...]
    cascade build STAGE|all [--manifest FILE] -o DIR [--local-dir REPO_ID=FOLDER ...] [--push-to-hub REPO]
    cascade train RECIPE.yaml... [--max-steps N] [--stop-after N] [--output-dir DIR] [--no-resume]
    cascade assemble OUTDIR --keyframes DIR [--interpolation DIR] [--spatiotemporal-sr DIR] [--spatial-sr DIR]

Errors print one line and exit with status 2; nothing half-written is left behind.
"""

import argparse
import os
import sys
from pathlib import Path

from cascade.atomic_write import write_atomically
from cascade.cascade_settings import STAGES, check_generation_flags, select_stages, stage_settings
from cascade.training.command import add_train_parsers, run_assemble, run_train

VIDEO_SUFFIXES = (".mp4", ".gif")
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "weights" / "demo"


class CommandError(Exception):
    """A user error: printed as one line, exit status 2."""


EVAL_HELP = "generate videos for a prompt file and score them"
BUILD_HELP = "build stage checkpoints from the pretrained models of the weights manifest"


def _parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of ``argv`` (default ``sys.argv[1:]``). The ``eval`` subcommand's arguments come from
    :mod:`cascade.eval.command`, which imports torch and diffusers: they are added only when ``argv`` may
    name ``eval``; otherwise ``eval`` is listed by its one-line help, so ``cascade --help`` stays light."""
    parser = argparse.ArgumentParser(
        prog="cascade", description="Cascaded text-to-video generation with inflated diffusers UNets."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser(
        "generate",
        help="generate a video from a prompt",
        description="Generate a video from a prompt with a saved cascade (or a saved keyframes pipeline) and "
        "write it as .mp4 or .gif. Each stage shows a progress bar.",
    )
    generate.add_argument("prompt", help="what the video shows")
    generate.add_argument("-o", "--output", required=True, type=Path, help="output file, .mp4 or .gif")
    generate.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        help="folder of a cascade or a keyframes pipeline saved with save_pretrained (default: the demo cascade)",
    )
    generate.add_argument(
        "--stages",
        nargs="+",
        metavar="STAGE",
        help=f"run only these stages of the model, in cascade order; from {', '.join(STAGES)} (default: all)",
    )
    generate.add_argument("--frames", type=int, default=8, help="number of keyframes (default 8)")
    generate.add_argument(
        "--steps",
        type=int,
        default=None,
        help="denoising steps of every stage (default: the model's own settings, else 25)",
    )
    generate.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="classifier-free guidance of every stage (default: each stage's)",
    )
    generate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    generate.add_argument("--fps", type=int, default=8, help="frames per second of the file (default 8)")
    generate.add_argument(
        "--save-intermediates",
        action="store_true",
        help="also write each earlier stage's frames next to the output, as OUT.<stage>.<suffix>",
    )

    tiny = commands.add_parser(
        "init-tiny",
        help="write a tiny untrained pipeline, to try the plumbing",
        description="Write a tiny randomly initialised four-stage cascade to DIR. Its videos are noise: it "
        "exists to try the commands and the loading code without downloading anything.",
    )
    tiny.add_argument("directory", type=Path, help="folder to write (must not exist)")
    tiny.add_argument(
        "--latent", action="store_true", help="with a VAE (latent space) instead of pixel space"
    )
    add_train_parsers(commands)
    if "eval" in (sys.argv[1:] if argv is None else argv):
        from cascade.eval.command import add_eval_parser

        add_eval_parser(commands, EVAL_HELP)
    else:
        commands.add_parser("eval", help=EVAL_HELP)
    if "build" in (sys.argv[1:] if argv is None else argv):
        from cascade.hub.build import add_build_parser

        add_build_parser(commands, BUILD_HELP)
    else:
        commands.add_parser("build", help=BUILD_HELP)
    return parser


def _check_output(path: Path) -> None:
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise CommandError(f"--output must end in .mp4 or .gif, got {str(path)!r}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise CommandError(f"--output folder {str(folder)!r} does not exist or is not writable")


def _write_video(frames, path: Path, fps: int) -> None:
    """Writes ``frames`` (a list of PIL images) to ``path`` through a temporary file, then renames it."""
    from diffusers.utils import export_to_gif, export_to_video

    export = export_to_gif if path.suffix.lower() == ".gif" else export_to_video
    write_atomically(path, lambda partial: export(frames, str(partial), fps=fps))


def _load_cascade(model: Path):
    """Loads a saved cascade, or a saved keyframes pipeline as a one-stage cascade, without loading bars."""
    import diffusers
    import transformers

    from cascade import CascadePipeline, KeyframesPipeline

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

    if (model / "cascade_index.json").is_file():
        return CascadePipeline.from_pretrained(model)  # safetensors only
    if (model / "model_index.json").is_file():
        return CascadePipeline(keyframes=KeyframesPipeline.from_pretrained(model, use_safetensors=True))
    if model == DEFAULT_MODEL:
        raise CommandError(f"the default model is not installed at {str(model)!r}; pass --model DIR")
    raise CommandError(f"--model {str(model)!r} is not a saved cascade or pipeline folder")


def generate(args: argparse.Namespace) -> None:
    steps = {} if args.steps is None else {"steps": args.steps}
    check_generation_flags(args.stages, args.seed, frames=args.frames, fps=args.fps, **steps)
    _check_output(args.output)
    cascade = select_stages(_load_cascade(args.model), args.stages)
    for name, stage in cascade.stages.items():
        stage.set_progress_bar_config(desc=name)
    settings = stage_settings(cascade, args.steps, args.frames, args.guidance)
    result = cascade(
        args.prompt, stage_kwargs=settings, seed=args.seed, output_type="pil", return_stage_outputs=True
    )
    videos = []
    if args.save_intermediates:
        for name, frames in list(result.stage_frames.items())[:-1]:
            path = args.output.with_name(f"{args.output.stem}.{name}{args.output.suffix}")
            videos.append((path, _to_pil(cascade.stages[name], frames)))
    videos.append((args.output, result.frames[0]))
    written = []
    try:
        for path, frames in videos:
            _write_video(frames, path, args.fps)
            written.append(path)
    except BaseException:  # all files or none: remove the ones this run wrote
        for path in written:
            path.unlink(missing_ok=True)
        raise
    for path in written:
        print(f"wrote {path}")


def _to_pil(stage, frames) -> list:
    """The first video of a stage's ``pt`` output ``(B, F, 3, H, W)`` in [0, 1] as PIL frames."""
    return stage.video_processor.postprocess_video(frames[:1].permute(0, 2, 1, 3, 4) * 2 - 1, "pil")[0]


def init_tiny(args: argparse.Namespace) -> None:
    if args.directory.exists():
        raise CommandError(f"{str(args.directory)!r} already exists; give a new folder")
    from cascade import CascadePipeline
    from cascade.tiny_models import tiny_cascade_stages

    CascadePipeline(**tiny_cascade_stages(latent=args.latent)).save_pretrained(args.directory)
    print(f"wrote {args.directory}")


def _run_eval(args: argparse.Namespace) -> None:
    from cascade.eval.command import run_eval

    run_eval(args)


def _run_build(args: argparse.Namespace) -> None:
    from cascade.hub.build import run_build

    run_build(args)


def main(argv: list[str] | None = None) -> int:
    args = _parser(argv).parse_args(argv)
    try:
        commands = {
            "generate": generate,
            "init-tiny": init_tiny,
            "eval": _run_eval,
            "train": run_train,
            "assemble": run_assemble,
            "build": _run_build,
        }
        commands[args.command](args)
    except (CommandError, ValueError, OSError) as error:
        print(f"cascade {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
