"""benchmarks/demo_quality.py end to end on a tiny untrained cascade: every number is written, accuracies
are fractions, PSNRs finite, and the just-inflated base is compared on the trained stage's prompts and noise."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

from cascade import CascadePipeline, inflate
from cascade.data import ShapesWorld
from cascade.eval.stage_fidelity import CLIPS_SEED
from cascade.testing.tiny_models import tiny_cascade_stages, tiny_super_resolution_components, tiny_unet2d

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "demo_quality.py"
SPEC = importlib.util.spec_from_file_location("demo_quality", SCRIPT)
demo_quality = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(demo_quality)

ATTRIBUTES = ("color", "shape", "direction")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny 4-stage pixel cascade shaped like the demo's (8x8 keyframes, x4 interpolation, two x2
    super-resolution stages with one layer a block: 29 frames of 32x32) and the 2D UNet its keyframes
    stage was inflated from."""
    root = tmp_path_factory.mktemp("demo_quality")
    stages = tiny_cascade_stages()
    shared = {"text_encoder": stages["keyframes"].text_encoder, "tokenizer": stages["keyframes"].tokenizer}
    for name, inflated in (("spatiotemporal_sr", True), ("spatial_sr", False)):
        unet = tiny_unet2d("x4_upscaler", sample_size=8, in_channels=6, out_channels=3, layers_per_block=1)
        components = {
            **tiny_super_resolution_components(),
            **shared,
            "unet": inflate(unet) if inflated else unet,
        }
        stages[name] = type(stages[name])(**components, upscale_factor=2)
    CascadePipeline(**stages).save_pretrained(root / "cascade")
    # The keyframes stage's 2D UNet (same kind and seed) and text model: inflated, it is that stage untrained.
    tiny_unet2d("sd15", seed=0, sample_size=8, in_channels=3, out_channels=3).save_pretrained(
        root / "base" / "unet"
    )
    for name, component in shared.items():
        component.save_pretrained(root / "base" / name)
    return root


@pytest.fixture(scope="module")
def report(folders):
    output = folders / "quality.json"
    arguments = ["--model", str(folders / "cascade"), "--base", str(folders / "base"), "--prompts", "2"]
    returned = demo_quality.main([*arguments, "--steps", "2", "--stage-clips", "1", "--output", str(output)])
    return returned, json.loads(output.read_text())


def test_writes_every_number(report):
    returned, written = report
    assert written["settings"]["prompts"] == 2 and written["passed"] is returned["passed"]
    assert "CPU capability" in written["settings"]["machine"] and "GFLOP/s" in written["settings"]["machine"]
    assert (written["cascade"]["frames"], written["cascade"]["size"]) == (29, 32)
    groups = [written["cascade"], written["keyframes"]["trained"], written["keyframes"]["inflated_base"]]
    for group in groups:
        for kind in ("accuracy", "ceiling"):
            assert set(group[kind]) == set(ATTRIBUTES)
            assert all(0 <= value <= 1 for value in group[kind].values())
    assert list(written["stages"]) == ["interpolation", "spatiotemporal_sr", "spatial_sr"]
    for stage in written["stages"].values():
        assert math.isfinite(stage["psnr"])
        # At 8x8 the blend of a square's keyframes can equal the render (PSNR inf, written as "inf").
        assert all(not math.isnan(float(stage[key])) for key in ("baseline_psnr", "difference_db"))
        assert [clip["caption"] for clip in stage["clips"]] == [ShapesWorld(CLIPS_SEED)[0].caption]
    assert written["seconds_per_video"]["median"] > 0
    assert set(written["targets"]) == {*ATTRIBUTES, *(f"{name}_difference_db" for name in written["stages"])}


def test_prompts_and_seeds_are_held_out(report):
    _, written = report
    world = ShapesWorld(demo_quality.HELD_OUT_SEED)
    assert [video["prompt"] for video in written["videos"]] == [world[0].caption, world[1].caption]
    assert [video["batch_seed"] for video in written["videos"]] == [demo_quality.SEED_OFFSET] * 2
    assert demo_quality.HELD_OUT_SEED not in demo_quality.TRAINING_WORLD_SEEDS
    assert demo_quality.HELD_OUT_SEED != CLIPS_SEED


def test_inflated_base_gets_the_keyframes_stage_prompts_and_noise(report):
    # The tiny keyframes stage is its base inflated and never trained: same prompts and noise, same frames.
    _, written = report
    for video in written["videos"]:
        assert video["inflated_base"] == video["keyframes"]


def test_prints_the_table_and_skips_a_missing_base(folders, capsys):
    arguments = ["--model", str(folders / "cascade"), "--base", str(folders / "none"), "--prompts", "1"]
    results = demo_quality.main([*arguments, "--steps", "1", "--stage-clips", "1"])
    printed = capsys.readouterr().out
    assert results["keyframes"]["inflated_base"] is None and "inflated_base" not in results["videos"][0]
    assert "does not exist; skipping" in printed
    assert "| metric | value | target | pass |" in printed
    assert "interpolation PSNR - linear frame blending" in printed


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--prompts", "0"], "--prompts: must be >= 1"),
        (["--steps", "two"], "--steps: must be a whole number"),
        (["--model", "/nonexistent"], "is not a saved cascade"),
        (["--output", "/nonexistent/quality.json"], "--output must be a .json file in an existing folder"),
    ],
)
def test_rejects_bad_arguments(folders, capsys, arguments, message):
    with pytest.raises(SystemExit) as raised:
        demo_quality.main(["--model", str(folders / "cascade"), *arguments])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
