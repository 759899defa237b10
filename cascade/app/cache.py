"""The bounded cache of the files the web app writes for its requests.

Every request gets a folder of its own (its stage pictures, the video as mp4 and gif); when a new one
would make more than ``max_requests``, the oldest folders are removed, so a server that runs for weeks
keeps at most ``max_requests`` requests' files. Folder names carry a random part: the app serves files
by path, and a name that cannot be guessed keeps one visitor's outputs from another.
"""

import secrets
import shutil
import threading
from pathlib import Path

from cascade.utils.checks import check_int


class RequestCache:
    """Request folders under ``folder``, at most ``max_requests`` of them (oldest removed first).

    Thread-safe: the app handles several requests at once when its concurrency limit allows.
    """

    def __init__(self, folder: str | Path, max_requests: int = 32):
        if not isinstance(folder, str | Path):
            raise ValueError(f"`folder` must be a str or Path, got {folder!r}.")
        self.folder = Path(folder)
        self.max_requests = check_int("max_requests", max_requests, minimum=1)
        self._lock = threading.Lock()

    def _existing(self) -> list[Path]:
        """The request folders, oldest first (names start with a zero-padded counter)."""
        return sorted(path for path in self.folder.iterdir() if path.is_dir() and path.name[:8].isdigit())

    def new_request(self) -> Path:
        """A new empty folder for one request's files; removes the oldest ones beyond ``max_requests``."""
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            existing = self._existing()
            number = int(existing[-1].name[:8]) + 1 if existing else 0
            folder = self.folder / f"{number:08d}-{secrets.token_hex(8)}"
            folder.mkdir()
            for old in existing[: max(0, len(existing) + 1 - self.max_requests)]:
                shutil.rmtree(old, ignore_errors=True)
            return folder

    def requests(self) -> list[Path]:
        """The request folders kept now, oldest first."""
        with self._lock:
            return self._existing() if self.folder.is_dir() else []

    def clear(self) -> None:
        """Removes the cache folder and everything in it (when the server stops)."""
        with self._lock:
            shutil.rmtree(self.folder, ignore_errors=True)
