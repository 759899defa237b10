"""Stable target field: a lower-variance denoising target from a reference batch of clean samples.

Xu, Tong, Jaakkola et al. 2023, "Stable Target Field for Reduced Variance Score Estimation in Diffusion
Models" (ICLR). At noise level ``t`` a noisy sample ``x_t = sqrt(a) x0 + sqrt(1 - a) eps`` says little
about which clean ``x0`` it came from, so the ordinary target, built from the one ``x0`` drawn, varies a
lot between draws; the best denoiser predicts ``E[x0 | x_t, caption]`` instead. The stable target field
estimates that expectation over a reference set holding the drawn ``x0`` and other samples of the same
caption, each weighted by how likely it makes ``x_t``:

    w_i ∝ exp(-|x_t - sqrt(a) x0_i|^2 / (2 (1 - a))),   x0_target = sum_i w_i x0_i.

At low noise the weights fall on the drawn ``x0`` and the target is the ordinary one; at the noisiest
levels they are nearly uniform and the target is the reference set's mean, whose variance is the
set's size times smaller. The optimum is unchanged; only the gradient's noise shrinks, most at the
noisiest levels, where a keyframes model learns what the text says about layout and motion. (On the demo
it did not by itself make the keyframes follow the direction word; with a fixed reference set per caption
(``shared=True``), on red circles at t=999, it is the first step of the curriculum that did: see the
README's demo section.)

Samples whose caption was dropped for classifier-free guidance are weighted over every sample of the
batch and its references: the unconditional distribution.
"""

import torch
from diffusers import DDPMScheduler
from torch.utils.data import Dataset

from cascade.utils.checks import check_bool, check_int

from .targets import training_target


class ReferenceClips(Dataset):
    """``dataset``'s items with ``"reference_values"`` ``(count, C, F, H, W)`` added: ``count`` other clips
    with the item's caption, from ``dataset.same_caption(index, count)`` (e.g.
    :meth:`~cascade.data.ShapesDataset.same_caption`), new clips for every item.

    With ``shared=True`` every item with a caption gets the same ``count`` clips,
    ``dataset.caption_clips(caption, count)`` drawn once and kept in memory: a fixed reference set per
    caption, whose mean, the target at the noisiest levels, then barely varies between steps.
    """

    def __init__(self, dataset: Dataset, count: int, shared: bool = False):
        check_bool("shared", shared)
        method, argument = ("caption_clips", "caption") if shared else ("same_caption", "index")
        if not callable(getattr(dataset, method, None)):
            raise ValueError(
                f"`dataset` must offer {method}({argument}, count) to draw reference clips (as ShapesDataset "
                f"does), got a {type(dataset).__name__}."
            )
        check_int("count", count, minimum=1)
        self.dataset, self.count, self.shared = dataset, count, shared
        self._per_caption: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        if not self.shared:
            return {**item, "reference_values": self.dataset.same_caption(index, self.count)}
        caption = item["caption"]
        if caption not in self._per_caption:
            self._per_caption[caption] = self.dataset.caption_clips(caption, self.count)
        return {**item, "reference_values": self._per_caption[caption]}


