"""Writing a file through a temporary file renamed into place, so that no half-written file is left
behind: readers see the old file or the complete new one, never a partial one."""

import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Calls ``write(partial)`` with a hidden path next to ``path`` (``.{stem}.partial{suffix}``: the same
    folder, so the rename is atomic, and the same suffix, for writers that pick a format by it), then
    renames the partial file to ``path``. The partial file is removed whether or not ``write`` succeeds."""
    path = Path(path)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
