"""Validation and conversion of the video batches every metric in :mod:`cascade.eval` takes.

A video batch is a numpy array or torch tensor of shape ``(B, F, H, W, 3)`` (videos, frames, height,
width, RGB): floating point in [0, 1] or ``uint8`` in [0, 255]. Bad input raises ``ValueError`` naming
the argument, its value and what is allowed, before any model runs.
"""

import numpy as np
import torch

VIDEO_LAYOUT = "(B, F, H, W, 3)"


def to_video_tensor(
    videos: np.ndarray | torch.Tensor,
    name: str,
    *,
    min_frames: int = 1,
    min_size: int = 1,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Validate a batch of videos and return it as a floating-point tensor in [0, 1].

    Args:
        videos: ``(B, F, H, W, 3)`` float in [0, 1] or uint8 in [0, 255], numpy or torch.
        name: the argument's name, used in error messages.
        min_frames: the fewest frames per video the metric accepts.
        min_size: the smallest height and width the metric accepts.
        dtype: floating-point dtype of the result.

    Returns:
        ``(B, F, H, W, 3)`` tensor of ``dtype`` in [0, 1], on the input's device (CPU for numpy).
    """
    if isinstance(videos, np.ndarray):
        if videos.dtype == np.uint8 or np.issubdtype(videos.dtype, np.floating):
            videos = torch.from_numpy(np.ascontiguousarray(videos))
        else:
            raise ValueError(
                f"{name} must be uint8 in [0, 255] or floating point in [0, 1]; got dtype {videos.dtype}"
            )
    elif not isinstance(videos, torch.Tensor):
        raise ValueError(
            f"{name} must be a numpy array or torch tensor of shape {VIDEO_LAYOUT}; "
            f"got {type(videos).__name__}"
        )
    videos = videos.detach()
    if videos.ndim != 5 or videos.shape[-1] != 3:
        raise ValueError(
            f"{name} must have shape {VIDEO_LAYOUT} (5 dims, 3 RGB channels last); "
            f"got shape {tuple(videos.shape)}"
        )
    batch, frames, height, width, _ = videos.shape
    if batch < 1:
        raise ValueError(f"{name} must hold at least 1 video; got shape {tuple(videos.shape)}")
    if frames < min_frames:
        raise ValueError(
            f"{name} must have at least {min_frames} frames per video; got {frames} "
            f"(shape {tuple(videos.shape)})"
        )
    if height < min_size or width < min_size:
        raise ValueError(f"{name} frames must be at least {min_size}x{min_size} pixels; got {height}x{width}")
    if videos.dtype == torch.uint8:
        return videos.to(dtype) / 255.0
    if not videos.is_floating_point():
        raise ValueError(
            f"{name} must be uint8 in [0, 255] or floating point in [0, 1]; got dtype {videos.dtype}"
        )
    videos = videos.to(dtype)
    bad = ~torch.isfinite(videos).flatten(2).all(dim=2)  # (B, F)
    if bad.any():
        video_index, frame_index = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name} has NaN or infinite values in {int(bad.sum())} frame(s), first in video "
            f"{video_index} frame {frame_index}; all values must be finite, in [0, 1]"
        )
    low, high = float(videos.min()), float(videos.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"{name} values must lie in [0, 1] for floating-point input (uint8: [0, 255]); "
            f"got min {low:.6g}, max {high:.6g}"
        )
    return videos


def check_same_shape(
    first: torch.Tensor,
    second: torch.Tensor,
    first_name: str,
    second_name: str,
    *,
    ignore_batch: bool = False,
) -> None:
    """Raise ``ValueError`` unless two video batches have the same shape (ignoring B if ``ignore_batch``)."""
    start = 1 if ignore_batch else 0
    if tuple(first.shape[start:]) != tuple(second.shape[start:]):
        what = "clip shape (F, H, W, 3)" if ignore_batch else f"shape {VIDEO_LAYOUT}"
        raise ValueError(
            f"{first_name} and {second_name} must have the same {what}; got "
            f"{tuple(first.shape)} and {tuple(second.shape)}"
        )
