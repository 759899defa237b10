"""CascadePipeline: every combination of stages, shared prompt encoding, hand-off, saving and checks."""

import itertools

import numpy as np
import pytest
import torch

from cascade import CascadePipeline
from cascade.testing.tiny_models import tiny_cascade_stages, tiny_text_encoder, tiny_tokenizer

FAST = {"num_inference_steps": 1}
SETTINGS = {
    "keyframes": {**FAST, "num_frames": 2},
    "interpolation": {**FAST, "interpolation_factor": 2},
    "spatiotemporal_sr": dict(FAST),
    "spatial_sr": dict(FAST),
}


@pytest.fixture(scope="module")
def stages():
    return tiny_cascade_stages()


def build(stages, names):
    cascade = CascadePipeline(**{name: stages[name] for name in names})
    cascade.set_progress_bar_config(disable=True)
    return cascade


def expected_shape(names, frames=2, size=8):
    """(F, H, W) after ``names``: 2x interpolation, 4x for each super-resolution stage."""
    for name in names:
        if name == "interpolation":
            frames = (frames - 1) * 2 + 1
        elif name in ("spatiotemporal_sr", "spatial_sr"):
            size *= 4
    return frames, size, size


LATER = ["interpolation", "spatiotemporal_sr", "spatial_sr"]
COMBINATIONS = [c for r in range(1, 4) for c in itertools.combinations(LATER, r)]


@pytest.mark.parametrize("later", [(), *COMBINATIONS], ids=lambda c: "+".join(["keyframes", *c]))
def test_frame_counts_and_sizes_through_every_combination_from_a_prompt(stages, later):
    names = ["keyframes", *later]
    cascade = build(stages, names)
    result = cascade(
        "a red circle", stage_kwargs={n: SETTINGS[n] for n in names}, seed=0, return_stage_outputs=True
    )
    frames, height, width = expected_shape(names)
    assert result.frames.shape == (1, frames, height, width, 3)
    assert list(result.stage_frames) == names
    for index, name in enumerate(names):
        f, h, w = expected_shape(names[: index + 1])
        assert result.stage_frames[name].shape == (1, f, 3, h, w)
    # The last stage's frames are the result, converted to the requested type.
    np.testing.assert_allclose(
        result.stage_frames[names[-1]].permute(0, 1, 3, 4, 2).numpy(), result.frames, atol=1e-6
    )


@pytest.mark.parametrize("names", COMBINATIONS, ids=lambda c: "+".join(c))
def test_cascades_without_keyframes_take_a_video(stages, names):
    cascade = build(stages, names)
    video = np.random.default_rng(0).random((1, 3, 8, 8, 3), dtype=np.float32)  # (B, F, H, W, 3)
    result = cascade("a red circle", video=video, stage_kwargs={n: SETTINGS[n] for n in names}, seed=0)
    assert result.frames.shape == (1, *expected_shape(names, frames=3), 3)
    assert result.stage_frames is None


def test_prompt_is_encoded_once_per_distinct_text_encoder():
    shared = tiny_cascade_stages()
    cascade = build(shared, ["keyframes", "interpolation", "spatiotemporal_sr"])
    assert len(cascade.text_encoders) == 1
    calls = []
    hook = shared["keyframes"].text_encoder.register_forward_pre_hook(lambda module, args: calls.append(1))
    cascade("a red circle", stage_kwargs={n: SETTINGS[n] for n in cascade.stages}, seed=0)
    hook.remove()
    assert len(calls) == 2  # the prompt and the (empty) negative prompt, once for all three stages

    separate = tiny_cascade_stages()
    separate["interpolation"].register_modules(text_encoder=tiny_text_encoder(1), tokenizer=tiny_tokenizer())
    cascade = build(separate, ["keyframes", "interpolation"])
    assert len(cascade.text_encoders) == 2


