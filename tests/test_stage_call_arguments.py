"""The call arguments every stage takes from diffusers' video pipelines (issue 26, part 5): their effect on a
tiny keyframes pipeline, and their refusal before any model runs."""

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from cascade import KeyframesPipeline
from cascade.pipelines.stage_base import rescale_guidance
from cascade.testing.tiny_models import tiny_keyframes_components, tiny_unet2d


def make_pipeline():
    pipe = KeyframesPipeline(**tiny_keyframes_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return make_pipeline()


def generate(pipe, **kwargs):
    kwargs = {"num_frames": 3, "num_inference_steps": 3, "output_type": "pt", **kwargs}
    return pipe("a red circle", generator=torch.Generator().manual_seed(0), **kwargs).frames


def count_unet_calls(pipe) -> list:
    """A list that gains an entry per UNet forward of ``pipe``."""
    calls = []
    pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    return calls


def test_eta_above_zero_under_ddim_changes_the_sample_and_zero_is_the_default(pipe):
    default = generate(pipe)
    torch.testing.assert_close(generate(pipe, eta=0.0), default, rtol=0, atol=0)
    assert (generate(pipe, eta=1.0) - default).abs().max() > 1e-3


def test_guidance_rescale_changes_the_guided_sample_and_zero_is_the_default(pipe):
    default = generate(pipe, guidance_scale=7.5)
    torch.testing.assert_close(
        generate(pipe, guidance_scale=7.5, guidance_rescale=0.0), default, rtol=0, atol=0
    )
    assert (generate(pipe, guidance_scale=7.5, guidance_rescale=0.7) - default).abs().max() > 1e-3
    unguided = generate(pipe, guidance_scale=1.0)
    torch.testing.assert_close(
        generate(pipe, guidance_scale=1.0, guidance_rescale=0.7), unguided, rtol=0, atol=0
    )


def test_rescale_guidance_matches_the_paper_computed_by_hand():
    generator = torch.Generator().manual_seed(0)
    guided = 3 * torch.randn(2, 4, 3, 5, 5, generator=generator)  # (B, C, F, h, w)
    conditional = torch.randn(2, 4, 3, 5, 5, generator=generator)
    phi = 0.7
    expected = []
    for x_cfg, x_pos in zip(guided.double().numpy(), conditional.double().numpy(), strict=True):
        # Lin et al. 2023, eqs. 15-16, per video over all of its values
        x_rescaled = x_cfg * x_pos.std() / x_cfg.std()
        expected.append(phi * x_rescaled + (1 - phi) * x_cfg)
    actual = rescale_guidance(guided, conditional, phi)
    np.testing.assert_allclose(actual.numpy(), np.stack(expected), rtol=1e-5, atol=1e-6)
    for video in range(
        2
    ):  # the std moves from the guided one's (about 3) to phi of the way to the conditional's
        expected_std = phi * conditional[video].std() + (1 - phi) * guided[video].std()
        torch.testing.assert_close(actual[video].std(), expected_std)


def test_a_callback_that_interrupts_at_step_1_of_4_stops_after_that_step_and_the_output_is_made():
    pipe = make_pipeline()
    calls = count_unet_calls(pipe)

    def interrupt_at_step_1(pipe, step, timestep, tensors):
        if step == 1:
            pipe._interrupt = True
        return tensors

    frames = generate(pipe, num_inference_steps=4, callback_on_step_end=interrupt_at_step_1)
    assert len(calls) == 2  # one guided UNet forward per step, steps 0 and 1
    assert pipe.interrupt
    assert frames.shape == (1, 3, 3, 8, 8) and torch.isfinite(frames).all()
    calls.clear()
    generate(pipe, num_inference_steps=4)  # the next call starts uninterrupted
    assert len(calls) == 4 and not pipe.interrupt


def test_cross_attention_kwargs_scale_sets_the_lora_scale_of_the_call(tmp_path):
    pytest.importorskip("peft")
    from test_lora import add_random_lora

    pipe = make_pipeline()
    without_lora = generate(pipe)
    unet = tiny_unet2d("sd15", sample_size=8, in_channels=3, out_channels=3)  # the pipeline's 2D UNet
    layers, config = add_random_lora(unet, ["to_q", "to_k", "to_v", "to_out.0"], seed=1)
    StableDiffusionPipeline.save_lora_weights(
        tmp_path, unet_lora_layers=layers, unet_lora_adapter_metadata=config
    )
    pipe.load_lora_weights(tmp_path)
    with_lora = generate(pipe)
    assert (with_lora - without_lora).abs().max() > 1e-3
    torch.testing.assert_close(generate(pipe, cross_attention_kwargs={"scale": 0.0}), without_lora)
    torch.testing.assert_close(generate(pipe, cross_attention_kwargs={"scale": 1.0}), with_lora)
    half = generate(pipe, cross_attention_kwargs={"scale": 0.5})
    assert min((half - without_lora).abs().max(), (half - with_lora).abs().max()) > 1e-4
    torch.testing.assert_close(generate(pipe), with_lora)  # the scale holds for its call only


BETWEEN_0_AND_1 = "in [0.0, 1.0]"


@pytest.mark.parametrize(
    ("argument", "value", "named", "allowed", "shown"),
    [
        ("eta", 1.5, "eta", BETWEEN_0_AND_1, "1.5"),
        ("eta", -0.1, "eta", BETWEEN_0_AND_1, "-0.1"),
        ("eta", "0.5", "eta", BETWEEN_0_AND_1, "'0.5'"),
        ("guidance_rescale", 1.2, "guidance_rescale", BETWEEN_0_AND_1, "1.2"),
        ("guidance_rescale", float("nan"), "guidance_rescale", BETWEEN_0_AND_1, "nan"),
        (
            "cross_attention_kwargs",
            {"scale": "high"},
            "cross_attention_kwargs['scale']",
            "finite number",
            "'high'",
        ),
        ("cross_attention_kwargs", 0.5, "cross_attention_kwargs", "None or a dict", "0.5"),
        ("cross_attention_kwargs", {1: 0.5}, "cross_attention_kwargs", "None or a dict", "{1: 0.5}"),
    ],
)
def test_a_bad_argument_is_refused_by_name_before_any_model_runs(argument, value, named, allowed, shown):
    pipe = make_pipeline()
    calls = count_unet_calls(pipe)
    with pytest.raises(ValueError) as refusal:
        generate(pipe, **{argument: value})
    message = str(refusal.value)
    assert (
        message.startswith(f"`{named}` must be") and allowed in message and message.endswith(f"got {shown}.")
    )
    assert not calls
