"""Frechet distance, feature statistics and the kernel (KID/KVD) distance against independent references."""

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from cascade.eval import feature_statistics, frechet_distance, frechet_distance_from_features, kernel_distance


def _random_covariance(rng: np.random.Generator, dim: int) -> np.ndarray:
    factor = rng.normal(size=(dim, 2 * dim))
    return factor @ factor.T / (2 * dim) + 0.1 * np.eye(dim)


def test_frechet_matches_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(0)
    dim = 12
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    var1, var2 = rng.uniform(0.1, 3.0, size=dim), rng.uniform(0.1, 3.0, size=dim)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    result = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert result == pytest.approx(expected, rel=1e-6)


def test_frechet_matches_sqrtm_formula_on_random_gaussians():
    rng = np.random.default_rng(1)
    dim = 16
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    sigma1, sigma2 = _random_covariance(rng, dim), _random_covariance(rng, dim)
    root = scipy.linalg.sqrtm(sigma1 @ sigma2).real  # pytorch-fid's formula, computed differently
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2 * root)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(torch.from_numpy(mu1), torch.from_numpy(sigma1), mu2, sigma2) == pytest.approx(
        expected, rel=1e-6
    )


def test_frechet_of_identical_gaussians_is_zero_and_symmetric():
    rng = np.random.default_rng(2)
    mu, sigma = rng.normal(size=8), _random_covariance(rng, 8)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
    other = _random_covariance(rng, 8)
    assert frechet_distance(mu, sigma, mu, other) == pytest.approx(
        frechet_distance(mu, other, mu, sigma), rel=1e-9
    )


def test_frechet_from_features_uses_mean_and_unbiased_covariance():
    rng = np.random.default_rng(3)
    real, generated = rng.normal(size=(40, 6)), rng.normal(1.0, 2.0, size=(50, 6))
    expected = frechet_distance(real.mean(0), np.cov(real.T), generated.mean(0), np.cov(generated.T))
    assert frechet_distance_from_features(real, torch.from_numpy(generated)) == pytest.approx(
        expected, rel=1e-12
    )
    assert expected > 1.0


def test_feature_statistics_warns_below_dimension_and_fails_below_two():
    rng = np.random.default_rng(4)
    with pytest.warns(UserWarning, match="3 samples for 5 feature dimensions"):
        feature_statistics(rng.normal(size=(3, 5)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mu, sigma = feature_statistics(rng.normal(size=(6, 5)))
    assert mu.shape == (5,) and sigma.shape == (5, 5)
    with pytest.raises(ValueError, match="at least 2 samples.*got 1"):
        frechet_distance_from_features(rng.normal(size=(1, 4)), rng.normal(size=(5, 4)))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.zeros(3), np.eye(3), np.zeros(4), np.eye(4)), "mu1 and mu2"),
        ((np.zeros(3), np.eye(4), np.zeros(3), np.eye(3)), r"sigma1 must have shape \(3, 3\)"),
        ((np.zeros(3), np.triu(np.ones((3, 3))), np.zeros(3), np.eye(3)), "sigma1 must be a symmetric"),
        ((np.array([0.0, np.nan, 0.0]), np.eye(3), np.zeros(3), np.eye(3)), "mu1 must be finite"),
    ],
)
def test_frechet_rejects_bad_statistics(args, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(*args)


def test_frechet_from_features_rejects_bad_features():
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="same feature dimension; got 4 and 3"):
        frechet_distance_from_features(rng.normal(size=(8, 4)), rng.normal(size=(8, 3)))
    bad = rng.normal(size=(8, 4))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="generated_features has NaN.*first row 2"):
        frechet_distance_from_features(rng.normal(size=(8, 4)), bad)
    with pytest.raises(ValueError, match=r"real_features must have shape \(N, D\)"):
        frechet_distance_from_features(rng.normal(size=(8,)), rng.normal(size=(8, 4)))


def _mmd_reference(x: np.ndarray, y: np.ndarray) -> float:
    dim = x.shape[1]

    def kernel(a, b):
        return (float(np.dot(a, b)) / dim + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(kernel(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kernel_distance_matches_explicit_unbiased_mmd():
    rng = np.random.default_rng(6)
    real, generated = rng.normal(size=(15, 5)), rng.normal(0.5, 1.0, size=(15, 5))
    expected = _mmd_reference(real, generated)
    result = kernel_distance(
        real, generated, num_subsets=3, subset_size=100
    )  # subsets = whole sets, permuted
    assert result == pytest.approx(expected, rel=1e-9)
    assert expected > 0.05
    same = rng.normal(size=(200, 5))
    matching = kernel_distance(same[:100], same[100:], num_subsets=10, subset_size=50)
    shifted = kernel_distance(same[:100], same[100:] + 1.0, num_subsets=10, subset_size=50)
    assert abs(matching) < 0.05 * shifted


def test_kernel_distance_subsets_are_seeded_and_validated():
    rng = np.random.default_rng(7)
    real, generated = rng.normal(size=(30, 4)), rng.normal(1.0, 1.0, size=(40, 4))
    first = kernel_distance(real, generated, num_subsets=5, subset_size=10, seed=1)
    assert first == kernel_distance(real, generated, num_subsets=5, subset_size=10, seed=1)
    assert first != kernel_distance(real, generated, num_subsets=5, subset_size=10, seed=2)
    with pytest.raises(ValueError, match="at least 2 samples per set"):
        kernel_distance(real[:1], generated)
    with pytest.raises(ValueError, match="`num_subsets` must be a positive int, got 0"):
        kernel_distance(real, generated, num_subsets=0)
    with pytest.raises(ValueError, match="same feature dimension"):
        kernel_distance(real, generated[:, :3])
