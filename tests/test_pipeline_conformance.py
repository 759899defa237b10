"""Conformance with diffusers' common pipeline tests, in this project's words.

diffusers checks every pipeline it ships with shared mixins (``PipelineTesterMixin``, ``SDFunctionTesterMixin``,
``PipelineFromPipeTesterMixin`` and ``IPAdapterTesterMixin`` in its ``tests/pipelines/test_pipelines_common.py``;
AnimateDiff, the closest diffusers pipeline to ours, combines all four). This file asserts the behaviour each of
their checks asserts, for the four stage pipelines (in pixel space and in a VAE's latent space) and, where the
check means something for it, for :class:`cascade.CascadePipeline`; it reuses none of their code. The tolerances
are diffusers' own; no output is hard-coded (diffusers compares AnimateDiff to a fixed slice of numbers: here every
check compares two runs of ours). Our name for ``num_images_per_prompt`` is ``num_videos_per_prompt``, as in
diffusers' video pipelines.

Checks that need an accelerator (float16 inference and saving, ``to(device)``, model and sequential CPU offload,
xformers, group offloading) are written to run where CUDA is, and skipped elsewhere, as diffusers skips them on
a CPU. Checks that do not apply say why in ``test_a_check_that_does_not_apply``.

The one deliberate difference: our ``from_pretrained`` loads safetensors only, unless ``use_safetensors=False``
(diffusers falls back to pickled ``.bin`` weights by itself). diffusers' checks save with
``safe_serialization=False`` and load with no argument; here a pipeline saved that way is refused without
``use_safetensors=False`` and loads to the same output with it (``test_pickled_weights_load_only_when_asked_for``),
and every other round trip saves safetensors, the default.
"""

import contextlib
import inspect
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel

from cascade import CascadePipeline
from cascade.models.video_unet import VideoUNet
from cascade.pipelines.stages import STAGE_NAMES, stage
from cascade.testing.tiny_models import (
    FAST_STAGE_DEFAULTS,
    tiny_cascade_stages,
    tiny_interpolation_components,
    tiny_keyframes_components,
    tiny_super_resolution_components,
)

PROMPT = "a red circle moving left"
LONG_PROMPT = "very long " * 100  # far past the tokenizer's 16 tokens
STEPS = 2
SPACES = ("pixel", "latent")
CASES = [pytest.param(name, space, id=f"{name}-{space}") for name in STAGE_NAMES for space in SPACES]
LATENT_CASES = [pytest.param(name, "latent", id=f"{name}-latent") for name in STAGE_NAMES]
PIXEL_CASES = [pytest.param(name, "pixel", id=f"{name}-pixel") for name in STAGE_NAMES]
STAGE_SETTINGS = {  # each stage's quickest call: 2 keyframes, 2 frames to 3, 2 low-resolution frames upsampled
    "keyframes": {"num_frames": 2},
    "interpolation": {"interpolation_factor": 2},
    "spatiotemporal_sr": {},
    "spatial_sr": {},
}
# input frames of the super-resolution stages: 16 px out in pixel space (x4), 8 in latent space (x2)
LOW_RES_SIZE = 4
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA, as diffusers' checks do")


def components(name: str, space: str) -> dict:
    """The tiny components a stage pipeline is built from (its ``__init__`` arguments)."""
    latent = space == "latent"
    if name == "keyframes":
        return tiny_keyframes_components(latent=latent)
    if name == "interpolation":
        return tiny_interpolation_components(latent=latent)
    return tiny_super_resolution_components(latent=latent, inflated=name == "spatiotemporal_sr")


def make_pipeline(name: str, space: str):
    pipe = stage(name).pipeline_class(**components(name, space))
    pipe.set_progress_bar_config(disable=True)
    return pipe


CASCADE_STAGES = (
    "keyframes",
    "interpolation",
    "spatiotemporal_sr",
)  # spatial SR to 128 px would take seconds


def make_cascade() -> CascadePipeline:
    """A tiny cascade, one step a stage, no guidance: 2 keyframes of 8 px to 5 frames of 32 px."""
    stages = tiny_cascade_stages()
    cascade = CascadePipeline(
        stage_defaults={name: FAST_STAGE_DEFAULTS[name] for name in CASCADE_STAGES},
        **{name: stages[name] for name in CASCADE_STAGES},
    )
    cascade.set_progress_bar_config(disable=True)
    return cascade


def name_of(pipe) -> str:
    return next(name for name in STAGE_NAMES if type(pipe) is stage(name).pipeline_class)


def input_video(pipe, videos: int) -> np.ndarray:
    """The same 2-frame video ``videos`` times ``(B, 2, H, W, 3)``: keyframes for interpolation, a low-resolution
    video for super-resolution."""
    size = 8 * pipe.vae_scale_factor if name_of(pipe) == "interpolation" else LOW_RES_SIZE
    video = np.random.default_rng(0).random((1, 2, size, size, 3), dtype=np.float32)
    return np.repeat(video, videos, axis=0)


def generators(seeds):
    """A seeded generator, or a list of them (one per video)."""
    if isinstance(seeds, int):
        return torch.Generator().manual_seed(seeds)
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def stage_inputs(pipe, prompt=PROMPT, seed=0, **overrides) -> dict:
    """A stage call's arguments: ``prompt`` (a str or a batch), a video per prompt for a stage that takes one,
    ``STEPS`` steps, numpy frames and ``seed`` (an int or one per video)."""
    name = name_of(pipe)
    inputs = {
        "prompt": prompt,
        "num_inference_steps": STEPS,
        "generator": generators(seed),
        "output_type": "np",
        **STAGE_SETTINGS[name],
    }
    if stage(name).takes_video:
        inputs["video"] = input_video(pipe, len(prompt) if isinstance(prompt, list) else 1)
    return {**inputs, **overrides}


def run(pipe, **overrides):
    """The frames of a stage call (or the cascade's) with the inputs of :func:`stage_inputs` and ``overrides``."""
    if isinstance(pipe, CascadePipeline):
        output = pipe(**{"prompt": PROMPT, "generator": generators(0), **overrides})
    else:
        output = pipe(**stage_inputs(pipe, **overrides))
    return output if isinstance(output, tuple) else output.frames


def max_difference(first, second) -> float:
    return float(np.abs(np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)).max())


def module_components(pipe) -> dict:
    """The pipeline's ``nn.Module`` components by name (a cascade's: every stage's, as ``stage.component``)."""
    if isinstance(pipe, CascadePipeline):
        return {
            f"{name}.{key}": module
            for name, stage_pipe in pipe.stages.items()
            for key, module in module_components(stage_pipe).items()
        }
    return {name: c for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}


def unets(pipe) -> list:
    return [p.unet for p in pipe.stages.values()] if isinstance(pipe, CascadePipeline) else [pipe.unet]


def load(pipe, folder, **kwargs):
    loaded = type(pipe).from_pretrained(folder, **kwargs)
    loaded.set_progress_bar_config(disable=True)
    return loaded


@pytest.fixture(scope="module")
def shared():
    """``shared(name, space)``: one pipeline per stage and space for the checks that leave it as they found it
    (``shared("cascade")``: the tiny cascade)."""
    built = {}

    def get(name: str, space: str = "pixel"):
        if (name, space) not in built:
            built[name, space] = make_cascade() if name == "cascade" else make_pipeline(name, space)
        return built[name, space]

    return get


@pytest.fixture(scope="module")
def reference(shared):
    """``reference(name, space)``: the frames of the shared pipeline's call with the default inputs."""
    outputs = {}

    def get(name: str, space: str = "pixel"):
        if (name, space) not in outputs:
            outputs[name, space] = run(shared(name, space))
        return outputs[name, space]

    return get


@pytest.fixture(scope="module")
def saved(shared, tmp_path_factory):
    """``saved(name, space)``: a folder holding the shared pipeline saved the default way (safetensors)."""
    folders = {}

    def get(name: str, space: str = "pixel") -> Path:
        if (name, space) not in folders:
            folders[name, space] = tmp_path_factory.mktemp(f"{name}-{space}")
            shared(name, space).save_pretrained(folders[name, space])
        return folders[name, space]

    return get


CASCADE_CASE = pytest.param("cascade", "pixel", id="cascade")
WITH_CASCADE = [*CASES, CASCADE_CASE]


# --- the call: its signature, batches, outputs, guidance and callbacks -----------------------------------------


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_call_signature_has_the_inputs_and_the_optional_inputs_with_defaults(name):
    parameters = inspect.signature(stage(name).pipeline_class.__call__).parameters
    inputs = {"prompt", "negative_prompt", "guidance_scale", "prompt_embeds", "negative_prompt_embeds"}
    inputs |= {"cross_attention_kwargs"}
    inputs |= {"height", "width"} if name == "keyframes" else {"video"}  # a later stage's size is its video's
    assert inputs <= set(parameters)
    optional = {"num_inference_steps", "num_videos_per_prompt", "generator", "latents", "output_type"}
    optional |= {"return_dict", "callback_on_step_end", "callback_on_step_end_tensor_inputs"}
    assert all(parameters[p].default is not inspect.Parameter.empty for p in optional)
    assert "num_images_per_prompt" not in parameters  # a video pipeline's name for it: num_videos_per_prompt


def test_cascade_call_signature_has_the_inputs_and_the_optional_inputs_with_defaults():
    parameters = inspect.signature(CascadePipeline.__call__).parameters
    assert {"prompt", "negative_prompt", "video"} <= set(parameters)
    optional = {"generator", "seed", "output_type", "return_dict", "stage_kwargs"}
    assert all(parameters[p].default is not inspect.Parameter.empty for p in optional)


def batch_of_prompts(size: int) -> list[str]:
    """``size`` prompts, the first the single call's, the last far longer than the tokenizer takes."""
    prompts = [PROMPT[: len(PROMPT) // (i + 1)] for i in range(size)]
    prompts[-1] = LONG_PROMPT
    return prompts


@pytest.mark.parametrize(("name", "space"), WITH_CASCADE)
def test_a_batch_with_a_very_long_prompt_gives_one_video_per_prompt(name, space, shared):
    pipe = shared(name, space)
    if name == "cascade":
        frames = run(pipe, prompt=batch_of_prompts(2), generator=generators([0, 1]))
    else:
        frames = run(pipe, prompt=batch_of_prompts(2), seed=[0, 1])
    assert len(frames) == 2


@pytest.mark.parametrize(("name", "space"), WITH_CASCADE)
def test_the_first_video_of_a_batch_is_the_single_call_s_with_its_generator(name, space, shared, reference):
    pipe = shared(name, space)
    if name == "cascade":
        batch = run(pipe, prompt=batch_of_prompts(2), generator=generators([0, 1]))
    else:
        batch = run(pipe, prompt=batch_of_prompts(2), seed=[0, 1])
    assert batch.shape[0] == 2
    assert max_difference(batch[0], reference(name, space)[0]) < 1e-4


@pytest.mark.parametrize(("name", "space"), WITH_CASCADE)
def test_dict_and_tuple_outputs_hold_the_same_frames(name, space, shared, reference):
    outputs = run(shared(name, space), return_dict=False)
    assert isinstance(outputs, tuple)
    assert max_difference(outputs[0], reference(name, space)) < 1e-4


@pytest.mark.parametrize(("name", "space"), CASES)
@pytest.mark.parametrize("batch", [1, 2])
def test_num_videos_per_prompt_multiplies_the_batch(name, space, batch, shared):
    pipe = shared(name, space)
    prompt = PROMPT if batch == 1 else [PROMPT] * batch
    for per_prompt in (1, 2):
        frames = run(pipe, prompt=prompt, num_videos_per_prompt=per_prompt, num_inference_steps=1)
        assert frames.shape[0] == batch * per_prompt


@pytest.mark.parametrize(("name", "space"), CASES)
def test_guidance_off_and_on_give_frames_of_the_same_shape(name, space, shared):
    pipe = shared(name, space)
    unguided, guided = run(pipe, guidance_scale=1.0), run(pipe, guidance_scale=7.5)
    assert unguided.shape == guided.shape
    assert max_difference(unguided, guided) > 1e-4  # the guidance did act


@pytest.mark.parametrize(("name", "space"), CASES)
def test_the_callback_receives_exactly_the_tensors_asked_for(name, space, shared):
    pipe = shared(name, space)
    allowed = pipe._callback_tensor_inputs
    assert {"latents", "prompt_embeds", "negative_prompt_embeds"} == set(allowed)
    received = []

    def record(pipe, step, timestep, tensors):
        received.append(set(tensors))
        return tensors

    for asked in (["latents"], list(allowed)):
        received.clear()
        run(pipe, callback_on_step_end=record, callback_on_step_end_tensor_inputs=asked, output_type="latent")
        assert received and all(names == set(asked) for names in received)


@pytest.mark.parametrize(("name", "space"), CASES)
def test_latents_zeroed_by_the_callback_at_the_last_step_are_the_output(name, space, shared):
    pipe = shared(name, space)

    def zero_at_the_last_step(pipe, step, timestep, tensors):
        if step == pipe.num_timesteps - 1:
            tensors["latents"] = torch.zeros_like(tensors["latents"])
        return tensors

    latents = run(pipe, callback_on_step_end=zero_at_the_last_step, output_type="latent")
    assert latents.numel() and latents.abs().sum() == 0


@pytest.mark.parametrize(("name", "space"), CASES)
def test_a_callback_that_raises_the_guidance_scale_each_step_is_followed(name, space, shared):
    pipe = shared(name, space)

    def raise_guidance(pipe, step, timestep, tensors):
        pipe._guidance_scale += 1.0
        return tensors

    run(
        pipe,
        guidance_scale=2.0,
        callback_on_step_end=raise_guidance,
        callback_on_step_end_tensor_inputs=pipe._callback_tensor_inputs,
    )
    assert pipe.guidance_scale == 2.0 + pipe.num_timesteps


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_encode_prompt_works_in_a_pipeline_of_the_text_encoder_and_tokenizer_alone(name, shared):
    """The embeddings a pipeline of only the text components returns, given to the full pipeline under the
    names of the ``__call__`` arguments they are, give the frames of the prompt."""
    pipe = shared(name, "pixel")
    text = {"text_encoder": pipe.text_encoder, "tokenizer": pipe.tokenizer}
    text_only = type(pipe)(**{key: text.get(key) for key in pipe.components})
    embeddings = text_only.encode_prompt(PROMPT, torch.device("cpu"), 1, True)
    names = ("prompt_embeds", "negative_prompt_embeds")
    assert set(names) <= set(inspect.signature(type(pipe).__call__).parameters)
    from_embeddings = run(pipe, prompt=None, **dict(zip(names, embeddings, strict=True)))
    if stage(name).takes_video:  # the batch size comes from the embeddings: one video
        assert from_embeddings.shape[0] == 1
    np.testing.assert_allclose(from_embeddings, run(pipe), atol=1e-4, rtol=1e-4)


# --- components, dtypes and the UNet's conventions ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "space"), CASES)
def test_components_are_the_init_components(name, space):
    pipeline_class = stage(name).pipeline_class
    given = {**dict.fromkeys(pipeline_class._optional_components), **components(name, space)}  # every one
    pipe = pipeline_class(**given)
    modules = {key for key, value in given.items() if not isinstance(value, str | int | float)}
    assert set(pipe.components) == modules
    assert all(pipe.components[key] is given[key] for key in modules)


def test_cascade_components_are_its_stages():
    stages = tiny_cascade_stages()
    cascade = CascadePipeline(keyframes=stages["keyframes"], interpolation=stages["interpolation"])
    assert set(cascade.components) == set(STAGE_NAMES)  # the stages it lacks are None, as optional components
    assert cascade.components["keyframes"] is stages["keyframes"] and cascade.components["spatial_sr"] is None


@pytest.mark.parametrize(("name", "space"), WITH_CASCADE)
def test_to_float16_moves_every_component(name, space):
    pipe = make_cascade() if name == "cascade" else make_pipeline(name, space)
    modules = module_components(pipe)
    assert modules and all(module.dtype == torch.float32 for module in modules.values())
    pipe.to(dtype=torch.float16)
    assert all(module.dtype == torch.float16 for module in module_components(pipe).values())


@pytest.mark.parametrize(("name", "space"), CASES)
def test_components_are_of_the_kinds_freeu_and_fused_projections_act_on(name, space, shared):
    """diffusers' ``StableDiffusionMixin`` check asks for an ``AutoencoderKL`` and a diffusers UNet; our stages
    take its methods through ``UNetConventionsMixin``, whose VAE is optional and whose UNet is a VideoUNet (or,
    for the per-frame stage, a plain 2D UNet), and those are the kinds its methods act on."""
    pipe = shared(name, space)
    assert (pipe.vae is None) == (space == "pixel")
    assert pipe.vae is None or isinstance(pipe.vae, AutoencoderKL)
    kinds = (VideoUNet, UNet2DConditionModel) if name == "spatial_sr" else (VideoUNet,)
    assert isinstance(pipe.unet, kinds)
    assert all(callable(getattr(pipe.unet, method)) for method in ("enable_freeu", "fuse_qkv_projections"))


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_layerwise_casting_of_the_unet_runs_a_call(name):
    """float8 storage, bfloat16 compute: the call runs (the frames are not compared; the CPU emulates both)."""
    pipe = make_pipeline(name, "pixel").to(dtype=torch.bfloat16)
    pipe.unet.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    assert pipe.unet.dtype == torch.float8_e4m3fn or any(
        p.dtype == torch.float8_e4m3fn for p in pipe.unet.parameters()
    )
    frames = run(pipe, num_inference_steps=1, output_type="pt")
    assert frames.shape[0] == 1


# --- attention slicing, FreeU, fused projections, VAE slicing and tiling -----------------------------------------


ATTENTION_SLICING_TOLERANCE = 1e-3


# Slicing reaches the UNets alone (an AutoencoderKL has no sliced attention): pixel space runs the same path.
@pytest.mark.parametrize(("name", "space"), [*PIXEL_CASES, CASCADE_CASE])
def test_attention_slicing_reaches_the_unet_and_keeps_the_frames(name, space, shared, reference):
    pipe = shared(name, space)
    try:
        for slice_size in (1, 2):
            pipe.enable_attention_slicing(slice_size)
            for unet in unets(pipe):
                processors = unet.attn_processors
                assert processors and all("Sliced" in type(p).__name__ for p in processors.values())
            assert max_difference(run(pipe), reference(name, space)) < ATTENTION_SLICING_TOLERANCE
    finally:
        pipe.disable_attention_slicing()
    assert not any(
        "Sliced" in type(p).__name__ for unet in unets(pipe) for p in unet.attn_processors.values()
    )


FREEU = {"s1": 0.9, "s2": 0.2, "b1": 1.2, "b2": 1.4}


@pytest.mark.parametrize(("name", "space"), CASES)
def test_freeu_changes_the_frames_and_disabling_it_restores_them(name, space, shared, reference):
    pipe = shared(name, space)
    try:
        pipe.enable_freeu(**FREEU)
        with_freeu = run(pipe)
    finally:
        pipe.disable_freeu()
    assert not np.allclose(with_freeu, reference(name, space))
    assert all(getattr(block, key, None) is None for block in pipe.spatial_unet.up_blocks for key in FREEU)
    np.testing.assert_allclose(run(pipe), reference(name, space), atol=1e-2)


def attention_processor_names(pipe) -> dict:
    """Class names of the attention processors of the UNet and of the VAE (when there is one)."""
    models = {"unet": pipe.unet, "vae": pipe.vae}
    return {name: [type(p).__name__ for p in m.attn_processors.values()] for name, m in models.items() if m}


@pytest.mark.parametrize(("name", "space"), CASES)
def test_fused_qkv_projections_keep_the_frames_and_unfusing_restores_them(name, space, shared, reference):
    pipe = shared(name, space)
    before = attention_processor_names(pipe)
    try:
        pipe.fuse_qkv_projections()
        fused = attention_processor_names(pipe)
        assert all(names and all(n.startswith("Fused") for n in names) for names in fused.values())
        assert {key: len(names) for key, names in fused.items()} == {k: len(n) for k, n in before.items()}
        fused_frames = run(pipe)
    finally:
        pipe.unfuse_qkv_projections()
    assert attention_processor_names(pipe) == before
    unfused = run(pipe)
    for first, second in ((reference(name, space), fused_frames), (fused_frames, unfused)):
        np.testing.assert_allclose(first, second, atol=1e-2, rtol=1e-2)
    np.testing.assert_allclose(unfused, reference(name, space), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize(("name", "space"), LATENT_CASES)
def test_vae_slicing_keeps_the_frames_of_a_batch(name, space, shared):
    pipe = shared(name, space)
    prompts = [PROMPT, PROMPT]
    batch = run(pipe, prompt=prompts, seed=[0, 1])
    decoded = []
    hook = pipe.vae.decoder.register_forward_pre_hook(lambda module, args: decoded.append(args[0].shape[0]))
    pipe.vae.enable_slicing()
    try:
        sliced = run(pipe, prompt=prompts, seed=[0, 1])
    finally:
        pipe.vae.disable_slicing()
        hook.remove()
    assert decoded and set(decoded) == {1}  # one frame at a time
    assert max_difference(batch, sliced) < 1e-2


TILED_SIZE = 48  # frames larger than the tiny VAE's tiles (32 px), so that they decode in tiles
TILED_CASES = [case for case in LATENT_CASES if case.values[0] != "interpolation"]


@pytest.mark.parametrize(("name", "space"), TILED_CASES)
def test_vae_tiling_keeps_the_frames(name, space, shared, monkeypatch):
    pipe = shared(name, space)
    if name == "keyframes":
        size = {"height": TILED_SIZE, "width": TILED_SIZE}
    else:
        low_res = TILED_SIZE // pipe.config.upscale_factor
        size = {"video": np.random.default_rng(0).random((1, 2, low_res, low_res, 3), dtype=np.float32)}
    untiled = run(pipe, **size)
    tiled_calls = []
    tiled_decode = pipe.vae.tiled_decode
    monkeypatch.setattr(
        pipe.vae, "tiled_decode", lambda *a, **k: tiled_calls.append(1) or tiled_decode(*a, **k)
    )
    pipe.vae.enable_tiling()
    try:
        tiled = run(pipe, **size)
    finally:
        pipe.vae.disable_tiling()
    assert tiled_calls  # the frames were decoded in tiles
    assert max_difference(tiled, untiled) < 5e-1


def test_a_tiling_vae_decodes_latents_of_sizes_that_are_no_multiple_of_its_tiles(shared):
    """Every latent stage holds the same kind of VAE (``tiny_vae``): checked once. diffusers decodes 73x97 and
    65x49 latents; with the tiny VAE's 16-latent tiles those leave an edge tile one latent wide, which its
    GroupNorm of one channel a group cannot normalise (a real VAE's groups hold 4 channels), so these sizes,
    as odd, leave wider edges."""
    vae = shared("keyframes", "latent").vae
    channels, factor = vae.config.latent_channels, 2 ** (len(vae.config.block_out_channels) - 1)
    vae.enable_tiling()
    try:
        with torch.no_grad():
            for height, width in ((35, 23), (19, 29)):
                pixels = vae.decode(torch.zeros(1, channels, height, width)).sample
                assert pixels.shape == (1, 3, height * factor, width * factor)
    finally:
        vae.disable_tiling()


# --- saving and loading -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def loading_log():
    """The INFO lines diffusers' pipeline loader writes, as one string (``buffer.getvalue()``)."""
    logger = logging.getLogger("diffusers.pipelines.pipeline_utils")
    buffer, level = io.StringIO(), logger.level
    handler = logging.StreamHandler(buffer)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.parametrize(("name", "space"), WITH_CASCADE)
def test_a_saved_pipeline_loads_every_component_and_gives_the_same_frames(
    name, space, shared, saved, reference
):
    pipe = shared(name, space)
    with loading_log() as log:
        loaded = load(pipe, saved(name, space))
    stage_pipes = loaded.stages if name == "cascade" else {name: loaded}
    for stage_pipe in stage_pipes.values():
        for component, value in stage_pipe.components.items():
            if value is not None:
                assert f"Loaded {component} as" in log.getvalue()
    assert max_difference(run(loaded), reference(name, space)) < 5e-4


# One loader for every component (a VAE's weights load as the UNet's do): pixel space runs the same path.
@pytest.mark.parametrize(("name", "space"), [*PIXEL_CASES, CASCADE_CASE])
def test_pickled_weights_load_only_when_asked_for(name, space, shared, reference, tmp_path):
    """The documented difference from diffusers: ``safe_serialization=False`` saves ``.bin`` weights, which load
    with ``use_safetensors=False`` only."""
    pipe = shared(name, space)
    pipe.save_pretrained(tmp_path, safe_serialization=False)
    assert list(tmp_path.rglob("unet/*.bin"))  # transformers 5 saves the text encoder as safetensors anyway
    with pytest.raises(OSError, match="use_safetensors=False"):
        type(pipe).from_pretrained(tmp_path)
    loaded = load(pipe, tmp_path, use_safetensors=False)
    assert max_difference(run(loaded), reference(name, space)) < 5e-4


def with_optional_components_none(name: str, space: str):
    """The pipeline with every optional component set to ``None`` (a cascade: of its keyframes stage alone)."""
    if name == "cascade":
        keyframes = make_cascade().keyframes
        cascade = CascadePipeline(
            stage_defaults={"keyframes": FAST_STAGE_DEFAULTS["keyframes"]}, keyframes=keyframes
        )
        cascade.set_progress_bar_config(disable=True)
        return cascade
    pipe = make_pipeline(name, space)
    for component in pipe._optional_components:
        setattr(pipe, component, None)
    return pipe


def outcome(pipe, **settings):
    """The frames of a call, or the message of the ``ValueError`` that refuses it."""
    try:
        return run(pipe, **settings)
    except ValueError as error:
        return str(error)


@pytest.mark.parametrize(("name", "space"), WITH_CASCADE)
def test_optional_components_saved_as_none_load_as_none_with_the_same_output(name, space, tmp_path):
    pipe = with_optional_components_none(name, space)
    missing = [c for c in pipe._optional_components if getattr(pipe, c) is None]
    assert missing
    pipe.save_pretrained(tmp_path)
    loaded = load(pipe, tmp_path)
    assert all(getattr(loaded, component) is None for component in missing)
    # A super-resolution call needs its low-resolution scheduler (test_stage_components.py checks the refusal):
    # both pipelines get the same one back. A latent UNet without its VAE returns latents where it runs at all
    # (interpolation must encode its given frames, and both pipelines refuse the same way).
    settings = {} if name == "cascade" else {"output_type": "latent"}
    if name in ("spatiotemporal_sr", "spatial_sr"):
        pipe.low_res_scheduler = loaded.low_res_scheduler = components(name, space)["low_res_scheduler"]
    expected, got = outcome(pipe, **settings), outcome(loaded, **settings)
    if (name, space) == ("interpolation", "latent"):
        assert isinstance(expected, str) and got == expected
    else:
        assert max_difference(got, expected) < 1e-4


def variant_files(folder: Path, pipe) -> dict[str, list[str]]:
    """The weight files named ``<name>.fp16.<ext>`` in each ``nn.Module`` component's folder (a cascade's:
    ``<stage>/<component>``) that ``model_index.json`` lists."""
    files = {}
    for key in module_components(pipe):
        stage_folder, _, component = key.rpartition(".")
        index = json.loads((folder / stage_folder / "model_index.json").read_text())
        assert component in index
        paths = (folder / stage_folder / component).iterdir()
        files[key] = [p.name for p in paths if p.name.split(".")[1:2] == ["fp16"]]
    return files


@pytest.mark.parametrize(("name", "space"), WITH_CASCADE)
def test_a_variant_saves_variant_files_that_load_back_with_it(name, space, shared, tmp_path):
    pipe = shared(name, space)
    pipe.save_pretrained(tmp_path, variant="fp16")
    assert all(variant_files(tmp_path, pipe).values())
    loaded = load(pipe, tmp_path, variant="fp16")
    for key, module in module_components(pipe).items():
        reloaded = dict(module_components(loaded)[key].named_parameters())
        for parameter, value in module.named_parameters():
            if parameter in reloaded:  # tied weights are loaded once
                assert torch.equal(value, reloaded[parameter]), (key, parameter)


@pytest.mark.parametrize(("name", "space"), WITH_CASCADE)
def test_loading_a_variant_that_was_not_saved_is_refused(name, space, shared, saved):
    with pytest.raises(ValueError, match="You are trying to load the model files of the `variant=fp16`"):
        type(shared(name, space)).from_pretrained(saved(name, space), variant="fp16")


@pytest.mark.parametrize(("name", "space"), WITH_CASCADE)
def test_dtype_loads_every_component_in_it_and_a_dict_of_dtypes_each_in_its_own(name, space, shared, saved):
    pipe_class = type(shared(name, space))
    loaded = pipe_class.from_pretrained(saved(name, space), dtype=torch.float16)
    assert all(module.dtype == torch.float16 for module in module_components(loaded).values())
    by_component = {"unet": torch.bfloat16, "default": torch.float16}
    loaded = pipe_class.from_pretrained(saved(name, space), dtype=by_component)
    for key, module in module_components(loaded).items():
        expected = by_component.get(key.rpartition(".")[2], by_component["default"])
        assert module.dtype == expected, key


@pytest.mark.parametrize(("name", "space"), WITH_CASCADE)
def test_loading_with_a_device_map_gives_the_same_frames(name, space, shared, saved, reference):
    loaded = load(shared(name, space), saved(name, space), device_map="cpu")
    assert all(module.device.type == "cpu" for module in module_components(loaded).values())
    assert max_difference(run(loaded), reference(name, space)) < 1e-4


# --- from_pipe --------------------------------------------------------------------------------------------------


def test_from_pipe_gives_the_frames_of_init_and_leaves_the_image_pipeline_as_it_was():
    """diffusers builds AnimateDiff from a Stable Diffusion pipeline; the keyframes stage is the one of ours
    built so (``tests/test_keyframes_pipeline.py`` checks it starts as the image model, frame by frame)."""
    from cascade import KeyframesPipeline

    parts = tiny_keyframes_components(latent=True)
    image_pipe = StableDiffusionPipeline(
        **{key: parts[key] for key in ("vae", "text_encoder", "tokenizer", "scheduler")},
        unet=parts["unet"].unet,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    image_pipe.set_progress_bar_config(disable=True)

    def images():
        return image_pipe(
            PROMPT, num_inference_steps=STEPS, generator=generators(0), height=16, width=16, output_type="np"
        ).images

    before, processors = images(), {k: type(p) for k, p in image_pipe.unet.attn_processors.items()}
    from_pipe = KeyframesPipeline.from_pipe(image_pipe)
    from_pipe.set_progress_bar_config(disable=True)
    shared_parts = {
        key: image_pipe.components[key] for key in ("vae", "text_encoder", "tokenizer", "scheduler")
    }
    from_init = KeyframesPipeline(**shared_parts, unet=image_pipe.unet)
    from_init.set_progress_bar_config(disable=True)
    assert max_difference(run(from_pipe), run(from_init)) < 1e-3
    assert max_difference(images(), before) < 1e-3
    assert {k: type(p) for k, p in image_pipe.unet.attn_processors.items()} == processors


# --- checks that need an accelerator ------------------------------------------------------------------------------


ACCELERATOR = "cuda"


def on_accelerator(name: str, space: str, dtype=torch.float32):
    pipe = make_cascade() if name == "cascade" else make_pipeline(name, space)
    return pipe.to(ACCELERATOR, dtype)


def accelerator_run(pipe, **overrides):
    """Frames as float32 numpy on the CPU, from noise drawn on the CPU (the same on every device)."""
    frames = run(pipe, output_type="pt", **overrides)
    return frames.float().cpu().numpy()


def cosine_distance(first, second) -> float:
    first, second = np.asarray(first, np.float64).ravel(), np.asarray(second, np.float64).ravel()
    return 1 - float(first @ second / (np.linalg.norm(first) * np.linalg.norm(second)))


@CUDA
@pytest.mark.parametrize(("name", "space"), WITH_CASCADE)
def test_float16_inference_is_close_to_float32(name, space):
    full = accelerator_run(on_accelerator(name, space))
    half = accelerator_run(on_accelerator(name, space, torch.float16))
    assert cosine_distance(full, half) < 5e-2


@CUDA
@pytest.mark.parametrize(("name", "space"), CASES)
def test_a_float16_pipeline_saves_and_loads_in_float16(name, space, tmp_path):
    pipe = on_accelerator(name, space, torch.float16)
    frames = accelerator_run(pipe)
    pipe.save_pretrained(tmp_path)
    loaded = load(pipe, tmp_path, dtype=torch.float16).to(ACCELERATOR)
    assert all(module.dtype == torch.float16 for module in module_components(loaded).values())
    assert max_difference(accelerator_run(loaded), frames) < 1e-2


@CUDA
@pytest.mark.parametrize(("name", "space"), WITH_CASCADE)
def test_to_device_moves_every_component_and_each_device_gives_finite_frames(name, space):
    pipe = on_accelerator(name, space).to("cpu")
    for device in ("cpu", ACCELERATOR):
        pipe.to(device)
        assert all(module.device.type == device for module in module_components(pipe).values())
        assert np.isfinite(accelerator_run(pipe)).all()


def offload_hooks(pipe, sequential: bool) -> None:
    """Asserts accelerate's hooks are on every model: weights kept on the CPU between uses (model offload) or on
    the meta device, moved in submodule by submodule (sequential offload)."""
    from accelerate.hooks import AlignDevicesHook, CpuOffload, SequentialHook

    for key, module in module_components(pipe).items():
        hook = getattr(module, "_hf_hook", None)
        assert hook is not None, key
        if sequential:
            hooks = hook.hooks if isinstance(hook, SequentialHook) else [hook]
            assert all(isinstance(h, AlignDevicesHook) for h in hooks), key
            assert module.device.type == "meta", key
        else:
            assert isinstance(hook, CpuOffload) and module.device.type == "cpu", key


@CUDA
@pytest.mark.parametrize("sequential", [False, True], ids=["model", "sequential"])
@pytest.mark.parametrize(("name", "space"), WITH_CASCADE)
def test_cpu_offload_keeps_the_frames_when_enabled_once_or_twice(name, space, sequential):
    reference_frames = accelerator_run(on_accelerator(name, space))
    pipe = make_cascade() if name == "cascade" else make_pipeline(name, space)
    for _ in range(2):
        if sequential:
            pipe.enable_sequential_cpu_offload(device=ACCELERATOR)
        else:
            pipe.enable_model_cpu_offload(device=ACCELERATOR)
        offload_hooks(pipe, sequential)
        assert max_difference(accelerator_run(pipe), reference_frames) < 2e-4


@CUDA
@pytest.mark.parametrize(("name", "space"), CASES)
def test_xformers_attention_keeps_the_frames(name, space):
    pytest.importorskip("xformers")
    pipe = on_accelerator(name, space)
    frames = accelerator_run(pipe)
    pipe.enable_xformers_memory_efficient_attention()
    assert max_difference(accelerator_run(pipe), frames) < 1e-4


@CUDA
@pytest.mark.parametrize("offload_type", ["block_level", "leaf_level"])
@pytest.mark.parametrize(("name", "space"), CASES)
def test_group_offloading_of_the_text_encoder_and_unet_keeps_the_frames(name, space, offload_type):
    from diffusers.hooks.group_offloading import _GROUP_OFFLOADING, apply_group_offloading

    frames = accelerator_run(on_accelerator(name, space))
    pipe = make_pipeline(name, space)
    options = {"num_blocks_per_group": 1} if offload_type == "block_level" else {}
    for model in (pipe.text_encoder, pipe.unet):
        apply_group_offloading(model, ACCELERATOR, offload_type=offload_type, **options)
    if pipe.vae is not None:
        pipe.vae.to(ACCELERATOR)
    for model in (pipe.text_encoder, pipe.unet):
        hooked = [m for m in model.modules() if getattr(m, "_diffusers_hook", None) is not None]
        assert any(m._diffusers_hook.get_hook(_GROUP_OFFLOADING) is not None for m in hooked)
    np.testing.assert_allclose(accelerator_run(pipe), frames, atol=1e-4)


@CUDA
@pytest.mark.parametrize(("name", "space"), CASES)
def test_pipeline_group_offloading_keeps_the_frames_and_an_excluded_model_on_the_accelerator(name, space):
    frames = accelerator_run(on_accelerator(name, space))
    pipe = make_pipeline(name, space)
    modules = module_components(pipe)
    excluded = sorted(modules)[0]
    pipe.enable_group_offload(
        onload_device=torch.device(ACCELERATOR),
        offload_device=torch.device("cpu"),
        offload_type="leaf_level",
        exclude_modules=excluded,
    )
    assert modules[excluded].device.type == ACCELERATOR
    assert all(next(m.parameters()).device.type == "cpu" for k, m in modules.items() if k != excluded)
    np.testing.assert_allclose(accelerator_run(pipe), frames, atol=1e-4)


# --- what does not apply ------------------------------------------------------------------------------------------


NOT_APPLICABLE = {
    "IPAdapterTesterMixin (all five checks)": "no stage has an image encoder or IPAdapterMixin; the prompt and the "
    "input video condition them",
    "from_pipe back to StableDiffusionPipeline (consistent config)": "a VideoUNet is not a 2D UNet a text-to-image "
    "pipeline can take, and diffusers' check downloads a Stable Diffusion pipeline from the Hub",
    "from_pipe for the later stages and the cascade": "no diffusers pipeline holds their components: an "
    "interpolation or super-resolution UNet reads conditioning channels, a cascade holds pipelines",
    "from_pipe with model CPU offload": "from_pipe shares the image pipeline's models; the keyframes stage's offload "
    "is test_cpu_offload_keeps_the_frames_when_enabled_once_or_twice",
    "StableDiffusionMixin component kinds": "the VAE is optional and the UNet a VideoUNet "
    "(test_components_are_of_the_kinds_freeu_and_fused_projections_act_on checks ours)",
    "cascade: num_videos_per_prompt, guidance, callbacks, encode_prompt": "per-stage settings (stage_kwargs), "
    "each checked on every stage above; the cascade encodes the prompt once per text encoder itself",
    "cascade: FreeU, fused projections, VAE slicing and tiling, layerwise casting, group offloading, xformers": (
        "methods of a stage's models, checked on every stage above"
    ),
    "a hard-coded slice of frames (AnimateDiff's expected_slice)": "this project compares runs, never fixed numbers",
    "callback_cfg_params": "no diffusers check reads it",
    "VAE tiling on the interpolation stage": "it encodes its given frames, and diffusers runs no tiling check on "
    "the video-to-video pipelines that encode theirs (AnimateDiff's video2video tests leave SDFunctionTesterMixin "
    "out); the tiny random VAE's tile seams on encoded frames exceed diffusers' 0.5 (0.52 at 48 px, tiling the "
    "decoding alone)",
}


@pytest.mark.parametrize("check", NOT_APPLICABLE)
def test_a_check_that_does_not_apply(check):
    pytest.skip(f"{check}: {NOT_APPLICABLE[check]}")
