"""ControlNet on the keyframes stage (issue 17, part 1): a 2D ControlNet run on the controlled frames, its
residuals added for those frames only, at the steps and scale asked; saved and loaded with the pipeline; bad
control refused before any model runs."""

import pytest
import torch
from diffusers import ControlNetModel

from cascade import KeyframesPipeline
from cascade.testing.tiny_models import tiny_keyframes_components, tiny_unet2d

PROMPT = "a red circle moving left"
FRAMES = 3


def controlnet_for(pipe, seed=1, active=True) -> ControlNetModel:
    """A ControlNet made from the stage's 2D UNet, reading control frames at the pipeline's frame size; with
    ``active``, its zero-initialised output convolutions randomised, as training would move them."""
    factor_blocks = pipe.vae_scale_factor.bit_length()  # 2^(blocks - 1) = the VAE factor
    net = ControlNetModel.from_unet(pipe.unet.unet, conditioning_embedding_out_channels=(8,) * factor_blocks)
    if active:
        generator = torch.Generator().manual_seed(seed)
        for name, parameter in net.named_parameters():
            if name.startswith(
                ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")
            ):
                parameter.data = torch.randn(parameter.shape, generator=generator) * 0.5
    return net.eval()


def make_pipeline(latent=True, controlnet=None):
    components = tiny_keyframes_components(latent=latent)
    pipe = KeyframesPipeline(**components)
    if controlnet is not None:
        pipe = KeyframesPipeline(**components, controlnet=controlnet(pipe))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def control_video(pipe, frames=FRAMES, seed=0):
    size = pipe.default_size
    return torch.rand(
        1, frames, 3, size, size, generator=torch.Generator().manual_seed(seed)
    )  # (B, K, 3, H, W)


def generate(pipe, **kwargs):
    kwargs = {"num_frames": FRAMES, "num_inference_steps": 2, "output_type": "latent", **kwargs}
    return pipe(PROMPT, generator=torch.Generator().manual_seed(0), **kwargs).frames  # (B, C, F, h, w)


@pytest.mark.parametrize("latent", [True, False], ids=["latent", "pixel"])
def test_a_controlnet_just_made_from_the_unet_changes_nothing_and_a_trained_one_does(latent):
    plain = generate(make_pipeline(latent))
    fresh = make_pipeline(latent, lambda pipe: controlnet_for(pipe, active=False))
    assert torch.equal(generate(fresh, control_video=control_video(fresh)), plain)  # zero convolutions
    pipe = make_pipeline(latent, controlnet_for)
    controlled = generate(pipe, control_video=control_video(pipe))
    assert (controlled - plain).abs().max() > 1e-3
    assert torch.equal(
        generate(pipe, control_video=control_video(pipe), controlnet_conditioning_scale=0.0), plain
    )
    assert not torch.equal(generate(pipe, control_video=control_video(pipe, seed=1)), controlled)


def test_only_the_controlled_frames_get_residuals():
    # the tiny UNet's temporal layers start as the identity: frames do not see each other, so a frame without
    # control comes out as without any ControlNet
    plain = generate(make_pipeline())
    pipe = make_pipeline(controlnet=controlnet_for)
    sparse = generate(pipe, control_video=control_video(pipe, frames=1), controlnet_frame_indices=[1])
    assert torch.equal(sparse[:, :, [0, 2]], plain[:, :, [0, 2]])
    assert (sparse[:, :, 1] - plain[:, :, 1]).abs().max() > 1e-3


def test_guidance_start_and_end_limit_the_steps_a_controlnet_acts_on():
    pipe = make_pipeline(controlnet=controlnet_for)
    video = control_video(pipe)
    plain = generate(make_pipeline())
    full = generate(pipe, control_video=video)
    first_half = generate(pipe, control_video=video, control_guidance_end=0.5)
    assert not torch.equal(first_half, full) and not torch.equal(first_half, plain)
    # the last step only: the first step's sample is the plain call's
    steps = []
    generate(
        pipe,
        control_video=video,
        control_guidance_start=0.5,
        callback_on_step_end=lambda p, i, t, x: steps.append(x["latents"].clone()) or {},
    )
    first = []
    generate(
        make_pipeline(), callback_on_step_end=lambda p, i, t, x: first.append(x["latents"].clone()) or {}
    )
    assert torch.equal(steps[0], first[0]) and not torch.equal(steps[1], first[1])


