"""Prompt files for ``cascade eval``: one prompt a line, or a CSV with a caption column and an optional
reference-video column (the MSR-VTT layout: ``video_id, sentence``).

Text files: every non-blank line (stripped) is a prompt; with ``reference_dir``, prompt ``i`` gets the
video of that folder that :func:`~cascade.eval.video_files.match_videos` pairs with index ``i``.

CSV files (``.csv``, header row): the caption is read from ``caption_column`` (default: the first of
:data:`CAPTION_COLUMNS` present). References are read only when ``video_column`` or ``reference_dir`` is
given, from ``video_column`` (default: the first of :data:`VIDEO_COLUMNS` present): a path relative to
``reference_dir`` (default: the CSV's folder); one without a suffix (an MSR-VTT ``video_id``) is looked up
with each suffix of :data:`REFERENCE_SUFFIXES`.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

from cascade.eval.video_files import VIDEO_SUFFIXES, match_videos

CAPTION_COLUMNS = ("caption", "sentence", "prompt", "text")
VIDEO_COLUMNS = ("video_path", "path", "video", "video_id")
REFERENCE_SUFFIXES = VIDEO_SUFFIXES


@dataclass(frozen=True)
class PromptItem:
    """One prompt to evaluate.

    Attributes:
        index: its position in the prompt file (0-based, blank lines not counted).
        prompt: the text.
        reference: the reference (real) video's path, or ``None``.
    """

    index: int
    prompt: str
    reference: Path | None = None


def _pick_column(header: list[str], given: str | None, defaults: tuple[str, ...], what: str, path: Path):
    if given is not None:
        if given not in header:
            raise ValueError(
                f"{what} column {given!r} is not in the header of {str(path)!r}; it has {header}"
            )
        return given
    return next((name for name in defaults if name in header), None)


def _resolve_reference(value: str, folder: Path, row: int, path: Path) -> Path:
    candidate = folder / value
    if candidate.suffix.lower() in REFERENCE_SUFFIXES and candidate.is_file():
        return candidate
    for suffix in ("", *REFERENCE_SUFFIXES):
        if candidate.with_name(candidate.name + suffix).is_file():
            return candidate.with_name(candidate.name + suffix)
    raise ValueError(
        f"row {row} of {str(path)!r}: reference video {value!r} is not a file in {str(folder)!r} "
        f"(also tried the suffixes {', '.join(REFERENCE_SUFFIXES)})"
    )


def _read_csv(
    path: Path, caption_column: str | None, video_column: str | None, reference_dir: Path | None
) -> list[PromptItem]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        caption = _pick_column(header, caption_column, CAPTION_COLUMNS, "caption", path)
        if caption is None:
            raise ValueError(
                f"{str(path)!r} has no caption column: its header is {header}; name one with "
                f"--caption-column or use one of {', '.join(CAPTION_COLUMNS)}"
            )
        video = None
        if video_column is not None or reference_dir is not None:
            video = _pick_column(header, video_column, VIDEO_COLUMNS, "video", path)
            if video is None:
                raise ValueError(
                    f"{str(path)!r} has no reference video column: its header is {header}; name one with "
                    f"--video-column or use one of {', '.join(VIDEO_COLUMNS)}"
                )
        folder = reference_dir if reference_dir is not None else path.parent
        items = []
        for row_number, row in enumerate(reader, start=2):
            text = (row.get(caption) or "").strip()
            if not text:
                raise ValueError(f"row {row_number} of {str(path)!r} has an empty {caption!r}")
            reference = None
            if video is not None:
                reference = _resolve_reference((row.get(video) or "").strip(), folder, row_number, path)
            items.append(PromptItem(len(items), text, reference))
    return items


def read_prompts(
    path: str | Path,
    *,
    caption_column: str | None = None,
    video_column: str | None = None,
    reference_dir: str | Path | None = None,
) -> list[PromptItem]:
    """Reads the prompts (and reference videos) of a prompt file; see the module docstring.

    Raises ``ValueError`` for a missing or empty file, an unknown column, an empty caption or a
    reference video that does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompt file {str(path)!r} does not exist or is not a file")
    reference_dir = None if reference_dir is None else Path(reference_dir)
    if path.suffix.lower() == ".csv":
        items = _read_csv(path, caption_column, video_column, reference_dir)
    else:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        items = [PromptItem(i, text) for i, text in enumerate(line for line in lines if line)]
        if items and reference_dir is not None:
            references = match_videos(reference_dir, len(items), "--reference-videos")
            items = [PromptItem(i.index, i.prompt, ref) for i, ref in zip(items, references, strict=True)]
    if not items:
        raise ValueError(f"prompt file {str(path)!r} holds no prompts")
    return items
