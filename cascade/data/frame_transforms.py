"""Frames on disk to model input: RGB frames ``(F, H, W, 3)`` to a ``(C, F, H, W)`` tensor in [-1, 1],
resized and center-cropped.

``(C, F, H, W)`` per sample, so a batch is ``(B, C, F, H, W)``: the layout of diffusers' video UNets
(``UNet3DConditionModel``, ``UNetMotionModel``) and of this package's ``VideoUNet``.
"""

import numpy as np
import torch
import torch.nn.functional as F

from cascade.utils.checks import check_int


def frames_to_tensor(frames) -> torch.Tensor:
    """Converts frames ``(F, H, W, 3)`` (uint8 in [0, 255] or float in [0, 1]) to a float32 tensor
    ``(C, F, H, W)`` in [-1, 1]."""
    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or 0 in array.shape:
        raise ValueError(
            f"`frames` must be a non-empty array of shape (F, H, W, 3), got shape {array.shape}."
        )
    if array.dtype == np.uint8:
        video = torch.from_numpy(array.astype(np.float32) / 255.0)
    elif np.issubdtype(array.dtype, np.floating):
        video = torch.from_numpy(array.astype(np.float32))
        if not torch.isfinite(video).all() or video.min() < 0 or video.max() > 1:
            raise ValueError(f"float `frames` must lie in [0, 1], got range [{array.min()}, {array.max()}].")
    else:
        raise ValueError(f"`frames` must be uint8 or float, got dtype {array.dtype}.")
    return (video * 2.0 - 1.0).permute(3, 0, 1, 2).contiguous()  # (C, F, H, W)


def resize_center_crop(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Scales ``video`` ``(C, F, H, W)`` by the smallest factor that makes it cover ``(height, width)``
    (for a square target: shorter side to the target side), with antialiased bilinear filtering, then
    crops the center ``(height, width)``. Output values stay within the input's range."""
    if not isinstance(video, torch.Tensor) or video.ndim != 4:
        raise ValueError(
            f"`video` must be a tensor of shape (C, F, H, W), got {type(video).__name__} "
            f"of shape {tuple(getattr(video, 'shape', ()))}."
        )
    height = check_int("height", height, minimum=1)
    width = check_int("width", width, minimum=1)
    _, _, in_height, in_width = video.shape
    scale = max(height / in_height, width / in_width)
    new_height = max(height, round(in_height * scale))
    new_width = max(width, round(in_width * scale))
    if (new_height, new_width) != (in_height, in_width):
        frames = video.permute(1, 0, 2, 3)  # (F, C, H, W)
        frames = F.interpolate(
            frames, size=(new_height, new_width), mode="bilinear", antialias=True, align_corners=False
        )
        # The filter is a convex combination: clamping to the input's range only removes rounding.
        video = frames.permute(1, 0, 2, 3).clamp(video.min(), video.max())  # (C, F, H', W')
    top, left = (new_height - height) // 2, (new_width - width) // 2
    return video[:, :, top : top + height, left : left + width].contiguous()  # (C, F, height, width)
