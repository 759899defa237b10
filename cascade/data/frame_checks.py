"""The check of RGB frames the shapes-world analysis reads; it raises ``ValueError`` naming the argument, its
value and what is allowed (generic checks are :mod:`cascade.utils.checks`)."""

import numpy as np


def check_rgb_frames(name: str, frames, ndim: int) -> np.ndarray:
    """Returns ``frames`` as a float64 array of ``ndim`` dims ending in 3 RGB channels in [0, 1]."""
    array = np.asarray(frames, dtype=np.float64)
    if array.ndim != ndim or array.shape[-1] != 3 or 0 in array.shape:
        expected = "(H, W, 3)" if ndim == 3 else "(F, H, W, 3)"
        raise ValueError(f"`{name}` must be a non-empty array of shape {expected}, got shape {array.shape}.")
    if not np.isfinite(array).all() or array.min() < -1e-6 or array.max() > 1 + 1e-6:
        raise ValueError(
            f"`{name}` must hold finite values in [0, 1], got range [{array.min()}, {array.max()}]."
        )
    return np.clip(array, 0.0, 1.0)
