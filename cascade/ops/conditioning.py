"""How the conditioning stages of the cascade see what the previous stage made.

- Masked frame conditioning (Singer et al. 2022, "Make-A-Video", sec. 3.3, the frame interpolation
  network ↑F): the known frames, zeros elsewhere, and a binary mask of where they are, concatenated
  to the noisy input as extra channels.
  With ``fill="blend"`` the frames between two known ones hold their linear blend instead of zeros
  (the mask still says which frames were given): the interpolation stage then conditions on the
  simplest guess of the in-between frames and learns what to fix in it, as the super-resolution stages
  condition on the upsampled low-resolution frames (Ho et al. 2022, "Imagen Video", arXiv:2210.02303).
- Noise conditioning augmentation (Ho et al. 2022, "Cascaded Diffusion Models", arXiv:2106.15282,
  sec. 4.1; Imagen Video; the Stable Diffusion x4 upscaler): the low-resolution input is noised to a
  level that is also given to the UNet as a class label, so the stage learns to fix the previous
  stage's artefacts rather than copy them.
"""

import torch
from diffusers import DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor

from cascade.utils.checks import check_choice, check_int


def interpolated_length(num_frames: int, factor: int) -> int:
    """Frames after inserting ``factor - 1`` frames between each pair of ``num_frames`` frames."""
    check_int("num_frames", num_frames, minimum=1)
    check_int("factor", factor, minimum=1)
    return (num_frames - 1) * factor + 1


CONDITIONING_FILLS = ("zeros", "blend")


def masked_frame_conditioning(
    known: torch.Tensor, factor: int, fill: str = "zeros"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Places ``known`` frames ``(B, C, F, H, W)`` at every ``factor``-th position of a longer video.

    Returns ``(frames, mask)``: ``frames`` ``(B, C, F', H, W)`` with the known frames at ``i * factor``
    and, between them, zeros (``fill="zeros"``) or their linear blend (``fill="blend"``, see
    :func:`blend_unknown_frames`); ``mask`` ``(B, 1, F', H, W)`` is 1 exactly at the known frames;
    ``F' = (F - 1) * factor + 1``.
    """
    if not isinstance(known, torch.Tensor) or known.ndim != 5:
        raise ValueError(
            f"`known` must be a tensor of shape (B, C, F, H, W), got {getattr(known, 'shape', known)!r}."
        )
    check_choice("fill", fill, CONDITIONING_FILLS)
    batch, channels, num_frames, height, width = known.shape
    length = interpolated_length(num_frames, factor)
    frames = known.new_zeros(batch, channels, length, height, width)
    mask = known.new_zeros(batch, 1, length, height, width)
    frames[:, :, ::factor] = known
    mask[:, :, ::factor] = 1
    if fill == "blend":
        frames = blend_unknown_frames(frames, mask[:, 0, :, 0, 0] > 0)
    return frames, mask


def blend_unknown_frames(frames: torch.Tensor, is_known: torch.Tensor) -> torch.Tensor:
    """``frames`` ``(B, C, F, H, W)`` with every frame not marked in ``is_known`` ``(B, F)`` (bool) replaced
    by the linear blend of the nearest known frames before and after it, weighted by distance in frames.
    Each video's first and last frames must be known."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 5:
        raise ValueError(
            f"`frames` must be a tensor of shape (B, C, F, H, W), got {getattr(frames, 'shape', frames)!r}."
        )
    batch, num_frames = frames.shape[0], frames.shape[2]
    if (
        not isinstance(is_known, torch.Tensor)
        or is_known.dtype != torch.bool
        or tuple(is_known.shape) != (batch, num_frames)
    ):
        raise ValueError(
            f"`is_known` must be a bool tensor of shape {(batch, num_frames)}, got "
            f"{getattr(is_known, 'dtype', type(is_known).__name__)} {tuple(getattr(is_known, 'shape', ()))}."
        )
    if not (is_known[:, 0].all() and is_known[:, -1].all()):
        raise ValueError("`is_known` must mark the first and the last frame of every video as known.")
    blended = []
    positions = torch.arange(num_frames, device=frames.device)  # (F,)
    for video, known in zip(frames, is_known.to(frames.device), strict=True):  # (C, F, H, W), (F,)
        anchors = positions[known]  # (K,)
        after = torch.searchsorted(anchors, positions).clamp(max=len(anchors) - 1)  # (F,) first anchor >= f
        before = torch.where(anchors[after] == positions, after, after - 1)  # (F,) last anchor <= f
        start, end = anchors[before], anchors[after]  # (F,)
        weight = ((positions - start) / (end - start).clamp(min=1)).to(video.dtype)  # (F,)
        weight = weight[None, :, None, None]  # (1, F, 1, 1)
        blended.append(video[:, start] * (1 - weight) + video[:, end] * weight)  # (C, F, H, W)
    return torch.stack(blended)


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
