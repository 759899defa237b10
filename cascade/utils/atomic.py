"""Writing files and folders so that no half-written one is ever left behind: the new content is written
under a hidden temporary name in the same folder, then renamed into place. Readers see the old content or
the complete new one, never a partial one; a writer killed half-way leaves only the hidden temporary,
which the next write removes."""

import os
import shutil
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


def partial_folder(folder: Path) -> Path:
    """The hidden folder next to ``folder`` that :func:`write_folder_atomically` writes into."""
    folder = Path(folder)
    return folder.with_name(f".{folder.name}.partial")


def replace_folder(partial: Path, folder: Path) -> None:
    """Puts the complete folder ``partial`` in the place of ``folder`` (which may exist): the old folder is
    moved aside (to ``.{name}.previous``), the new one renamed into place, then the old one removed. Two
    renames, not one (a folder cannot replace a non-empty folder in one rename), so a process killed between
    them leaves the old folder under its hidden name and no ``folder``."""
    folder = Path(folder)
    previous = folder.with_name(f".{folder.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if folder.exists():
        os.replace(folder, previous)
    os.replace(partial, folder)
    shutil.rmtree(previous, ignore_errors=True)


def write_folder_atomically(folder: Path, write: Callable[[Path], object]) -> Path:
    """Calls ``write(partial)`` with an empty hidden folder next to ``folder``, then puts it in the place of
    ``folder`` (:func:`replace_folder`). The partial folder is removed whether or not ``write`` succeeds.
    Returns ``folder``."""
    folder = Path(folder)
    partial = partial_folder(folder)
    shutil.rmtree(partial, ignore_errors=True)  # left by a writer that was killed
    try:
        partial.mkdir(parents=True)
        write(partial)
        replace_folder(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder
