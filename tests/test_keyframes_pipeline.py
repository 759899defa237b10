"""KeyframesPipeline: outputs, determinism, schedulers, guidance, callbacks and bad input."""

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
)

from cascade import KeyframesPipeline
from cascade.testing.tiny_models import tiny_keyframes_components


def make_pipeline(latent=False, **components):
    pipe = KeyframesPipeline(**{**tiny_keyframes_components(latent=latent), **components})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompt="a red circle moving left", seed=0, **kwargs):
    kwargs = {"num_frames": 3, "num_inference_steps": 2, **kwargs}
    return pipe(prompt, generator=torch.Generator().manual_seed(seed), **kwargs).frames


@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_output_types_have_the_documented_layouts(space, pixel_pipe, latent_pipe):
    pipe = pixel_pipe if space == "pixel" else latent_pipe
    size = 8 * pipe.vae_scale_factor
    frames_np = generate(pipe, num_frames=5)
    assert isinstance(frames_np, np.ndarray) and frames_np.shape == (1, 5, size, size, 3)
    assert frames_np.min() >= 0 and frames_np.max() <= 1
    frames_pt = generate(pipe, num_frames=5, output_type="pt")
    assert frames_pt.shape == (1, 5, 3, size, size)
    np.testing.assert_allclose(frames_pt.permute(0, 1, 3, 4, 2).numpy(), frames_np, atol=1e-6)
    frames_pil = generate(pipe, num_frames=5, output_type="pil")
    assert len(frames_pil) == 1 and len(frames_pil[0]) == 5
    assert all(isinstance(f, PIL.Image.Image) and f.size == (size, size) for f in frames_pil[0])
    latents = generate(pipe, num_frames=5, output_type="latent")
    assert latents.shape == (1, pipe.unet.in_channels, 5, 8, 8)


def test_same_seed_same_frames_and_other_seed_other_frames(pixel_pipe):
    first, again, other = generate(pixel_pipe), generate(pixel_pipe), generate(pixel_pipe, seed=1)
    assert np.array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_a_batch_of_two_equals_two_single_runs(space, pixel_pipe, latent_pipe):
    pipe = pixel_pipe if space == "pixel" else latent_pipe
    prompts = ["a red circle moving left", "a blue square moving up"]
    batch = pipe(
        prompts,
        num_frames=3,
        num_inference_steps=2,
        generator=[torch.Generator().manual_seed(s) for s in (3, 4)],
    ).frames
    singles = [generate(pipe, p, seed=s)[0] for p, s in zip(prompts, (3, 4), strict=True)]
    # Batched float32 kernels round differently from single ones: equal to 1e-4 (measured up to 1.1e-5).
    np.testing.assert_allclose(batch, np.stack(singles), atol=1e-4)


def test_num_videos_per_prompt_multiplies_the_batch(pixel_pipe):
    frames = pixel_pipe(
        ["a", "b"], num_frames=2, num_inference_steps=1, num_videos_per_prompt=3, output_type="pt"
    ).frames
    assert frames.shape[0] == 6
    assert (frames[0] - frames[1]).abs().max() > 1e-3  # different noise for each video of a prompt


