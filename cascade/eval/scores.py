"""The result type of metrics reported per frame or per video and averaged."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    """Per-item metric values and their mean.

    Attributes:
        values: ``(B, F)`` for per-frame metrics (PSNR, SSIM, LPIPS), ``(B,)`` for per-video ones.
        mean: the mean of ``values`` (the number papers report).
    """

    values: np.ndarray
    mean: float

    @classmethod
    def from_values(cls, values: np.ndarray) -> "Scores":
        """Scores holding ``values`` and their mean."""
        return cls(values=values, mean=float(values.mean()))
