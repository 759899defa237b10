"""Frames folded into the batch and back, and frames resized: how every 2D operation runs on a video.

A 2D network sees a video ``(B, C, F, H, W)`` as ``B*F`` images ``(B*F, C, H, W)``, the frames of a video
next to each other (video-major), as inflated models do (Singer et al. 2022, "Make-A-Video",
arXiv:2209.14792, sec. 3.2).
"""

import torch
import torch.nn.functional as F


def fold_frames(video: torch.Tensor) -> torch.Tensor:
    """``(B, C, F, H, W)`` -> ``(B*F, C, H, W)``, frame ``f`` of video ``b`` at ``b * F + f``."""
    batch, channels, frames, height, width = video.shape
    return video.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)


def unfold_frames(images: torch.Tensor, batch: int) -> torch.Tensor:
    """``(B*F, C, H, W)`` -> ``(B, C, F, H, W)``: the inverse of :func:`fold_frames` for ``batch`` videos."""
    return images.reshape(batch, -1, *images.shape[1:]).permute(0, 2, 1, 3, 4)


def resize_frames(video: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resizes every frame of ``video`` ``(B, C, F, H, W)`` to ``size`` ``(h, w)`` with ``F.interpolate``'s
    ``mode`` (``align_corners=False`` where the mode takes it); returns ``(B, C, F, h, w)``."""
    corners = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    images = F.interpolate(fold_frames(video), size=tuple(size), mode=mode, **corners)  # (B*F, C, h, w)
    return unfold_frames(images, video.shape[0])
