"""``cascade serve``: the web app (gradio) for a cascade, by default the demo cascade.

    cascade serve [--model DIR|REPO_ID] [--host 127.0.0.1] [--port 7860] [--concurrency N] [--queue-size N]
                  [--cache-size N]

Needs the ``app`` extra (``pip install -e ".[app]"``). Runs until interrupted; the request cache it kept is
removed when it stops.
"""

import argparse

from . import add_command
from .generation import DEMO_MODEL_HELP


def add_parsers(commands) -> None:
    description = (
        "Serve a web app that generates videos with a cascade: prompt, seed, keyframes, stages, steps and "
        "guidance per stage; each stage's frames as it finishes, beside the shapes-world renderer's ground "
        "truth; the video as mp4 and gif. Needs the app extra: pip install -e '.[app]'."
    )
    parser = add_command(commands, "serve", run, "serve the web app (gradio) for a cascade", description)
    parser.add_argument("--model", default=None, metavar="DIR|REPO_ID", help=DEMO_MODEL_HELP)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        metavar="N",
        help="requests generated at once, each with its own loaded copy of the model (default 1)",
    )
    parser.add_argument(
        "--queue-size", type=int, default=16, metavar="N", help="requests that may wait (default 16)"
    )
    parser.add_argument(
        "--cache-size",
        type=int,
        default=32,
        metavar="N",
        help="requests whose files (pictures, mp4, gif) are kept; older ones are removed (default 32)",
    )


def run(args: argparse.Namespace) -> None:
    for flag in ("concurrency", "queue_size", "cache_size"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be a positive int, got {getattr(args, flag)}")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in [1, 65535], got {args.port}")
    from cascade.app.ui import build_app, launch

    from .generation import load_generator

    models = [load_generator(args.model, None) for _ in range(args.concurrency)]
    for model in models:
        model.set_progress_bar_config(disable=True)
    app = build_app(models, cache_size=args.cache_size, queue_size=args.queue_size)
    print(f"serving on http://{args.host}:{args.port} (Ctrl+C stops)")
    launch(app, args.host, args.port)
