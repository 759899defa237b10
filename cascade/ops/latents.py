"""Videos through a 2D VAE, frame by frame: pixels ``(B, 3, F, H, W)`` in [-1, 1] to scaled latents
``(B, C, F, h, w)`` and back (Blattmann et al. 2023, "Video LDM", arXiv:2304.08818: a video latent
diffusion model reuses the image autoencoder per frame). ``chunk_size`` frames go through the VAE at a
time, so its memory is bounded by the chunk."""

import torch

from .frames import fold_frames, unfold_frames


def _chunks(images: torch.Tensor, chunk_size: int | None):
    step = chunk_size or images.shape[0]
    return (images[start : start + step] for start in range(0, images.shape[0], step))


def encode_video(vae, pixels: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
    """Scaled latents ``(B, C, F, h, w)`` of pixels ``(B, 3, F, H, W)``: the posterior's mode (so conditioning
    is deterministic) times the VAE's ``scaling_factor``."""
    latents = torch.cat(
        [vae.encode(chunk).latent_dist.mode() for chunk in _chunks(fold_frames(pixels), chunk_size)]
    )
    return unfold_frames(latents * vae.config.scaling_factor, pixels.shape[0])  # (B, C, F, h, w)


def decode_video(vae, latents: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
    """Pixels ``(B, 3, F, H, W)`` in [-1, 1] of scaled latents ``(B, C, F, h, w)``."""
    images = fold_frames(latents) / vae.config.scaling_factor  # (B*F, C, h, w)
    pixels = torch.cat([vae.decode(chunk).sample for chunk in _chunks(images, chunk_size)])
    return unfold_frames(pixels, latents.shape[0])  # (B, 3, F, H, W)
