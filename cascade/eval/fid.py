"""Per-frame FID of videos (Heusel et al. 2017): every frame is a sample for an image feature extractor."""

from collections.abc import Callable

import numpy as np
import torch

from cascade.eval.frechet import frechet_distance_from_features
from cascade.eval.video_input import check_same_shape, to_video_tensor
from cascade.utils.checks import check_int


@torch.no_grad()
def _frame_features(
    videos: torch.Tensor,
    extractor: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    device: str | torch.device,
) -> np.ndarray:
    frames = videos.flatten(0, 1).permute(0, 3, 1, 2)  # (B*F, 3, H, W) in [0, 1]
    features = []
    for batch in frames.split(batch_size):
        output = extractor(batch.contiguous().to(device))
        if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != batch.shape[0]:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ValueError(f"extractor must return a ({batch.shape[0]}, D) tensor of features; got {shape}")
        features.append(output.detach().double().cpu().numpy())
    return np.concatenate(features)


def frame_fid(
    real_videos: np.ndarray | torch.Tensor,
    generated_videos: np.ndarray | torch.Tensor,
    extractor: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> float:
    """Per-frame FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a
    Local Nash Equilibrium") between the frames of real and generated videos.

    All ``B * F`` frames of each set are passed through ``extractor`` and the Frechet distance between
    Gaussians fitted to the two feature sets is returned. Frames of one video are correlated, so the
    effective sample size is smaller than ``B * F``; report the number of videos and frames.

    Args:
        real_videos, generated_videos: ``(B, F, H, W, 3)`` float in [0, 1] or uint8, same ``(F, H, W, 3)``.
        extractor: callable mapping frames ``(N, 3, H, W)`` float32 in [0, 1] to features ``(N, D)``. The
            standard detector is the 2048-d pool3 feature of the TF Inception-v3 (e.g. NVIDIA's TorchScript
            ``inception-2015-12-05.pt``, which takes [0, 255]: pass
            ``lambda x: net(x * 255, return_features=True)``); state which one you used.
        batch_size: frames per extractor call.
        device: device the frames are moved to before ``extractor``.
    """
    if not callable(extractor):
        raise ValueError(f"extractor must be callable; got {type(extractor).__name__}")
    check_int("batch_size", batch_size, minimum=1)
    real = to_video_tensor(real_videos, "real_videos")  # (B1, F, H, W, 3)
    generated = to_video_tensor(generated_videos, "generated_videos")  # (B2, F, H, W, 3)
    check_same_shape(real, generated, "real_videos", "generated_videos", ignore_batch=True)
    return frechet_distance_from_features(
        _frame_features(real, extractor, batch_size, device),
        _frame_features(generated, extractor, batch_size, device),
    )
