"""PSNR and SSIM against scikit-image, LPIPS against an independent numpy computation of its formula."""

import sys
import types

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cascade.eval import lpips, psnr, ssim


def _pair(seed: int, shape=(2, 3, 24, 28, 3)):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(size=shape)
    noisy = np.clip(truth + rng.normal(0, 0.1, size=shape), 0, 1)
    return noisy, truth


def test_psnr_matches_skimage_per_frame():
    videos, reference = _pair(0)
    scores = psnr(videos, reference)
    expected = np.array(
        [
            [peak_signal_noise_ratio(reference[b, f], videos[b, f], data_range=1.0) for f in range(3)]
            for b in range(2)
        ]
    )
    assert scores.values.shape == (2, 3)
    np.testing.assert_allclose(scores.values, expected, rtol=0, atol=1e-4)
    assert scores.mean == pytest.approx(expected.mean(), abs=1e-4)


def test_psnr_on_uint8_matches_skimage_data_range_255():
    videos, reference = (x * 255 for x in _pair(1))
    videos, reference = videos.round().astype(np.uint8), reference.round().astype(np.uint8)
    expected = peak_signal_noise_ratio(reference[1, 2], videos[1, 2], data_range=255)
    assert psnr(torch.from_numpy(videos), reference).values[1, 2] == pytest.approx(expected, abs=1e-4)
    assert psnr(reference, reference).mean == np.inf


def test_ssim_matches_skimage_gaussian_settings_per_frame():
    videos, reference = _pair(2)
    scores = ssim(videos.astype(np.float32), reference)
    expected = np.array(
        [
            [
                structural_similarity(
                    reference[b, f],
                    videos[b, f].astype(np.float32).astype(np.float64),
                    data_range=1.0,
                    channel_axis=-1,
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                )
                for f in range(3)
            ]
            for b in range(2)
        ]
    )
    np.testing.assert_allclose(scores.values, expected, rtol=0, atol=1e-4)
    assert scores.mean == pytest.approx(expected.mean(), abs=1e-4)
    assert ssim(reference, reference).mean == pytest.approx(1.0)


def test_ssim_needs_frames_of_at_least_the_window_size():
    videos, reference = _pair(3, shape=(1, 2, 10, 16, 3))
    with pytest.raises(ValueError, match="videos frames must be at least 11x11 pixels; got 10x16"):
        ssim(videos, reference)


class TinyBackbone(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 5, 3, stride=2, padding=1)

    def forward(self, x):
        first = torch.relu(self.conv1(x))
        return [first, torch.relu(self.conv2(first))]


def _lpips_reference(backbone, x: np.ndarray, y: np.ndarray, weights) -> np.ndarray:
    """LPIPS of frames (N, H, W, 3) in [0, 1], in numpy from the backbone's raw feature maps."""
    to_input = lambda a: torch.from_numpy(a).float().permute(0, 3, 1, 2) * 2 - 1  # noqa: E731
    with torch.no_grad():
        features_x = [f.double().numpy() for f in backbone(to_input(x))]
        features_y = [f.double().numpy() for f in backbone(to_input(y))]
    total = np.zeros(len(x))
    for fx, fy, w in zip(features_x, features_y, weights, strict=True):
        ux = fx / (np.sqrt(np.einsum("nchw,nchw->nhw", fx, fx))[:, None] + 1e-10)
        uy = fy / (np.sqrt(np.einsum("nchw,nchw->nhw", fy, fy))[:, None] + 1e-10)
        total += np.einsum("c,nchw->nhw", np.asarray(w, dtype=np.float64).ravel(), (ux - uy) ** 2).mean(
            axis=(1, 2)
        )
    return total


def test_lpips_matches_numpy_formula_with_a_tiny_backbone():
    torch.manual_seed(0)
    backbone = TinyBackbone().eval()
    weights = [np.random.default_rng(0).uniform(0, 1, size=4), torch.rand(1, 5, 1, 1)]
    videos, reference = _pair(4, shape=(2, 3, 12, 12, 3))
    scores = lpips(videos, reference, backbone, weights, batch_size=4)
    expected = _lpips_reference(
        backbone,
        videos.reshape(6, 12, 12, 3),
        reference.reshape(6, 12, 12, 3),
        [weights[0], weights[1].numpy()],
    ).reshape(2, 3)
    assert scores.values.shape == (2, 3)
    np.testing.assert_allclose(scores.values, expected, rtol=1e-4)
    assert expected.min() > 0
    assert lpips(reference, reference, backbone, weights).mean == pytest.approx(0.0, abs=1e-7)


def test_lpips_rejects_mismatched_weights_and_backbones():
    backbone = TinyBackbone().eval()
    videos, reference = _pair(5, shape=(1, 2, 8, 8, 3))
    with pytest.raises(ValueError, match="weights must be given with backbone"):
        lpips(videos, reference, backbone)
    with pytest.raises(ValueError, match=r"one entry per backbone layer \(2\); got 1"):
        lpips(videos, reference, backbone, [np.ones(4)])
    with pytest.raises(
        ValueError, match=r"backbone layer 1 must give \(2, 3, h, w\) features.*got \(2, 5, 4, 4\)"
    ):
        lpips(videos, reference, backbone, [np.ones(4), np.ones(3)])
    with pytest.raises(ValueError, match=r"weights\[0\] must be a non-empty array of finite, non-negative"):
        lpips(videos, reference, backbone, [-np.ones(4), np.ones(5)])


def test_lpips_without_backbone_uses_the_lpips_package_or_says_how_to_get_it(monkeypatch):
    videos, reference = _pair(6, shape=(1, 2, 8, 8, 3))
    monkeypatch.setitem(sys.modules, "lpips", None)  # not installed
    with pytest.raises(ImportError, match="pip install lpips"):
        lpips(videos, reference)

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, net, verbose):
            super().__init__()
            assert net == "alex"

        def forward(self, x, y):  # (N, 3, H, W) in [-1, 1] -> (N, 1, 1, 1)
            assert x.min() >= -1 and x.max() <= 1
            return (x - y).abs().mean(dim=(1, 2, 3), keepdim=True)

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=FakeLPIPS))
    expected = 2 * np.abs(videos - reference).mean(axis=(2, 3, 4))
    np.testing.assert_allclose(lpips(videos, reference).values, expected, rtol=1e-5)


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_paired_metrics_reject_mismatched_shapes_and_bad_values(metric):
    videos, reference = _pair(7, shape=(1, 2, 12, 12, 3))
    with pytest.raises(ValueError, match=r"videos and reference must have the same shape"):
        metric(videos, reference[:, :1])
    with pytest.raises(ValueError, match=r"reference values must lie in \[0, 1\].*got min .*, max 25"):
        metric(videos, reference * 255)
