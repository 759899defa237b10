"""Overlapping frame windows, so a long video costs the memory of one window.

A model trained on ``window`` frames runs on each window of a long video and the overlapping outputs
are blended with weights that ramp linearly across each overlap and sum to one at every frame. Done
at every denoising step on the model's prediction, this is temporal co-denoising (Bar-Tal et al.
2023, "MultiDiffusion", arXiv:2302.08113; Wang et al. 2023, "Gen-L-Video", arXiv:2305.18264).
"""

from collections.abc import Callable

import torch


def _check(num_frames: int, window: int, overlap: int) -> None:
    for name, value in (("num_frames", num_frames), ("window", window)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < window:
        raise ValueError(f"`overlap` must be an int in [0, window={window}), got {overlap!r}.")


def window_starts(num_frames: int, window: int, overlap: int) -> list[int]:
    """First frame of each window: windows of ``window`` frames, consecutive ones sharing at least
    ``overlap`` frames, the last one ending at the last frame. One window when the video fits in one."""
    _check(num_frames, window, overlap)
    if num_frames <= window:
        return [0]
    stride = window - overlap
    starts = list(range(0, num_frames - window, stride))
    return starts + [num_frames - window]


def window_weights(num_frames: int, window: int, overlap: int) -> torch.Tensor:
    """Blending weights ``(num_windows, num_frames)``: zero outside a window, ramping linearly over the
    frames it shares with a neighbour, and summing to one over the windows at every frame."""
    starts = window_starts(num_frames, window, overlap)
    length = min(window, num_frames)
    ramp = torch.ones(length)  # (W,)
    if overlap and len(starts) > 1:
        rise = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)  # (overlap,)
        ramp[:overlap] = torch.minimum(ramp[:overlap], rise)
        ramp[-overlap:] = torch.minimum(ramp[-overlap:], rise.flip(0))
    weights = torch.zeros(len(starts), num_frames)
    for index, start in enumerate(starts):
        weights[index, start : start + length] = ramp
    return weights / weights.sum(dim=0, keepdim=True)


def run_in_windows(
    function: Callable[[torch.Tensor, slice], torch.Tensor],
    sample: torch.Tensor,
    window: int | None,
    overlap: int,
) -> torch.Tensor:
    """Applies ``function(sample[:, :, frames], frames)`` to each window of ``sample`` ``(B, C, F, H, W)``
    and blends the outputs ``(B, C', W, H', W')`` into ``(B, C', F, H', W')``.

    ``window=None`` (or a window as long as the video) makes a single call: exactly ``function(sample)``.
    """
    num_frames = sample.shape[2]
    if window is None or window >= num_frames:
        return function(sample, slice(0, num_frames))
    weights = window_weights(num_frames, window, overlap).to(sample.device)  # (N, F)
    output = None
    for start, frame_weights in zip(window_starts(num_frames, window, overlap), weights, strict=True):
        frames = slice(start, start + window)
        result = function(sample[:, :, frames], frames)  # (B, C', W, H', W')
        if output is None:
            output = result.new_zeros(*result.shape[:2], num_frames, *result.shape[3:])
        output[:, :, frames] += result * frame_weights[frames].view(1, 1, -1, 1, 1).to(result.dtype)
    return output
