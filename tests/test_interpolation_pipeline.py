"""InterpolationPipeline: output layouts, given frames kept, conditioning, replacement, windows and bad input."""

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from cascade.ops.conditioning import masked_frame_conditioning
from cascade.ops.latents import decode_video, encode_video
from cascade.pipelines.interpolation import InterpolationPipeline
from cascade.testing.tiny_models import tiny_interpolation_components, tiny_keyframes_components

PROMPT = "a red circle moving left"


def make_pipeline(latent=False, **components):
    pipe = InterpolationPipeline(**{**tiny_interpolation_components(latent=latent), **components})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipe_for(space, pixel_pipe, latent_pipe):
    return pixel_pipe if space == "pixel" else latent_pipe


def make_video(pipe, num_videos=1, num_frames=3, seed=0):
    """Frames ``(B, F, H, W, 3)`` in [0, 1] on the 8-bit grid, so PIL frames hold exactly the same values."""
    size = 8 * pipe.vae_scale_factor
    values = np.random.default_rng(seed).integers(0, 256, (num_videos, num_frames, size, size, 3))
    return values.astype(np.float32) / 255.0


def interpolate(pipe, video, prompt=PROMPT, seed=0, **kwargs):
    kwargs = {"interpolation_factor": 2, "num_inference_steps": 2, **kwargs}
    return pipe(prompt, video, generator=torch.Generator().manual_seed(seed), **kwargs).frames


@torch.no_grad()
def given_latents(pipe, video):
    """The given frames as the sample holds them ``(B, C, F, h, w)``: pixels in [-1, 1], or VAE latents."""
    pixels = torch.from_numpy(video).permute(0, 4, 1, 2, 3) * 2 - 1  # (B, 3, F, H, W)
    return pixels if pipe.vae is None else encode_video(pipe.vae, pixels, None)


def capture_unet_inputs(pipe):
    """Records each UNet input ``(B, C, F, h, w)``; returns the list and the hook handle."""
    inputs = []
    handle = pipe.unet.register_forward_pre_hook(lambda module, args: inputs.append(args[0].clone()))
    return inputs, handle


@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_output_types_have_the_documented_layouts(space, pixel_pipe, latent_pipe):
    pipe = pipe_for(space, pixel_pipe, latent_pipe)
    video = make_video(pipe, num_frames=3)
    size = video.shape[2]
    frames_np = interpolate(pipe, video, interpolation_factor=3)
    assert isinstance(frames_np, np.ndarray) and frames_np.shape == (1, 7, size, size, 3)
    assert frames_np.min() >= 0 and frames_np.max() <= 1
    frames_pt = interpolate(pipe, video, interpolation_factor=3, output_type="pt")
    assert frames_pt.shape == (1, 7, 3, size, size)
    np.testing.assert_allclose(frames_pt.permute(0, 1, 3, 4, 2).numpy(), frames_np, atol=1e-6)
    frames_pil = interpolate(pipe, video, interpolation_factor=3, output_type="pil")
    assert len(frames_pil) == 1 and len(frames_pil[0]) == 7
    assert all(isinstance(f, PIL.Image.Image) and f.size == (size, size) for f in frames_pil[0])
    latents = interpolate(pipe, video, interpolation_factor=3, output_type="latent")
    assert latents.shape == (1, pipe.unet.in_channels, 7, 8, 8)


def test_np_pt_and_pil_inputs_give_the_same_frames(pixel_pipe):
    video = make_video(pixel_pipe, num_videos=2)
    as_pil = [[PIL.Image.fromarray(np.round(f * 255).astype(np.uint8)) for f in v] for v in video]
    from_np = interpolate(pixel_pipe, video, prompt=["a", "b"])
    from_pt = interpolate(pixel_pipe, torch.from_numpy(video).permute(0, 1, 4, 2, 3), prompt=["a", "b"])
    from_pil = interpolate(pixel_pipe, as_pil, prompt=["a", "b"])
    assert from_np.shape == (2, 5, 8, 8, 3)
    assert np.array_equal(from_np, from_pt) and np.array_equal(from_np, from_pil)
    one_video = interpolate(pixel_pipe, as_pil[0], prompt="a")  # a plain list of frames is one video
    assert np.array_equal(one_video, interpolate(pixel_pipe, video[:1], prompt="a"))


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_given_frames_come_out_exactly_in_pixel_space(factor, pixel_pipe):
    video = make_video(pixel_pipe, num_frames=4)
    video[0, 1] = np.random.default_rng(1).random(video.shape[2:], dtype=np.float32)  # off the 8-bit grid
    frames = interpolate(pixel_pipe, video, interpolation_factor=factor)
    assert frames.shape[1] == 3 * factor + 1
    assert np.array_equal(frames[:, ::factor], video)
    frames_pt = interpolate(pixel_pipe, torch.from_numpy(video).permute(0, 1, 4, 2, 3), output_type="pt")
    assert torch.equal(frames_pt[:, ::2], torch.from_numpy(video).permute(0, 1, 4, 2, 3))
    frames_pil = interpolate(pixel_pipe, video, output_type="pil")
    for i in range(4):
        assert np.array_equal(np.asarray(frames_pil[0][2 * i]), np.round(video[0, i] * 255).astype(np.uint8))


