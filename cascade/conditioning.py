"""How the conditioning stages of the cascade see what the previous stage made.

- Masked frame conditioning (Singer et al. 2022, "Make-A-Video", sec. 3.3, the frame interpolation
  network ↑F): the known frames, zeros elsewhere, and a binary mask of where they are, concatenated
  to the noisy input as extra channels.
- Noise conditioning augmentation (Ho et al. 2022, "Cascaded Diffusion Models", arXiv:2106.15282,
  sec. 4.1; Imagen Video; the Stable Diffusion x4 upscaler): the low-resolution input is noised to a
  level that is also given to the UNet as a class label, so the stage learns to fix the previous
  stage's artefacts rather than copy them.
"""

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor


def interpolated_length(num_frames: int, factor: int) -> int:
    """Frames after inserting ``factor - 1`` frames between each pair of ``num_frames`` frames."""
    for name, value in (("num_frames", num_frames), ("factor", factor)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    return (num_frames - 1) * factor + 1


def masked_frame_conditioning(known: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Places ``known`` frames ``(B, C, F, H, W)`` at every ``factor``-th position of a longer video.

    Returns ``(frames, mask)``: ``frames`` ``(B, C, F', H, W)`` with the known frames at ``i * factor``
    and zeros between, and ``mask`` ``(B, 1, F', H, W)`` that is 1 exactly there; ``F' = (F - 1) * factor + 1``.
    """
    if not isinstance(known, torch.Tensor) or known.ndim != 5:
        raise ValueError(
            f"`known` must be a tensor of shape (B, C, F, H, W), got {getattr(known, 'shape', known)!r}."
        )
    batch, channels, num_frames, height, width = known.shape
    length = interpolated_length(num_frames, factor)
    frames = known.new_zeros(batch, channels, length, height, width)
    mask = known.new_zeros(batch, 1, length, height, width)
    frames[:, :, ::factor] = known
    mask[:, :, ::factor] = 1
    return frames, mask


def noise_augment(
    video: torch.Tensor,
    noise_level: torch.Tensor,
    scheduler: DDPMScheduler,
    generator: torch.Generator | list[torch.Generator] | None = None,
) -> torch.Tensor:
    """Noises ``video`` ``(B, C, F, H, W)`` to ``noise_level`` ``(B,)`` (timesteps of ``scheduler``), with one
    level per video shared by its frames, as the x4 upscaler noises its low-resolution input."""
    if not isinstance(video, torch.Tensor) or video.ndim != 5:
        raise ValueError(
            f"`video` must be a tensor of shape (B, C, F, H, W), got {getattr(video, 'shape', video)!r}."
        )
    levels = scheduler.config.num_train_timesteps
    if (
        not isinstance(noise_level, torch.Tensor)
        or noise_level.shape != (video.shape[0],)
        or noise_level.min() < 0
        or noise_level.max() >= levels
    ):
        raise ValueError(
            f"`noise_level` must be a tensor of {video.shape[0]} integers in [0, {levels}), got {noise_level!r}."
        )
    noise = randn_tensor(video.shape, generator=generator, device=video.device, dtype=video.dtype)
    return scheduler.add_noise(video, noise, noise_level.to(video.device).long())


def resize_frames(video: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resizes every frame of ``video`` ``(B, C, F, H, W)`` to ``size`` ``(h, w)`` with ``F.interpolate``'s
    ``mode`` (``align_corners=False`` where the mode takes it); returns ``(B, C, F, h, w)``."""
    batch, channels, frames, height, width = video.shape
    flat = video.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)  # (B*F, C, H, W)
    corners = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    flat = F.interpolate(flat, size=tuple(size), mode=mode, **corners)  # (B*F, C, h, w)
    return flat.reshape(batch, frames, channels, *flat.shape[-2:]).permute(0, 2, 1, 3, 4)
