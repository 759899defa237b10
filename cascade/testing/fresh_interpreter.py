"""Running code in a fresh Python interpreter, for tests that measure a process (its peak memory) or kill it.

A fresh interpreter, not ``os.fork``: a forked copy of a process whose OpenMP pool has run can hang in its first
parallel region. The child sees the caller's ``sys.path`` (so it imports the test modules and this package as
the caller does) and runs on one OpenMP thread.
"""

import os
import subprocess
import sys
from pathlib import Path


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}


def start(code: str, cwd: str | os.PathLike) -> subprocess.Popen:
    """Starts ``code`` in a fresh interpreter in folder ``cwd``; its stdout is discarded, its stderr piped."""
    if not isinstance(code, str) or not code:
        raise ValueError(f"`code` must be a non-empty str, got {code!r}.")
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=Path(cwd),
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def run(code: str, cwd: str | os.PathLike, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter in folder ``cwd`` to its end (at most ``timeout`` seconds) and
    returns it, its stdout and stderr as text."""
    if not isinstance(code, str) or not code:
        raise ValueError(f"`code` must be a non-empty str, got {code!r}.")
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(cwd),
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
