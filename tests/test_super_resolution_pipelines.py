"""SpatioTemporalSRPipeline and SpatialSRPipeline: sizes, noise-level plumbing, windows, same-noise frames,
2D and inflated UNets, frame chunks, determinism and bad input."""

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from cascade import inflate
from cascade.ops.conditioning import noise_augment
from cascade.ops.windows import window_starts
from cascade.pipelines.spatial_sr import SpatialSRPipeline
from cascade.pipelines.spatiotemporal_sr import SpatioTemporalSRPipeline
from cascade.testing.tiny_models import tiny_super_resolution_components, tiny_unet2d

PIPELINES = {"spatiotemporal": SpatioTemporalSRPipeline, "spatial": SpatialSRPipeline}


def make_pipeline(kind, latent=False, inflated=True, **overrides):
    components = tiny_super_resolution_components(latent=latent, inflated=inflated)
    pipe = PIPELINES[kind](**{**components, **overrides})
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipes():
    return {
        (kind, space): make_pipeline(kind, latent=space == "latent")
        for kind in PIPELINES
        for space in ("pixel", "latent")
    }


def low_res_video(batch=1, frames=3, size=8, seed=0):
    """A random video ``(B, F, H, W, 3)`` in [0, 1], as a previous stage's ``np`` output."""
    return np.random.default_rng(seed).random((batch, frames, size, size, 3), dtype=np.float32)


def upsample(pipe, video=None, prompt="a red circle", seed=0, **kwargs):
    video = low_res_video() if video is None else video
    kwargs = {"num_inference_steps": 2, **kwargs}
    return pipe(prompt, video, generator=torch.Generator().manual_seed(seed), **kwargs).frames


def capture_two_prompts(pipe, frames: int, **kwargs) -> "CaptureUNetCalls":
    """The UNet calls of upsampling two videos of ``frames`` frames for the prompts "a" and "b"."""
    with CaptureUNetCalls(pipe.unet) as calls:
        upsample(pipe, low_res_video(batch=2, frames=frames), prompt=["a", "b"], **kwargs)
    return calls


class CaptureUNetCalls:
    """Forward pre-hook that records the sample and class labels of every UNet call."""

    def __init__(self, unet):
        self.samples, self.class_labels = [], []
        self.handle = unet.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.samples.append(args[0].clone())
        self.class_labels.append(kwargs["class_labels"].clone())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.mark.parametrize("kind", PIPELINES)
@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_frames_are_upscaled_and_kept(kind, space, pipes):
    pipe = pipes[kind, space]
    size = 8 * pipe.config.upscale_factor  # 32 in pixel space (x4), 16 in latent space (x VAE factor 2)
    video = low_res_video(frames=5)  # (1, 5, 8, 8, 3)
    frames = upsample(pipe, video)
    assert frames.shape == (1, 5, size, size, 3) and frames.min() >= 0 and frames.max() <= 1
    frames_pt = upsample(pipe, video, output_type="pt")
    np.testing.assert_allclose(frames_pt.permute(0, 1, 3, 4, 2).numpy(), frames, atol=1e-6)
    frames_pil = upsample(pipe, video, output_type="pil")
    assert len(frames_pil) == 1 and len(frames_pil[0]) == 5
    assert all(f.size == (size, size) for f in frames_pil[0])
    latents = upsample(pipe, video, output_type="latent")
    grid = size // pipe.vae_scale_factor
    assert latents.shape == (1, pipe.spatial_unet.config.out_channels, 5, grid, grid)


@pytest.mark.parametrize("kind", PIPELINES)
@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_np_pt_and_pil_videos_give_the_same_frames(kind, space, pipes):
    pipe = pipes[kind, space]
    levels = np.random.default_rng(0).integers(0, 256, (2, 2, 8, 8, 3), dtype=np.uint8)  # (B, F, H, W, 3)
    as_np = levels.astype(np.float32) / 255
    as_pt = torch.from_numpy(as_np).permute(0, 1, 4, 2, 3)  # (B, F, 3, H, W)
    as_pil = [[PIL.Image.fromarray(frame) for frame in video] for video in levels]
    outputs = [upsample(pipe, video, prompt=["a", "b"]) for video in (as_np, as_pt, as_pil)]
    assert outputs[0].shape == (2, 2, 8 * pipe.config.upscale_factor, 8 * pipe.config.upscale_factor, 3)
    assert np.array_equal(outputs[0], outputs[1]) and np.array_equal(outputs[0], outputs[2])


