"""Temporal flickering (VBench formula) and motion magnitude: a static video cannot pass as a good one."""

import numpy as np
import pytest
import torch

from cascade.eval import motion_magnitude, temporal_flickering


def _static_and_moving() -> np.ndarray:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    static = np.repeat(frame[None], 5, axis=0)  # (5, 16, 16, 3)
    moving = np.stack([np.roll(frame, shift, axis=1) for shift in range(5)])  # a pan of one pixel per frame
    return np.stack([static, moving])  # (2, 5, 16, 16, 3)


def test_static_video_has_no_motion_and_moving_video_has_some():
    motion = motion_magnitude(_static_and_moving())
    assert motion.values.shape == (2,)
    assert motion.values[0] == 0.0
    assert motion.values[1] > 0.1


def test_temporal_flickering_matches_vbench_formula_on_uint8():
    videos = _static_and_moving()
    moving = videos[1].astype(np.int64)
    pair_means = [
        np.mean(np.abs(moving[i + 1] - moving[i])) for i in range(4)
    ]  # VBench: cv2.absdiff per pair
    expected = (255.0 - np.sum(pair_means) / 4) / 255.0
    scores = temporal_flickering(videos)
    np.testing.assert_allclose(scores.values, [1.0, expected], rtol=1e-12)
    assert scores.mean == pytest.approx((1.0 + expected) / 2)
    np.testing.assert_allclose(motion_magnitude(videos).values, 1.0 - scores.values, atol=1e-12)


def test_float_input_is_scored_on_the_same_scale():
    videos = _static_and_moving()
    as_float = torch.from_numpy(videos).double() / 255.0
    np.testing.assert_allclose(
        temporal_flickering(as_float).values, temporal_flickering(videos).values, rtol=1e-6
    )


def test_temporal_metrics_need_two_frames():
    with pytest.raises(ValueError, match="videos must have at least 2 frames per video; got 1"):
        temporal_flickering(np.zeros((1, 1, 8, 8, 3)))
    with pytest.raises(ValueError, match="videos must have at least 2 frames per video; got 1"):
        motion_magnitude(np.zeros((1, 1, 8, 8, 3)))
