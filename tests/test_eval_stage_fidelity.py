"""Per-stage fidelity on the shapes world: structure, baselines recomputed independently, and the stages
receiving the rendered inputs."""

import functools

import numpy as np
import pytest
import torch

from cascade import CascadePipeline
from cascade.data import ShapesWorld, render_clip
from cascade.eval import psnr
from cascade.eval.stage_fidelity import CLIPS_SEED, stage_fidelity, stage_shapes
from cascade.testing.tiny_models import tiny_cascade_stages

NUM_FRAMES = 2  # keyframes; 4x interpolation gives 5 frames


@pytest.fixture(scope="module")
def tiny_cascade():
    cascade = CascadePipeline(**tiny_cascade_stages())
    cascade.set_progress_bar_config(disable=True)
    return cascade


@pytest.fixture(scope="module")
def scored(tiny_cascade):
    """``stage_fidelity`` on one clip, with each stage's ``video`` input and output frames recorded."""
    calls = {}
    with pytest.MonkeyPatch.context() as patch:
        for name, stage in tiny_cascade.stages.items():
            original = type(stage).__call__

            @functools.wraps(original)  # keeps the signature, which the stage's callers inspect
            def recording(self, *args, _name=name, _original=original, **kwargs):
                result = _original(self, *args, **kwargs)
                calls[_name] = (kwargs["prompt"], kwargs["video"], result.frames)
                return result

            patch.setattr(type(stage), "__call__", recording)
        settings = {name: {"num_inference_steps": 1} for name in tiny_cascade.stages}
        result = stage_fidelity(tiny_cascade, 1, NUM_FRAMES, seed=0, stage_kwargs=settings)
    return result, calls


def test_reports_every_conditioning_stage_with_cascade_sizes(scored, tiny_cascade):
    result, calls = scored
    assert list(result) == ["interpolation", "spatiotemporal_sr", "spatial_sr"]
    assert "keyframes" not in calls
    sizes = {name: (*s["input"].values(), *s["output"].values()) for name, s in result.items()}
    # 2 keyframes of 8x8 -> 5 frames -> 32x32 -> 128x128, as in the cascade.
    assert sizes == {
        "interpolation": (2, 8, 5, 8),
        "spatiotemporal_sr": (5, 8, 5, 32),
        "spatial_sr": (5, 32, 5, 128),
    }
    assert {
        name: tuple(vars(shape).values()) for name, shape in stage_shapes(tiny_cascade, 2).items()
    } == sizes
    caption = ShapesWorld(CLIPS_SEED)[0].caption
    for stage in result.values():
        assert stage["difference_db"] == pytest.approx(stage["psnr"] - stage["baseline_psnr"])
        assert [clip["caption"] for clip in stage["clips"]] == [caption]
        assert stage["clips"][0]["psnr"] == pytest.approx(stage["psnr"])
        assert np.isfinite(stage["psnr"]) and np.isfinite(stage["baseline_psnr"])
    assert {name: prompt for name, (prompt, _, _) in calls.items()} == dict.fromkeys(result, caption)


def test_interpolation_gets_the_rendered_keyframes_and_blending_baseline(scored):
    result, calls = scored
    truth = render_clip(ShapesWorld(CLIPS_SEED)[0], 5, 8, 8)  # (5, 8, 8, 3)
    _, given, output = calls["interpolation"]
    np.testing.assert_array_equal(given[0], truth[::4])  # every 4th frame of the full-rate render
    np.testing.assert_array_equal(output[0][::4], truth[::4])  # pixel space keeps given frames exactly
    blend = np.stack([(1 - j / 4) * truth[0] + j / 4 * truth[4] for j in range(1, 4)])  # (3, 8, 8, 3)
    inner = slice(1, 4)  # the in-between frames
    assert result["interpolation"]["baseline_psnr"] == pytest.approx(
        psnr(blend[None], truth[None, inner]).mean
    )
    assert result["interpolation"]["psnr"] == pytest.approx(psnr(output[:, inner], truth[None, inner]).mean)


@pytest.mark.parametrize(("name", "low", "high"), [("spatiotemporal_sr", 8, 32), ("spatial_sr", 32, 128)])
def test_super_resolution_gets_the_low_resolution_render_and_bicubic_baseline(scored, name, low, high):
    result, calls = scored
    params = ShapesWorld(CLIPS_SEED)[0]
    truth, small = render_clip(params, 5, high, high), render_clip(params, 5, low, low)
    _, given, output = calls[name]
    np.testing.assert_array_equal(given[0], small)
    pixels = torch.from_numpy(small).permute(0, 3, 1, 2)  # (5, 3, low, low)
    bicubic = torch.nn.functional.interpolate(pixels, scale_factor=high // low, mode="bicubic").clamp(0, 1)
    bicubic = bicubic.permute(0, 2, 3, 1).numpy()  # (5, high, high, 3)
    assert result[name]["baseline_psnr"] == pytest.approx(psnr(bicubic[None], truth[None]).mean)
    assert result[name]["psnr"] == pytest.approx(psnr(output, truth[None]).mean)


def test_stage_subset_and_bad_input(tiny_cascade):
    spatial = CascadePipeline(
        keyframes=tiny_cascade.stages["keyframes"], spatial_sr=tiny_cascade.stages["spatial_sr"]
    )
    assert {name: (s.input_size, s.output_size) for name, s in stage_shapes(spatial, 3).items()} == {
        "spatial_sr": (8, 32)
    }
    with pytest.raises(ValueError, match="`num_clips` must be a positive int"):
        stage_fidelity(tiny_cascade, 0, 2)
    without_keyframes = CascadePipeline(spatial_sr=tiny_cascade.stages["spatial_sr"])
    with pytest.raises(ValueError, match="keyframe size is not known"):
        stage_shapes(without_keyframes, 2)
    assert stage_shapes(without_keyframes, 2, keyframe_size=16)["spatial_sr"].output_size == 64