def test_given_frames_come_out_as_a_vae_round_trip_in_latent_space(latent_pipe):
    video = make_video(latent_pipe, num_frames=3)
    frames = interpolate(latent_pipe, video)
    latents = given_latents(latent_pipe, video)
    with torch.no_grad():
        round_trip = (decode_video(latent_pipe.vae, latents, None) / 2 + 0.5).clamp(0, 1)  # (B, 3, F, H, W)
    round_trip = round_trip.permute(0, 2, 3, 4, 1).numpy()  # (B, F, H, W, 3)
    np.testing.assert_allclose(frames[:, ::2], round_trip, atol=1e-5)
    output_latents = interpolate(latent_pipe, video, output_type="latent")
    torch.testing.assert_close(output_latents[:, :, ::2], latents, atol=1e-6, rtol=0)


def test_same_seed_same_frames_and_other_seed_other_new_frames(pixel_pipe):
    video = make_video(pixel_pipe)
    first, again, other = (interpolate(pixel_pipe, video, seed=s) for s in (0, 0, 1))
    assert np.array_equal(first, again)
    assert np.abs(first[:, 1::2] - other[:, 1::2]).max() > 1e-3
    assert np.array_equal(first[:, ::2], other[:, ::2])


@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_the_unet_reads_the_given_frames_and_their_mask(space, pixel_pipe, latent_pipe):
    pipe = pipe_for(space, pixel_pipe, latent_pipe)
    video = make_video(pipe)
    inputs, handle = capture_unet_inputs(pipe)
    try:
        interpolate(pipe, video, guidance_scale=4.0)
    finally:
        handle.remove()
    frames, mask = masked_frame_conditioning(
        given_latents(pipe, video), 2
    )  # (B, C, 5, h, w), (B, 1, 5, h, w)
    expected = torch.cat([frames, mask], dim=1).repeat(2, 1, 1, 1, 1)  # unconditional and conditional halves
    channels = pipe.unet.in_channels
    assert len(inputs) == 2
    for model_input in inputs:  # (2B, C + C + 1, 5, h, w)
        assert model_input.shape[1] == 2 * channels + 1
        torch.testing.assert_close(model_input[:, channels:], expected, atol=1e-6, rtol=0)
    assert mask[0, 0, :, 0, 0].tolist() == [1, 0, 1, 0, 1]


def test_a_blend_filled_pipeline_feeds_the_blend_and_keeps_its_fill_when_saved(tmp_path):
    pipe = make_pipeline(conditioning_fill="blend")
    video = make_video(pipe)
    inputs, handle = capture_unet_inputs(pipe)
    try:
        reference = interpolate(pipe, video, guidance_scale=1.0)
    finally:
        handle.remove()
    frames, mask = masked_frame_conditioning(given_latents(pipe, video), 2, fill="blend")  # (B, 4, 5, h, w)
    assert frames[:, :, 1].abs().sum() > 0  # not zeros between the given frames
    for model_input in inputs:  # (B, 3 + 3 + 1, 5, h, w)
        torch.testing.assert_close(model_input[:, 3:], torch.cat([frames, mask], dim=1), atol=1e-6, rtol=0)
    pipe.save_pretrained(tmp_path)
    loaded = InterpolationPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.conditioning_fill == "blend"
    assert np.array_equal(interpolate(loaded, video, guidance_scale=1.0), reference)
    with pytest.raises(
        ValueError, match="`conditioning_fill` must be one of \\['zeros', 'blend'\\], got 'linear'"
    ):
        make_pipeline(conditioning_fill="linear")


