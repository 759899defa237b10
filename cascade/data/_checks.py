"""Input checks shared by ``cascade.data``: each raises ``ValueError`` naming the argument, its value
and what is allowed."""

from collections.abc import Iterable
from numbers import Real

import numpy as np


def check_positive_int(name: str, value) -> int:
    """Returns ``value`` as an int if it is a positive integer (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    return int(value)


def check_non_negative_int(name: str, value) -> int:
    """Returns ``value`` as an int if it is an integer >= 0 (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"`{name}` must be an int >= 0, got {value!r}.")
    return int(value)


def check_positive_float(name: str, value) -> float:
    """Returns ``value`` as a float if it is a finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}.")
    return float(value)


def check_choice(name: str, value, allowed: Iterable):
    """Returns ``value`` if it is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")
    return value


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
