"""Video files of ``cascade eval``: deterministic names, and pairing the videos of a folder with prompts
(reading and writing them is :mod:`cascade.data.media_io`).

Generated video ``i`` is named ``{i:05d}-{digest}.npz`` (lossless uint8 frames, what is scored; with an
``.mp4`` of the same stem beside it for viewing on request), the digest covering everything that decides its
content (prompt, seed, the model folder and its files' sizes and times, settings), so a rerun reuses a file
exactly when it would generate the same video.
"""

import hashlib
import json
from pathlib import Path

from cascade.data.media_io import VIDEO_EXTENSIONS

VIDEO_SUFFIXES = (*VIDEO_EXTENSIONS, ".npz")
WRITE_FORMATS = ("mp4", "npz")


def video_name(index: int, settings: dict) -> str:
    """File stem of generated video ``index``: ``{index:05d}-{first 10 hex digits of sha256(settings)}``."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return f"{index:05d}-{digest}"


def match_videos(folder: Path, count: int, flag: str) -> list[Path]:
    """Pairs the videos of ``folder`` with prompts ``0 .. count - 1``.

    By name: prompt ``i`` takes the file whose stem is ``{i:05d}`` or starts with ``{i:05d}-`` (the names
    ``cascade eval`` writes). By index: when no file is named so and the folder holds exactly ``count``
    videos, they are taken in sorted name order. Anything else raises ``ValueError`` naming ``flag``. Of an
    ``.npz`` and a video file of the same stem (``cascade eval --format mp4`` writes both) only the lossless
    ``.npz`` counts; the other is for viewing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{flag} {str(folder)!r} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    files = [p for p in files if not p.name.startswith(".")]
    lossless = {path.stem for path in files if path.suffix.lower() == ".npz"}
    files = [p for p in files if p.suffix.lower() == ".npz" or p.stem not in lossless]  # no viewing copies
    named = {}
    for path in files:
        prefix = path.stem.split("-", 1)[0]
        if len(prefix) == 5 and prefix.isdigit():
            named.setdefault(int(prefix), []).append(path)
    if not named and len(files) == count:
        return files
    matched = []
    for index in range(count):
        candidates = named.get(index, [])
        if len(candidates) != 1:
            found = "no video" if not candidates else f"{len(candidates)} videos"
            raise ValueError(
                f"{flag} {str(folder)!r} has {found} for prompt {index}: name it {index:05d}.<suffix> or "
                f"{index:05d}-<anything>.<suffix> (suffixes {', '.join(VIDEO_SUFFIXES)}), or give exactly "
                f"{count} videos to pair in name order"
            )
        matched.append(candidates[0])
    return matched
