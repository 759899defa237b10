"""What each stage's UNet sees in training, built from clean ground-truth clips.

The conditioning mirrors what the stage's pipeline gives the UNet at sampling time:

- ``interpolation``: masked frame conditioning (Singer et al. 2022, "Make-A-Video", sec. 3.3): the known
  frames (every ``interpolation_factor``-th frame) and their mask; known frames other than the first and
  the last are hidden at random with probability ``known_frame_dropout``, so the model also learns
  longer gaps (random masks over the known frames).
- super-resolution: the clip downsampled by ``upscale_factor`` (area averaging, what a renderer at the
  low resolution would draw), resized bilinearly back to the sample's grid as the pipelines do, then
  noised to a level drawn uniformly from ``[0, max_noise_level]`` that is also the class label: noise
  conditioning augmentation (Ho et al. 2022, "Cascaded Diffusion Models", arXiv:2106.15282, sec. 4.1).

Random draws come from torch's global generator, which checkpoints save and restore.
"""

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, DDPMScheduler

from cascade.ops.conditioning import blend_unknown_frames, masked_frame_conditioning, noise_augment
from cascade.ops.frames import resize_frames
from cascade.ops.latents import encode_video

from .config import TrainingConfig, training_stage


@dataclass
class StageInputs:
    """``sample`` ``(B, C, F, h, w)`` to noise and denoise; ``conditioning`` ``(B, k, F, h, w)`` concatenated
    to the noisy sample, or ``None``; ``class_labels`` ``(B,)`` or ``None``."""

    sample: torch.Tensor
    conditioning: torch.Tensor | None = None
    class_labels: torch.Tensor | None = None


def stage_inputs(
    config: TrainingConfig,
    videos: torch.Tensor,
    vae: AutoencoderKL | None,
    low_res_scheduler: DDPMScheduler,
) -> StageInputs:
    """The UNet inputs of ``config.stage`` for ground-truth ``videos`` ``(B, 3, F, H, W)`` in [-1, 1], in the
    VAE's latent space when ``vae`` is given (then ``H`` and ``W`` are the decoded frame size)."""
    if not isinstance(videos, torch.Tensor) or videos.ndim != 5:
        raise ValueError(
            f"`videos` must be a tensor (B, 3, F, H, W), got {getattr(videos, 'shape', videos)!r}."
        )
    sample = videos if vae is None else encode_video(vae, videos.to(vae.dtype), None).to(videos.dtype)
    conditioning = training_stage(config.stage).conditioning
    if conditioning == "known_frames":
        return StageInputs(sample, interpolation_conditioning(sample, config))
    if conditioning == "low_res":
        conditioning, levels = super_resolution_conditioning(
            videos, sample.shape[-2:], config, low_res_scheduler
        )
        return StageInputs(sample, conditioning, levels)
    return StageInputs(sample)


def interpolation_conditioning(sample: torch.Tensor, config: TrainingConfig) -> torch.Tensor:
    """Known frames and mask ``(B, C + 1, F, h, w)`` for clips ``(B, C, F, h, w)`` of ``m * factor + 1`` frames;
    between known frames zeros, or with ``config.interpolation_fill="blend"`` their linear blend."""
    factor, frames = config.interpolation_factor, sample.shape[2]
    if (frames - 1) % factor or frames == 1:
        raise ValueError(
            f"interpolation clips must have m * interpolation_factor + 1 frames (m >= 1, factor {factor}), "
            f"got {frames}."
        )
    known, mask = masked_frame_conditioning(
        sample[:, :, ::factor], factor
    )  # (B, C, F, h, w), (B, 1, F, h, w)
    hidden = torch.rand(sample.shape[0], 1, frames, 1, 1) < config.known_frame_dropout  # (B, 1, F, 1, 1)
    hidden[:, :, [0, -1]] = False
    keep = (~hidden).to(sample)
    known, mask = known * keep, mask * keep
    if config.interpolation_fill == "blend":
        known = blend_unknown_frames(known, mask[:, 0, :, 0, 0] > 0)
    return torch.cat([known, mask], dim=1)


def super_resolution_conditioning(
    videos: torch.Tensor, grid: tuple[int, int], config: TrainingConfig, low_res_scheduler: DDPMScheduler
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise-augmented low-resolution frames on the sample's ``grid`` ``(B, 3, F, h, w)`` and their noise
    levels ``(B,)`` for high-resolution ``videos`` ``(B, 3, F, H, W)``."""
    batch, height, width = videos.shape[0], *videos.shape[-2:]
    factor = config.upscale_factor
    if height % factor or width % factor:
        raise ValueError(f"frames of {height}x{width} do not downsample by upscale_factor={factor}.")
    low = resize_frames(videos, (height // factor, width // factor), "area")  # (B, 3, F, H/s, W/s)
    if tuple(low.shape[-2:]) != tuple(grid):
        low = resize_frames(low, grid, "bilinear")  # (B, 3, F, h, w)
    levels = torch.randint(0, config.max_noise_level + 1, (batch,)).to(videos.device)  # (B,)
    return noise_augment(low, levels, low_res_scheduler), levels
