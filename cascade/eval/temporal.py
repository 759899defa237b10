"""Temporal consistency and motion of generated videos, measured without a reference.

A perfectly static video has no flicker, so temporal flickering alone rewards it; the motion magnitude is
reported next to it to expose that case.
"""

import numpy as np
import torch

from cascade.eval.scores import Scores
from cascade.eval.video_input import to_video_tensor


def _mean_frame_difference(videos: np.ndarray | torch.Tensor) -> torch.Tensor:
    clips = to_video_tensor(videos, "videos", min_frames=2, dtype=torch.float64)  # (B, F, H, W, 3)
    differences = (clips[:, 1:] - clips[:, :-1]).abs()  # (B, F-1, H, W, 3)
    return differences.mean(dim=(2, 3, 4)).mean(dim=1)  # (B,)


def temporal_flickering(videos: np.ndarray | torch.Tensor) -> Scores:
    """VBench temporal flickering score per video (Huang et al. 2024, "VBench: Comprehensive Benchmark Suite
    for Video Generative Models"); higher is steadier, 1.0 for a static video.

    As VBench: per video, the mean absolute difference of consecutive frames on the 0-255 scale (mean over
    pixels and channels, then over the ``F - 1`` pairs), reported as ``(255 - mean) / 255``. uint8 input
    reproduces VBench's numbers (it reads 8-bit frames); float input is not quantised. VBench evaluates it
    on static-scene prompts; read it together with :func:`motion_magnitude`.

    Args:
        videos: ``(B, F, H, W, 3)`` float in [0, 1] or uint8, ``F >= 2``.

    Returns:
        :class:`~cascade.eval.scores.Scores` with per-video ``values`` ``(B,)`` and their mean.
    """
    mean_difference = _mean_frame_difference(videos) * 255.0  # (B,) on the 0-255 scale
    return Scores.from_values(((255.0 - mean_difference) / 255.0).cpu().numpy())


def motion_magnitude(videos: np.ndarray | torch.Tensor) -> Scores:
    """Optical-flow-free motion proxy: mean absolute difference of consecutive frames, in [0, 1] units.

    Per video, the mean over pixels, channels and the ``F - 1`` consecutive pairs of ``|x_{t+1} - x_t|``
    (values in [0, 1]); 0 for a static video and larger for more (or faster) change. It is
    ``1 - temporal_flickering``, reported separately so a static video cannot pass as a good one: the
    frame-difference measure of VBench's flicker check, read the other way (cf. VBench's dynamic degree,
    which uses RAFT optical flow instead).

    Args:
        videos: ``(B, F, H, W, 3)`` float in [0, 1] or uint8, ``F >= 2``.

    Returns:
        :class:`~cascade.eval.scores.Scores` with per-video ``values`` ``(B,)`` and their mean.
    """
    return Scores.from_values(_mean_frame_difference(videos).cpu().numpy())
