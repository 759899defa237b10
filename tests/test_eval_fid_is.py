"""Per-frame FID and the Inception Score with given feature extractors and classifiers."""

import math

import numpy as np
import pytest
import torch

from cascade.eval import frame_fid, frechet_distance, inception_score


def _projection(frames: torch.Tensor) -> torch.Tensor:
    """A fixed frame feature: per-channel mean and standard deviation, (N, 3, H, W) -> (N, 6)."""
    return torch.cat([frames.mean(dim=(2, 3)), frames.std(dim=(2, 3))], dim=1)


def test_frame_fid_is_the_frechet_distance_of_all_frames_features():
    rng = np.random.default_rng(0)
    real = rng.uniform(size=(3, 4, 8, 8, 3))
    generated = rng.uniform(size=(2, 4, 8, 8, 3)) ** 2
    features = [
        np.concatenate([v.mean(axis=(1, 2)), v.std(axis=(1, 2), ddof=1)], axis=1)
        for v in (real.reshape(12, 8, 8, 3), generated.reshape(8, 8, 8, 3))
    ]
    expected = frechet_distance(
        features[0].mean(0), np.cov(features[0].T), features[1].mean(0), np.cov(features[1].T)
    )
    assert frame_fid(real, generated, _projection, batch_size=5) == pytest.approx(expected, rel=1e-6)
    assert expected > 0.01


def test_frame_fid_rejects_bad_input():
    rng = np.random.default_rng(1)
    real = rng.uniform(size=(3, 4, 8, 8, 3))
    with pytest.raises(ValueError, match="same clip shape"):
        frame_fid(real, real[:, :3], _projection)
    with pytest.raises(ValueError, match=r"extractor must return a \(\d+, D\) tensor"):
        frame_fid(real, real, lambda x: x.mean())
    with pytest.raises(ValueError, match="extractor must be callable"):
        frame_fid(real, real, "inception")


def _classifier(table: list[list[float]]):
    """Classifier whose logits are table[k] for a constant video of value k / 10."""
    logits = torch.tensor(table, dtype=torch.float64)
    return lambda videos: logits[(videos[:, 0, 0, 0, 0] * 10).round().long()]


def _constant_videos(indices: list[int]) -> np.ndarray:
    return np.stack([np.full((2, 4, 4, 3), k / 10) for k in indices])


def test_inception_score_matches_hand_computation():
    # p(y|x) = (0.8, 0.2) and (0.2, 0.8): p(y) = (0.5, 0.5), KL = 0.8 ln 1.6 + 0.2 ln 0.4 for both.
    table = [[math.log(0.8), math.log(0.2)], [math.log(0.2), math.log(0.8)]]
    mean, std = inception_score(_constant_videos([0, 1]), _classifier(table), splits=1)
    assert mean == pytest.approx(math.exp(0.8 * math.log(1.6) + 0.2 * math.log(0.4)), rel=1e-12)
    assert std == 0.0


def test_inception_score_extremes_and_splits():
    confident = [[20.0, -20.0], [-20.0, 20.0]]  # two sure, different classes: IS = 2
    assert inception_score(_constant_videos([0, 1]), _classifier(confident), splits=1)[0] == pytest.approx(
        2.0
    )
    assert inception_score(_constant_videos([0, 0, 0]), _classifier(confident), splits=1)[0] == pytest.approx(
        1.0
    )
    mean, std = inception_score(
        _constant_videos([0, 1, 0, 0]), _classifier(confident), splits=2, batch_size=3
    )
    assert mean == pytest.approx(1.5) and std == pytest.approx(0.5)  # splits score 2 and 1


def test_inception_score_rejects_bad_input():
    classifier = _classifier([[0.0, 1.0]])
    with pytest.raises(ValueError, match="at least splits=10 videos; got 2"):
        inception_score(_constant_videos([0, 0]), classifier)
    with pytest.raises(ValueError, match="`splits` must be a positive int, got 0"):
        inception_score(_constant_videos([0, 0]), classifier, splits=0)
    with pytest.raises(ValueError, match="classifier returned NaN"):
        inception_score(_constant_videos([0]), lambda v: torch.full((1, 2), float("nan")), splits=1)
