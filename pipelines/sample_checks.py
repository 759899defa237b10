"""The denoising loop's guard against non-finite samples.

In float16 a UNet's activations can overflow to ``inf`` and then ``nan``; once one value of the sample is not
finite the scheduler spreads it, and the VAE decodes the result to a black (or garbage) video that gets
written as if nothing had gone wrong. The loop checks the sample after every scheduler step (one
``isfinite().all()``, a single reduction) and stops at the first non-finite one with
:class:`NonFiniteSampleError`, which names the stage, the step and what to try. The VAE's decoded frames are
checked the same way: a float16 VAE can overflow on a finite sample (hence diffusers' ``force_upcast``).
"""

import torch


class NonFiniteSampleError(FloatingPointError, ValueError):
    """The denoised sample held ``nan`` or ``inf`` after a scheduler step. A ``FloatingPointError`` (what it
    is) and a ``ValueError`` (what the command line reports in one line, as for a bad argument: it is
    answered by changing the request's dtype or guidance)."""


def check_finite_sample(
    sample: torch.Tensor, stage: str, step: int, steps: int, guidance_scale: float
) -> None:
    """Raises :class:`NonFiniteSampleError` when ``sample`` ``(B, C, F, h, w)`` (or ``(B, C, h, w)``) holds a
    ``nan`` or ``inf``, naming ``stage``, ``step`` (0-based) of ``steps``, the sample's dtype and
    ``guidance_scale``."""
    if torch.isfinite(sample).all():
        return
    bad = (~torch.isfinite(sample)).sum().item()
    raise NonFiniteSampleError(
        f"{stage}: the sample became non-finite ({bad} of {sample.numel()} values nan or inf) at denoising "
        f"step {step + 1} of {steps} in {str(sample.dtype).removeprefix('torch.')}, so sampling stopped "
        "rather than decode a black video. Try float32 (or bfloat16, whose range is float32's) instead of "
        f"float16: `pipe.to(torch.float32)`; or a lower `guidance_scale` (it was {guidance_scale:g})."
    )


def check_finite_pixels(pixels: torch.Tensor, stage: str) -> None:
    """Raises :class:`NonFiniteSampleError` when the VAE's decoded ``pixels`` ``(B, 3, F, H, W)`` hold a ``nan``
    or ``inf``, naming ``stage`` and what to try."""
    if torch.isfinite(pixels).all():
        return
    raise NonFiniteSampleError(
        f"{stage}: the VAE decoded non-finite frames in {str(pixels.dtype).removeprefix('torch.')} (the sample "
        "itself was finite), so the stage stopped rather than return black frames. Decode in float32: "
        "`pipe.vae.to(torch.float32)`."
    )