def test_encode_prompt_works_in_a_pipeline_of_the_text_components_alone(pixel_pipe):
    """As diffusers' common test does it: the prompt encoded by a pipeline holding only the text encoder and
    tokenizer, the returned names passed to the full pipeline, give the frames of the prompt."""
    import ast
    import inspect
    import textwrap

    components = pixel_pipe.components
    text_only = KeyframesPipeline(
        unet=None, scheduler=None, text_encoder=components["text_encoder"], tokenizer=components["tokenizer"]
    )
    outputs = text_only.encode_prompt("a green triangle", torch.device("cpu"), 2, True)
    tree = ast.parse(textwrap.dedent(inspect.getsource(KeyframesPipeline.encode_prompt)))
    (returned,) = [node.value for node in ast.walk(tree) if isinstance(node, ast.Return)]
    names = [element.id for element in returned.elts]  # every returned value is a name __call__ takes
    assert names == ["prompt_embeds", "negative_prompt_embeds"]
    from_embeds = generate(
        pixel_pipe, None, **dict(zip(names, (o[:1] for o in outputs), strict=True)), num_videos_per_prompt=2
    )
    assert np.array_equal(generate(pixel_pipe, "a green triangle", num_videos_per_prompt=2), from_embeds)
    # without a text encoder, given embeddings take the UNet's dtype
    unet_only = KeyframesPipeline(**{**components, "text_encoder": None, "tokenizer": None})
    embeds, negative = unet_only.encode_prompt(
        None,
        torch.device("cpu"),
        prompt_embeds=outputs[0][:1].double(),
        negative_prompt_embeds=outputs[1][:1],
    )
    assert embeds.dtype == negative.dtype == pixel_pipe.unet.dtype


def test_prompt_embeddings_give_the_same_frames_as_the_prompt(pixel_pipe):
    positive, negative = pixel_pipe.encode_prompt("a green triangle", torch.device("cpu"), 1, True, "blurry")
    from_text = generate(pixel_pipe, "a green triangle", negative_prompt="blurry")
    from_embeds = pixel_pipe(
        prompt_embeds=positive,
        negative_prompt_embeds=negative,
        num_frames=3,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
    ).frames
    assert np.array_equal(from_text, from_embeds)


def test_guidance_combines_conditional_and_unconditional_predictions(pixel_pipe):
    guided = generate(pixel_pipe, guidance_scale=7.5)
    unguided = generate(pixel_pipe, guidance_scale=1.0)
    other_negative = generate(pixel_pipe, guidance_scale=7.5, negative_prompt="a yellow square")
    assert np.abs(guided - unguided).max() > 1e-3
    assert np.abs(guided - other_negative).max() > 1e-3


@pytest.mark.parametrize(
    "scheduler_class", [DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler]
)
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_any_diffusers_scheduler_can_be_swapped_in(pixel_pipe, scheduler_class, prediction_type):
    pipe = make_pipeline(**{k: getattr(pixel_pipe, k) for k in ("unet", "text_encoder", "tokenizer")})
    pipe.scheduler = scheduler_class.from_config(pixel_pipe.scheduler.config, prediction_type=prediction_type)
    seen = []
    pipe(
        "a red circle",
        num_frames=2,
        num_inference_steps=3,
        output_type="latent",
        callback_on_step_end=lambda p, i, t, tensors: seen.append(tensors["latents"].clone()) or {},
    )
    assert len(seen) == 3 and all(torch.isfinite(x).all() for x in seen)
    assert pipe.scheduler.config.prediction_type == prediction_type
    assert type(pipe.scheduler) is scheduler_class


def test_callback_sees_each_step_and_can_replace_latents(pixel_pipe):
    steps = []

    def zero_at_last_step(pipe, step, timestep, tensors):
        steps.append((step, int(timestep), tuple(sorted(tensors))))
        return {"latents": torch.zeros_like(tensors["latents"])} if step == pipe.num_timesteps - 1 else {}

    frames = generate(
        pixel_pipe,
        num_inference_steps=3,
        callback_on_step_end=zero_at_last_step,
        callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"],
    )
    assert [s[0] for s in steps] == [0, 1, 2]
    assert [s[1] for s in steps] == pixel_pipe.scheduler.timesteps.tolist()
    assert all(s[2] == ("latents", "prompt_embeds") for s in steps)
    np.testing.assert_allclose(frames, 0.5, atol=1e-6)  # zero pixels in [-1, 1] are grey


def test_chunked_vae_decoding_equals_decoding_all_frames_at_once(latent_pipe):
    whole = generate(latent_pipe, num_frames=5)
    chunked = generate(latent_pipe, num_frames=5, decode_chunk_size=2)
    np.testing.assert_allclose(whole, chunked, atol=1e-5)