def posterior_weights(
    noisy: torch.Tensor, candidates: torch.Tensor, allowed: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:  # (B, N)
    """``w[b, i]`` ∝ ``N(noisy[b]; sqrt(a_b) candidates[i], (1 - a_b) I)`` over the ``allowed[b]`` candidates
    (0 elsewhere); each row sums to 1. ``noisy`` ``(B, ...)``, ``candidates`` ``(N, ...)`` of the same sample
    shape, ``allowed`` ``(B, N)`` bool with a True in every row, ``alphas_cumprod`` ``(B,)`` in (0, 1)."""
    if noisy.shape[1:] != candidates.shape[1:]:
        raise ValueError(
            f"`candidates` must have the sample shape of `noisy` {tuple(noisy.shape[1:])}, got "
            f"{tuple(candidates.shape[1:])}."
        )
    if allowed.shape != (noisy.shape[0], candidates.shape[0]) or not bool(allowed.any(dim=1).all()):
        raise ValueError(
            f"`allowed` must be a ({noisy.shape[0]}, {candidates.shape[0]}) mask with a True in every row, got "
            f"shape {tuple(allowed.shape)}."
        )
    if alphas_cumprod.shape != (noisy.shape[0],) or not bool(
        ((alphas_cumprod > 0) & (alphas_cumprod < 1)).all()
    ):
        raise ValueError(
            f"`alphas_cumprod` must be ({noisy.shape[0]},) values in (0, 1), got {alphas_cumprod}."
        )
    x = noisy.flatten(1).double()  # (B, D)
    c = candidates.flatten(1).double()  # (N, D)
    scale = alphas_cumprod.double().sqrt()[:, None]  # (B, 1)
    # |x - s c|^2 expanded, in float64: (B, N)
    distances = (x * x).sum(1, keepdim=True) - 2 * scale * (x @ c.T) + scale**2 * (c * c).sum(1)[None]
    logits = -distances / (2 * (1 - alphas_cumprod.double())[:, None])
    return logits.masked_fill(~allowed, float("-inf")).softmax(dim=1)


def stable_training_target(
    scheduler: DDPMScheduler,
    sample: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    references: torch.Tensor,
    unconditional: torch.Tensor,
) -> torch.Tensor:
    """The stable-target-field version of :func:`~cascade.training.targets.training_target`.

    Args:
        scheduler: its ``alphas_cumprod`` and ``prediction_type`` (``epsilon`` or ``v_prediction``).
        sample: the clean samples ``(B, C, F, H, W)``, noised by ``noise`` (same shape) at ``timesteps`` ``(B,)``.
        references: ``(B, K, C, F, H, W)``, other samples with the caption of each sample.
        unconditional: ``(B,)`` bool, True where the caption was dropped: that sample's reference set is the
            whole batch with all references.

    Returns the target ``(B, C, F, H, W)``: ``eps`` and ``v`` of the weighted clean sample ``x0_target`` that
    give the same noisy sample, ``eps_target = eps + sqrt(a) / sqrt(1 - a) (x0 - x0_target)``.
    """
    batch, count = sample.shape[0], references.shape[1]
    if references.shape[0] != batch or references.shape[2:] != sample.shape[1:]:
        raise ValueError(
            f"`references` must be (B, K, *sample shape) = ({batch}, K, {', '.join(map(str, sample.shape[1:]))}), "
            f"got {tuple(references.shape)}."
        )
    if unconditional.shape != (batch,) or unconditional.dtype != torch.bool:
        raise ValueError(f"`unconditional` must be a ({batch},) bool tensor, got {unconditional!r}.")
    candidates = torch.cat([sample[:, None], references.to(sample)], dim=1)  # (B, 1 + K, C, F, H, W)
    group = torch.arange(batch, device=sample.device).repeat_interleave(1 + count)  # (B * (1 + K),)
    allowed = (group[None] == torch.arange(batch, device=sample.device)[:, None]) | unconditional.to(
        sample.device
    )[:, None]  # (B, B * (1 + K))
    alphas_cumprod = scheduler.alphas_cumprod.to(sample.device)[timesteps]  # (B,)
    noisy = scheduler.add_noise(sample, noise, timesteps)
    candidates = candidates.flatten(0, 1)  # (B * (1 + K), C, F, H, W)
    weights = posterior_weights(noisy, candidates, allowed, alphas_cumprod)  # (B, B * (1 + K))
    target_sample = (weights @ candidates.flatten(1).double()).view(sample.shape)  # float64
    ratio = (alphas_cumprod.double() / (1 - alphas_cumprod.double())).sqrt()  # (B,)
    shift = ratio.view(-1, *[1] * (sample.ndim - 1)) * (sample.double() - target_sample)  # in float64: the
    target_noise = noise + shift.to(noise.dtype)  # ratio reaches ~150 at the lowest noise levels
    return training_target(scheduler, target_sample.to(sample.dtype), target_noise, timesteps)
