"""The ``--output FILE.json`` and ``--sheet FILE.png`` flags the quality benchmarks share, and their writing."""

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from cascade.eval.report import _json_safe
from cascade.utils.atomic import write_atomically


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, metavar="FILE.json", help="write every number here")
    parser.add_argument("--sheet", type=Path, metavar="FILE.png", help="write a contact sheet here")


def check_output_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Each of ``--output`` and ``--sheet``, when given, names a file of its suffix in an existing folder."""
    for flag, suffix in (("output", ".json"), ("sheet", ".png")):
        path = getattr(args, flag)
        if path is not None and (path.suffix != suffix or not path.parent.is_dir()):
            parser.error(f"--{flag} must be a {suffix} file in an existing folder, got {str(path)!r}")


def write_outputs(args: argparse.Namespace, results: dict, make_sheet: Callable[[], Image.Image]) -> None:
    """Writes ``results`` as JSON to ``--output`` and ``make_sheet()`` to ``--sheet``, each atomically, where
    given."""
    if args.output is not None:
        text = json.dumps(_json_safe(results), indent=2)
        write_atomically(args.output, lambda path: path.write_text(text))
    if args.sheet is not None:
        sheet = make_sheet()
        write_atomically(args.sheet, lambda path: sheet.save(path, format="PNG"))
