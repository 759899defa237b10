"""Sampling a video some of whose frames are given, from a model that was never trained to take them.

Ho et al. 2022, "Video Diffusion Models" (VDM, arXiv:2204.03458), sec. 3.1: the sample ``z`` splits into the
given frames ``a`` and the rest ``b``.

- **Replacement** (their baseline): after every denoising step the given frames of the sample are replaced
  by the given frames ``x^a`` noised to the next step's level (``q(z_s^a | x^a)``), and by ``x^a`` itself
  after the last step. The rest is denoised as usual, so it sees the given frames only through the model's
  attention at each step, which VDM shows is too weak to make it agree with them.
- **Reconstruction guidance**: besides replacement, the model's estimate of the clean rest is corrected by
  the gradient of how badly its estimate of the given frames reconstructs them,
  ``x~^b = x^^b - (w_r * alpha_t / 2) * grad_{z_t^b} ||x^a - x^^a(z_t)||^2 / K``, and its estimate of the given
  frames is ``x^a``. The squared error is divided by the number ``K`` of given frames (VDM's has no ``K``: it
  gives one frame count), so that a weight means the same pull for one given frame or many: with the sum, the
  weight that suits image-to-video on the demo (20) tore the new frames of an extension from 4 given frames
  apart (15.4 dB against the truth; 20.1 dB with the mean). The corrected estimate is turned back into the model's prediction type (epsilon, v or
  sample) for whatever scheduler runs the loop.

The scheduler's sample and the model's input differ by the scheduler's input scaling (``scale_model_input``);
the model's input is always variance preserving, ``z_t = alpha_t x + sigma_t eps``, with ``alpha_t`` and
``sigma_t`` from the scheduler's training noise schedule at ``t`` (:func:`vp_coefficients`).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import SchedulerMixin

from cascade.utils.checks import check_choice, check_number

CONDITIONING_METHODS = ("reconstruction", "replacement")


def vp_coefficients(scheduler: SchedulerMixin, timestep) -> tuple[float, float]:
    """``(alpha_t, sigma_t)`` of the model input ``z_t = alpha_t x + sigma_t eps`` at ``timestep``, from the
    scheduler's ``alphas_cumprod``; a fractional timestep (Karras sigmas) is interpolated in log sigma, as the
    sigma schedulers map sigmas to timesteps."""
    alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
    if alphas_cumprod is None:
        raise ValueError(
            f"reconstruction guidance needs a scheduler with a discrete noise schedule (`alphas_cumprod`), "
            f"got {type(scheduler).__name__}; use conditioning_method='replacement' or another scheduler."
        )
    alphas_cumprod = alphas_cumprod.to(torch.float64)
    log_sigmas = 0.5 * torch.log((1 - alphas_cumprod) / alphas_cumprod)  # (T,)
    position = min(max(float(timestep), 0.0), len(log_sigmas) - 1.0)
    low = math.floor(position)
    high = min(low + 1, len(log_sigmas) - 1)
    fraction = position - low
    sigma = math.exp((1 - fraction) * float(log_sigmas[low]) + fraction * float(log_sigmas[high]))
    alpha = 1 / math.sqrt(1 + sigma**2)
    return alpha, sigma * alpha


def predicted_sample(
    prediction: torch.Tensor, model_input: torch.Tensor, alpha: float, sigma: float, kind: str
):
    """The clean sample ``x^`` that ``prediction`` of type ``kind`` implies for the model input ``z_t``."""
    if kind == "epsilon":
        return (model_input - sigma * prediction) / alpha
    if kind == "v_prediction":
        return alpha * model_input - sigma * prediction
    if kind == "sample":
        return prediction
    raise ValueError(
        f"reconstruction guidance supports prediction types epsilon, v_prediction and sample, got {kind!r}."
    )


def prediction_from_sample(
    sample: torch.Tensor, model_input: torch.Tensor, alpha: float, sigma: float, kind: str
):
    """The prediction of type ``kind`` that implies the clean sample ``sample`` for the model input ``z_t``
    (the inverse of :func:`predicted_sample`)."""
    if kind == "sample":
        return sample
    epsilon = (model_input - alpha * sample) / sigma
    return epsilon if kind == "epsilon" else alpha * epsilon - sigma * sample


@dataclass
class KnownFrames:
    """Frames of a stage's output that are given: ``frames`` ``(B, C, K, h, w)`` as the sample holds them (VAE
    latents in latent space, pixels in [-1, 1] in pixel space) at output positions ``indices`` (``K`` distinct
    ints), with ``noise`` ``(B, C, K, h, w)`` to noise them by. ``method`` is ``"replacement"`` or
    ``"reconstruction"`` (replacement plus reconstruction guidance of weight ``guidance_scale``, VDM's ``w_r``).
    """

    frames: torch.Tensor
    indices: list[int]
    noise: torch.Tensor
    method: str = "reconstruction"
    guidance_scale: float = 1.0

    def __post_init__(self):
        check_choice("conditioning_method", self.method, CONDITIONING_METHODS)
        check_number("reconstruction_guidance_scale", self.guidance_scale, minimum=0.0)
        if self.frames.ndim != 5 or self.frames.shape != self.noise.shape:
            raise ValueError(
                f"known `frames` and `noise` must both be (B, C, K, h, w), got {tuple(self.frames.shape)} and "
                f"{tuple(self.noise.shape)}."
            )
        if len(self.indices) != self.frames.shape[2] or len(set(self.indices)) != len(self.indices):
            raise ValueError(
                f"`indices` must be {self.frames.shape[2]} distinct frame positions, got {self.indices!r}."
            )

    def after_step(self, latents: torch.Tensor, scheduler: SchedulerMixin, next_timestep) -> torch.Tensor:
        """``latents`` ``(B, C, F, h, w)`` with the known frames replaced by the given ones noised to
        ``next_timestep`` (the clean given frames when ``None``: after the last step)."""
        replaced = latents.clone()
        given = self.frames.to(latents.dtype)
        if next_timestep is not None:
            timesteps = next_timestep.reshape(1).expand(given.shape[0])  # (B,)
            given = scheduler.add_noise(given, self.noise.to(latents.dtype), timesteps)
        replaced[:, :, self.indices] = given
        return replaced

    def guided_prediction(
        self,
        predict: Callable[[torch.Tensor], torch.Tensor],
        model_input: torch.Tensor,
        frames: slice,
        scheduler: SchedulerMixin,
        timestep,
    ) -> torch.Tensor:
        """``predict(model_input)`` for the window ``frames`` of the video (``model_input`` ``(B, C, W, h, w)``,
        scaled), with reconstruction guidance from the known frames inside the window; plain when there are
        none there or the method is replacement."""
        inside = [
            (k, index - frames.start)
            for k, index in enumerate(self.indices)
            if frames.start <= index < frames.stop
        ]
        if self.method == "replacement" or not inside:
            return predict(model_input)
        given_at, window_at = [k for k, _ in inside], [position for _, position in inside]
        kind = scheduler.config.prediction_type
        alpha, sigma = vp_coefficients(scheduler, timestep)
        with torch.enable_grad():
            noisy = model_input.detach().requires_grad_(True)
            estimate = predicted_sample(predict(noisy), noisy, alpha, sigma, kind)  # (B, C, W, h, w)
            given = self.frames[:, :, given_at].to(estimate.dtype)
            error = (given - estimate[:, :, window_at]).square().sum() / len(given_at)
            (gradient,) = torch.autograd.grad(error, noisy)
        corrected = estimate.detach() - (self.guidance_scale * alpha / 2) * gradient
        corrected[:, :, window_at] = given
        return prediction_from_sample(corrected, noisy.detach(), alpha, sigma, kind)
