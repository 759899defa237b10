"""The NaN guard of the shared denoising loop (issue 20, part 5): a sample that turns non-finite after a
scheduler step stops sampling with NonFiniteSampleError naming the stage, the step and what to try, instead
of decoding a black video; the UNet runs no further step and the VAE decodes nothing. A VAE decode that
overflows is stopped the same way."""

import numpy as np
import pytest
import torch

from cascade import KeyframesPipeline
from cascade.pipelines.sample_checks import NonFiniteSampleError
from cascade.pipelines.spatial_sr import SpatialSRPipeline
from cascade.testing.tiny_models import tiny_keyframes_components, tiny_super_resolution_components


def poison(module: torch.nn.Module, from_call: int, value: float) -> list[int]:
    """Makes ``module``'s output ``value`` everywhere from its ``from_call``-th forward (1-based) on; returns
    the list its calls are counted in."""
    calls = []

    def hook(_module, _args, output):
        calls.append(1)
        if len(calls) < from_call:
            return output
        output.sample.fill_(value)
        return output

    module.register_forward_hook(hook)
    return calls


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_step_stops_keyframes_sampling_with_a_clear_error(value):
    pipe = KeyframesPipeline(**tiny_keyframes_components(latent=True))
    pipe.set_progress_bar_config(disable=True)
    unet_calls = poison(pipe.unet, from_call=2, value=value)
    decoded = []
    pipe.vae.decoder.register_forward_pre_hook(lambda *args: decoded.append(1))
    with pytest.raises(NonFiniteSampleError) as raised:
        pipe("a red circle", num_frames=3, num_inference_steps=4, guidance_scale=3.0)
    message = str(raised.value)
    assert "KeyframesPipeline" in message and "step 2 of 4" in message
    assert "float32" in message and "`guidance_scale` (it was 3)" in message
    assert len(unet_calls) == 2 and not decoded  # stopped at the first bad step, nothing decoded
    assert isinstance(raised.value, ValueError)  # the command line reports it in one line


def test_the_guard_covers_every_stage_through_the_shared_loop():
    pipe = SpatialSRPipeline(**tiny_super_resolution_components(inflated=False))
    pipe.set_progress_bar_config(disable=True)
    unet_calls = poison(pipe.unet, from_call=1, value=float("nan"))
    video = np.random.default_rng(0).random((1, 2, 8, 8, 3), dtype=np.float32)
    with pytest.raises(NonFiniteSampleError, match="SpatialSRPipeline: .* at denoising step 1 of 3"):
        pipe("a red circle", video=video, num_inference_steps=3)
    assert len(unet_calls) == 1


def test_a_vae_decode_that_overflows_stops_with_a_clear_error():
    pipe = KeyframesPipeline(**tiny_keyframes_components(latent=True))
    pipe.set_progress_bar_config(disable=True)
    pipe.vae.decoder.register_forward_hook(lambda module, args, output: torch.full_like(output, float("inf")))
    with pytest.raises(
        NonFiniteSampleError, match=r"KeyframesPipeline: the VAE decoded non-finite frames .* float32"
    ):
        pipe("a red circle", num_frames=2, num_inference_steps=1)
    assert (
        pipe("a red circle", num_frames=2, num_inference_steps=1, output_type="latent")
        .frames.isfinite()
        .all()
    )


def test_a_finite_run_is_untouched():
    pipe = KeyframesPipeline(**tiny_keyframes_components())
    pipe.set_progress_bar_config(disable=True)
    unet_calls = poison(pipe.unet, from_call=10**6, value=float("nan"))  # never poisons
    frames = pipe("a red circle", num_frames=2, num_inference_steps=3).frames
    assert len(unet_calls) == 3 and np.isfinite(frames).all()
