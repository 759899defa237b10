"""Caption files: a CSV with a header row, or JSON Lines, giving a media path and a caption per row
(the WebVid layout, with paths relative to the media folder)."""

import csv
import json
from dataclasses import dataclass
from pathlib import Path

ANNOTATION_SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True)
class Annotation:
    """One row: ``path`` as written in the file (relative to the media folder) and its caption."""

    path: str
    caption: str


def read_annotations(path, path_column: str = "path", caption_column: str = "caption") -> list[Annotation]:
    """Reads ``path`` (``.csv`` with a header row, or ``.jsonl`` with one object a line; blank lines
    are ignored) into annotations, taking the media path and caption from the named columns/keys."""
    if not isinstance(path, str | Path):
        raise ValueError(f"`path` must be a str or pathlib.Path, got {path!r}.")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ANNOTATION_SUFFIXES:
        raise ValueError(f"`path` must end in one of {ANNOTATION_SUFFIXES}, got {str(path)!r}.")
    for name, value in (("path_column", path_column), ("caption_column", caption_column)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"`{name}` must be a non-empty str, got {value!r}.")
    if not path.is_file():
        raise ValueError(f"`path` must be an existing file, got {str(path)!r}.")
    with path.open(newline="", encoding="utf-8") as handle:
        if suffix == ".csv":
            rows = list(csv.DictReader(handle))
        else:
            rows = []
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(
                        f"`path` {str(path)!r} line {number} is not valid JSON: {error}"
                    ) from error
    annotations = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or path_column not in row or caption_column not in row:
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(
                f"row {number} of {str(path)!r} must have `path_column`={path_column!r} and "
                f"`caption_column`={caption_column!r}, got {keys}."
            )
        annotations.append(Annotation(str(row[path_column]), str(row[caption_column])))
    return annotations