def test_several_controlnets_add_up_and_a_silent_one_changes_nothing():
    one = make_pipeline(controlnet=controlnet_for)
    components = {**one.components, "controlnet": [one.controlnet, controlnet_for(one, seed=2)]}
    both = KeyframesPipeline(**components)
    both.set_progress_bar_config(disable=True)
    video = control_video(one)
    single = generate(one, control_video=video)
    assert torch.equal(
        generate(both, control_video=[video, video], controlnet_conditioning_scale=[1.0, 0.0]), single
    )
    assert not torch.equal(generate(both, control_video=[video, video]), single)


def test_the_controlnet_is_saved_and_loaded_with_the_pipeline(tmp_path):
    pipe = make_pipeline(controlnet=controlnet_for)
    pipe.save_pretrained(tmp_path / "saved")
    loaded = KeyframesPipeline.from_pretrained(tmp_path / "saved")
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.controlnet, ControlNetModel)
    video = control_video(pipe)
    torch.testing.assert_close(generate(loaded, control_video=video), generate(pipe, control_video=video))


def test_control_in_windows_and_coarse_to_fine_makes_the_whole_video():
    pipe = make_pipeline(controlnet=controlnet_for)
    video = control_video(pipe, frames=7)
    for method in ("extend", "coarse_to_fine"):
        frames = generate(
            pipe, num_frames=7, window=3, window_overlap=1, long_video_method=method, control_video=video
        )
        assert frames.shape[2] == 7 and torch.isfinite(frames).all()


def test_a_controlnet_of_another_unet_is_refused_when_the_pipeline_is_built():
    pipe = make_pipeline()
    other = ControlNetModel.from_unet(tiny_unet2d("sd15", sample_size=8, block_out_channels=(64, 64)))
    with pytest.raises(ValueError, match=r"`controlnet` does not match the UNet: its block_out_channels"):
        KeyframesPipeline(**{**pipe.components, "controlnet": other})


def _bad_control(pipe):
    size = pipe.default_size
    good = control_video(pipe)
    return [
        (
            {"control_video": good[:, :2]},
            r"`control_video` has 2 frames for a video of num_frames=3",
        ),
        (
            {"control_video": torch.rand(1, FRAMES, 3, size + 2, size)},
            rf"`control_video` frames must be {size}x{size}",
        ),
        (
            {"control_video": torch.rand(1, FRAMES, 4, size, size)},
            r"`control_video` must have shape \(B, F, 3, H, W\)",
        ),
        ({}, r"`control_video` is needed"),
        (
            {"control_video": good.repeat(2, 1, 1, 1, 1), "prompt": ["a"] * 3},
            r"holds 2 videos but .* batch of 3",
        ),
        (
            {"control_video": good, "controlnet_frame_indices": [0, 1, 5]},
            r"`controlnet_frame_indices` must be 3",
        ),
        (
            {"control_video": good, "control_guidance_start": 0.6, "control_guidance_end": 0.4},
            r"must be below",
        ),
        (
            {"control_video": good, "controlnet_conditioning_scale": [1.0, 2.0]},
            r"holds 2 values for 1 ControlNet",
        ),
    ]


@pytest.mark.parametrize("case", range(8))
def test_bad_control_is_refused_before_any_model_runs(case):
    pipe = make_pipeline(controlnet=controlnet_for)
    overrides, message = _bad_control(pipe)[case]

    def fail(*args, **kwargs):
        raise AssertionError("a model ran before the input was checked")

    for model in (pipe.unet, pipe.text_encoder, pipe.controlnet):
        model.register_forward_pre_hook(fail)
    prompt = overrides.pop("prompt", PROMPT)
    with pytest.raises(ValueError, match=message):
        pipe(prompt, num_frames=FRAMES, num_inference_steps=2, **overrides)


def test_control_without_a_controlnet_is_refused():
    pipe = make_pipeline()
    with pytest.raises(ValueError, match=r"`control_video` needs a ControlNet"):
        generate(pipe, control_video=control_video(pipe))