def test_default_upscale_factor_is_the_vae_factor_in_latent_space_and_4_in_pixel_space(pipes):
    assert pipes["spatial", "pixel"].config.upscale_factor == 4
    assert (
        pipes["spatial", "latent"].config.upscale_factor == pipes["spatial", "latent"].vae_scale_factor == 2
    )
    assert pipes["spatial", "pixel"].config.max_noise_level == 350


@pytest.mark.parametrize("kind", PIPELINES)
def test_upscale_factor_is_a_config_entry_that_survives_saving(kind, tmp_path):
    pipe = make_pipeline(kind, upscale_factor=2, inflated=kind == "spatiotemporal")
    frames = upsample(pipe, low_res_video(frames=2))
    assert frames.shape == (1, 2, 16, 16, 3)
    pipe.save_pretrained(tmp_path)
    loaded = PIPELINES[kind].from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.upscale_factor == 2 and type(loaded.unet) is type(pipe.unet)
    assert np.array_equal(upsample(loaded, low_res_video(frames=2)), frames)


@pytest.mark.parametrize("kind", PIPELINES)
@pytest.mark.parametrize("guidance_scale", [1.0, 5.0])
def test_noise_level_reaches_the_unet_as_a_class_label_per_video(kind, guidance_scale, pipes):
    pipe = pipes[kind, "pixel"]
    one_chunk = {"frame_chunk_size": 8} if kind == "spatial" else {}  # the 8 frames of the 4 videos
    calls = capture_two_prompts(
        pipe, 2, noise_level=123, guidance_scale=guidance_scale, num_videos_per_prompt=2, **one_chunk
    )
    copies = 2 if guidance_scale > 1 else 1
    units = 4 if kind == "spatiotemporal" else 8  # videos, or frames folded into the batch
    assert len(calls.class_labels) == 2  # one UNet call per step
    for labels in calls.class_labels:
        assert torch.equal(labels, torch.full((copies * units,), 123))


@pytest.mark.parametrize("kind", PIPELINES)
def test_conditioning_is_the_resized_video_noised_with_the_generator(kind, pipes):
    pipe = pipes[kind, "pixel"]
    video = low_res_video(frames=2)
    with CaptureUNetCalls(pipe.unet) as calls:
        upsample(
            pipe, video, seed=7, noise_level=20, **({"frame_chunk_size": 2} if kind == "spatial" else {})
        )
    sample = calls.samples[0]  # (2, 6, 2, 32, 32) or, frames as images, (2 * 2, 6, 32, 32)
    if kind == "spatial":
        sample = sample.reshape(2, 2, 6, 32, 32).permute(0, 2, 1, 3, 4)  # (2, 6, F, 32, 32)
    unconditional, conditional = sample[:, 3:].chunk(2)  # guidance: both halves see the conditioning
    assert torch.equal(unconditional, conditional)
    low_res = torch.from_numpy(video).permute(0, 4, 1, 2, 3) * 2 - 1  # (1, 3, F, 8, 8)
    resized = F.interpolate(low_res[0].transpose(0, 1), size=(32, 32), mode="bilinear")  # (F, 3, 32, 32)
    resized = resized.transpose(0, 1)[None]  # (1, 3, F, 32, 32)
    expected = noise_augment(
        resized, torch.tensor([20]), pipe.low_res_scheduler, torch.Generator().manual_seed(7)
    )
    assert torch.equal(conditional, expected)


@pytest.mark.parametrize("kind", PIPELINES)
@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_noise_level_zero_conditions_on_the_resized_video_itself(kind, space, pipes):
    # A schedule whose level 0 adds no noise (the x4 upscaler's level 0 adds noise of std sqrt(beta_0)).
    clean_at_zero = DDPMScheduler(num_train_timesteps=1000, beta_start=0.0)
    pipe = PIPELINES[kind](**{**pipes[kind, space].components, "low_res_scheduler": clean_at_zero})
    pipe.set_progress_bar_config(disable=True)
    video = low_res_video(frames=2)
    with CaptureUNetCalls(pipe.unet) as calls:
        upsample(
            pipe,
            video,
            noise_level=0,
            guidance_scale=1.0,
            **({"frame_chunk_size": 2} if kind == "spatial" else {}),
        )
    grid = 8 * pipe.config.upscale_factor // pipe.vae_scale_factor
    channels = pipe.spatial_unet.config.out_channels
    conditioning = calls.samples[0][:, channels:]  # (1, 3, F, grid, grid) or (F, 3, 1, grid, grid)
    low_res = torch.from_numpy(video)[0].permute(0, 3, 1, 2) * 2 - 1  # (F, 3, 8, 8)
    if grid != 8:
        low_res = F.interpolate(low_res, size=(grid, grid), mode="bilinear")  # (F, 3, grid, grid)
    if kind == "spatial":
        conditioning = conditioning.squeeze(2)  # (F, 3, grid, grid): each frame a one-frame video
    else:
        low_res = low_res.transpose(0, 1)[None]  # (1, 3, F, grid, grid)
    assert torch.equal(conditioning, low_res)


