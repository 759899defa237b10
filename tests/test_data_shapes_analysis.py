"""Reading colour, shape, position and direction back from shapes-world renders."""

import itertools

import numpy as np
import pytest

from cascade.data import (
    COLORS,
    DIRECTIONS,
    SHAPES,
    analyze_frame,
    analyze_video,
    estimate_direction,
    render_clip,
    sample_params,
    shape_centroids,
)


@pytest.mark.parametrize("size", [16, 32])
def test_analysis_recovers_every_combination(size):
    rng = np.random.default_rng(size)
    failures = []
    for color, shape, direction, _ in itertools.product(COLORS, SHAPES, DIRECTIONS, range(3)):
        params = sample_params(rng, color, shape, direction)  # 3 random sizes and paths each
        frames = render_clip(params, 8, size, size)  # (F, H, W, 3)
        result = analyze_video(frames)
        if (result.color, result.shape, result.direction) != (color, shape, direction):
            failures.append((params, result.color, result.shape, result.direction))
        assert all((frame.color, frame.shape) == (color, shape) for frame in result.frames)
        error = np.abs(result.centroids - shape_centroids(params, 8, size, size)) * size  # pixels
        assert error.max() < 0.25
    assert failures == []


def test_analysis_tolerates_mild_noise_and_non_square_frames():
    rng = np.random.default_rng(0)
    for color, shape, direction in [
        ("blue", "circle", "up"),
        ("yellow", "triangle", "left"),
        ("white", "square", "down"),
    ]:
        params = sample_params(rng, color, shape, direction)
        frames = render_clip(params, 8, 24, 40)
        noisy = np.clip(frames + rng.normal(0.0, 0.05, frames.shape), 0.0, 1.0)
        result = analyze_video(noisy)
        assert (result.color, result.shape, result.direction) == (color, shape, direction)


def test_empty_and_static_clips():
    blank = np.zeros((4, 16, 16, 3))
    result = analyze_video(blank)
    assert (result.color, result.shape, result.direction) == (None, None, None)
    assert np.isnan(result.centroids).all() and analyze_frame(blank[0]).centroid is None
    white = np.ones((16, 16, 3))  # a background that is a palette colour
    white[4:10, 4:10] = (1.0, 0.0, 0.0)
    result = analyze_frame(white)
    assert (result.color, result.shape) == ("red", "square")
    np.testing.assert_allclose(result.centroid, (7 / 16, 7 / 16))
    assert estimate_direction([[0.5, 0.5], [0.51, 0.5], [0.52, 0.5]]) is None  # moved 0.02 < 0.05
    assert estimate_direction([[0.2, 0.5], [np.nan, np.nan], [0.6, 0.45]]) == "right"
    assert estimate_direction([[0.5, 0.8], [0.5, 0.3]]) == "up"


def test_invalid_inputs_raise_value_error():
    with pytest.raises(ValueError, match=r"frame.*\(H, W, 3\)"):
        analyze_frame(np.zeros((16, 16)))
    with pytest.raises(ValueError, match=r"frame.*\[0, 1\]"):
        analyze_frame(np.full((8, 8, 3), 255.0))
    with pytest.raises(ValueError, match=r"frames.*\(F, H, W, 3\)"):
        analyze_video(np.zeros((16, 16, 3)))
    with pytest.raises(ValueError, match="centroids"):
        estimate_direction(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="min_displacement"):
        estimate_direction(np.zeros((4, 2)), min_displacement=0)