def test_stage_settings_reach_their_stage_and_seed_makes_runs_repeatable(stages):
    cascade = build(stages, ["keyframes", "interpolation", "spatiotemporal_sr"])
    seen = []
    hook = stages["spatiotemporal_sr"].unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["class_labels"].tolist()), with_kwargs=True
    )
    settings = {
        "keyframes": {**FAST, "num_frames": 3},
        "interpolation": {**FAST, "interpolation_factor": 3},
        "spatiotemporal_sr": {**FAST, "noise_level": 77, "guidance_scale": 1.0},
    }
    first = cascade("a red circle", stage_kwargs=settings, seed=5).frames
    hook.remove()
    assert first.shape == (1, 7, 32, 32, 3)
    assert seen == [[77]]
    assert np.array_equal(first, cascade("a red circle", stage_kwargs=settings, seed=5).frames)
    assert not np.array_equal(first, cascade("a red circle", stage_kwargs=settings, seed=6).frames)


def test_save_and_load_round_trip_gives_the_same_frames_and_shares_the_encoder(stages, tmp_path):
    cascade = build(stages, ["keyframes", "interpolation", "spatiotemporal_sr"])
    cascade.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "cascade_index.json",
        "cascade_pipeline.py",  # with model_index.json: DiffusionPipeline.from_pretrained loads it too
        "interpolation",
        "keyframes",
        "model_index.json",
        "spatiotemporal_sr",
        "weights_sha256.json",  # every weight file's sha256, checked on load
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    loaded = CascadePipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    assert list(loaded.stages) == list(cascade.stages)
    assert len(loaded.text_encoders) == 1
    settings = {n: SETTINGS[n] for n in cascade.stages}
    assert np.array_equal(
        cascade("a blue square", stage_kwargs=settings, seed=3).frames,
        loaded("a blue square", stage_kwargs=settings, seed=3).frames,
    )


def test_saving_refuses_a_folder_that_is_not_a_cascade_and_replaces_one_that_is(stages, tmp_path):
    cascade = build(stages, ["keyframes"])
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="exists and is not an empty folder or a saved cascade"):
        cascade.save_pretrained(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    cascade.save_pretrained(tmp_path / "model")
    build(stages, ["keyframes", "interpolation"]).save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "notes.txt"]
    assert list(CascadePipeline.from_pretrained(tmp_path / "model").stages) == ["keyframes", "interpolation"]


