"""The video bytes the rating page plays, under ids that say nothing of the models.

An mp4 of the study is served as its file; a video in another format (``.npz`` from ``cascade eval --format
npz``, gif, webm, ...) is encoded once as an mp4 and kept in memory, so both sides of a pair reach the browser
in the same container. The spoiled copies of attention checks (:func:`cascade.rating.checks.spoil`) are made
on first use, one per video and kind (seeded by the prompt index), and kept in memory too.
"""

import tempfile
import threading
from pathlib import Path

import numpy as np

from cascade.data.media_io import probe_video, read_video, write_video

from .checks import spoil
from .study import Study

DEFAULT_FPS = 8  # for videos that store no frame rate (npz)


def encode_mp4(frames: np.ndarray, fps: float) -> bytes:
    """uint8 frames ``(F, H, W, 3)`` as the bytes of an mp4 (H.264, what browsers play)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "video.mp4"
        write_video(frames, path, max(1, round(fps)))
        return path.read_bytes()


class StudyMedia:
    """What to send for each video of ``study``: a file path (an mp4) or mp4 bytes."""

    def __init__(self, study: Study):
        self.study = study
        self._encoded: dict[tuple, bytes] = {}
        self._lock = threading.Lock()

    def _fps(self, path: Path) -> float:
        return DEFAULT_FPS if path.suffix.lower() == ".npz" else probe_video(path).fps

    def original(self, prompt_index: int, model: str) -> Path | bytes:
        """Model ``model``'s video of prompt ``prompt_index``: its path if an mp4, else its frames as mp4 bytes."""
        path = self.study.items[prompt_index].video(model).path
        if path.suffix.lower() == ".mp4":
            return path
        with self._lock:
            key = (prompt_index, model, None)
            if key not in self._encoded:
                self._encoded[key] = encode_mp4(read_video(path), self._fps(path))
            return self._encoded[key]

    def spoiled(self, prompt_index: int, model: str, kind: str) -> bytes:
        """Model ``model``'s video of prompt ``prompt_index`` spoiled by ``kind``, as mp4 bytes."""
        path = self.study.items[prompt_index].video(model).path
        with self._lock:
            key = (prompt_index, model, kind)
            if key not in self._encoded:
                frames = spoil(read_video(path), kind, seed=prompt_index)  # (F, H, W, 3)
                self._encoded[key] = encode_mp4(frames, self._fps(path))
            return self._encoded[key]