def test_progress_bar_counts_the_steps(capsys):
    pipe = make_pipeline()
    pipe.set_progress_bar_config(disable=False)
    generate(pipe, num_inference_steps=4)
    assert "4/4" in capsys.readouterr().err


def test_model_cpu_offload_follows_the_sequence_and_keeps_the_frames():
    pipe = make_pipeline(latent=True)
    names = pipe.model_cpu_offload_seq.split("->")
    assert set(names) == {"text_encoder", "unet", "vae"} and all(name in pipe.components for name in names)
    reference = generate(pipe)
    pipe.enable_model_cpu_offload(device="cpu")  # the hooks are the same on an accelerator
    assert all(hasattr(getattr(pipe, name), "_hf_hook") for name in names)
    assert np.array_equal(generate(pipe), reference)


@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_saved_pipeline_reloads_and_gives_the_same_frames(space, tmp_path, pixel_pipe, latent_pipe):
    pipe = pixel_pipe if space == "pixel" else latent_pipe
    pipe.save_pretrained(tmp_path)
    assert list(tmp_path.glob("unet/*.safetensors"))
    loaded = KeyframesPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert (loaded.vae is None) == (space == "pixel")
    assert np.array_equal(generate(pipe), generate(loaded))


def _bad_inputs(pipe):
    embeds = torch.zeros(1, 16, pipe.unet.cross_attention_dim)
    return [
        ({"height": 7}, r"`height` must be a multiple of 2 for this model, got 7"),
        ({"width": 0}, r"`width` must be a positive int, got 0"),
        ({"num_frames": 0}, r"`num_frames` must be a positive int, got 0"),
        ({"num_frames": 2.5}, r"`num_frames` must be a positive int, got 2.5"),
        ({"num_inference_steps": -1}, r"`num_inference_steps` must be a positive int, got -1"),
        ({"guidance_scale": -2.0}, r"`guidance_scale` must be a finite number >= 0.0, got -2.0"),
        ({"num_videos_per_prompt": 0}, r"`num_videos_per_prompt` must be a positive int, got 0"),
        ({"prompt": None}, r"Give exactly one of `prompt` and `prompt_embeds`"),
        ({"prompt_embeds": embeds}, r"Give exactly one of `prompt` and `prompt_embeds`"),
        ({"prompt": 3}, r"`prompt` must be a str or a non-empty list of str, got 3"),
        ({"prompt": []}, r"`prompt` must be a str or a non-empty list of str, got \[\]"),
        (
            {"prompt": None, "prompt_embeds": embeds[..., :5]},
            r"`prompt_embeds` must be a tensor of shape \(\*, \*, 32\)",
        ),
        (
            {"prompt": None, "prompt_embeds": embeds, "negative_prompt_embeds": embeds[:, :3]},
            r"`negative_prompt_embeds` must be a tensor of shape \(1, 16, 32\), got \(1, 3, 32\)",
        ),
        (
            {"negative_prompt": ["a", "b"]},
            r"`negative_prompt` has 2 entries but the prompts define a batch of 1",
        ),
        ({"negative_prompt": "x", "negative_prompt_embeds": embeds}, r"at most one of `negative_prompt`"),
        (
            {"generator": [torch.Generator()] * 3},
            r"`generator` is a list of 3 generators but the batch has 1 videos",
        ),
        ({"generator": 42}, r"`generator` must be a torch.Generator or a list of them, got 42"),
        (
            {"latents": torch.zeros(1, 3, 2, 8, 8)},
            r"`latents` must be a tensor of shape \(1, 3, 3, 8, 8\), got \(1, 3, 2, 8, 8\)",
        ),
        ({"output_type": "gif"}, r"`output_type` must be one of \['np', 'pt', 'pil', 'latent'\], got 'gif'"),
        (
            {"callback_on_step_end_tensor_inputs": ["noise"]},
            r"`callback_on_step_end_tensor_inputs` has \['noise'\]",
        ),
        ({"decode_chunk_size": 0}, r"`decode_chunk_size` must be a positive int, got 0"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_inputs(make_pipeline()))))
