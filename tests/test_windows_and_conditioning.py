"""Frame windows (blending) and the conditioning helpers of the cascade's later stages."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from cascade.eval.stage_fidelity import blend_frames
from cascade.ops.conditioning import (
    blend_unknown_frames,
    interpolated_length,
    masked_frame_conditioning,
    noise_augment,
)
from cascade.ops.windows import run_in_windows, window_starts, window_weights


@pytest.mark.parametrize(
    ("frames", "window", "overlap"), [(20, 8, 2), (16, 16, 4), (5, 8, 3), (33, 9, 4), (7, 3, 0)]
)
def test_windows_cover_every_frame_and_weights_sum_to_one(frames, window, overlap):
    starts = window_starts(frames, window, overlap)
    covered = torch.zeros(frames)
    for start in starts:
        covered[start : start + min(window, frames)] += 1
    assert (covered >= 1).all() and starts[0] == 0 and starts[-1] + min(window, frames) == frames
    assert all(b - a <= window - overlap for a, b in zip(starts, starts[1:], strict=False))
    weights = window_weights(frames, window, overlap)
    assert weights.shape == (len(starts), frames)
    torch.testing.assert_close(weights.sum(0), torch.ones(frames))
    for index, start in enumerate(starts):
        outside = torch.ones(frames, dtype=torch.bool)
        outside[start : start + window] = False
        assert (weights[index, outside] == 0).all()


def test_a_window_as_long_as_the_video_is_exactly_one_call():
    sample = torch.randn(2, 3, 10, 4, 4)
    calls = []

    def function(chunk, frames):
        calls.append(frames)
        return chunk.square()

    assert torch.equal(run_in_windows(function, sample, 10, 3), sample.square())
    assert torch.equal(run_in_windows(function, sample, None, 0), sample.square())
    assert calls == [slice(0, 10), slice(0, 10)]


def test_windowed_blending_of_a_framewise_function_is_exact_and_sees_each_window_once():
    sample = torch.randn(1, 2, 23, 3, 3)
    seen = []

    def framewise(chunk, frames):
        seen.append((frames.start, frames.stop, chunk.shape[2]))
        return 2 * chunk + 1

    output = run_in_windows(framewise, sample, 8, 3)
    torch.testing.assert_close(output, 2 * sample + 1)
    assert [(a, b) for a, b, _ in seen] == [(s, s + 8) for s in window_starts(23, 8, 3)]
    assert all(length == 8 for _, _, length in seen)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 4, 1), "`num_frames` must be a positive int"),
        ((8, 4, 4), r"`window_overlap` must be an int in \[0, window=4\)"),
    ],
)
def test_bad_window_arguments_are_rejected(args, match):
    with pytest.raises(ValueError, match=match):
        window_starts(*args)


def test_masked_frame_conditioning_places_known_frames_and_mask():
    known = torch.randn(2, 4, 3, 5, 5)
    frames, mask = masked_frame_conditioning(known, 4)
    assert frames.shape == (2, 4, interpolated_length(3, 4), 5, 5) == (2, 4, 9, 5, 5)
    assert torch.equal(frames[:, :, [0, 4, 8]], known)
    assert frames[:, :, [1, 2, 3, 5, 6, 7]].abs().sum() == 0
    assert torch.equal(mask[0, 0, :, 0, 0], torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0, 1]))
    with pytest.raises(ValueError, match="`factor` must be a positive int, got 0"):
        masked_frame_conditioning(known, 0)


def test_blend_fill_equals_linear_frame_blending_of_the_evaluation():
    # cascade.eval.stage_fidelity.blend_frames (numpy, (F, H, W, 3)) is the independent reference.
    known = torch.rand(2, 3, 4, 5, 5)
    frames, mask = masked_frame_conditioning(known, 4, fill="blend")
    reference = np.stack([blend_frames(video.permute(1, 2, 3, 0).numpy(), 4) for video in known])
    np.testing.assert_allclose(frames.permute(0, 2, 3, 4, 1).numpy(), reference, atol=1e-6)
    assert torch.equal(mask, masked_frame_conditioning(known, 4)[1])
    with pytest.raises(ValueError, match="`fill` must be one of \\['zeros', 'blend'\\], got 'copy'"):
        masked_frame_conditioning(known, 4, fill="copy")


def test_blend_unknown_frames_bridges_irregular_gaps_per_video():
    frames = torch.zeros(2, 1, 7, 1, 1)  # (B, C, F, H, W)
    frames[:, :, 0], frames[:, :, 6] = 0.0, 6.0
    frames[1, :, 2] = 5.0
    is_known = torch.tensor([[1, 0, 0, 0, 0, 0, 1], [1, 0, 1, 0, 0, 0, 1]], dtype=torch.bool)
    blended = blend_unknown_frames(frames, is_known)[:, 0, :, 0, 0]  # (2, 7)
    torch.testing.assert_close(blended[0], torch.arange(7.0))
    torch.testing.assert_close(blended[1], torch.tensor([0.0, 2.5, 5.0, 5.25, 5.5, 5.75, 6.0]))
    with pytest.raises(ValueError, match="`is_known` must mark the first and the last frame"):
        blend_unknown_frames(frames, torch.tensor([[0, 0, 0, 0, 0, 0, 1]] * 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="`is_known` must be a bool tensor of shape \\(2, 7\\)"):
        blend_unknown_frames(frames, is_known.float())


def test_noise_augmentation_follows_the_scheduler_per_video():
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    video = torch.rand(2, 3, 4, 6, 6) * 2 - 1
    levels = torch.tensor([0, 350])
    noised = noise_augment(video, levels, scheduler, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(video.shape, generator=torch.Generator().manual_seed(0))
    alpha = scheduler.alphas_cumprod[350]
    torch.testing.assert_close(noised[1], alpha.sqrt() * video[1] + (1 - alpha).sqrt() * noise[1])
    torch.testing.assert_close(
        noised[0],
        scheduler.alphas_cumprod[0].sqrt() * video[0] + (1 - scheduler.alphas_cumprod[0]).sqrt() * noise[0],
    )
    with pytest.raises(ValueError, match=r"`noise_level` must be a tensor of 2 integers in \[0, 1000\)"):
        noise_augment(video, torch.tensor([1000, 1]), scheduler)