def test_a_window_as_long_as_the_video_gives_exactly_the_unwindowed_frames(pipes):
    pipe = pipes["spatiotemporal", "pixel"]
    video = low_res_video(frames=5)
    assert np.array_equal(upsample(pipe, video, window=5), upsample(pipe, video, window=None))


@pytest.mark.parametrize("window, overlap", [(4, 2), (3, 0), (2, 1)])
def test_shorter_windows_produce_every_frame_once(window, overlap, pipes):
    pipe = pipes["spatiotemporal", "pixel"]
    with CaptureUNetCalls(pipe.unet) as calls:
        frames = upsample(
            pipe, low_res_video(frames=9), window=window, window_overlap=overlap, output_type="pt"
        )
    starts = window_starts(9, window, overlap)
    assert [sample.shape[2] for sample in calls.samples] == [window] * len(starts) * 2  # 2 steps
    assert frames.shape[1] == 9 and torch.isfinite(frames).all()


def test_windowed_vae_decoding_equals_decoding_all_frames_at_once(pipes):
    pipe = pipes["spatiotemporal", "latent"]
    video = low_res_video(frames=5)
    np.testing.assert_allclose(
        upsample(pipe, video, decode_chunk_size=2), upsample(pipe, video, decode_chunk_size=5), atol=1e-5
    )


def first_noise(pipe, same_noise, **kwargs):
    """The noisy channels of every frame at the first step ``(B, F, C, h, w)``."""
    calls = capture_two_prompts(
        pipe, 3, guidance_scale=1.0, same_noise_for_all_frames=same_noise, frame_chunk_size=6, **kwargs
    )
    channels = pipe.spatial_unet.config.out_channels
    sample = calls.samples[0][:, :channels]  # (B*F, C, h, w) or (B*F, C, 1, h, w)
    return sample.reshape(2, 3, channels, *sample.shape[-2:])


@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_same_noise_option_starts_all_frames_of_a_video_from_one_noise(space, pipes):
    pipe = pipes["spatial", space]
    same = first_noise(pipe, True)
    assert all(torch.equal(same[:, 0], same[:, i]) for i in (1, 2))
    assert (same[0, 0] - same[1, 0]).abs().max() > 0.1  # each video has its own noise
    independent = first_noise(pipe, False)
    assert all((independent[:, 0] - independent[:, i]).abs().amax() > 0.1 for i in (1, 2))


def test_spatial_sr_with_a_2d_unet_equals_the_same_unet_inflated():
    components = tiny_super_resolution_components(inflated=False)
    flat = SpatialSRPipeline(**components)
    inflated = SpatialSRPipeline(**{**components, "unet": inflate(components["unet"])})
    for pipe in (flat, inflated):
        pipe.set_progress_bar_config(disable=True)
    video = low_res_video(batch=2, frames=3)
    kwargs = {"prompt": ["a", "b"], "num_inference_steps": 3, "output_type": "pt", "frame_chunk_size": 4}
    np.testing.assert_allclose(
        upsample(flat, video, **kwargs), upsample(inflated, video, **kwargs), atol=1e-4
    )


@pytest.mark.parametrize("space", ["pixel", "latent"])
@pytest.mark.parametrize("same_noise", [True, False])
def test_frame_chunks_do_not_change_the_result(space, same_noise, pipes):
    pipe = pipes["spatial", space]
    video = low_res_video(batch=2, frames=3)
    generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
    # One step: float32 kernels round differently for other batch sizes and later DDIM steps amplify it
    # (about 4e-5 after two steps); in float64 two steps agree to 1e-13.
    kwargs = {"num_inference_steps": 1, "same_noise_for_all_frames": same_noise, "output_type": "pt"}
    one = pipe(["a", "b"], video, generator=generators, frame_chunk_size=1, **kwargs).frames
    generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
    every = pipe(["a", "b"], video, generator=generators, frame_chunk_size=6, **kwargs).frames
    np.testing.assert_allclose(one, every, atol=1e-5)


