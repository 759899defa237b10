"""What a denoising UNet learns to predict: the noise or ``v``, by the scheduler's ``prediction_type``."""

import torch
from diffusers import DDPMScheduler

from .config import PREDICTION_TYPES


def training_target(
    scheduler: DDPMScheduler, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What the UNet learns to predict for ``sample`` ``(B, C, F, H, W)`` noised by ``noise`` (same shape)
    at ``timesteps`` ``(B,)``: the noise (``epsilon``) or ``v`` (``v_prediction``, Salimans & Ho 2022),
    by the scheduler's ``prediction_type``."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(sample, noise, timesteps)
    raise ValueError(
        f"`prediction_type` of the scheduler must be one of {list(PREDICTION_TYPES)}, got {kind!r}."
    )
