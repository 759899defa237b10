"""The ``cascade`` command line.

    cascade generate PROMPT -o OUT.mp4 --model DIR [--frames N] [--steps N] [--seed N] [--fps N]
    cascade init-tiny DIR [--latent]

Errors print one line and exit with status 2; nothing half-written is left behind.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".gif")


class CommandError(Exception):
    """A user error: printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cascade", description="Cascaded text-to-video generation with inflated diffusers UNets."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser(
        "generate",
        help="generate a video from a prompt",
        description="Generate a video from a prompt with a saved pipeline and write it as .mp4 or .gif.",
    )
    generate.add_argument("prompt", help="what the video shows")
    generate.add_argument("-o", "--output", required=True, type=Path, help="output file, .mp4 or .gif")
    generate.add_argument(
        "--model", type=Path, required=True, help="folder of a pipeline saved with save_pretrained"
    )
    generate.add_argument("--frames", type=int, default=8, help="number of frames (default 8)")
    generate.add_argument("--steps", type=int, default=25, help="denoising steps (default 25)")
    generate.add_argument(
        "--guidance", type=float, default=7.5, help="classifier-free guidance (default 7.5)"
    )
    generate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    generate.add_argument("--fps", type=int, default=8, help="frames per second of the file (default 8)")

    tiny = commands.add_parser(
        "init-tiny",
        help="write a tiny untrained pipeline, to try the plumbing",
        description="Write a tiny randomly initialised KeyframesPipeline to DIR. Its videos are noise: it "
        "exists to try the commands and the loading code without downloading anything.",
    )
    tiny.add_argument("directory", type=Path, help="folder to write (must not exist)")
    tiny.add_argument(
        "--latent", action="store_true", help="with a VAE (latent space) instead of pixel space"
    )
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

    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        if path.suffix.lower() == ".gif":
            export_to_gif(frames, str(partial), fps=fps)
        else:
            export_to_video(frames, str(partial), fps=fps)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def generate(args: argparse.Namespace) -> None:
    for name in ("frames", "steps", "fps"):
        if getattr(args, name) <= 0:
            raise CommandError(f"--{name} must be a positive int, got {getattr(args, name)}")
    _check_output(args.output)
    if not (args.model / "model_index.json").is_file():
        raise CommandError(
            f"--model {str(args.model)!r} is not a saved pipeline folder (no model_index.json)"
        )

    import torch

    from cascade import KeyframesPipeline

    pipe = KeyframesPipeline.from_pretrained(args.model)
    frames = pipe(
        args.prompt,
        num_frames=args.frames,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        generator=torch.Generator().manual_seed(args.seed),
        output_type="pil",
    ).frames[0]
    _write_video(frames, args.output, args.fps)
    print(f"wrote {args.output}")


def init_tiny(args: argparse.Namespace) -> None:
    if args.directory.exists():
        raise CommandError(f"{str(args.directory)!r} already exists; give a new folder")
    from cascade import KeyframesPipeline
    from cascade.tiny_models import tiny_keyframes_components

    pipe = KeyframesPipeline(**tiny_keyframes_components(latent=args.latent))
    partial = args.directory.with_name(f".{args.directory.name}.partial")
    try:
        pipe.save_pretrained(partial)
        os.replace(partial, args.directory)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    print(f"wrote {args.directory}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        {"generate": generate, "init-tiny": init_tiny}[args.command](args)
    except (CommandError, ValueError, OSError) as error:
        print(f"cascade {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