def test_incompatible_stages_are_rejected_when_the_cascade_is_built(stages):
    from cascade import KeyframesPipeline, SpatioTemporalSRPipeline, inflate
    from cascade.testing.tiny_models import (
        tiny_keyframes_components,
        tiny_super_resolution_components,
        tiny_unet2d,
    )

    small = tiny_unet2d(sample_size=6, in_channels=3, out_channels=3)  # 6x6 keyframes
    keyframes = KeyframesPipeline(**{**tiny_keyframes_components(), "unet": inflate(small)})
    same_size = SpatioTemporalSRPipeline(**tiny_super_resolution_components(), upscale_factor=1)
    with pytest.raises(
        ValueError,
        match="Stage 'interpolation' outputs 6x6 frames but stage 'spatiotemporal_sr' upsamples by 1 and needs "
        "output sizes that are multiples of 4",
    ):
        CascadePipeline(
            keyframes=keyframes, interpolation=stages["interpolation"], spatiotemporal_sr=same_size
        )
    with pytest.raises(ValueError, match=r"Unknown stage\(s\) \['colour'\]"):
        CascadePipeline(keyframes=stages["keyframes"], colour=stages["spatial_sr"])
    with pytest.raises(
        ValueError, match="Stage 'interpolation' must be a InterpolationPipeline, got KeyframesPipeline"
    ):
        CascadePipeline(interpolation=stages["keyframes"])
    with pytest.raises(ValueError, match="Give at least one stage"):
        CascadePipeline()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stage_kwargs": {"spatial_sr": {}}}, r"names stage\(s\) \['spatial_sr'\] not in this cascade"),
        (
            {"stage_kwargs": {"keyframes": {"generator": None}}},
            r"sets \['generator'\], which the cascade sets itself",
        ),
        ({"stage_kwargs": {"keyframes": 3}}, r"`stage_kwargs\['keyframes'\]` must be a dict, got 3"),
        (
            {"video": np.zeros((1, 2, 8, 8, 3))},
            "`video` must be given exactly when the first stage takes a video",
        ),
        ({"output_type": "latent"}, r"must be one of \['np', 'pt', 'pil'\] for a cascade"),
        ({"seed": "1"}, "`seed` must be None or an int, got '1'"),
        (
            {"stage_kwargs": {"interpolation": {"windw": 9}}},
            r"has \['windw'\], which InterpolationPipeline does not take",
        ),
        (
            {"stage_kwargs": {"keyframes": {"seed": 1.5}}},
            r"`stage_kwargs\['keyframes'\]\['seed'\]` must be None or an int, got 1.5",
        ),
        (
            {"stage_kwargs": {"keyframes": {"return_dict": False}}},
            r"sets \['return_dict'\], which the cascade sets itself",
        ),
    ],
)
def test_bad_cascade_arguments_are_rejected_before_any_model_runs(stages, kwargs, match):
    cascade = build(stages, ["keyframes", "interpolation"])

    def fail(*args):
        raise AssertionError("a model ran before the input was checked")

    hooks = [s.text_encoder.register_forward_pre_hook(fail) for s in cascade.stages.values()]
    try:
        with pytest.raises(ValueError, match=match):
            cascade("a red circle", **kwargs)
    finally:
        for hook in hooks:
            hook.remove()


def test_stage_defaults_apply_round_trip_and_give_way_to_a_calls_settings(stages, tmp_path):
    names = ["keyframes", "interpolation"]
    defaults = {"keyframes": {**FAST, "num_frames": 3}, "interpolation": {**FAST, "interpolation_factor": 2}}
    cascade = CascadePipeline(stage_defaults=defaults, **{name: stages[name] for name in names})
    cascade.set_progress_bar_config(disable=True)
    assert cascade("a red circle", seed=0).frames.shape == (1, 5, 8, 8, 3)  # 3 keyframes, x2
    override = {"keyframes": {"num_frames": 2}}
    assert cascade("a red circle", stage_kwargs=override, seed=0).frames.shape == (1, 3, 8, 8, 3)
    cascade.save_pretrained(tmp_path / "saved")
    loaded = CascadePipeline.from_pretrained(tmp_path / "saved")
    assert loaded.stage_defaults == defaults
    with pytest.raises(ValueError, match="`stage_defaults\\['keyframes'\\]` has \\['steps'\\]"):
        CascadePipeline(stage_defaults={"keyframes": {"steps": 3}}, keyframes=stages["keyframes"])
    with pytest.raises(ValueError, match="`stage_defaults` names stage\\(s\\) \\['spatial_sr'\\]"):
        CascadePipeline(stage_defaults={"spatial_sr": {}}, keyframes=stages["keyframes"])


def test_freeu_on_the_cascade_reaches_every_stage_and_comes_off_bit_for_bit():
    cascade = CascadePipeline(**tiny_cascade_stages()).subset(["keyframes", "interpolation"])
    cascade.set_progress_bar_config(disable=True)

    def generate():
        settings = {name: {"num_inference_steps": 2} for name in cascade.stages}
        return cascade("a red circle", stage_kwargs=settings, seed=0, output_type="pt").frames

    plain = generate()
    cascade.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)
    assert all(stage.unet.unet.up_blocks[0].b1 == 1.2 for stage in cascade.stages.values())
    assert (generate() - plain).abs().max() > 1e-4
    cascade.disable_freeu()
    assert torch.equal(generate(), plain)
