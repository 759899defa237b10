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
from cascade.data.shapes_render import pixel_coverage, shape_coverage


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


@pytest.mark.parametrize("std", [0.05, 0.1])
def test_analysis_tolerates_mild_noise_and_non_square_frames(std):
    rng = np.random.default_rng(0)
    for color, shape, direction in [
        ("blue", "circle", "up"),
        ("yellow", "triangle", "left"),
        ("white", "square", "down"),
    ]:
        params = sample_params(rng, color, shape, direction)
        frames = render_clip(params, 8, 24, 40)
        noisy = np.clip(frames + rng.normal(0.0, std, frames.shape), 0.0, 1.0)
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


# Frame 3 of "a red square moving right" drawn by the demo keyframes model (16x16, red channel; green and
# blue are about 0): a square with ragged edges, whose fill ratio reads as a circle.
DRAWN_SQUARE_ROWS = {
    3: [0, 0.03, 0.05, 0.01, 0, 0.02, 0.1, 0.21, 0.2, 0.03, 0.01],
    4: [0.03, 0.13, 0.51, 0.67, 0.32, 0.65, 0.8, 0.8, 0.6, 0, 0],
    5: [0, 0.49, 1, 1, 1, 1, 1, 1, 0.72, 0.07, 0],
    6: [0, 0.4, 1, 1, 1, 1, 1, 1, 0.54, 0, 0.01],
    7: [0, 0.19, 0.92, 1, 1, 1, 1, 0.99, 0.54, 0.03, 0],
    8: [0, 0.07, 0.76, 1, 1, 1, 1, 1, 0.31, 0, 0],
    9: [0, 0.1, 0.98, 1, 1, 1, 1, 1, 0.53, 0, 0.02],
    10: [0, 0.02, 0.69, 1, 1, 1, 1, 1, 0.47, 0, 0],
    11: [0, 0, 0.09, 0.15, 0.06, 0.03, 0.33, 0.28, 0, 0, 0],
}


def fill_ratio(coverage: np.ndarray) -> float:
    """Area over the bounding box whose sides are the sums of each column's and row's largest coverage."""
    return float(coverage.sum() / (coverage.max(axis=0).sum() * coverage.max(axis=1).sum()))


def test_a_drawn_square_with_ragged_edges_reads_as_a_square():
    frame = np.zeros((16, 16, 3))
    for row, values in DRAWN_SQUARE_ROWS.items():
        frame[row, : len(values), 0] = values
    result = analyze_frame(frame)
    assert result.color == "red" and result.shape == "square"
    assert result.shape_errors["square"] < result.shape_errors["circle"] < result.shape_errors["triangle"]
    coverage = np.where(frame[..., 0] > 0.15, frame[..., 0], 0.0)
    assert fill_ratio(coverage) < 0.9  # what a bounding-box reading would have called a circle


@pytest.mark.parametrize("shape", SHAPES)
def test_template_of_the_rendered_shape_matches_and_survives_ragged_edges(shape):
    rng = np.random.default_rng(7)
    params = sample_params(rng, "green", shape, "left")
    frame = render_clip(params, 1, 24, 24)[0]  # (H, W, 3)
    exact = analyze_frame(frame)
    assert exact.shape == shape
    assert exact.shape_errors[shape] < 0.01
    assert min(error for name, error in exact.shape_errors.items() if name != shape) > 0.05
    coverage = frame[..., 1]
    edge = (coverage > 0) & (coverage < 1)
    ragged = frame.copy()
    ragged[..., 1] = np.where(edge, coverage * rng.uniform(0.4, 1.0, coverage.shape), coverage)
    assert analyze_frame(ragged).shape == shape


def test_pixel_coverage_matches_the_renderer_and_checks_its_input():
    params = sample_params(np.random.default_rng(3), "red", "triangle", "up")
    height, width = 20, 30
    center_x, center_y = params.center_at(0.5)
    half = params.size * height / 2
    np.testing.assert_array_equal(
        pixel_coverage("triangle", center_x * width, center_y * height, half, height, width),
        shape_coverage(params, 0.5, height, width),
    )
    square = pixel_coverage("square", 4.0, 4.0, 2.0, 8, 8)  # pixels 2..5 exactly
    assert square.sum() == 16 and square[2:6, 2:6].min() == 1
    with pytest.raises(ValueError, match="`shape` must be one of"):
        pixel_coverage("star", 4.0, 4.0, 2.0, 8, 8)
    with pytest.raises(ValueError, match="`half` must be >= 0, got -1.0"):
        pixel_coverage("square", 4.0, 4.0, -1.0, 8, 8)
    with pytest.raises(ValueError, match="`center_x` must be a finite number"):
        pixel_coverage("square", float("nan"), 4.0, 1.0, 8, 8)