@pytest.mark.parametrize("kind", PIPELINES)
def test_same_seed_same_frames_and_other_seed_other_frames(kind, pipes):
    pipe = pipes[kind, "pixel"]
    first, again, other = upsample(pipe), upsample(pipe), upsample(pipe, seed=1)
    assert np.array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


@pytest.mark.parametrize("kind", PIPELINES)
def test_a_batch_of_two_equals_two_single_runs_even_with_a_stochastic_scheduler(kind, pipes):
    pipe = PIPELINES[kind](**{**pipes[kind, "pixel"].components, "scheduler": DDPMScheduler()})
    pipe.set_progress_bar_config(disable=True)
    video, prompts = low_res_video(batch=2, frames=3), ["a red circle", "a blue square"]
    kwargs = {"num_inference_steps": 2, "output_type": "pt"}
    batch = pipe(
        prompts, video, generator=[torch.Generator().manual_seed(s) for s in (3, 4)], **kwargs
    ).frames
    singles = [
        pipe(p, video[i : i + 1], generator=torch.Generator().manual_seed(s), **kwargs).frames[0]
        for i, (p, s) in enumerate(zip(prompts, (3, 4), strict=True))
    ]
    np.testing.assert_allclose(
        batch, torch.stack(singles), atol=1e-4
    )  # float32 rounding of other batch sizes


def test_spatial_callback_sees_each_step_of_each_chunk(pipes):
    pipe = pipes["spatial", "pixel"]
    seen = []
    upsample(
        pipe,
        low_res_video(frames=5),
        frame_chunk_size=2,
        callback_on_step_end=lambda p, i, t, tensors: seen.append((i, tensors["latents"].shape[0])) or {},
    )
    assert seen == [(0, 2), (1, 2), (0, 2), (1, 2), (0, 1), (1, 1)]


def test_spatiotemporal_callback_can_replace_the_latents(pipes):
    pipe = pipes["spatiotemporal", "pixel"]

    def zero_at_last_step(pipe, step, timestep, tensors):
        return {"latents": torch.zeros_like(tensors["latents"])} if step == pipe.num_timesteps - 1 else {}

    frames = upsample(pipe, window=2, window_overlap=1, callback_on_step_end=zero_at_last_step)
    np.testing.assert_allclose(frames, 0.5, atol=1e-6)  # zero pixels in [-1, 1] are grey


def _bad_inputs(kind):
    embeds = torch.zeros(1, 16, 32)
    cases = [
        ({"video": None}, r"`video` must be an np array \(B, F, H, W, 3\)"),
        ({"video": low_res_video()[0]}, r"`video` must have shape \(B, F, H, W, 3\), got \(3, 8, 8, 3\)"),
        ({"video": low_res_video() + 1}, r"`video` must hold finite floats in \[0, 1\]"),
        ({"video": low_res_video(batch=2)}, r"`video` has 2 videos but the prompts define a batch of 1"),
        ({"noise_level": -1}, r"`noise_level` must be an int in \[0, 350\] .*, got -1"),
        ({"noise_level": 351}, r"`noise_level` must be an int in \[0, 350\] .*, got 351"),
        ({"noise_level": 20.0}, r"`noise_level` must be an int in \[0, 350\] .*, got 20.0"),
        ({"num_inference_steps": 0}, r"`num_inference_steps` must be a positive int, got 0"),
        ({"guidance_scale": -1.0}, r"`guidance_scale` must be a finite number >= 0.0, got -1.0"),
        ({"num_videos_per_prompt": 0}, r"`num_videos_per_prompt` must be a positive int, got 0"),
        ({"prompt": None}, r"Give exactly one of `prompt` and `prompt_embeds`"),
        ({"prompt": None, "prompt_embeds": embeds[..., :5]}, r"`prompt_embeds` must be a tensor of shape"),
        (
            {"generator": [torch.Generator()] * 2},
            r"`generator` is a list of 2 generators but the batch has 1",
        ),
        (
            {"latents": torch.zeros(1, 3, 3, 16, 16)},
            r"`latents` must be a tensor of shape \(1, 3, 3, 32, 32\), got \(1, 3, 3, 16, 16\)",
        ),
        ({"output_type": "gif"}, r"`output_type` must be one of"),
        ({"callback_on_step_end_tensor_inputs": ["noise"]}, r"`callback_on_step_end_tensor_inputs` has"),
        ({"decode_chunk_size": 0}, r"`decode_chunk_size` must be a positive int, got 0"),
    ]
    if kind == "spatiotemporal":
        cases += [
            ({"window": 0}, r"`window` must be a positive int, got 0"),
            ({"window": 2.5}, r"`window` must be a positive int, got 2.5"),
            ({"window_overlap": -1}, r"`window_overlap` must be an int >= 0, got -1"),
            (
                {"window": 4, "window_overlap": 4},
                r"`window_overlap` must be an int in \[0, window=4\), got 4",
            ),
        ]
    else:
        cases += [
            ({"frame_chunk_size": 0}, r"`frame_chunk_size` must be a positive int, got 0"),
            ({"same_noise_for_all_frames": "yes"}, r"`same_noise_for_all_frames` must be a bool, got 'yes'"),
        ]
    return cases


