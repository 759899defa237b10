"""Reading videos (imageio: ffmpeg for mp4/webm/..., pillow for gif) and images (pillow) from disk.

Every failure of the underlying readers surfaces as :class:`MediaReadError`, so datasets can skip
a bad file without swallowing unrelated errors.
"""

from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Frame rate assumed for a gif that stores no frame duration (what browsers do with a zero delay).
DEFAULT_GIF_FPS = 10.0


class MediaReadError(RuntimeError):
    """A video or image could not be opened or decoded."""


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of a video: its exact frame count and its frame rate."""

    num_frames: int
    fps: float


def _check_path(path) -> Path:
    if not isinstance(path, str | Path):
        raise ValueError(f"`path` must be a str or pathlib.Path, got {path!r}.")
    return Path(path)


def _open_video(path: Path):
    if path.suffix.lower() == ".gif":
        return imageio.get_reader(path, format="GIF")
    return imageio.get_reader(path, format="FFMPEG")


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    return np.ascontiguousarray(frame[..., :3]).astype(np.uint8, copy=False)  # (H, W, 3)


def probe_video(path) -> VideoInfo:
    """Reads a video's frame count and fps without decoding its frames (for gifs, pillow walks the
    frame headers; for ffmpeg formats, the stream is demuxed with ``-c copy``)."""
    path = _check_path(path)
    try:
        with _open_video(path) as reader:
            meta = reader.get_meta_data()
            if path.suffix.lower() == ".gif":
                num_frames = reader.get_length()
                duration_ms = meta.get("duration") or 0
                fps = 1000.0 / duration_ms if duration_ms > 0 else DEFAULT_GIF_FPS
            else:
                num_frames = reader.count_frames()
                fps = float(meta["fps"])
    except Exception as error:  # imageio and its plugins raise many types; report them as one
        raise MediaReadError(f"cannot read video {str(path)!r}: {error}") from error
    if not np.isfinite(fps) or fps <= 0:
        raise MediaReadError(f"video {str(path)!r} reports an invalid fps {fps!r}")
    return VideoInfo(num_frames=int(num_frames), fps=float(fps))


def read_video_frames(path, indices) -> np.ndarray:
    """Decodes the frames at ``indices`` (any order, repeats allowed) as uint8 RGB ``(F, H, W, 3)``,
    reading the video sequentially up to the last index needed."""
    path = _check_path(path)
    array = np.asarray(indices)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer) or array.min() < 0:
        raise ValueError(f"`indices` must be a non-empty 1D sequence of ints >= 0, got {indices!r}.")
    indices = array.tolist()
    wanted, last = set(indices), max(indices)
    found = {}
    try:
        with _open_video(path) as reader:
            for index, frame in enumerate(reader):
                if index in wanted:
                    found[index] = _to_rgb(frame)
                if index >= last:
                    break
    except Exception as error:  # imageio and its plugins raise many types; report them as one
        raise MediaReadError(f"cannot decode video {str(path)!r}: {error}") from error
    if len(found) < len(wanted):
        raise MediaReadError(
            f"video {str(path)!r} ended before frame {last} ({len(found)} of the frames found)"
        )
    return np.stack([found[i] for i in indices])  # (F, H, W, 3)


def verify_image(path) -> None:
    """Checks that ``path`` is a readable image from its header (cheap: no full decode)."""
    path = _check_path(path)
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:  # pillow raises many types; report them as one
        raise MediaReadError(f"cannot read image {str(path)!r}: {error}") from error


def read_image(path) -> np.ndarray:
    """Decodes an image as uint8 RGB ``(H, W, 3)``."""
    path = _check_path(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))  # (H, W, 3)
    except Exception as error:  # pillow raises many types; report them as one
        raise MediaReadError(f"cannot read image {str(path)!r}: {error}") from error