def test_bad_input_is_rejected_before_any_model_runs(case, pixel_pipe):
    overrides, message = _bad_inputs(pixel_pipe)[case]

    def fail(*args, **kwargs):
        raise AssertionError("a model ran before the input was checked")

    handles = [m.register_forward_pre_hook(fail) for m in (pixel_pipe.unet, pixel_pipe.text_encoder)]
    try:
        with pytest.raises(ValueError, match=message):
            pixel_pipe(**{"prompt": "a red circle", "num_frames": 3, "num_inference_steps": 2, **overrides})
    finally:
        for handle in handles:
            handle.remove()


def test_a_unet_with_conditioning_channels_is_rejected():
    from cascade import inflate
    from cascade.testing.tiny_models import tiny_unet2d

    pipe = make_pipeline(
        unet=inflate(tiny_unet2d(sample_size=8, in_channels=3, out_channels=3), extra_in_channels=2)
    )
    with pytest.raises(ValueError, match="`unet` reads 2 conditioning channels; a keyframes UNet reads none"):
        generate(pipe)


def test_clip_skip_reads_the_prompt_that_many_layers_before_the_last(pixel_pipe):
    tokens = pixel_pipe.tokenizer(
        ["a green triangle"],
        padding="max_length",
        max_length=pixel_pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    with torch.no_grad():
        output = pixel_pipe.text_encoder(tokens, output_hidden_states=True)
        layers = len(output.hidden_states) - 1
        # independent reference: transformers' own hidden states through CLIP's final layer norm
        expected = pixel_pipe.text_encoder.final_layer_norm(output.hidden_states[-2])
    skipped, _ = pixel_pipe.encode_prompt("a green triangle", torch.device("cpu"), 1, False, clip_skip=1)
    torch.testing.assert_close(skipped, expected)
    last, _ = pixel_pipe.encode_prompt("a green triangle", torch.device("cpu"), 1, False, clip_skip=0)
    torch.testing.assert_close(last, output.last_hidden_state)
    assert (skipped - last).abs().max() > 1e-3
    frames = generate(pixel_pipe, "a green triangle", clip_skip=1, output_type="pt")
    assert (frames - generate(pixel_pipe, "a green triangle", output_type="pt")).abs().max() > 1e-4
    for bad in (-1, layers, 1.5):
        with pytest.raises(ValueError, match=r"`clip_skip`"):
            generate(pixel_pipe, "a green triangle", clip_skip=bad)


def test_from_pipe_of_a_text_to_image_pipeline_inflates_its_unet_and_starts_as_it_frame_by_frame():
    from diffusers import StableDiffusionPipeline

    components = tiny_keyframes_components(latent=True)
    image_pipe = StableDiffusionPipeline(
        **{name: components[name] for name in ("vae", "text_encoder", "tokenizer")},
        unet=components["unet"].unet,
        scheduler=DDIMScheduler(num_train_timesteps=1000, steps_offset=1, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    image_pipe.set_progress_bar_config(disable=True)
    pipe = KeyframesPipeline.from_pipe(image_pipe)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.unet).__name__ == "VideoUNet"
    assert pipe.text_encoder is image_pipe.text_encoder and pipe.vae is image_pipe.vae
    frames = 3
    noise = torch.randn(1, 4, frames, 8, 8, generator=torch.Generator().manual_seed(0))  # (1, C, F, h, w)
    settings = {"num_inference_steps": 3, "guidance_scale": 3.0, "output_type": "np"}
    video = pipe("a red circle", num_frames=frames, latents=noise, **settings).frames[0]  # (F, H, W, 3)
    images = image_pipe(
        "a red circle",
        latents=noise[0].permute(1, 0, 2, 3),
        num_images_per_prompt=frames,
        height=16,
        width=16,
        **settings,
    ).images  # (F, H, W, 3): the image model on each frame's noise
    np.testing.assert_allclose(video, images, atol=1e-5)
