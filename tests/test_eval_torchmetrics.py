"""Every metric of :mod:`cascade.eval` that torchmetrics also computes agrees with torchmetrics on the same
inputs and the same feature network: PSNR, SSIM, LPIPS, per-frame FID, KID and the Inception Score
(CLIPSIM against torchmetrics' CLIPScore is in test_eval_clipsim.py).

The published feature networks (Inception-v3, LPIPS' AlexNet) are weights downloaded at run time, which the
tests cannot fetch; each comparison passes one randomly initialised network to both implementations instead
(for LPIPS: LPIPS v0.1's learned layer weights, which torchmetrics ships, on a random AlexNet-shaped
backbone). Tolerances are stated per test, with the largest difference measured.
"""

import numpy as np
import pytest
import torch
import torchmetrics.functional.image as tm_functional
import torchmetrics.functional.image.lpips as tm_lpips
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance  # the classes; torch-fidelity's Inception unused
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from cascade.eval import frame_fid, inception_score, kernel_distance, lpips, psnr, ssim

pytestmark = [
    pytest.mark.filterwarnings("ignore:Metric .* will save all extracted features:UserWarning"),
    pytest.mark.filterwarnings("ignore:std\\(\\):UserWarning"),  # "degrees of freedom <= 0": IS of one split
]


def _videos(seed: int, shape=(2, 3, 24, 20, 3)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=shape)


def _pair() -> tuple[np.ndarray, np.ndarray]:
    reference = _videos(0)
    noisy = np.clip(reference + np.random.default_rng(1).normal(scale=0.1, size=reference.shape), 0, 1)
    return noisy, reference


def _frames(videos: np.ndarray, dtype=torch.float64) -> torch.Tensor:
    return torch.from_numpy(videos).to(dtype).flatten(0, 1).permute(0, 3, 1, 2)  # (B*F, 3, H, W)


def test_psnr_matches_torchmetrics_per_frame():
    """Tolerance 1e-7 relative: torchmetrics converts to dB with ``log(10)`` in float32 (measured 4.5e-8)."""
    videos, reference = _pair()
    theirs = tm_functional.peak_signal_noise_ratio(
        _frames(videos), _frames(reference), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )
    np.testing.assert_allclose(psnr(videos, reference).values.ravel(), theirs.numpy(), rtol=1e-7)


def test_ssim_matches_torchmetrics_gaussian_window_per_frame():
    """torchmetrics' defaults are Wang et al.'s (Gaussian sigma 1.5, 11x11, K1 0.01, K2 0.03). Its border
    convention differs: it reflect-pads the frame and averages the SSIM map over every pixel, where ours (and
    scikit-image's) averages it over the pixels whose window lies inside the frame, 5 pixels in from each
    edge; so its full SSIM map is compared there (on these frames its own number is 0.3% off ours). Tolerance
    1e-9 absolute (both float64)."""
    videos, reference = _pair()
    _, full = tm_functional.structural_similarity_index_measure(
        _frames(videos), _frames(reference), data_range=1.0, reduction="none", return_full_image=True
    )  # (B*F, 3, H, W)
    inside = full[..., 5:-5, 5:-5].mean(dim=(1, 2, 3))
    np.testing.assert_allclose(ssim(videos, reference).values.ravel(), inside.numpy(), rtol=0, atol=1e-9)


class RandomAlexNet(nn.Module):
    """AlexNet's 5 ReLU stages in LPIPS' channel widths (64, 192, 384, 256, 256), random weights: stands in
    for torchvision's AlexNet, which torchmetrics' LPIPS would download. The constructor takes the
    arguments torchmetrics passes to its backbone class."""

    channels = (64, 192, 384, 256, 256)

    def __init__(self, requires_grad: bool = False, pretrained: bool = False):
        super().__init__()
        torch.manual_seed(0)
        widths = (3, *self.channels)
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[i], widths[i + 1], 3, stride=2 if i < 2 else 1, padding=1), nn.ReLU()
            )
            for i in range(5)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def test_lpips_matches_torchmetrics_with_lpips_v01_layer_weights(monkeypatch):
    """torchmetrics' LPIPS-Alex with its shipped v0.1 linear layers and the random backbone, against
    :func:`lpips` given the same backbone (behind torchmetrics' input scaling layer) and the same layer
    weights. torchmetrics normalises features by ``sqrt(sum f^2 + 1e-8)``, ours (as the lpips package) by
    ``sqrt(sum f^2) + 1e-10``. Tolerance 1e-5 relative (float32; measured 3.6e-7)."""
    monkeypatch.setattr(tm_lpips, "Alexnet", RandomAlexNet)
    reference_model = tm_lpips._LPIPS(pretrained=True, net="alex").eval()
    weights = [layer.model[-1].weight.detach() for layer in reference_model.lins]  # (1, C, 1, 1) each
    assert [w.numel() for w in weights] == list(RandomAlexNet.channels)
    assert all((w >= 0).all() and w.abs().sum() > 0 for w in weights)  # the learned weights were loaded
    videos, reference = _pair()
    with torch.no_grad():
        theirs = reference_model(
            _frames(videos, torch.float32), _frames(reference, torch.float32), normalize=True
        )

    def backbone(x: torch.Tensor) -> list[torch.Tensor]:
        return reference_model.net(reference_model.scaling_layer(x))

    ours = lpips(videos, reference, backbone, weights, batch_size=4).values.ravel()
    np.testing.assert_allclose(ours, theirs.flatten().numpy(), rtol=1e-5)
    assert ours.min() > 0.01


class RandomFeatures(nn.Module):
    """A random convolutional feature extractor: frames ``(N, 3, H, W)`` in [0, 1] (uint8 in [0, 255] is
    scaled) to ``(N, num_features)`` features, global-average pooled so any frame size works."""

    num_features = 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2),
            nn.Tanh(),
            nn.Conv2d(16, self.num_features, 3),
            nn.AdaptiveAvgPool2d(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x
        return self.net(x).flatten(1) * 10.0


@pytest.fixture(scope="module")
def feature_sets() -> tuple[np.ndarray, np.ndarray]:
    """Real and generated videos whose features differ in distribution: 4 videos of 10 frames each."""
    real = _videos(2, (4, 10, 20, 20, 3))
    generated = _videos(3, (4, 10, 20, 20, 3)) * 0.5 + 0.4
    return real, generated


def test_frame_fid_matches_torchmetrics_fid(feature_sets):
    """torchmetrics' FID on every frame with the same feature network. Tolerance 1e-6 relative: both fit
    the Gaussians in float64, from float32 features; torchmetrics takes the trace of the square root from
    eigenvalues, ours from a symmetric square root (measured 4e-8)."""
    real, generated = feature_sets
    extractor = RandomFeatures().eval()
    metric = FrechetInceptionDistance(feature=extractor, normalize=True)
    metric.update(_frames(real, torch.float32), real=True)
    metric.update(_frames(generated, torch.float32), real=False)
    theirs = float(metric.compute())
    with torch.no_grad():
        ours = frame_fid(real, generated, extractor, batch_size=7)
    assert theirs > 0.1
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_kernel_distance_matches_torchmetrics_kid_on_one_subset_of_every_sample(feature_sets):
    """torchmetrics' KID with one subset holding every sample (so its random subset draw and ours pick the
    same set): the same unbiased MMD with the same cubic polynomial kernel. Tolerance 1e-6 relative
    (torchmetrics computes the kernel in float32; measured 3.2e-8)."""
    real, generated = feature_sets
    extractor = RandomFeatures().eval()
    count = real.shape[0] * real.shape[1]
    metric = KernelInceptionDistance(feature=extractor, subsets=1, subset_size=count, normalize=True)
    metric.update(_frames(real, torch.float32), real=True)
    metric.update(_frames(generated, torch.float32), real=False)
    theirs = float(metric.compute()[0])
    with torch.no_grad():
        real_features = extractor(_frames(real, torch.float32))
        generated_features = extractor(_frames(generated, torch.float32))
    ours = kernel_distance(real_features, generated_features, num_subsets=1, subset_size=count)
    assert theirs > 0.01
    assert ours == pytest.approx(theirs, rel=1e-6)


class RandomClassifier(nn.Module):
    """Logits over 5 random colours: minus the squared distance of a frame's mean colour to each, scaled
    (uint8 in [0, 255] is scaled to [0, 1] first)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("colours", torch.from_numpy(np.random.default_rng(6).uniform(0, 0.5, (5, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double() / 255.0 if x.dtype == torch.uint8 else x.double()
        distances = torch.cdist(x.mean(dim=(2, 3)), self.colours)  # (N, 5)
        return (-100.0 * distances**2).float()


@pytest.mark.parametrize("splits", [1, 4])
def test_inception_score_matches_torchmetrics_per_split(splits):
    """torchmetrics' Inception Score with the same classifier, on one-frame videos. torchmetrics shuffles the
    samples before splitting, so each of our contiguous splits is scored by torchmetrics alone (one split),
    and our mean and (population) standard deviation are those of its scores. Tolerance 1e-5 relative
    (torchmetrics computes the softmax in float32; measured 1.7e-7 on the mean, 5e-7 on the standard
    deviation)."""
    tint = np.random.default_rng(5).uniform(size=(20, 1, 1, 1, 3))  # a colour per video: varied classes
    videos = (_videos(4, (20, 1, 16, 16, 3)) * tint * 255).round().astype(np.uint8)
    classifier = RandomClassifier().eval()
    images = torch.from_numpy(videos[:, 0]).permute(0, 3, 1, 2)  # (N, 3, H, W) uint8
    part_scores = []
    for part in images.chunk(splits):
        metric = InceptionScore(feature=classifier, splits=1)
        metric.update(part)
        part_scores.append(float(metric.compute()[0]))
    with torch.no_grad():
        mean, std = inception_score(videos, lambda clips: classifier(clips[:, :, 0]), splits=splits)
    assert mean > 1.5
    assert mean == pytest.approx(np.mean(part_scores), rel=1e-5)
    assert std == pytest.approx(np.std(part_scores), rel=1e-4, abs=1e-6)