def test_strength_starts_from_the_noised_blend_and_runs_that_share_of_the_steps(pixel_pipe):
    video = make_video(pixel_pipe)
    noise = torch.randn(1, 3, 5, 8, 8, generator=torch.Generator().manual_seed(5))
    inputs, handle = capture_unet_inputs(pixel_pipe)
    try:
        frames = interpolate(pixel_pipe, video, num_inference_steps=4, strength=0.5, latents=noise)
    finally:
        handle.remove()
    assert len(inputs) == 2  # int(4 * 0.5) steps
    scheduler = pixel_pipe.scheduler
    scheduler.set_timesteps(4)
    blend, _ = masked_frame_conditioning(given_latents(pixel_pipe, video), 2, fill="blend")
    expected = scheduler.add_noise(blend, noise, scheduler.timesteps[2:3])  # DDIM: inputs are not scaled
    torch.testing.assert_close(inputs[0][:1, :3], expected, atol=1e-6, rtol=0)
    full = interpolate(pixel_pipe, video, num_inference_steps=4, latents=noise)
    assert np.array_equal(frames[:, ::2], full[:, ::2])  # the given frames still come out as given
    assert np.abs(frames[:, 1::2] - full[:, 1::2]).max() > 1e-3
    inputs, handle = capture_unet_inputs(pixel_pipe)
    try:
        interpolate(pixel_pipe, video, num_inference_steps=4, strength=0.1)
    finally:
        handle.remove()
    assert len(inputs) == 1  # int(4 * 0.1) = 0, but at least one step runs
    for strength in (0.0, 1.5, True):
        with pytest.raises(ValueError, match="`strength` must be a number in \\(0, 1\\]"):
            interpolate(pixel_pipe, video, num_inference_steps=4, strength=strength)


def test_given_frames_are_replaced_by_their_noised_values_after_each_step(pixel_pipe):
    video = make_video(pixel_pipe)
    noise = torch.randn(1, 3, 5, 8, 8, generator=torch.Generator().manual_seed(5))
    inputs, handle = capture_unet_inputs(pixel_pipe)
    try:
        latents = interpolate(pixel_pipe, video, num_inference_steps=3, latents=noise, output_type="latent")
    finally:
        handle.remove()
    known = given_latents(pixel_pipe, video)
    timesteps = pixel_pipe.scheduler.timesteps
    assert len(inputs) == 3 and torch.equal(
        inputs[0][:1, :3], noise
    )  # DDIM: initial sigma 1, no input scaling
    for step in (1, 2):
        noisy = inputs[step][:1, :3]  # the conditional half's noisy channels
        expected = pixel_pipe.scheduler.add_noise(known, noise[:, :, ::2], timesteps[step : step + 1])
        torch.testing.assert_close(noisy[:, :, ::2], expected, atol=1e-6, rtol=0)
    assert torch.equal(latents[:, :, ::2], known)  # clean after the last step


@pytest.mark.parametrize(
    "scheduler_class", [DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler]
)
def test_replacement_works_with_any_diffusers_scheduler(scheduler_class, pixel_pipe):
    pipe = make_pipeline(**{k: getattr(pixel_pipe, k) for k in ("unet", "text_encoder", "tokenizer")})
    pipe.scheduler = scheduler_class.from_config(pixel_pipe.scheduler.config)
    video = make_video(pipe)
    latents = interpolate(pipe, video, num_inference_steps=3, output_type="latent")
    assert torch.isfinite(latents).all()
    assert torch.equal(latents[:, :, ::2], given_latents(pipe, video))


@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_a_window_as_long_as_the_video_equals_no_window(space, pixel_pipe, latent_pipe):
    pipe = pipe_for(space, pixel_pipe, latent_pipe)
    video = make_video(pipe, num_frames=4)
    assert np.array_equal(interpolate(pipe, video), interpolate(pipe, video, window=7))


@pytest.mark.parametrize(("window", "overlap", "calls"), [(5, None, 3), (3, None, 4), (5, 1, 2), (7, 3, 2)])
def test_shorter_windows_start_and_end_on_given_frames(window, overlap, calls, pixel_pipe):
    video = make_video(pixel_pipe, num_frames=5)  # 9 output frames
    inputs, handle = capture_unet_inputs(pixel_pipe)
    try:
        frames = interpolate(pixel_pipe, video, num_inference_steps=1, window=window, window_overlap=overlap)
    finally:
        handle.remove()
    assert frames.shape == (1, 9, 8, 8, 3) and np.isfinite(frames).all()
    assert np.array_equal(frames[:, ::2], video)
    assert len(inputs) == calls
    for model_input in inputs:  # (2B, 3 + 3 + 1, window, h, w)
        assert model_input.shape[2] == window
        mask = model_input[0, -1, :, 0, 0]  # (window,)
        assert mask[0] == 1 and mask[-1] == 1


