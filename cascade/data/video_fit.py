"""A user's video (an .mp4, a .gif or a folder of frames, any size and length) brought to the frame count
and frame size a stage works at.

Frames are sampled at evenly spaced positions over the whole clip, the first and the last frame always
among them (``numpy.linspace`` over the frame indices, rounded): a long clip is subsampled in time, a short
one repeats frames. Each frame is then scaled by the smallest factor that makes it cover the target size
(antialiased bilinear filtering) and center-cropped to it (:func:`~cascade.data.frame_transforms.
resize_center_crop`), so the aspect ratio is kept and the middle of the picture stays.
"""

from pathlib import Path

import numpy as np

from cascade.utils.checks import check_int

from .frame_transforms import frames_to_tensor, resize_center_crop
from .media_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, read_image, read_video


def read_video_input(path) -> np.ndarray:
    """The frames of ``path`` as uint8 ``(F, H, W, 3)``: a video file (any of ``VIDEO_EXTENSIONS`` or a lossless
    ``.npz``), or a folder of images (``IMAGE_EXTENSIONS``) taken in name order, all of one size."""
    if not isinstance(path, str | Path):
        raise ValueError(f"`path` must be a str or pathlib.Path, got {path!r}.")
    path = Path(path)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not images:
            raise ValueError(
                f"`path` {str(path)!r} is a folder with no images ({', '.join(IMAGE_EXTENSIONS)}); give a "
                "video file or a folder of frames."
            )
        frames = [read_image(image) for image in images]  # [(H, W, 3)]
        sizes = sorted({frame.shape[:2] for frame in frames})
        if len(sizes) > 1:
            raise ValueError(f"`path` {str(path)!r}: the frames must all have one size, got {sizes}.")
        return np.stack(frames)
    if not path.is_file():
        raise ValueError(f"`path` {str(path)!r} is neither a video file nor a folder of frames.")
    if path.suffix.lower() not in (*VIDEO_EXTENSIONS, ".npz"):
        raise ValueError(
            f"`path` {str(path)!r} must be a video ({', '.join(VIDEO_EXTENSIONS)}, .npz) or a folder of frames."
        )
    frames = read_video(path)
    if not len(frames):
        raise ValueError(f"`path` {str(path)!r} holds no frames.")
    return frames


def fit_video(frames, num_frames: int, height: int, width: int) -> np.ndarray:
    """``frames`` (uint8 or float in [0, 1], ``(F, H, W, 3)``) resampled to ``num_frames`` evenly spaced frames
    and resized to ``height`` x ``width`` (see the module docstring), as float32 ``(num_frames, height, width,
    3)`` in [0, 1]."""
    check_int("num_frames", num_frames, minimum=1)
    video = frames_to_tensor(frames)  # (C, F, H, W) in [-1, 1], checks the frames
    indices = np.linspace(0, video.shape[1] - 1, num_frames).round().astype(np.int64)  # (num_frames,)
    video = resize_center_crop(video[:, indices], height, width)  # (C, num_frames, height, width)
    return ((video.permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1).numpy()  # (num_frames, height, width, 3)
