"""The subcommands of the ``cascade`` command line, one module each (:mod:`cascade.cli` lists them).

Each module registers its parser with ``add_parsers(subparsers)`` without importing torch (``cascade --help``
stays fast), and imports its work inside its ``run`` function, which ``add_parsers`` sets as the parser's
``run`` default. A user error raises ``ValueError`` or ``OSError`` naming the flag; the command line prints
it as one line and exits with status 2.
"""

import argparse
from collections.abc import Callable


def add_command(
    commands, name: str, run: Callable, summary: str, description: str
) -> argparse.ArgumentParser:
    """Adds subcommand ``name`` to ``commands`` (from ``add_subparsers``), listed with the one-line
    ``summary``, run by ``run(args)``; returns its parser for the caller's arguments."""
    parser = commands.add_parser(name, help=summary, description=description)
    parser.set_defaults(run=run)
    return parser