def test_num_videos_per_prompt_repeats_the_video(pixel_pipe):
    video = make_video(pixel_pipe)
    frames = interpolate(pixel_pipe, video, num_videos_per_prompt=3)
    assert frames.shape == (3, 5, 8, 8, 3)
    assert all(np.array_equal(f[::2], video[0]) for f in frames)
    assert np.abs(frames[0] - frames[1]).max() > 1e-3  # different noise for each interpolation


def test_a_batch_of_two_equals_two_single_runs(latent_pipe):
    video = make_video(latent_pipe, num_videos=2)
    prompts = ["a red circle moving left", "a blue square moving up"]
    batch = latent_pipe(
        prompts,
        video,
        interpolation_factor=2,
        num_inference_steps=2,
        generator=[torch.Generator().manual_seed(s) for s in (3, 4)],
    ).frames
    singles = [interpolate(latent_pipe, video[i : i + 1], prompts[i], seed=3 + i)[0] for i in range(2)]
    np.testing.assert_allclose(batch, np.stack(singles), atol=1e-5)


def test_callback_sees_the_replaced_frames_and_only_what_it_asked_for(pixel_pipe):
    video = make_video(pixel_pipe)
    known = given_latents(pixel_pipe, video)
    seen = []

    def record(pipe, step, timestep, tensors):
        seen.append(sorted(tensors))
        return {}

    interpolate(
        pixel_pipe, video, callback_on_step_end=record, callback_on_step_end_tensor_inputs=["prompt_embeds"]
    )
    assert seen == [["prompt_embeds"], ["prompt_embeds"]]

    def zero_at_last_step(pipe, step, timestep, tensors):
        if step < pipe.num_timesteps - 1:
            return {}
        assert torch.equal(tensors["latents"][:, :, ::2], known)
        return {"latents": torch.zeros_like(tensors["latents"])}

    latents = interpolate(pixel_pipe, video, callback_on_step_end=zero_at_last_step, output_type="latent")
    assert torch.equal(latents, torch.zeros_like(latents))  # the callback has the last word


def test_chunked_vae_encoding_and_decoding_equals_all_frames_at_once(latent_pipe):
    video = make_video(latent_pipe, num_frames=3)
    np.testing.assert_allclose(
        interpolate(latent_pipe, video), interpolate(latent_pipe, video, decode_chunk_size=2), atol=1e-5
    )


@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_saved_pipeline_reloads_and_gives_the_same_frames(space, tmp_path, pixel_pipe, latent_pipe):
    pipe = pipe_for(space, pixel_pipe, latent_pipe)
    pipe.save_pretrained(tmp_path)
    loaded = InterpolationPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert (loaded.vae is None) == (space == "pixel")
    video = make_video(pipe)
    assert np.array_equal(interpolate(pipe, video), interpolate(loaded, video))


def test_cpu_offload_sequence_names_every_model_component(pixel_pipe):
    names = pixel_pipe.model_cpu_offload_seq.split("->")
    assert set(names) == {"text_encoder", "unet", "vae"}
    assert all(name in pixel_pipe.components for name in names)


def _bad_inputs():
    video = np.full((1, 3, 8, 8, 3), 0.5, dtype=np.float32)
    embeds = torch.zeros(1, 16, 32)
    frames = [PIL.Image.new("RGB", (8, 8))] * 3
    return [
        ({"video": None}, r"`video` must be an np array \(B, F, H, W, 3\), a tensor .* got NoneType"),
        ({"video": video[0]}, r"`video` must have shape \(B, F, H, W, 3\), got \(3, 8, 8, 3\)"),
        (
            {"video": torch.zeros(1, 3, 8, 8, 3)},
            r"`video` must have shape \(B, F, 3, H, W\), got \(1, 3, 8, 8, 3\)",
        ),
        ({"video": video * 3}, r"`video` must hold finite floats in \[0, 1\]"),
        ({"video": (video * 255).astype(np.uint8)}, r"`video` must hold finite floats in \[0, 1\]"),
        ({"video": [frames, frames[:2]]}, r"`video`: every video must have the same number of frames"),
        ({"video": video[:, :1]}, r"`video` must have at least 2 frames to interpolate between, got 1"),
        (
            {"video": video[:, :, :7]},
            r"`video` frames must have a height and width that are multiples of 2 .* got 7x8",
        ),
        (
            {"video": np.concatenate([video, video])},
            r"`video` has 2 videos but the prompts define a batch of 1",
        ),
        ({"prompt": ["a", "b"]}, r"`video` has 1 videos but the prompts define a batch of 2"),
        ({"interpolation_factor": 0}, r"`interpolation_factor` must be a positive int, got 0"),
        ({"interpolation_factor": 2.0}, r"`interpolation_factor` must be a positive int, got 2.0"),
        ({"interpolation_factor": True}, r"`interpolation_factor` must be a positive int, got True"),
        (
            {"window": 4},
            r"`window` must be None or m \* interpolation_factor \+ 1 .* \(here 3, 5, 7, \.\.\.\).* got 4",
        ),
        ({"window": 1}, r"`window` must be None or m \* interpolation_factor \+ 1 .* got 1"),
        ({"window": 5.0}, r"`window` must be None or m \* interpolation_factor \+ 1 .* got 5.0"),
        (
            {"window": 5, "window_overlap": 2},
            r"`window_overlap` must be j \* interpolation_factor \+ 1 .* window=5 .* got 2",
        ),
        (
            {"window": 5, "window_overlap": 5},
            r"`window_overlap` must be j \* interpolation_factor \+ 1 .* got 5",
        ),
        (
            {"window": 5, "window_overlap": 0},
            r"`window_overlap` must be j \* interpolation_factor \+ 1 .* got 0",
        ),
        ({"window_overlap": 3}, r"`window_overlap` needs a `window`, got window_overlap=3"),
        ({"num_inference_steps": 0}, r"`num_inference_steps` must be a positive int, got 0"),
        ({"guidance_scale": -2.0}, r"`guidance_scale` must be a finite number >= 0.0, got -2.0"),
        ({"num_videos_per_prompt": 0}, r"`num_videos_per_prompt` must be a positive int, got 0"),
        ({"prompt": None}, r"Give exactly one of `prompt` and `prompt_embeds`"),
        ({"prompt": 3}, r"`prompt` must be a str or a non-empty list of str, got 3"),
        (
            {"prompt": None, "prompt_embeds": embeds, "negative_prompt_embeds": embeds[:, :3]},
            r"`negative_prompt_embeds` must be a tensor of shape \(1, 16, 32\), got \(1, 3, 32\)",
        ),
        (
            {"negative_prompt": ["a", "b"]},
            r"`negative_prompt` has 2 entries but the prompts define a batch of 1",
        ),
        (
            {"generator": [torch.Generator()] * 2},
            r"`generator` is a list of 2 generators but the batch has 1 videos",
        ),
        (
            {"latents": torch.zeros(1, 3, 3, 8, 8)},
            r"`latents` must be a tensor of shape \(1, 3, 5, 8, 8\), got \(1, 3, 3, 8, 8\)",
        ),
        ({"output_type": "gif"}, r"`output_type` must be one of \['np', 'pt', 'pil', 'latent'\], got 'gif'"),
        (
            {"callback_on_step_end_tensor_inputs": ["noise"]},
            r"`callback_on_step_end_tensor_inputs` has \['noise'\]",
        ),
        ({"decode_chunk_size": 0}, r"`decode_chunk_size` must be a positive int, got 0"),
    ]


def _models_must_not_run(pipe):
    def fail(*args, **kwargs):
        raise AssertionError("a model ran before the input was checked")

    models = [m for m in (pipe.unet, pipe.text_encoder, pipe.vae) if m is not None]
    return [m.register_forward_pre_hook(fail) for m in models]


@pytest.mark.parametrize("case", range(len(_bad_inputs())))
def test_bad_input_is_rejected_before_any_model_runs(case, pixel_pipe):
    overrides, message = _bad_inputs()[case]
    arguments = {"prompt": "a red circle", "video": np.full((1, 3, 8, 8, 3), 0.5, dtype=np.float32)}
    handles = _models_must_not_run(pixel_pipe)
    try:
        with pytest.raises(ValueError, match=message):
            pixel_pipe(**{**arguments, "interpolation_factor": 2, "num_inference_steps": 2, **overrides})
    finally:
        for handle in handles:
            handle.remove()


def test_latent_frames_must_be_a_multiple_of_the_vae_and_unet_factors(latent_pipe):
    handles = _models_must_not_run(latent_pipe)
    try:
        with pytest.raises(ValueError, match=r"multiples of 4 for this model, got 6x8"):
            latent_pipe("a red circle", np.zeros((1, 2, 6, 8, 3), dtype=np.float32))
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("latent", [False, True])
def test_a_unet_without_the_mask_channels_is_rejected(latent):
    pipe = make_pipeline(latent=latent, unet=tiny_keyframes_components(latent=latent)["unet"])
    channels = 4 if latent else 3
    with pytest.raises(
        ValueError, match=rf"`unet` must denoise {channels} channels and read {channels + 1} conditioning"
    ):
        interpolate(pipe, make_video(pipe))
