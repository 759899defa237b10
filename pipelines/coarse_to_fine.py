"""Long videos coarse to fine: a window of frames spread over the whole video, then the frames between them.

A model trained on clips of ``window`` frames samples them spread evenly over the ``num_frames`` of the
output (:func:`coarse_positions`), so the motion it knows spans the whole video; the frames between are then
filled by denoising the linear blend of the coarse frames from part of the way up the schedule
(:func:`blend_between`; SDEdit, Meng et al. 2021, arXiv:2108.01073) in overlapping windows of the model's
length, co-denoised as the super-resolution stages' windows are. This is the hierarchical order in which
Video Diffusion Models (Ho et al. 2022, arXiv:2204.03458, sec. 4.3) and NUWA-XL (Yin et al. 2023,
arXiv:2303.12346, "diffusion over diffusion") make long videos: keyframes first, then the frames between.
"""

import torch

from cascade.utils.checks import check_int


def coarse_positions(num_frames: int, window: int) -> list[int]:
    """The ``window`` output positions of the coarse frames, evenly spread over ``num_frames`` with both ends
    included: ``round(k (F - 1) / (W - 1))``; every position when the video is no longer than the window."""
    num_frames = check_int("num_frames", num_frames, minimum=1)
    window = check_int("window", window, minimum=2)
    if num_frames <= window:
        return list(range(num_frames))
    return [round(k * (num_frames - 1) / (window - 1)) for k in range(window)]


def blend_between(coarse: torch.Tensor, positions: list[int], num_frames: int) -> torch.Tensor:
    """``coarse`` frames ``(B, C, K, h, w)`` at increasing output ``positions`` (the first 0, the last
    ``num_frames - 1``) linearly interpolated to every frame: ``(B, C, num_frames, h, w)``, the coarse
    frames themselves at their positions."""
    if coarse.ndim != 5 or coarse.shape[2] != len(positions):
        raise ValueError(
            f"`coarse` must be (B, C, K, h, w) with K = len(positions) = {len(positions)}, got "
            f"{tuple(coarse.shape)}."
        )
    if positions[0] != 0 or positions[-1] != num_frames - 1 or sorted(set(positions)) != list(positions):
        raise ValueError(
            f"`positions` must increase from 0 to num_frames - 1 = {num_frames - 1}, got {positions!r}."
        )
    weights = torch.zeros(num_frames, len(positions), dtype=coarse.dtype, device=coarse.device)  # (F, K)
    for k, (left, right) in enumerate(zip(positions[:-1], positions[1:], strict=True)):
        for frame in range(left, right + 1):
            share = (frame - left) / (right - left)
            weights[frame, k], weights[frame, k + 1] = 1 - share, share
    return torch.einsum("bckhw,fk->bcfhw", coarse, weights)  # (B, C, F, h, w)