def assert_rejected_before_any_model_runs(pipe, arguments, message):
    def fail(*args, **kwargs):
        raise AssertionError("a model ran before the input was checked")

    models = [pipe.unet, pipe.text_encoder] + ([pipe.vae] if pipe.vae is not None else [])
    handles = [model.register_forward_pre_hook(fail) for model in models]
    try:
        with pytest.raises(ValueError, match=message):
            pipe(**arguments)
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize(
    "kind, case", [(kind, case) for kind in PIPELINES for case in range(len(_bad_inputs(kind)))]
)
def test_bad_input_is_rejected_before_any_model_runs(kind, case, pipes):
    overrides, message = _bad_inputs(kind)[case]
    arguments = {"prompt": "a red circle", "video": low_res_video(), "num_inference_steps": 2, **overrides}
    assert_rejected_before_any_model_runs(pipes[kind, "pixel"], arguments, message)


@pytest.mark.parametrize("kind", PIPELINES)
def test_a_frame_size_the_output_grid_cannot_take_is_rejected(kind, pipes):
    # latent space: x2 to the grid of a VAE of factor 2 and a UNet that halves twice: multiples of 4
    message = (
        r"`video` frames must have a height and width that are multiples of 4 \(upscaled x2, multiples of 8"
    )
    arguments = {"prompt": "a", "video": low_res_video(size=6)}
    assert_rejected_before_any_model_runs(pipes[kind, "latent"], arguments, message)


def test_spatiotemporal_sr_rejects_a_2d_unet(pipes):
    pipe = make_pipeline("spatiotemporal", inflated=False)
    message = (
        r"`unet` must be a cascade VideoUNet for spatiotemporal super-resolution, got UNet2DConditionModel"
    )
    assert_rejected_before_any_model_runs(pipe, {"prompt": "a", "video": low_res_video()}, message)


@pytest.mark.parametrize(
    "unet, message",
    [
        (
            tiny_unet2d(sample_size=8, in_channels=3, out_channels=3),
            r"`unet` reads 3 channels for 3 noisy ones",
        ),
        (
            tiny_unet2d("x4_upscaler", sample_size=8, in_channels=6, out_channels=3, num_class_embeds=None),
            r"`unet` has no class embedding",
        ),
        (
            tiny_unet2d("x4_upscaler", sample_size=8, in_channels=6, out_channels=3, num_class_embeds=100),
            r"`unet` has num_class_embeds=100, too few for max_noise_level=350",
        ),
    ],
)
def test_a_unet_that_cannot_read_the_low_res_video_is_rejected(unet, message):
    pipe = make_pipeline("spatial", inflated=False, unet=unet)
    assert_rejected_before_any_model_runs(pipe, {"prompt": "a", "video": low_res_video()}, message)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"upscale_factor": 0}, r"`upscale_factor` must be a positive int, got 0"),
        ({"max_noise_level": 1000}, r"`max_noise_level` must be an int in \[0, 999\] .*, got 1000"),
    ],
)
def test_bad_options_are_rejected_when_the_pipeline_is_built(options, message):
    with pytest.raises(ValueError, match=message):
        make_pipeline("spatial", **options)
