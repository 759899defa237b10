"""Components that do not fit together fail with a ValueError naming them, instead of returning wrong frames;
an SR stage without a low_res_scheduler builds, saves and loads as diffusers' x4 upscaler does."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from cascade import KeyframesPipeline
from cascade.pipelines.spatial_sr import SpatialSRPipeline
from cascade.pipelines.spatiotemporal_sr import SpatioTemporalSRPipeline
from cascade.testing.tiny_models import tiny_keyframes_components, tiny_super_resolution_components, tiny_vae


def keyframes(pipe):
    return pipe("a red circle", num_frames=2, num_inference_steps=1, output_type="pt")


def upsample(pipe, seed=0):
    video = np.random.default_rng(0).random((1, 2, 8, 8, 3), dtype=np.float32)
    generator = torch.Generator().manual_seed(seed)
    return pipe("a red circle", video, num_inference_steps=1, output_type="pt", generator=generator).frames


def sr_pipeline(kind, **overrides):
    pipe = kind(
        **{**tiny_super_resolution_components(inflated=kind is SpatioTemporalSRPipeline), **overrides}
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_a_latent_keyframes_unet_without_its_vae_is_refused():
    pipe = KeyframesPipeline(**{**tiny_keyframes_components(latent=True), "vae": None})
    with pytest.raises(
        ValueError, match=r"`vae` is None.* must denoise 3 \(RGB\) channels, but it denoises 4"
    ):
        keyframes(pipe)


def test_without_its_vae_a_latent_unet_still_returns_latents_when_asked_for_them():
    pipe = KeyframesPipeline(**{**tiny_keyframes_components(latent=True), "vae": None})
    latents = pipe("a red circle", num_frames=2, num_inference_steps=1, output_type="latent").frames
    assert latents.shape == (1, 4, 2, 8, 8)


def test_a_pixel_keyframes_unet_with_a_vae_is_refused():
    pipe = KeyframesPipeline(**{**tiny_keyframes_components(latent=False), "vae": tiny_vae()})
    with pytest.raises(ValueError, match="`vae` has 4 latent channels but `unet` denoises 3"):
        keyframes(pipe)


@pytest.mark.parametrize("kind", [SpatialSRPipeline, SpatioTemporalSRPipeline])
def test_a_latent_sr_unet_without_its_vae_is_refused(kind):
    components = tiny_super_resolution_components(latent=True, inflated=kind is SpatioTemporalSRPipeline)
    pipe = kind(**{**components, "vae": None})
    with pytest.raises(
        ValueError, match=r"`vae` is None.* must denoise 3 \(RGB\) channels, but it denoises 4"
    ):
        upsample(pipe)


@pytest.mark.parametrize("kind", [SpatialSRPipeline, SpatioTemporalSRPipeline])
def test_without_a_low_res_scheduler_the_stage_builds_saves_and_loads_but_a_call_says_what_is_missing(
    kind, tmp_path
):
    pipe = sr_pipeline(kind, low_res_scheduler=None)
    pipe.save_pretrained(tmp_path / "stage")
    loaded = kind.from_pretrained(tmp_path / "stage")
    assert loaded.low_res_scheduler is None
    for stage in (pipe, loaded):
        with pytest.raises(ValueError, match="`low_res_scheduler` is None"):
            upsample(stage)
    pipe.low_res_scheduler = DDPMScheduler(num_train_timesteps=1000)
    assert torch.equal(upsample(pipe), upsample(sr_pipeline(kind)))


def test_a_low_res_scheduler_set_later_must_cover_max_noise_level():
    pipe = sr_pipeline(SpatialSRPipeline, low_res_scheduler=None, max_noise_level=500)
    pipe.low_res_scheduler = DDPMScheduler(num_train_timesteps=400)
    with pytest.raises(
        ValueError, match="`low_res_scheduler` has 400 noise levels, too few for max_noise_level=500"
    ):
        upsample(pipe)
