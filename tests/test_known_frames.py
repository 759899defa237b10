"""Given frames in the keyframes stage (issue 18): image-to-video, extension and interpolation by replacement
and reconstruction guidance (VDM sec. 3.1), long videos window after window, and bad input."""

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from cascade import KeyframesPipeline
from cascade.models.temporal_layers import TemporalAttention
from cascade.pipelines.known_frames import (
    KnownFrames,
    predicted_sample,
    prediction_from_sample,
    vp_coefficients,
)
from cascade.testing.tiny_models import tiny_keyframes_components

PROMPT = "a red circle moving left"


def make_pipeline(latent=False, **components):
    pipe = KeyframesPipeline(**{**tiny_keyframes_components(latent=latent), **components})
    pipe.set_progress_bar_config(disable=True)
    # Temporal attention starts as the identity, which would leave frames independent: the given frames
    # could then steer nothing. Random output projections let frames see each other, as in a trained model.
    generator = torch.Generator().manual_seed(1)
    for module in pipe.unet.modules():
        if isinstance(module, TemporalAttention):
            with torch.no_grad():
                module.proj_out.weight.copy_(
                    torch.randn(module.proj_out.weight.shape, generator=generator) * 0.3
                )
    return pipe


def generate(pipe, seed=0, **kwargs):
    kwargs = {"num_frames": 5, "num_inference_steps": 3, "output_type": "pt", **kwargs}
    return pipe(PROMPT, generator=torch.Generator().manual_seed(seed), **kwargs).frames  # (B, F, 3, H, W)


def first_frame(pipe, seed=5) -> torch.Tensor:
    size = pipe.default_size
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))  # (3, H, W) in [0, 1]


def vae_round_trip(pipe, image: torch.Tensor) -> torch.Tensor:
    """What the latent stage can give back of ``image`` (3, H, W): its VAE encoding, decoded."""
    pixels = (image * 2 - 1)[None, :, None]  # (1, 3, 1, H, W)
    return (pipe.decode(pipe.encode_frames(pixels, None), None)[0, :, 0] / 2 + 0.5).clamp(0, 1)


def test_vp_coefficients_are_the_training_schedule_and_interpolate_in_log_sigma():
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    for t in (0, 1, 500, 999):
        alpha, sigma = vp_coefficients(scheduler, torch.tensor(t))
        assert alpha == pytest.approx(scheduler.alphas_cumprod[t].sqrt().item(), rel=1e-6)
        assert sigma == pytest.approx((1 - scheduler.alphas_cumprod[t]).sqrt().item(), rel=1e-6)
        assert alpha**2 + sigma**2 == pytest.approx(1.0)
    # halfway between two timesteps in log(sigma / alpha), as Euler's sigmas map to timesteps
    (a0, s0), (a1, s1), (a, s) = (vp_coefficients(scheduler, t) for t in (300, 301, 300.5))
    assert np.log(s / a) == pytest.approx((np.log(s0 / a0) + np.log(s1 / a1)) / 2, rel=1e-9)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_a_prediction_and_the_clean_sample_it_implies_convert_both_ways(kind):
    generator = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(2, 3, 4, generator=generator), torch.randn(2, 3, 4, generator=generator)
    alpha, sigma = 0.6, 0.8
    noisy = alpha * clean + sigma * noise
    exact = {"epsilon": noise, "v_prediction": alpha * noise - sigma * clean, "sample": clean}[kind]
    torch.testing.assert_close(predicted_sample(exact, noisy, alpha, sigma, kind), clean)
    torch.testing.assert_close(prediction_from_sample(clean, noisy, alpha, sigma, kind), exact)


@pytest.mark.parametrize("method", ["reconstruction", "replacement"])
@pytest.mark.parametrize(
    "scheduler_class, prediction_type",
    [
        (DDIMScheduler, "epsilon"),
        (DDIMScheduler, "v_prediction"),
        (EulerDiscreteScheduler, "epsilon"),
        (DPMSolverMultistepScheduler, "v_prediction"),
    ],
)
def test_image_to_video_starts_with_the_image_in_pixel_space(
    pixel_pipe, method, scheduler_class, prediction_type
):
    pipe = make_pipeline(**{k: getattr(pixel_pipe, k) for k in ("unet", "text_encoder", "tokenizer")})
    pipe.scheduler = scheduler_class.from_config(pixel_pipe.scheduler.config, prediction_type=prediction_type)
    image = first_frame(pipe)
    frames = generate(pipe, image=image, conditioning_method=method)
    assert frames.shape == (1, 5, 3, pipe.default_size, pipe.default_size)
    torch.testing.assert_close(frames[0, 0], image, atol=1e-6, rtol=0)
    assert (frames[0, 1:] - image).abs().max() > 0.05  # the rest is generated, not copied


