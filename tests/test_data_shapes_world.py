"""The shapes world: parameters, captions, ground truth, rendering and ShapesDataset."""

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cascade.data import (
    COLORS,
    DIRECTIONS,
    PALETTE,
    SHAPES,
    ShapeParams,
    ShapesDataset,
    ShapesWorld,
    frame_times,
    make_caption,
    parse_caption,
    render_clip,
    sample_params,
    shape_centers,
    shape_centroids,
    shape_coverage,
)

ALL_COMBINATIONS = list(itertools.product(COLORS, SHAPES, DIRECTIONS))


def test_palette_and_categories():
    assert len(COLORS) >= 6 and set(SHAPES) == {"circle", "square", "triangle"}
    assert {"left", "right", "up", "down"} <= set(DIRECTIONS)
    rgbs = np.array([PALETTE[name] for name in COLORS])
    distances = np.linalg.norm(rgbs[:, None] - rgbs[None], axis=-1) + np.eye(len(COLORS)) * 9
    assert distances.min() >= 1.0 and np.linalg.norm(rgbs, axis=-1).min() >= 1.0  # far apart and from black


@pytest.mark.parametrize("color, shape, direction", ALL_COMBINATIONS)
def test_caption_round_trip(color, shape, direction):
    caption = make_caption(color, shape, direction)
    assert parse_caption(caption) == {"color": color, "shape": shape, "direction": direction}
    assert parse_caption(f"  A {color.upper()}  {shape} moving {direction}. ") == parse_caption(caption)


def test_parse_caption_rejects_other_text():
    for caption in ["a purple circle moving left", "a red circle moving sideways", "red circle", ""]:
        with pytest.raises(ValueError, match="caption"):
            parse_caption(caption)
    with pytest.raises(ValueError, match="caption"):
        parse_caption(None)


def test_sampling_is_deterministic_and_fixes_categories():
    assert ShapesWorld(3)[5] == ShapesWorld(3)[5]
    assert ShapesWorld(3)[5] != ShapesWorld(4)[5] and ShapesWorld(3)[5] != ShapesWorld(3)[6]
    params = sample_params(np.random.default_rng(0), **parse_caption("a cyan triangle moving up"))
    assert (params.color, params.shape, params.direction) == ("cyan", "triangle", "up")
    assert params.caption == "a cyan triangle moving up" and params.rgb == PALETTE["cyan"]
    assert ShapeParams(**params.to_dict()) == params


def test_sampled_paths_stay_in_frame_and_travel_far():
    world = ShapesWorld(seed=1)
    for index in range(300):
        params = world[index]
        assert 0.3 <= params.size <= 0.4 and 0.4 <= params.distance <= 0.5
        centers = shape_centers(params, 2)  # (2, 2): start and end
        assert (centers >= params.size / 2 - 1e-9).all() and (centers <= 1 - params.size / 2 + 1e-9).all()
        assert np.linalg.norm(centers[1] - centers[0]) == pytest.approx(params.distance)
    # The whole shape is drawn in every frame: the rendered area is the shape's area.
    expected_fill = {"square": 1.0, "circle": np.pi / 4, "triangle": 0.5}
    for index in range(12):
        params = world[index]
        frames = render_clip(params, 5, 32, 48)  # (F, H, W, 3)
        area = frames.max(axis=-1).sum(axis=(1, 2)) / np.max(params.rgb)  # coverage summed per frame
        expected = expected_fill[params.shape] * (params.size * 32) ** 2
        np.testing.assert_allclose(area, expected, rtol=0.02)


def test_ground_truth_positions():
    params = ShapeParams("red", "triangle", "right", size=0.3, start_x=0.2, start_y=0.5, distance=0.5)
    centers = shape_centers(params, 3)
    np.testing.assert_allclose(centers, [[0.2, 0.5], [0.45, 0.5], [0.7, 0.5]])
    centroids = shape_centroids(params, 3, height=20, width=40)  # shorter side 20: offset 0.3 / 6
    np.testing.assert_allclose(centroids[:, 1], 0.5 + 0.05)
    square = ShapeParams("red", "square", "up", size=0.3, start_x=0.5, start_y=0.8, distance=0.5)
    np.testing.assert_allclose(shape_centroids(square, 2, 16, 16), [[0.5, 0.8], [0.5, 0.3]])


