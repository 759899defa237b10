"""Overlapping frame windows, so a long video costs the memory of one window.

A model trained on ``window`` frames runs on each window of a long video and the overlapping outputs
are blended with weights that ramp linearly across each overlap and sum to one at every frame. Done
at every denoising step on the model's prediction, this is temporal co-denoising (Bar-Tal et al.
2023, "MultiDiffusion", arXiv:2302.08113; Wang et al. 2023, "Gen-L-Video", arXiv:2305.18264).
"""

from collections.abc import Callable

import torch

from cascade.utils.checks import check_int, is_int


def check_window(window, window_overlap, anchor_every: int = 1) -> None:
    """Checks a stage's frame windows: ``window`` frames at a time (``None``: all frames at once), consecutive
    windows sharing ``window_overlap`` frames (``None``: the stage's default; only with a ``window``),
    ``0 <= window_overlap < window``.

    With ``anchor_every=k > 1`` every window and every overlap must also start and end on every ``k``-th frame
    (the interpolation stage's given frames): ``window = m * k + 1`` (``m >= 1``) and ``window_overlap =
    j * k + 1`` (``j >= 0``), named as ``interpolation_factor`` in the messages."""
    if window is None:
        if window_overlap is not None:
            raise ValueError(f"`window_overlap` needs a `window`, got window_overlap={window_overlap!r}.")
        return
    if anchor_every == 1:
        check_int("window", window, minimum=1)
        if window_overlap is not None:
            check_int("window_overlap", window_overlap, minimum=0)
            if window_overlap >= window:
                raise ValueError(
                    f"`window_overlap` must be an int in [0, window={window}), got {window_overlap}."
                )
        return
    factor = anchor_every
    if not is_int(window) or window < factor + 1 or (window - 1) % factor:
        examples = ", ".join(str(m * factor + 1) for m in (1, 2, 3))
        raise ValueError(
            f"`window` must be None or m * interpolation_factor + 1 output frames for an int m >= 1 "
            f"(here {examples}, ...), so that each window starts and ends on a given frame; got {window!r}."
        )
    if window_overlap is not None and (
        not is_int(window_overlap) or not 1 <= window_overlap < window or (window_overlap - 1) % factor
    ):
        raise ValueError(
            f"`window_overlap` must be j * interpolation_factor + 1 frames for an int j >= 0, less than "
            f"window={window} (here 1, {factor + 1}, ...), so that overlaps start and end on given frames; "
            f"got {window_overlap!r}."
        )


def window_starts(num_frames: int, window: int, window_overlap: int) -> list[int]:
    """First frame of each window: windows of ``window`` frames, consecutive ones sharing at least
    ``window_overlap`` frames, the last one ending at the last frame. One window when the video fits in one."""
    check_int("num_frames", num_frames, minimum=1)
    check_int("window_overlap", window_overlap, minimum=0)
    check_window(window, window_overlap)
    if num_frames <= window:
        return [0]
    stride = window - window_overlap
    starts = list(range(0, num_frames - window, stride))
    return starts + [num_frames - window]


def window_weights(num_frames: int, window: int, window_overlap: int) -> torch.Tensor:
    """Blending weights ``(num_windows, num_frames)``: zero outside a window, ramping linearly over the
    frames it shares with a neighbour, and summing to one over the windows at every frame."""
    starts = window_starts(num_frames, window, window_overlap)
    length, shared = min(window, num_frames), window_overlap
    ramp = torch.ones(length)  # (W,)
    if shared and len(starts) > 1:
        rise = torch.arange(1, shared + 1, dtype=torch.float32) / (shared + 1)  # (shared,)
        ramp[:shared] = torch.minimum(ramp[:shared], rise)
        ramp[-shared:] = torch.minimum(ramp[-shared:], rise.flip(0))
    weights = torch.zeros(len(starts), num_frames)
    for index, start in enumerate(starts):
        weights[index, start : start + length] = ramp
    return weights / weights.sum(dim=0, keepdim=True)


def run_in_windows(
    function: Callable[[torch.Tensor, slice], torch.Tensor],
    sample: torch.Tensor,
    window: int | None,
    window_overlap: int,
) -> torch.Tensor:
    """Applies ``function(sample[:, :, frames], frames)`` to each window of ``sample`` ``(B, C, F, H, W)``
    and blends the outputs ``(B, C', W, H', W')`` into ``(B, C', F, H', W')``.

    ``window=None`` (or a window as long as the video) makes a single call: exactly ``function(sample)``.
    """
    num_frames = sample.shape[2]
    if window is None or window >= num_frames:
        return function(sample, slice(0, num_frames))
    weights = window_weights(num_frames, window, window_overlap).to(sample.device)  # (N, F)
    output = None
    for start, frame_weights in zip(window_starts(num_frames, window, window_overlap), weights, strict=True):
        frames = slice(start, start + window)
        result = function(sample[:, :, frames], frames)  # (B, C', W, H', W')
        if output is None:
            output = result.new_zeros(*result.shape[:2], num_frames, *result.shape[3:])
        output[:, :, frames] += result * frame_weights[frames].view(1, 1, -1, 1, 1).to(result.dtype)
    return output
