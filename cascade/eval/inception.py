"""Inception Score of videos (Salimans et al. 2016) with a given video classifier (e.g. C3D on UCF-101)."""

from collections.abc import Callable

import numpy as np
import torch

from cascade.eval.video_input import to_video_tensor
from cascade.utils.checks import check_int


@torch.no_grad()
def inception_score(
    videos: np.ndarray | torch.Tensor,
    classifier: Callable[[torch.Tensor], torch.Tensor],
    *,
    splits: int = 10,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` (Salimans et al. 2016, "Improved Techniques for
    Training GANs") and its standard deviation over ``splits`` disjoint splits.

    As in the reference code, the videos are cut into ``splits`` contiguous parts (part ``i`` is
    ``[i*N//splits, (i+1)*N//splits)``); in each part ``p(y)`` is the mean of the softmax of the logits and
    the score is ``exp`` of the mean KL divergence; the result is the mean and (population) standard
    deviation of the part scores. Video papers use a C3D classifier trained on UCF-101 (TGAN protocol);
    state the classifier, its preprocessing, the sample count and ``splits``.

    Args:
        videos: ``(B, F, H, W, 3)`` float in [0, 1] or uint8, ``B >= splits``.
        classifier: callable mapping videos ``(N, 3, F, H, W)`` float32 in [0, 1] to logits ``(N, C)``; any
            resizing or normalisation the classifier needs is its own job.
        splits: number of splits (Salimans et al.: 10).
        batch_size: videos per classifier call.
        device: device the videos are moved to before ``classifier``.

    Returns:
        ``(mean, std)`` of the split scores.
    """
    if not callable(classifier):
        raise ValueError(f"classifier must be callable; got {type(classifier).__name__}")
    check_int("splits", splits, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    clips = to_video_tensor(videos, "videos")  # (B, F, H, W, 3)
    if clips.shape[0] < splits:
        raise ValueError(f"videos must hold at least splits={splits} videos; got {clips.shape[0]}")
    logits = []
    for batch in clips.split(batch_size):
        output = classifier(batch.permute(0, 4, 1, 2, 3).contiguous().to(device))  # (b, 3, F, H, W) -> (b, C)
        if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != batch.shape[0]:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ValueError(f"classifier must return ({batch.shape[0]}, C) logits; got {shape}")
        logits.append(output.detach().double().cpu())
    all_logits = torch.cat(logits)  # (B, C)
    if not torch.isfinite(all_logits).all():
        raise ValueError("classifier returned NaN or infinite logits")
    probs = torch.softmax(all_logits, dim=1).numpy()  # (B, C)
    count = probs.shape[0]
    scores = []
    for index in range(splits):
        part = probs[index * count // splits : (index + 1) * count // splits]  # (n, C)
        marginal = part.mean(axis=0, keepdims=True)  # (1, C)
        log_ratio = np.log(np.where(part > 0, part, 1.0)) - np.log(np.where(part > 0, marginal, 1.0))
        scores.append(np.exp((part * log_ratio).sum(axis=1).mean()))  # terms with p(y|x) = 0 contribute 0
    return float(np.mean(scores)), float(np.std(scores))
