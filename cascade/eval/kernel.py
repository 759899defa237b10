"""Kernel (MMD) distance with the KID polynomial kernel (Binkowski et al. 2018), used for KID and KVD."""

import numpy as np
import torch

from cascade.eval.features import to_feature_matrix
from cascade.utils.checks import check_int


def kernel_distance(
    real_features: np.ndarray | torch.Tensor,
    generated_features: np.ndarray | torch.Tensor,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """Unbiased squared MMD with the polynomial kernel ``k(x, y) = (x . y / D + 1)^3``, averaged over subsets.

    Protocol of KID (Binkowski et al. 2018, "Demystifying MMD GANs"), as in the StyleGAN2-ADA reference
    code: ``num_subsets`` times, draw ``m = min(N1, N2, subset_size)`` samples without replacement from
    each set and compute
    ``sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1)) - 2 sum_{i,j} k(x_i, y_j) / m^2``;
    return the mean. On I3D features this is KVD (Unterthiner et al. 2018). Unlike the Frechet distance it
    is unbiased and can be slightly negative for matching distributions.

    Args:
        real_features, generated_features: ``(N1, D)`` and ``(N2, D)`` feature sets, ``N >= 2``.
        num_subsets: number of random subsets (KID: 100).
        subset_size: largest subset size (KID: 1000); capped at the smaller set size.
        seed: seed of the subset sampling, so results are reproducible.
    """
    real = to_feature_matrix(real_features, "real_features")
    generated = to_feature_matrix(generated_features, "generated_features")
    if real.shape[1] != generated.shape[1]:
        raise ValueError(
            f"real_features and generated_features must have the same feature dimension; "
            f"got {real.shape[1]} and {generated.shape[1]}"
        )
    check_int("num_subsets", num_subsets, minimum=1)
    check_int("subset_size", subset_size, minimum=1)
    size = min(real.shape[0], generated.shape[0], subset_size)
    if size < 2:
        raise ValueError(
            f"kernel_distance needs at least 2 samples per set (and subset_size >= 2); got "
            f"{real.shape[0]} real, {generated.shape[0]} generated, subset_size {subset_size}"
        )
    dim = real.shape[1]
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = real[rng.choice(real.shape[0], size, replace=False)]  # (m, D)
        y = generated[rng.choice(generated.shape[0], size, replace=False)]  # (m, D)
        within = (x @ x.T / dim + 1.0) ** 3 + (y @ y.T / dim + 1.0) ** 3  # (m, m)
        across = (x @ y.T / dim + 1.0) ** 3  # (m, m)
        total += (within.sum() - np.trace(within)) / (size * (size - 1)) - 2.0 * across.sum() / size**2
    return float(total / num_subsets)
