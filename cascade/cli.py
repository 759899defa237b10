"""The ``cascade`` command line: one subcommand per module of :mod:`cascade.commands`.

    cascade generate PROMPT -o OUT.mp4 [--model DIR] [--stages ...] [--frames N] [--steps N] [--seed N]
                     [--fps N] [--guidance G] [--image FIRST.png] [--save-intermediates]
    cascade extend INPUT -o OUT.mp4 --prompt TEXT --frames N [--model DIR] [--steps N] [--guidance G] [--seed N]
                   [--fps N]
    cascade edit INPUT -o OUT.mp4 --prompt TARGET [--source-prompt SOURCE] [--model DIR] [--method M]
                 [--steps N] [--guidance G] [--strength S] [--frames N] [--seed N] [--fps N]
    cascade init-tiny DIR [--latent]
    cascade eval --prompts FILE (--model DIR | --videos DIR) -o OUTDIR [--metrics ...]
    cascade build STAGE|all [--manifest FILE] -o DIR [--local-dir REPO_ID=FOLDER ...] [--push-to-hub REPO]
    cascade train RECIPE.yaml... [--max-steps N] [--stop-after N] [--output-dir DIR] [--no-resume]
    cascade assemble OUTDIR --keyframes DIR [--interpolation DIR] [--spatiotemporal-sr DIR] [--spatial-sr DIR]
    cascade serve [--model DIR] [--host 127.0.0.1] [--port N] [--concurrency N] [--queue-size N] [--cache-size N]
    cascade rate A_DIR B_DIR --prompts FILE [--db FILE] [--study NAME] [--host H] [--port N] [--attention-checks S]
    cascade rate report [--db FILE] [--study NAME] [-o DIR] [--exclude-failed] [--resamples N] [--seed N]

Errors (``ValueError``, ``OSError``) print one line and exit with status 2; nothing half-written is left
behind. Registering the parsers imports no torch, so ``cascade --help`` is fast.
"""

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "generate",
    "edit",
    "extend",
    "init_tiny",
    "evaluate",
    "build",
    "train",
    "serve",
    "rate",
)  # in cascade.commands


def parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; each sets ``run``, the function that runs it."""
    parser = argparse.ArgumentParser(
        prog="cascade", description="Cascaded text-to-video generation with inflated diffusers UNets."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"cascade.commands.{name}").add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as error:
        print(f"cascade {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