def test_same_clip_at_any_frame_count_and_resolution():
    params = ShapesWorld(seed=0)[7]
    short = render_clip(params, 8, 16, 16)  # (8, 16, 16, 3)
    long = render_clip(params, 29, 16, 16)  # (29, 16, 16, 3): (8 - 1) * 4 + 1
    assert short.shape == (8, 16, 16, 3) and short.dtype == np.float32
    np.testing.assert_array_equal(short, long[::4])
    large = render_clip(params, 29, 64, 64)[::4]  # (8, 64, 64, 3)
    pooled = large.reshape(8, 16, 4, 16, 4, 3).mean(axis=(2, 4))  # box-downsampled to 16x16
    assert np.abs(pooled - short).mean() < 0.005 and np.abs(pooled - short).max() < 0.1
    np.testing.assert_array_equal(frame_times(3, (0.25, 0.75)), [0.25, 0.5, 0.75])
    np.testing.assert_array_equal(
        render_clip(params, 3, 8, 8, (0.5, 1.0))[0], render_clip(params, 3, 8, 8)[1]
    )


def test_rendering_is_anti_aliased():
    params = ShapeParams("white", "square", "right", size=0.3, start_x=0.5, start_y=0.5, distance=0.0)
    coverage = shape_coverage(params, 0.0, 10, 10)  # square spans pixels [3.5, 6.5)
    np.testing.assert_allclose(coverage[5, 3:7], [0.5, 1.0, 1.0, 0.5])
    np.testing.assert_allclose(coverage[3, 3], 0.25)


def test_sub_world_fixes_colour_and_shape_and_keeps_the_rest_of_each_clip():
    whole, red_circles = ShapesWorld(7), ShapesWorld(7, color="red", shape="circle")
    directions = set()
    for index in range(40):
        clip, fixed = whole[index], red_circles[index]
        assert (fixed.color, fixed.shape) == ("red", "circle")
        # The same draws: only the fixed categories differ from the whole world's clip.
        assert (fixed.direction, fixed.size, fixed.start_x, fixed.start_y, fixed.distance) == (
            clip.direction,
            clip.size,
            clip.start_x,
            clip.start_y,
            clip.distance,
        )
        directions.add(fixed.direction)
    assert directions == set(DIRECTIONS)
    assert {ShapesWorld(7, shape="square")[i].color for i in range(40)} == set(COLORS)
    dataset = ShapesDataset(length=4, num_frames=3, height=8, width=8, seed=7, color="blue")
    assert all(parse_caption(dataset[i]["caption"])["color"] == "blue" for i in range(4))


def test_shapes_dataset_items_and_batches():
    dataset = ShapesDataset(length=6, num_frames=4, height=12, width=16, seed=2)
    item = dataset[3]
    assert item["pixel_values"].shape == (3, 4, 12, 16) and item["pixel_values"].dtype == torch.float32
    assert item["pixel_values"].min() >= -1 and item["pixel_values"].max() <= 1
    assert item["caption"] == make_caption(
        item["params"]["color"], item["params"]["shape"], item["params"]["direction"]
    )
    torch.testing.assert_close(dataset[3]["pixel_values"], item["pixel_values"], rtol=0, atol=0)
    assert ShapesDataset(6, 4, 12, 16, seed=3)[3]["params"] != item["params"]
    batch = next(iter(DataLoader(dataset, batch_size=3)))
    assert batch["pixel_values"].shape == (3, 3, 4, 12, 16) and len(batch["caption"]) == 3
    assert batch["params"]["shape"][0] == dataset[0]["params"]["shape"]


def test_invalid_arguments_raise_value_error():
    with pytest.raises(ValueError, match="color.*purple"):
        ShapeParams("purple", "square", "left", 0.3, 0.5, 0.5, 0.4)
    with pytest.raises(ValueError, match="out of the frame"):
        ShapeParams("red", "square", "left", 0.3, 0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="height.*0"):
        render_clip(ShapesWorld()[0], 4, 0, 16)
    with pytest.raises(ValueError, match="time_span"):
        frame_times(4, (0.8, 0.2))
    with pytest.raises(ValueError, match="rng"):
        sample_params(42)
    with pytest.raises(ValueError, match="length"):
        ShapesDataset(length=0)
    with pytest.raises(ValueError, match="seed"):
        ShapesWorld(seed=-1)
    with pytest.raises(ValueError, match="color.*purple"):
        ShapesWorld(color="purple")
    with pytest.raises(ValueError, match="shape.*hexagon"):
        ShapesDataset(length=2, shape="hexagon")
