"""FreeInit (Wu et al. 2023) in the shared denoising loop, through diffusers' FreeInitMixin."""

import pytest
import torch

from cascade import KeyframesPipeline
from cascade.data import ShapesWorld, analyze_video, parse_caption
from cascade.pipelines.cascade import DEMO_MODEL
from cascade.testing.tiny_models import tiny_keyframes_components

SETTINGS = {"num_frames": 3, "num_inference_steps": 3, "output_type": "latent"}


@pytest.fixture
def pipe():
    pipe = KeyframesPipeline(**tiny_keyframes_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, seed=0, **kwargs):
    return pipe(
        "a red circle", generator=torch.Generator().manual_seed(seed), **{**SETTINGS, **kwargs}
    ).frames


def test_each_run_after_the_first_starts_from_the_last_sample_with_fresh_high_frequencies(pipe):
    first = generate(pipe)  # (1, C, F, h, w): the first run is the plain call
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(first.shape, generator=generator)  # the call's starting noise (DDIM's sigma is 1)
    fresh = torch.randn(first.shape, generator=generator)  # then FreeInit's draw (DDIM at eta 0 draws none)
    top = torch.full((1,), pipe.scheduler.config.num_train_timesteps - 1)
    diffused = pipe.scheduler.add_noise(first, noise, top)
    low_pass = pipe._get_free_init_freq_filter((1, *first.shape[1:]), "cpu", "butterworth", 4, 0.25, 0.25)
    restart = pipe._apply_freq_filter(diffused, fresh, low_pass)
    expected = generate(pipe, latents=restart)

    pipe.enable_free_init(num_iters=2)
    torch.testing.assert_close(generate(pipe), expected, rtol=0, atol=1e-5)
    pipe.disable_free_init()
    assert torch.equal(generate(pipe), first)


def test_one_iteration_is_the_plain_call_and_more_change_it(pipe):
    plain = generate(pipe)
    pipe.enable_free_init(num_iters=1)
    assert torch.equal(generate(pipe), plain)
    pipe.enable_free_init(num_iters=3)
    assert (generate(pipe) - plain).abs().max() > 1e-3


def test_the_progress_bar_counts_every_run_and_fast_sampling_is_refused(pipe):
    totals = []
    original = pipe.progress_bar
    pipe.progress_bar = lambda *args, **kwargs: (
        totals.append(kwargs.get("total")) or original(*args, **kwargs)
    )
    pipe.enable_free_init(num_iters=3)
    generate(pipe, num_inference_steps=4)
    assert totals == [12]
    with pytest.raises(ValueError, match="use_fast_sampling"):
        pipe.enable_free_init(use_fast_sampling=True)
    with pytest.raises(ValueError, match="num_iters"):
        pipe.enable_free_init(num_iters=0)


def test_an_edit_from_inverted_noise_is_not_re_noised(pipe):
    size = pipe.default_size
    video = torch.rand(1, 3, 3, size, size, generator=torch.Generator().manual_seed(2))  # (B, F, 3, H, W)
    settings = {"num_inference_steps": 3, "method": "plain_inversion", "output_type": "pt"}
    plain = pipe.edit(video, "a blue circle", "a red circle", **settings).frames
    pipe.enable_free_init(num_iters=2)
    assert torch.equal(pipe.edit(video, "a blue circle", "a red circle", **settings).frames, plain)


def test_on_the_demo_free_init_changes_the_keyframes_and_keeps_what_the_prompts_say():
    pipe = KeyframesPipeline.from_pretrained(DEMO_MODEL / "keyframes")
    pipe.set_progress_bar_config(disable=True)
    prompts = [ShapesWorld(2000)[index].caption for index in range(6)]
    settings = {"num_frames": 8, "num_inference_steps": 15, "guidance_scale": 4.0}
    plain = pipe(prompts, generator=torch.Generator().manual_seed(0), **settings).frames
    pipe.enable_free_init(num_iters=2)
    frames = pipe(prompts, generator=torch.Generator().manual_seed(0), **settings).frames  # (6, 8, 16, 16, 3)
    assert abs(frames - plain).max() > 0.05
    readings = [analyze_video(clip) for clip in frames]
    captions = [parse_caption(prompt) for prompt in prompts]
    assert (
        sum(
            r.color == c["color"] and r.direction == c["direction"]
            for r, c in zip(readings, captions, strict=True)
        )
        >= 5
    )


def test_the_spatiotemporal_sr_stage_takes_it_and_the_per_frame_stage_refuses_it():
    from test_super_resolution_pipelines import make_pipeline as make_sr_pipeline
    from test_super_resolution_pipelines import upsample

    pipe = make_sr_pipeline("spatiotemporal")
    plain = upsample(pipe, output_type="latent")
    pipe.enable_free_init(num_iters=2)
    assert (upsample(pipe, output_type="latent") - plain).abs().max() > 1e-4
    with pytest.raises(ValueError, match="FreeInit is not available on SpatialSRPipeline"):
        make_sr_pipeline("spatial").enable_free_init()
