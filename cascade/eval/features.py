"""Validation of feature sets and their Gaussian statistics (mean, covariance)."""

import warnings

import numpy as np
import torch


def to_feature_matrix(features: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """Validate a feature set and return it as a float64 array of shape ``(N, D)``."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    if not isinstance(features, np.ndarray):
        raise ValueError(
            f"{name} must be a numpy array or torch tensor of shape (N, D); got {type(features).__name__}"
        )
    if features.ndim != 2 or features.shape[1] < 1:
        raise ValueError(f"{name} must have shape (N, D) with D >= 1; got shape {features.shape}")
    if not (np.issubdtype(features.dtype, np.floating) or np.issubdtype(features.dtype, np.integer)):
        raise ValueError(f"{name} must be a real-valued array; got dtype {features.dtype}")
    features = features.astype(np.float64)
    if not np.isfinite(features).all():
        rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
        raise ValueError(
            f"{name} has NaN or infinite values in {rows.size} row(s), first row {rows[0]}; "
            "features must be finite"
        )
    return features


def feature_statistics(
    features: np.ndarray | torch.Tensor, name: str = "features"
) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of a feature set ``(N, D)``.

    Raises ``ValueError`` for fewer than 2 samples (no covariance exists) and warns (``UserWarning``) for
    fewer samples than feature dimensions: the covariance is then singular and Frechet distances are
    strongly biased, so such numbers are not comparable with published ones.
    """
    features = to_feature_matrix(features, name)
    count, dim = features.shape
    if count < 2:
        raise ValueError(f"{name} needs at least 2 samples to estimate a covariance; got {count}")
    if count < dim:
        warnings.warn(
            f"{name} has {count} samples for {dim} feature dimensions: the covariance is singular "
            "and the distance is biased; use at least as many samples as dimensions",
            stacklevel=2,
        )
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(dim, dim)
