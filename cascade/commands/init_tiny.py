"""``cascade init-tiny DIR``: a tiny untrained cascade, to try the commands and the loading code."""

import argparse
from pathlib import Path

from . import add_command


def add_parsers(commands) -> None:
    description = (
        "Write a tiny randomly initialised four-stage cascade to DIR. Its videos are noise: it exists to try "
        "the commands and the loading code without downloading anything."
    )
    parser = add_command(
        commands, "init-tiny", run, "write a tiny untrained pipeline, to try the plumbing", description
    )
    parser.add_argument("directory", type=Path, help="folder to write (must not exist)")
    parser.add_argument(
        "--latent", action="store_true", help="with a VAE (latent space) instead of pixel space"
    )


def run(args: argparse.Namespace) -> None:
    if args.directory.exists():
        raise ValueError(f"{str(args.directory)!r} already exists; give a new folder")
    from cascade.pipelines.cascade import CascadePipeline
    from cascade.testing.tiny_models import tiny_cascade_stages

    CascadePipeline(**tiny_cascade_stages(latent=args.latent)).save_pretrained(args.directory)
    print(f"wrote {args.directory}")
