"""Frame sampling (count and stride, or fps) and frame transforms (tensor layout, resize, crop)."""

import numpy as np
import pytest
import torch

from cascade.data import (
    VideoTooShortError,
    clip_offsets,
    frames_to_tensor,
    resize_center_crop,
    sample_frame_indices,
)


def test_clip_offsets_by_stride_and_by_fps():
    np.testing.assert_array_equal(clip_offsets(4), [0, 1, 2, 3])
    np.testing.assert_array_equal(clip_offsets(4, stride=3), [0, 3, 6, 9])
    np.testing.assert_array_equal(clip_offsets(4, fps=8, source_fps=24), [0, 3, 6, 9])
    np.testing.assert_array_equal(
        clip_offsets(5, fps=10, source_fps=25), [0, 3, 5, 8, 10]
    )  # nearest, halves up
    np.testing.assert_array_equal(clip_offsets(3, fps=20, source_fps=10), [0, 1, 1])  # repeats when slower


def test_sample_frame_indices_starts():
    np.testing.assert_array_equal(sample_frame_indices(20, 4, stride=2, start="first"), [0, 2, 4, 6])
    np.testing.assert_array_equal(sample_frame_indices(20, 4, stride=2, start="center"), [6, 8, 10, 12])
    draws = {
        tuple(sample_frame_indices(20, 4, stride=2, start="random", rng=np.random.default_rng(s)))
        for s in range(30)
    }
    assert len(draws) > 3 and all(0 <= d[0] and d[-1] <= 19 for d in draws)
    a = sample_frame_indices(20, 4, start="random", rng=np.random.default_rng(1))
    np.testing.assert_array_equal(
        a, sample_frame_indices(20, 4, start="random", rng=np.random.default_rng(1))
    )
    np.testing.assert_array_equal(sample_frame_indices(7, 4, stride=2), [0, 2, 4, 6])  # exactly fits
    with pytest.raises(VideoTooShortError, match="spans 7"):
        sample_frame_indices(6, 4, stride=2)


def test_sampling_arguments_are_checked():
    with pytest.raises(ValueError, match="stride.*fps"):
        clip_offsets(4, stride=2, fps=8, source_fps=24)
    with pytest.raises(ValueError, match="source_fps"):
        clip_offsets(4, fps=8)
    with pytest.raises(ValueError, match="num_frames.*0"):
        clip_offsets(0)
    with pytest.raises(ValueError, match="start.*middle"):
        sample_frame_indices(10, 2, start="middle")
    with pytest.raises(ValueError, match="rng"):
        sample_frame_indices(10, 2, start="random")


def test_frames_to_tensor_layout_and_range():
    frames = np.zeros((2, 4, 5, 3), dtype=np.uint8)  # (F, H, W, C)
    frames[1, :, :, 0] = 255
    video = frames_to_tensor(frames)
    assert video.shape == (3, 2, 4, 5) and video.dtype == torch.float32  # (C, F, H, W)
    assert video[0, 1].eq(1).all() and video[0, 0].eq(-1).all() and video[1:].eq(-1).all()
    torch.testing.assert_close(frames_to_tensor(frames.astype(np.float32) / 255), video)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        frames_to_tensor(np.full((1, 2, 2, 3), 2.0))
    with pytest.raises(ValueError, match=r"frames.*\(F, H, W, 3\)"):
        frames_to_tensor(np.zeros((2, 2, 3)))


def test_resize_center_crop():
    video = torch.zeros(3, 2, 20, 40)  # (C, F, H, W), wide
    video[:, :, :, 15:25] = 1.0  # a centred vertical band, 10 of 40 columns
    out = resize_center_crop(video, 10, 10)  # scaled to 10x20, then the centre 10 columns kept
    assert out.shape == (3, 2, 10, 10)
    torch.testing.assert_close(
        out[0, 0, 0], torch.tensor([0, 0, 0.5, 1, 1, 1, 1, 0.5, 0, 0]), atol=0.2, rtol=0
    )
    torch.testing.assert_close(out, out.flip(-1))  # the crop is centred
    assert resize_center_crop(torch.rand(3, 1, 8, 8), 8, 8).shape == (3, 1, 8, 8)
    assert resize_center_crop(torch.rand(3, 1, 9, 7), 16, 12).shape == (3, 1, 16, 12)  # upscaling
    with pytest.raises(ValueError, match="width.*-1"):
        resize_center_crop(video, 10, -1)
    with pytest.raises(ValueError, match="video"):
        resize_center_crop(torch.zeros(3, 20, 40), 10, 10)
