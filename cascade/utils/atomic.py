"""Writing files and folders so that no half-written one is ever left behind: the new content is written
under a hidden temporary name in the same folder, then renamed into place. Readers see the old content or
the complete new one, never a partial one; a writer killed half-way leaves only the hidden temporary,
which the next write removes.

A write that fails because the disk is full or a file size limit (``ulimit -f``) is reached raises an
``OSError`` naming the file and the cause, whatever layer hit it (Python, or a library in Rust or C that only
reports ``os error 28`` in its message), with nothing of it left behind."""

import ctypes
import errno
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

# errors that mean the storage took no more bytes: disk full, file size limit, disk quota
STORAGE_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_RENAME_EXCHANGE = 2  # renameat2's flag (Linux >= 3.15): swap two paths in one step
_AT_FDCWD = -100


def storage_errno(error: BaseException) -> int | None:
    """The errno of ``error`` when it says the storage took no more bytes (:data:`STORAGE_ERRNOS`): an
    ``OSError``'s own, or the ``os error N`` a Rust library (safetensors) writes into its message."""
    number = error.errno if isinstance(error, OSError) else None
    if number is None:
        found = re.search(r"os error (\d+)", str(error))
        number = int(found.group(1)) if found else None
    return number if number in STORAGE_ERRNOS else None


def _raise_storage_error(error: BaseException, path: Path) -> None:
    """Re-raises ``error`` as an ``OSError`` naming ``path`` when the storage took no more bytes."""
    number = storage_errno(error)
    if number is not None:
        raise OSError(
            number,
            f"cannot write {str(path)!r}: {os.strerror(number)} (the disk is full, or a file size limit "
            "such as `ulimit -f` was reached); nothing of it was written",
        ) from error


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Calls ``write(partial)`` with a hidden path next to ``path`` (``.{stem}.partial{suffix}``: the same
    folder, so the rename is atomic, and the same suffix, for writers that pick a format by it), then
    renames the partial file to ``path``. The partial file is removed whether or not ``write`` succeeds."""
    path = Path(path)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        write(partial)
        os.replace(partial, path)
    except Exception as error:
        _raise_storage_error(error, path)
        raise
    finally:
        partial.unlink(missing_ok=True)


def partial_folder(folder: Path) -> Path:
    """The hidden folder next to ``folder`` that :func:`write_folder_atomically` writes into."""
    folder = Path(folder)
    return folder.with_name(f".{folder.name}.partial")


def _exchange(first: Path, second: Path) -> bool:
    """Swaps two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); ``False`` where the
    system or its file system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    paths = (os.fsencode(first), os.fsencode(second))
    return renameat2(_AT_FDCWD, paths[0], _AT_FDCWD, paths[1], _RENAME_EXCHANGE) == 0


def replace_folder(partial: Path, folder: Path) -> None:
    """Puts the complete folder ``partial`` in the place of ``folder`` (which may exist). Where the system can,
    the two are swapped in one step and the old one (now at ``partial``) removed, so ``folder`` is always the
    old folder or the new. Elsewhere the old folder is moved aside (to ``.{name}.previous``), the new one
    renamed into place, then the old one removed: two renames (a folder cannot replace a non-empty folder in
    one), so a process killed between them leaves the old folder under its hidden name and no ``folder``."""
    folder = Path(folder)
    if folder.exists() and _exchange(partial, folder):
        shutil.rmtree(partial, ignore_errors=True)
        return
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
    except Exception as error:
        _raise_storage_error(error, folder)
        raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder
