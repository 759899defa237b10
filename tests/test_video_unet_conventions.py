"""FreeU, fused QKV projections and attention slicing on VideoUNet and on the stage pipelines: each acts for
real (or is refused with a ValueError), never a silent no-op."""

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0, FusedAttnProcessor2_0, SlicedAttnProcessor

from cascade import KeyframesPipeline, inflate
from cascade.testing.tiny_models import TEXT_DIM, tiny_keyframes_components, tiny_unet2d

FREEU = {"s1": 0.9, "s2": 0.2, "b1": 1.2, "b2": 1.4}  # the paper's SD 1.5 values


def video_unet(kind="sd15", cross=False):
    """A tiny VideoUNet whose temporal layers are no longer the identity (so they shape the output too)."""
    model = inflate(tiny_unet2d(kind), temporal_cross_attention=cross).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.temporal_parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model


def denoise(model):
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, model.unet.config.in_channels, 3, 16, 16, generator=generator)
    text = torch.randn(2, 5, TEXT_DIM, generator=generator)
    labels = torch.tensor([20, 300]) if model.unet.config.num_class_embeds else None
    with torch.no_grad():
        return model(sample, 7, text, class_labels=labels).sample


@pytest.mark.parametrize("kind", ["sd15", "sd2", "x4_upscaler"])
def test_freeu_changes_the_output_and_disabling_it_restores_it_bit_for_bit(kind):
    model = video_unet(kind)
    reference = denoise(model)
    model.enable_freeu(**FREEU)
    with_freeu = denoise(model)
    model.disable_freeu()
    assert (with_freeu - reference).abs().max() > 1e-3
    assert torch.equal(denoise(model), reference)


def test_freeu_is_refused_where_the_up_blocks_would_ignore_it():
    model = inflate(
        tiny_unet2d(
            "sd15",
            down_block_types=("AttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "AttnUpBlock2D"),
        )
    )
    with pytest.raises(ValueError, match="AttnUpBlock2D"):
        model.enable_freeu(**FREEU)
    with pytest.raises(ValueError, match="`b2`"):
        video_unet().enable_freeu(**{**FREEU, "b2": "1.4"})


@pytest.mark.parametrize(("kind", "cross"), [("sd15", False), ("sd15", True), ("x4_upscaler", False)])
def test_fused_projections_give_the_same_output_and_unfusing_restores_the_processors(kind, cross):
    model = video_unet(kind, cross)
    reference, processors = denoise(model), model.attn_processors
    assert any(name.startswith("temporal_attns.") for name in processors)
    model.fuse_qkv_projections()
    assert all(type(p) is FusedAttnProcessor2_0 for p in model.attn_processors.values())
    attentions = model._attention_modules()
    assert all(module.fused_projections for module in attentions)
    fused = denoise(model)
    model.unfuse_qkv_projections()
    assert (fused - reference).abs().max() <= 1e-5
    assert {name: type(p) for name, p in model.attn_processors.items()} == {
        name: type(p) for name, p in processors.items()
    }
    assert torch.equal(denoise(model), reference)


@pytest.mark.parametrize("slice_size", ["auto", "max", 1])
def test_attention_slicing_reaches_every_attention_and_keeps_the_output(slice_size):
    model = video_unet(cross=True)
    reference = denoise(model)
    model.set_attention_slice(slice_size)
    processors = model.attn_processors
    assert processors and all(type(p) is SlicedAttnProcessor for p in processors.values())
    sliced = denoise(model)
    model.set_attention_slice(None)
    assert (sliced - reference).abs().max() <= 1e-5
    assert all(type(p) is AttnProcessor2_0 for p in model.attn_processors.values())
    assert torch.equal(denoise(model), reference)


@pytest.mark.parametrize("slice_size", [0, 9, "half", 2.0, [1, 1]])
def test_bad_slice_sizes_are_refused(slice_size):
    model = video_unet()
    with pytest.raises(ValueError, match=r"`slice_size` must be .* int in \[1, 8\]"):
        model.set_attention_slice(slice_size)
    assert all(type(p) is AttnProcessor2_0 for p in model.attn_processors.values())


# Frames after two DDIM steps: the one-call tolerance (1e-5) grows through the steps and the clamp to [0, 1].
PIPELINE_TOLERANCE = 1e-4


def keyframes(pipe):
    generator = torch.Generator().manual_seed(0)
    return pipe(
        "a red circle", num_frames=3, num_inference_steps=2, generator=generator, output_type="pt"
    ).frames


@pytest.mark.parametrize("latent", [False, True], ids=["pixel", "latent"])
def test_pipeline_methods_reach_the_video_unet(latent):
    pipe = KeyframesPipeline(**tiny_keyframes_components(latent=latent))
    pipe.set_progress_bar_config(disable=True)
    reference = keyframes(pipe)
    pipe.enable_freeu(**FREEU)
    assert (keyframes(pipe) - reference).abs().max() > 1e-2
    pipe.disable_freeu()
    assert torch.equal(keyframes(pipe), reference)
    pipe.fuse_qkv_projections()  # the VAE's too when there is one; pixel space has none to fuse
    assert all(type(p) is FusedAttnProcessor2_0 for p in pipe.unet.attn_processors.values())
    assert latent == pipe.fusing_vae
    assert (keyframes(pipe) - reference).abs().max() <= PIPELINE_TOLERANCE
    pipe.unfuse_qkv_projections()
    pipe.enable_attention_slicing()  # DiffusionPipeline's own method, which calls VideoUNet.set_attention_slice
    assert all(type(p) is SlicedAttnProcessor for p in pipe.unet.attn_processors.values())
    assert (keyframes(pipe) - reference).abs().max() <= PIPELINE_TOLERANCE
    pipe.disable_attention_slicing()
    assert torch.equal(keyframes(pipe), reference)
