"""Which frames of a video make a training clip: a count and a stride, or a count at a target fps."""

import numpy as np

from cascade.utils.checks import check_choice, check_int, check_number

CLIP_STARTS = ("random", "center", "first")


class VideoTooShortError(ValueError):
    """The video has fewer frames than the requested clip spans."""


def clip_offsets(num_frames: int, stride: int | None = None, fps: float | None = None, source_fps=None):
    """Frame offsets ``(F,)`` of a clip relative to its first frame.

    Either every ``stride``-th frame (default 1), or, when ``fps`` is given, the source frame nearest
    to each time ``k / fps`` (``source_fps`` required: the video's own frame rate; frames repeat when
    ``fps`` exceeds it).
    """
    num_frames = check_int("num_frames", num_frames, minimum=1)
    if fps is None:
        stride = 1 if stride is None else check_int("stride", stride, minimum=1)
        return np.arange(num_frames) * stride
    if stride is not None:
        raise ValueError(f"`stride` must be None when `fps` is given, got stride={stride!r}, fps={fps!r}.")
    fps = check_number("fps", fps, greater_than=0)
    source_fps = check_number("source_fps", source_fps, greater_than=0)
    return np.floor(np.arange(num_frames) * (source_fps / fps) + 0.5).astype(np.int64)


def sample_frame_indices(
    num_available: int,
    num_frames: int,
    stride: int | None = None,
    fps: float | None = None,
    source_fps: float | None = None,
    start: str = "center",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Indices ``(F,)`` into a video of ``num_available`` frames for a clip of ``num_frames`` frames.

    Spacing follows :func:`clip_offsets`. ``start`` places the clip: ``"first"`` at frame 0,
    ``"center"`` in the middle, ``"random"`` uniformly among the positions that fit (drawn from
    ``rng``, required then). Raises :class:`VideoTooShortError` when the clip does not fit.
    """
    num_available = check_int("num_available", num_available, minimum=0)
    check_choice("start", start, CLIP_STARTS)
    offsets = clip_offsets(num_frames, stride, fps, source_fps)  # (F,)
    span = int(offsets[-1]) + 1
    if span > num_available:
        raise VideoTooShortError(
            f"`num_available`={num_available} frames is too short: the clip spans {span} frames."
        )
    if start == "first":
        first = 0
    elif start == "center":
        first = (num_available - span) // 2
    else:
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"`rng` must be a numpy.random.Generator when start='random', got {rng!r}.")
        first = int(rng.integers(num_available - span + 1))
    return first + offsets
