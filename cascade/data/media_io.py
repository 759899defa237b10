"""Reading and writing videos (imageio: ffmpeg for mp4/webm/..., pillow for gif; ``.npz`` for lossless uint8
frames) and reading images (pillow): the one place the package encodes and decodes video files.

Every failure of the underlying readers surfaces as :class:`MediaReadError`, so datasets can skip
a bad file without swallowing unrelated errors. Files are written atomically
(:func:`cascade.utils.atomic.write_atomically`).
"""

import errno
from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image

from cascade.utils.atomic import write_atomically

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
WRITE_SUFFIXES = (".mp4", ".gif", ".npz")  # what write_video writes; npz: lossless uint8 ``frames``
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Frame rate assumed for a gif that stores no frame duration (what browsers do with a zero delay).
DEFAULT_GIF_FPS = 10.0


class MediaReadError(ValueError):
    """A video or image could not be opened or decoded (a ``ValueError``: the path given is a bad argument)."""


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


def _last_line(error: Exception) -> str:
    """The last line of ``error``'s message (ffmpeg's reason, after its command line), or its type's name."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__


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
        raise MediaReadError(f"cannot read video {str(path)!r}: {_last_line(error)}") from error
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


def read_video(path) -> np.ndarray:
    """All frames of a video file (any of :data:`VIDEO_EXTENSIONS`, or ``.npz`` holding uint8 ``frames``) as
    uint8 ``(F, H, W, 3)``; :class:`MediaReadError` if it cannot be read."""
    path = _check_path(path)
    if path.suffix.lower() != ".npz":
        return read_video_frames(path, range(probe_video(path).num_frames))  # (F, H, W, 3)
    try:
        with np.load(path) as data:
            frames = data["frames"]
    except (OSError, KeyError, ValueError) as error:
        raise MediaReadError(f"cannot read video {str(path)!r}: {error}") from error
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise MediaReadError(
            f"{str(path)!r} must hold `frames` as uint8 (F, H, W, 3), got {frames.dtype} {frames.shape}"
        )
    return frames


def write_video(frames, path, fps: int) -> None:
    """Writes ``frames`` (uint8 ``(F, H, W, 3)`` or a list of PIL images) to ``path``, a :data:`WRITE_SUFFIXES`
    file (``.npz``: lossless; ``.mp4`` and ``.gif`` through diffusers' ``export_to_video``/``export_to_gif``,
    at ``fps`` frames per second), through a temporary file renamed into place. An mp4 is probed before it
    is renamed: one ffmpeg could not finish (a full disk) raises an ``OSError`` as a failed write does."""
    path = _check_path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise ValueError(f"`path` must end in one of {list(WRITE_SUFFIXES)}, got {str(path)!r}.")
    if suffix == ".npz":
        array = np.stack([np.asarray(frame) for frame in frames]).astype(np.uint8, copy=False)

        def save(partial: Path) -> None:
            with partial.open("wb") as handle:
                np.savez_compressed(handle, frames=array)

        write_atomically(path, save)
        return
    from diffusers.utils import export_to_gif, export_to_video

    images = [
        frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame)) for frame in frames
    ]
    if suffix == ".gif":
        write_atomically(path, lambda partial: export_to_gif(images, str(partial), fps=fps))
        return

    def encode(partial: Path) -> None:
        export_to_video(images, str(partial), fps=fps)
        try:  # ffmpeg runs in a process of its own: a write it could not finish is not raised here
            written = probe_video(partial).num_frames
        except MediaReadError:
            written = 0
        if written != len(images):
            raise OSError(
                errno.EIO,
                f"cannot write {str(path)!r}: the encoder wrote {written} of {len(images)} frames (is the disk "
                "full, or a file size limit such as `ulimit -f` reached?); nothing of it was written",
            )

    write_atomically(path, encode)
