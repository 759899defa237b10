"""Frechet distance between Gaussians fitted to feature sets (FID: Heusel et al. 2017; FVD: Unterthiner
et al. 2018).

``d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})``. The trace of the matrix square root is
computed by eigen-decomposition: with ``A = S1^{1/2}`` (symmetric, from ``eigh``), ``S1 S2`` has the same
eigenvalues as the symmetric positive semi-definite ``A S2 A``, so ``tr((S1 S2)^{1/2})`` is the sum of the
square roots of the (non-negative) eigenvalues of ``A S2 A``. This is real by construction and needs no
eps-offset fallback, unlike ``scipy.linalg.sqrtm`` on the non-symmetric product.
"""

import numpy as np
import torch

from cascade.eval.features import feature_statistics


def _as_float64(value: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name} must be a numpy array or torch tensor; got {type(value).__name__}")
    value = value.astype(np.float64)
    if not np.isfinite(value).all():
        raise ValueError(
            f"{name} must be finite; got {int((~np.isfinite(value)).sum())} NaN or infinite entries"
        )
    return value


def _check_covariance(sigma: np.ndarray, name: str, dim: int) -> None:
    if sigma.shape != (dim, dim):
        raise ValueError(f"{name} must have shape ({dim}, {dim}) to match the mean; got {sigma.shape}")
    if not np.allclose(sigma, sigma.T, rtol=1e-6, atol=1e-9 * max(1.0, float(np.abs(sigma).max()))):
        raise ValueError(
            f"{name} must be a symmetric covariance matrix; got max |S - S^T| = "
            f"{float(np.abs(sigma - sigma.T).max()):.3g}"
        )


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(
    mu1: np.ndarray | torch.Tensor,
    sigma1: np.ndarray | torch.Tensor,
    mu2: np.ndarray | torch.Tensor,
    sigma2: np.ndarray | torch.Tensor,
) -> float:
    """Squared Frechet (2-Wasserstein) distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    This is the distance of FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge
    to a Local Nash Equilibrium") and FVD (Unterthiner et al. 2018). Computed in float64; the result is
    clamped at 0 (rounding can make the distance of identical Gaussians a tiny negative number).

    Args:
        mu1, mu2: means, shape ``(D,)``.
        sigma1, sigma2: symmetric positive semi-definite covariances, shape ``(D, D)``.
    """
    mu1, mu2 = _as_float64(mu1, "mu1"), _as_float64(mu2, "mu2")
    sigma1, sigma2 = _as_float64(sigma1, "sigma1"), _as_float64(sigma2, "sigma2")
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(
            f"mu1 and mu2 must be 1-D with the same length; got shapes {mu1.shape} and {mu2.shape}"
        )
    _check_covariance(sigma1, "sigma1", mu1.shape[0])
    _check_covariance(sigma2, "sigma2", mu1.shape[0])
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1  # symmetric PSD, same eigenvalues as sigma1 @ sigma2
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    trace_sqrt = float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())
    distance = float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
    return max(distance, 0.0)


def frechet_distance_from_features(
    real_features: np.ndarray | torch.Tensor, generated_features: np.ndarray | torch.Tensor
) -> float:
    """Frechet distance between Gaussians fitted to two feature sets ``(N1, D)`` and ``(N2, D)``.

    Means and unbiased covariances (``np.cov``) as in FID/FVD reference code. Fewer than 2 samples in a
    set raises ``ValueError``; fewer samples than dimensions warns.
    """
    mu1, sigma1 = feature_statistics(real_features, "real_features")
    mu2, sigma2 = feature_statistics(generated_features, "generated_features")
    if mu1.shape != mu2.shape:
        raise ValueError(
            f"real_features and generated_features must have the same feature dimension; "
            f"got {mu1.shape[0]} and {mu2.shape[0]}"
        )
    return frechet_distance(mu1, sigma1, mu2, sigma2)
