"""Input validation shared by every metric: each bad input is a ValueError naming argument, value and rule."""

import numpy as np
import pytest
import torch

from cascade.eval import psnr, to_video_tensor


def test_float_and_uint8_inputs_convert_to_the_same_tensor():
    uint8 = np.random.default_rng(0).integers(0, 256, size=(2, 3, 4, 5, 3), dtype=np.uint8)
    from_uint8 = to_video_tensor(uint8, "videos")
    from_float = to_video_tensor(torch.from_numpy(uint8).double() / 255.0, "videos")
    assert from_uint8.shape == (2, 3, 4, 5, 3) and from_uint8.dtype == torch.float32
    torch.testing.assert_close(from_uint8, from_float)


@pytest.mark.parametrize(
    ("videos", "match"),
    [
        (np.zeros((3, 4, 5, 3)), r"videos must have shape \(B, F, H, W, 3\).*got shape \(3, 4, 5, 3\)"),
        (np.zeros((1, 3, 4, 5, 4)), r"3 RGB channels last.*got shape \(1, 3, 4, 5, 4\)"),
        (np.zeros((1, 3, 3, 4, 5)), r"got shape \(1, 3, 3, 4, 5\)"),
        (np.zeros((0, 3, 4, 5, 3)), "at least 1 video"),
        (np.full((1, 2, 4, 4, 3), 1.5), r"values must lie in \[0, 1\].*got min 1.5, max 1.5"),
        (np.full((1, 2, 4, 4, 3), -0.1), r"got min -0.1, max -0.1"),
        (np.zeros((1, 2, 4, 4, 3), dtype=np.int64), "must be uint8 in \\[0, 255\\] or floating point.*int64"),
        (torch.zeros(1, 2, 4, 4, 3, dtype=torch.int32), "got dtype torch.int32"),
    ],
)
def test_bad_videos_raise_value_error(videos, match):
    with pytest.raises(ValueError, match=match):
        to_video_tensor(videos, "videos")


def test_nan_frames_are_located_in_the_message():
    videos = np.zeros((2, 3, 4, 4, 3))
    videos[1, 2, 0, 0, 0] = np.nan
    videos[1, 1, 3, 3, 2] = np.inf
    with pytest.raises(ValueError, match="generated has NaN or infinite values in 2 frame.*video 1 frame 1"):
        to_video_tensor(videos, "generated")


def test_non_array_input_is_a_type_error_and_metrics_name_their_arguments():
    with pytest.raises(ValueError, match="videos must be a numpy array or torch tensor.*got list"):
        to_video_tensor([[0.0]], "videos")
    good = np.zeros((1, 2, 4, 4, 3))
    with pytest.raises(ValueError, match="reference has NaN"):
        psnr(good, np.full_like(good, np.nan))
