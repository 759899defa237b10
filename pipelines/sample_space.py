"""Whether a stage's UNet and VAE agree on the space it denoises in: pixels (no VAE, 3 RGB channels) or a VAE's
latents (its ``latent_channels``). A mismatch would otherwise come out as frames of the wrong channel count (a
latent UNet without its VAE returns its 4 latent channels as "frames") or fail deep inside the VAE."""

from diffusers import AutoencoderKL

RGB_CHANNELS = 3


def check_sample_space(noisy_channels: int, vae: AutoencoderKL | None, output_type: str) -> None:
    """Raises ``ValueError`` naming ``vae`` and both channel counts when a UNet that denoises ``noisy_channels``
    channels cannot work with ``vae`` (``None``: pixel space, which needs 3). A call for ``output_type="latent"``
    is let through: it returns the denoised sample itself, which is what it asks for whatever the VAE."""
    if output_type == "latent":
        return
    if vae is None and noisy_channels != RGB_CHANNELS:
        raise ValueError(
            f"`vae` is None, so the stage works in pixel space and its `unet` must denoise {RGB_CHANNELS} (RGB) "
            f"channels, but it denoises {noisy_channels}: a latent UNet needs the VAE whose latents it reads."
        )
    if vae is not None and noisy_channels != vae.config.latent_channels:
        raise ValueError(
            f"`vae` has {vae.config.latent_channels} latent channels but `unet` denoises {noisy_channels}; give "
            "the VAE the UNet was trained with (or vae=None for a pixel-space UNet of 3 channels)."
        )