def test_image_to_video_in_latent_space_starts_with_the_image_through_the_vae(latent_pipe):
    pixels = (first_frame(latent_pipe).permute(1, 2, 0).numpy() * 255).astype(np.uint8)  # (H, W, 3)
    frames = generate(latent_pipe, image=PIL.Image.fromarray(pixels))
    image = torch.from_numpy(pixels).permute(2, 0, 1) / 255  # (3, H, W), as the pipeline reads the PIL image
    torch.testing.assert_close(frames[0, 0], vae_round_trip(latent_pipe, image), atol=1e-5, rtol=0)


def test_reconstruction_guidance_moves_the_rest_and_at_weight_zero_is_replacement(pixel_pipe):
    image = first_frame(pixel_pipe)
    replaced = generate(pixel_pipe, image=image, conditioning_method="replacement")
    guided = generate(pixel_pipe, image=image, reconstruction_guidance_scale=20.0)
    unguided = generate(pixel_pipe, image=image, reconstruction_guidance_scale=0.0)
    assert (guided[0, 1:] - replaced[0, 1:]).abs().max() > 1e-2
    # equal up to the float32 rounding of turning the prediction into a clean estimate and back at every step
    torch.testing.assert_close(unguided, replaced, atol=1e-4, rtol=0)


def test_extension_and_interpolation_keep_the_given_frames_where_they_are_put(pixel_pipe):
    given = generate(pixel_pipe, seed=1, num_frames=3)  # (1, 3, 3, H, W)
    extended = generate(pixel_pipe, conditioning_frames=given)
    torch.testing.assert_close(extended[:, :3], given, atol=1e-6, rtol=0)
    spread = generate(pixel_pipe, conditioning_frames=given, conditioning_frame_indices=[0, 2, 4])
    torch.testing.assert_close(spread[:, [0, 2, 4]], given, atol=1e-6, rtol=0)


def test_one_image_per_prompt_and_one_for_all(pixel_pipe):
    images = torch.stack([first_frame(pixel_pipe, seed) for seed in (1, 2)])  # (2, 3, H, W)
    prompts = [PROMPT, "a blue square moving up"]
    per_prompt = pixel_pipe(
        prompts, image=images, num_frames=3, num_inference_steps=2, output_type="pt"
    ).frames
    torch.testing.assert_close(per_prompt[:, 0], images, atol=1e-6, rtol=0)
    shared = pixel_pipe(
        prompts,
        image=images[0],
        num_frames=3,
        num_inference_steps=2,
        num_videos_per_prompt=2,
        output_type="pt",
    ).frames
    assert shared.shape[0] == 4
    torch.testing.assert_close(shared[:, 0], images[0].expand(4, -1, -1, -1), atol=1e-6, rtol=0)


@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_a_long_video_is_made_window_after_window(space, pixel_pipe, latent_pipe):
    pipe = pixel_pipe if space == "pixel" else latent_pipe
    whole = generate(pipe, num_frames=7, output_type="latent")
    assert torch.equal(generate(pipe, num_frames=7, window=7, output_type="latent"), whole)
    assert torch.equal(generate(pipe, num_frames=7, window=16, window_overlap=8, output_type="latent"), whole)
    windows = []
    pipe(
        PROMPT,
        num_frames=7,
        window=4,
        window_overlap=2,
        num_inference_steps=2,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
        callback_on_step_end=lambda p, i, t, tensors: windows.append(tensors["latents"].clone()) or {},
    )
    # windows [0, 4), [2, 6), [3, 7): 2 steps each; each window's last sample starts with the frames it shares
    # with the windows before, as they made them
    assert [w.shape[2] for w in windows] == [4] * 6
    first, second, third = windows[1], windows[3], windows[5]
    torch.testing.assert_close(second[:, :, :2], first[:, :, 2:], atol=1e-6, rtol=0)
    torch.testing.assert_close(third[:, :, :3], second[:, :, 1:], atol=1e-6, rtol=0)
    video = generate(
        pipe, num_frames=7, window=4, window_overlap=2, num_inference_steps=2, output_type="latent"
    )
    torch.testing.assert_close(video, torch.cat([first[:, :, :2], second[:, :, :1], third], dim=2))
    assert (
        video - generate(pipe, num_frames=7, num_inference_steps=2, output_type="latent")
    ).abs().max() > 1e-3


