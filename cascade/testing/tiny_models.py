"""Tiny, randomly initialised components built in-process, for tests, benchmarks and notebooks.

They have the structure of the real checkpoints the cascade inflates (Stable Diffusion 1.5 and 2,
the Stable Diffusion x4 upscaler) at a size that runs in milliseconds on a CPU, and need no network.
"""

import json
import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

TEXT_DIM = 32

UNET_CONFIGS = {
    # Stable Diffusion 1.5: cross-attention in all but the last down block, integer head count.
    "sd15": dict(
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8,
        cross_attention_dim=TEXT_DIM,
    ),
    # Stable Diffusion 2: linear projections in the transformers and a head dimension per block.
    "sd2": dict(
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=TEXT_DIM,
    ),
    # Stable Diffusion x4 upscaler: 7 input channels (4 latent + 3 low-res RGB), the noise level as a
    # class label, and transformers whose first attention attends to the text only.
    "x4_upscaler": dict(
        in_channels=7,
        out_channels=4,
        block_out_channels=(32, 32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        only_cross_attention=(True, True, False),
        attention_head_dim=8,
        use_linear_projection=True,
        num_class_embeds=1000,
        cross_attention_dim=TEXT_DIM,
    ),
}


def tiny_unet2d(kind: str = "sd15", seed: int = 0, **overrides) -> UNet2DConditionModel:
    """A random ``UNet2DConditionModel`` shaped like ``kind`` (one of ``UNET_CONFIGS``)."""
    if kind not in UNET_CONFIGS:
        raise ValueError(f"`kind` must be one of {sorted(UNET_CONFIGS)}, got {kind!r}.")
    config = {"sample_size": 16, "in_channels": 4, "out_channels": 4, "norm_num_groups": 32}
    config.update(UNET_CONFIGS[kind])
    config.update(overrides)
    torch.manual_seed(seed)
    return UNet2DConditionModel(**config).eval()


def tiny_tokenizer(max_length: int = 16) -> CLIPTokenizer:
    """A CLIP tokenizer over single byte-level characters: it tokenizes any text, one character a token."""
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"`max_length` must be an int >= 2, got {max_length!r}.")
    characters = list(bytes_to_unicode().values())
    vocab = {token: i for i, token in enumerate(characters + [c + "</w>" for c in characters])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    with tempfile.TemporaryDirectory() as folder:
        vocab_file, merges_file = Path(folder, "vocab.json"), Path(folder, "merges.txt")
        vocab_file.write_text(json.dumps(vocab))
        merges_file.write_text("#version: 0.2\n")
        return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=max_length)


def tiny_text_encoder(seed: int = 0, vocab_size: int = 514) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_DIM,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=16,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    return CLIPTextModel(config).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    """A random 2-level VAE: latents of 4 channels at half the frame size."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(32, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=32,
    ).eval()


def tiny_keyframes_components(latent: bool = False, seed: int = 0, kind: str = "sd15") -> dict:
    """Components of a tiny :class:`cascade.KeyframesPipeline`: in a VAE's latent space when ``latent``,
    else in pixel space (a UNet on RGB)."""
    channels = {} if latent else {"in_channels": 3, "out_channels": 3}
    unet = _inflate(tiny_unet2d(kind, seed=seed, sample_size=8, **channels))
    return {
        "unet": unet,
        "scheduler": DDIMScheduler(num_train_timesteps=1000),
        "text_encoder": tiny_text_encoder(seed),
        "tokenizer": tiny_tokenizer(),
        "vae": tiny_vae(seed) if latent else None,
    }


def tiny_interpolation_components(latent: bool = False, seed: int = 0) -> dict:
    """Components of a tiny :class:`cascade.InterpolationPipeline`: the UNet reads the noisy frames, the
    known frames and their mask (``extra_in_channels = C + 1``)."""
    components = tiny_keyframes_components(latent=latent, seed=seed)
    base = components["unet"].unet
    components["unet"] = _inflate(base, extra_in_channels=base.config.in_channels + 1)
    return components


def tiny_super_resolution_components(latent: bool = False, seed: int = 0, inflated: bool = True) -> dict:
    """Components of a tiny super-resolution stage, shaped like the x4 upscaler: the UNet reads the noisy
    sample and the low-resolution RGB frames (3 more input channels) and takes the noise level as a class
    label. ``inflated=False`` gives a plain ``UNet2DConditionModel`` (for the per-frame stage)."""
    noisy = 4 if latent else 3
    unet = tiny_unet2d("x4_upscaler", seed=seed, sample_size=8, in_channels=noisy + 3, out_channels=noisy)
    return {
        "unet": _inflate(unet) if inflated else unet,
        "scheduler": DDIMScheduler(num_train_timesteps=1000),
        "low_res_scheduler": DDPMScheduler(num_train_timesteps=1000),
        "text_encoder": tiny_text_encoder(seed),
        "tokenizer": tiny_tokenizer(),
        "vae": tiny_vae(seed) if latent else None,
    }


def _inflate(unet: UNet2DConditionModel, **options):
    from cascade.models import inflate

    return inflate(unet, **options)


def tiny_cascade_stages(latent: bool = False, seed: int = 0) -> dict:
    """The four stages of a tiny cascade sharing one text encoder: 8x8 keyframes, interpolation, then two
    x4 super-resolution stages (32x32, then 128x128); keyword arguments for :class:`cascade.CascadePipeline`."""
    from cascade.pipelines import (
        InterpolationPipeline,
        KeyframesPipeline,
        SpatialSRPipeline,
        SpatioTemporalSRPipeline,
    )

    text = {"text_encoder": tiny_text_encoder(seed), "tokenizer": tiny_tokenizer()}
    spatial = tiny_super_resolution_components(latent=latent, seed=seed, inflated=False)
    return {
        "keyframes": KeyframesPipeline(**{**tiny_keyframes_components(latent=latent, seed=seed), **text}),
        "interpolation": InterpolationPipeline(
            **{**tiny_interpolation_components(latent=latent, seed=seed), **text}
        ),
        "spatiotemporal_sr": SpatioTemporalSRPipeline(
            **{**tiny_super_resolution_components(latent=latent, seed=seed), **text}, upscale_factor=4
        ),
        "spatial_sr": SpatialSRPipeline(**{**spatial, **text}, upscale_factor=4),
    }


# The tiny cascade's quickest settings: 2 keyframes, one step a stage, no guidance (2 -> 5 frames, 8 -> 128 px).
FAST_STAGE_DEFAULTS = {
    "keyframes": {"num_frames": 2, "num_inference_steps": 1, "guidance_scale": 1.0},
    "interpolation": {"num_inference_steps": 1, "guidance_scale": 1.0},
    "spatiotemporal_sr": {"num_inference_steps": 1, "guidance_scale": 1.0},
    "spatial_sr": {"num_inference_steps": 1, "guidance_scale": 1.0},
}


def fast_tiny_cascade(seed: int = 0):
    """The tiny pixel-space cascade with :data:`FAST_STAGE_DEFAULTS` as its ``stage_defaults`` and its progress
    bars off: for tests of what runs a whole cascade with the model's own settings (the web app)."""
    from cascade.pipelines import CascadePipeline

    cascade = CascadePipeline(stage_defaults=FAST_STAGE_DEFAULTS, **tiny_cascade_stages(seed=seed))
    cascade.set_progress_bar_config(disable=True)
    return cascade
