"""``cascade rate``: blind pairwise preference studies in the browser, and their report.

    cascade rate A_DIR B_DIR --prompts FILE [--db study.sqlite] [--study NAME] [--host 127.0.0.1] [--port N]
                 [--attention-checks SHARE] [--check-kinds KIND ...] [--seed N]
    cascade rate report [--db study.sqlite] [--study NAME] [-o DIR] [--exclude-failed] [--resamples N] [--seed N]

The first form serves the rating page for the videos of two models (:mod:`cascade.rating.server`); the second
writes the study's report (:mod:`cascade.rating.report`). Both need the ``app`` extra. A folder named
``report`` is given as ``./report``.
"""

import argparse
from pathlib import Path

from . import add_command

USAGE = """cascade rate A_DIR B_DIR --prompts FILE [--db FILE] [--study NAME] [--host HOST] [--port N]
                    [--attention-checks SHARE] [--check-kinds KIND ...] [--seed N]
       cascade rate report [--db FILE] [--study NAME] [-o DIR] [--exclude-failed] [--resamples N] [--seed N]"""
SERVE_ONLY = ("prompts", "host", "port", "attention_checks", "check_kinds")
REPORT_ONLY = ("output", "exclude_failed", "resamples")


def add_parsers(commands) -> None:
    description = (
        "Serve a blind pairwise preference study: a rater sees the prompt and the videos of two models (A_DIR "
        "and B_DIR, named as `cascade eval` names its outputs) side by side, sides drawn at random, and answers "
        "which looks better and which matches the text better. Votes go to an SQLite database. "
        "`cascade rate report` writes the study's report (JSON, markdown, bar chart). Needs: pip install -e '.[app]'."
    )
    parser = add_command(
        commands, "rate", run, "blind pairwise preference studies in the browser", description
    )
    parser.usage = USAGE
    parser.add_argument(
        "folders", nargs="+", metavar="A_DIR B_DIR | report", help="the two models' video folders"
    )
    parser.add_argument(
        "--db", type=Path, default=Path("study.sqlite"), help="the study database (default study.sqlite)"
    )
    parser.add_argument(
        "--study",
        default=None,
        help="study name (default: 'A_DIR vs B_DIR' by folder names; report: the only one)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the random draws (default: fresh; report: 0)"
    )
    serve = parser.add_argument_group("serving a study")
    serve.add_argument(
        "--prompts", type=Path, metavar="FILE", help="the prompt file the videos were made from"
    )
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port to listen on (default 8000)")
    serve.add_argument(
        "--attention-checks",
        type=float,
        default=None,
        metavar="SHARE",
        help="share of the pairs served that are attention checks, in [0, 0.5] (default 0.1)",
    )
    serve.add_argument(
        "--check-kinds",
        nargs="+",
        metavar="KIND",
        help="how attention checks spoil a video: shuffled (frames out of order), noise (default: both; for a "
        "model whose frames already jump about, noise alone)",
    )
    report = parser.add_argument_group("cascade rate report")
    report.add_argument(
        "-o", "--output", type=Path, metavar="DIR", help="report folder (default: DB's name + '-report')"
    )
    report.add_argument(
        "--exclude-failed", action="store_true", help="leave out raters who failed an attention check"
    )
    report.add_argument("--resamples", type=int, default=None, help="bootstrap resamples (default 2000)")


def _refuse(args: argparse.Namespace, flags: tuple[str, ...], mode: str) -> None:
    given = [f"--{flag.replace('_', '-')}" for flag in flags if getattr(args, flag) not in (None, False)]
    if given:
        raise ValueError(f"{', '.join(given)} do(es) not apply to {mode}")


def _report(args: argparse.Namespace) -> None:
    _refuse(args, SERVE_ONLY, "cascade rate report")
    resamples = 2000 if args.resamples is None else args.resamples
    seed = 0 if args.seed is None else args.seed
    if resamples < 1:
        raise ValueError(f"--resamples must be a positive int, got {resamples}")
    if seed < 0:
        raise ValueError(f"--seed must be an int >= 0, got {seed}")
    from cascade.rating.report import build_report, markdown, write_report
    from cascade.rating.store import read_study_votes

    study, votes = read_study_votes(args.db, args.study)
    report = build_report(study, votes, args.exclude_failed, resamples, seed)
    output = args.output or args.db.with_name(f"{args.db.stem}-report")
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {str(output)!r} exists and is not a folder")
    paths = write_report(output, report)
    print(markdown(report))
    for path in paths:
        print(f"wrote {path}")


def _serve(args: argparse.Namespace) -> None:
    _refuse(args, REPORT_ONLY, "serving a study (they belong to `cascade rate report`)")
    if len(args.folders) != 2:
        raise ValueError(
            f"give two folders, A_DIR and B_DIR (or `report`), got {len(args.folders)}: {args.folders}"
        )
    if args.prompts is None:
        raise ValueError("--prompts FILE is required: the prompt file the videos were made from")
    port = 8000 if args.port is None else args.port
    share = 0.1 if args.attention_checks is None else args.attention_checks
    if not 0 < port < 65536:
        raise ValueError(f"--port must be in [1, 65535], got {port}")
    if not 0 <= share <= 0.5:
        raise ValueError(f"--attention-checks must be in [0, 0.5], got {share}")
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed must be an int >= 0, got {args.seed}")
    from cascade.rating.checks import CHECK_KINDS

    kinds = tuple(args.check_kinds or CHECK_KINDS)
    unknown = [kind for kind in kinds if kind not in CHECK_KINDS]
    if unknown:
        raise ValueError(
            f"--check-kinds: unknown kind(s) {' '.join(unknown)}; choose from {' '.join(CHECK_KINDS)}"
        )
    from cascade.rating.server import create_app, serve
    from cascade.rating.store import VoteStore
    from cascade.rating.study import load_study

    study = load_study(*args.folders, args.prompts, args.study)
    app = create_app(study, VoteStore(args.db), share, args.seed, kinds)
    host = args.host or "127.0.0.1"
    print(
        f"study {study.name!r}: {len(study.items)} prompts, votes in {args.db}; serving on http://{host}:{port}"
    )
    serve(app, host, port)


def run(args: argparse.Namespace) -> None:
    if args.folders == ["report"]:
        _report(args)
    else:
        _serve(args)