def _bad_inputs(size):
    h, w = size
    good = torch.rand(3, h, w)
    return [
        ({"image": PIL.Image.new("L", (w, h))}, r"`image` must be RGB, got mode L"),
        ({"image": torch.rand(3, h + 8, w)}, rf"`image` frames must be {h}x{w} .*got {h + 8}x{w}"),
        ({"image": "first.png"}, r"`image` must be a PIL image"),
        (
            {"image": good, "conditioning_frames": good[None, None]},
            r"give `image` .* or `conditioning_frames`",
        ),
        ({"conditioning_frame_indices": [0]}, r"`conditioning_frame_indices` needs `conditioning_frames`"),
        (
            {"conditioning_frames": torch.rand(1, 2, 3, h, w), "conditioning_frame_indices": [0, 5]},
            r"`conditioning_frame_indices` must be 2 distinct ints in \[0, num_frames=3\)",
        ),
        (
            {"conditioning_frames": torch.rand(1, 2, 3, h, w), "conditioning_frame_indices": [1, 1]},
            r"`conditioning_frame_indices` must be 2 distinct ints",
        ),
        (
            {"conditioning_frames": torch.rand(1, 4, 3, h, w)},
            r"`conditioning_frame_indices` must be 4 distinct ints in \[0, num_frames=3\)",
        ),
        ({"image": torch.rand(3, 3, h, w)}, r"`image` holds 3 videos but the prompts define a batch of 1"),
        ({"image": good, "conditioning_method": "inpaint"}, r"`conditioning_method` must be one of"),
        ({"image": good, "reconstruction_guidance_scale": -1.0}, r"`reconstruction_guidance_scale` must be"),
        ({"window": 2, "window_overlap": 0}, r"`window_overlap` must be at least 1"),
        ({"window": 0}, r"`window`"),
        ({"window": 2, "window_overlap": 2}, r"`window_overlap`"),
        ({"window": 2, "long_video_method": "loop"}, r"`long_video_method` must be one of"),
        ({"window": 2, "long_video_method": "coarse_to_fine", "fill_strength": 0.0}, r"`fill_strength`"),
        ({"fill_strength": 1.5}, r"`fill_strength`"),
        (
            {"window": 1, "window_overlap": 0, "long_video_method": "coarse_to_fine"},
            r"`window` must be at least 2",
        ),
    ]


@pytest.mark.parametrize("case", range(len(_bad_inputs((8, 8)))))
def test_bad_conditioning_is_rejected_before_any_model_runs(case, pixel_pipe):
    overrides, message = _bad_inputs((pixel_pipe.default_size,) * 2)[case]

    def fail(*args, **kwargs):
        raise AssertionError("a model ran before the input was checked")

    handles = [m.register_forward_pre_hook(fail) for m in (pixel_pipe.unet, pixel_pipe.text_encoder)]
    try:
        with pytest.raises(ValueError, match=message):
            pixel_pipe(PROMPT, num_frames=3, num_inference_steps=2, **overrides)
    finally:
        for handle in handles:
            handle.remove()


def test_reconstruction_guidance_follows_vdm_for_a_model_known_in_closed_form():
    """VDM sec. 3.1 worked by hand for an epsilon model ``eps(z) = 0.5 z + 0.3 mean_frames(z)``: the clean
    estimate ``x^ = (z - sigma eps) / alpha`` of frame ``b`` depends on frame ``a`` only through the mean, so
    ``grad_{z^b} ||x^a - x^^a||^2 / K = sum_a 2 (x^^a - x^a) (-0.3 sigma / (F alpha)) / K``."""
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    timestep, frames = torch.tensor(500), 5
    alpha, sigma = vp_coefficients(scheduler, timestep)
    generator = torch.Generator().manual_seed(0)
    noisy = torch.randn(1, 2, frames, 3, 3, generator=generator)  # (B, C, F, h, w)
    given_at = [0, 3]
    given = torch.randn(1, 2, len(given_at), 3, 3, generator=generator)
    known = KnownFrames(given, given_at, torch.zeros_like(given), "reconstruction", guidance_scale=7.0)

    def predict(z):
        return 0.5 * z + 0.3 * z.mean(dim=2, keepdim=True)

    guided = known.guided_prediction(predict, noisy, slice(0, frames), scheduler, timestep)
    estimate = (noisy - sigma * predict(noisy)) / alpha  # (B, C, F, h, w)
    residual = (estimate[:, :, given_at] - given).sum(dim=2, keepdim=True)  # (B, C, 1, h, w)
    gradient = 2 * residual * (-0.3 * sigma / (frames * alpha)) / len(given_at)  # the same for every frame b
    expected = estimate - (7.0 * alpha / 2) * gradient
    expected[:, :, given_at] = given
    torch.testing.assert_close(predicted_sample(guided, noisy, alpha, sigma, "epsilon"), expected)
