"""Full-reference frame quality for super-resolution and interpolation: PSNR, SSIM and LPIPS per frame.

Each metric compares ``videos`` with the ground truth ``reference`` frame by frame (both
``(B, F, H, W, 3)``, float in [0, 1] or uint8, same shape) and returns :class:`~cascade.eval.scores.Scores`
with ``values`` of shape ``(B, F)`` and their mean.
"""

import importlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cascade.eval.scores import Scores
from cascade.eval.video_input import check_same_shape, to_video_tensor
from cascade.utils.checks import check_int

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_WINDOW = 2 * int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1  # 11, as scipy.ndimage.gaussian_filter
SSIM_K1, SSIM_K2 = 0.01, 0.03
LPIPS_EPS = 1e-10


def _paired(
    videos: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    dtype: torch.dtype,
    min_size: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    generated = to_video_tensor(videos, "videos", dtype=dtype, min_size=min_size)  # (B, F, H, W, 3)
    truth = to_video_tensor(reference, "reference", dtype=dtype, min_size=min_size)  # (B, F, H, W, 3)
    check_same_shape(generated, truth, "videos", "reference")
    return generated, truth.to(generated.device)


def psnr(videos: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> Scores:
    """Peak signal-to-noise ratio per frame, ``10 log10(1 / MSE)`` in dB with data range 1.

    The MSE runs over all pixels and the 3 channels of a frame; this equals
    ``skimage.metrics.peak_signal_noise_ratio(truth, frame, data_range=1.0)`` on [0, 1] frames (and with
    ``data_range=255`` on uint8 frames). Identical frames score ``inf``, so does the mean, as in scikit-image.
    Computed in float64.
    """
    generated, truth = _paired(videos, reference, torch.float64)
    mse = ((generated - truth) ** 2).mean(dim=(2, 3, 4))  # (B, F)
    return Scores.from_values((10.0 * torch.log10(1.0 / mse)).cpu().numpy())


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    offsets = torch.arange(SSIM_WINDOW, dtype=dtype, device=device) - SSIM_WINDOW // 2
    window = torch.exp(-0.5 * offsets**2 / SSIM_SIGMA**2)
    return window / window.sum()  # (11,)


def _filter_valid(images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    # Separable Gaussian, 'valid' region only: (N, 1, H, W) -> (N, 1, H - 10, W - 10).
    images = F.conv2d(images, window.view(1, 1, -1, 1))
    return F.conv2d(images, window.view(1, 1, 1, -1))


def ssim(videos: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> Scores:
    """Structural similarity per frame (Wang et al. 2004, "Image Quality Assessment: From Error Visibility
    to Structural Similarity"), with Wang et al.'s settings.

    Gaussian window with sigma 1.5 truncated at 3.5 sigma (11 taps), population covariances, K1 = 0.01,
    K2 = 0.03, data range 1, computed per RGB channel and averaged; the SSIM map is averaged over the pixels
    whose window lies inside the frame. This equals ``skimage.metrics.structural_similarity(truth, frame,
    data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
    Frames must be at least 11x11. Computed in float64. torchmetrics' ``structural_similarity_index_measure``
    reflect-pads the frame and averages its map over every pixel, so its number differs slightly; its map
    agrees with this one on the pixels averaged here.
    """
    generated, truth = _paired(videos, reference, torch.float64, min_size=SSIM_WINDOW)
    batch, frames, height, width, _ = generated.shape
    x = generated.permute(0, 1, 4, 2, 3).reshape(-1, 1, height, width)  # (B*F*3, 1, H, W)
    y = truth.permute(0, 1, 4, 2, 3).reshape(-1, 1, height, width)  # (B*F*3, 1, H, W)
    window = _gaussian_window(x.dtype, x.device)
    mean_x, mean_y = _filter_valid(x, window), _filter_valid(y, window)
    var_x = _filter_valid(x * x, window) - mean_x**2
    var_y = _filter_valid(y * y, window) - mean_y**2
    cov_xy = _filter_valid(x * y, window) - mean_x * mean_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim_map = ((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)) / (
        (mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2)
    )
    per_channel = ssim_map.mean(dim=(1, 2, 3)).reshape(batch, frames, 3)  # (B, F, 3)
    return Scores.from_values(per_channel.mean(dim=2).cpu().numpy())


def _lpips_from_features(
    features_x: Sequence[torch.Tensor], features_y: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]
) -> torch.Tensor:
    # Zhang et al. 2018, eq. 1: sum_l mean_hw sum_c w_lc (x_hat - y_hat)^2, features unit-normalised over c.
    total = 0.0
    for feature_x, feature_y, weight in zip(
        features_x, features_y, weights, strict=True
    ):  # (N, C, h, w) each
        unit_x = feature_x / (feature_x.pow(2).sum(dim=1, keepdim=True).sqrt() + LPIPS_EPS)
        unit_y = feature_y / (feature_y.pow(2).sum(dim=1, keepdim=True).sqrt() + LPIPS_EPS)
        weighted = ((unit_x - unit_y) ** 2 * weight.view(1, -1, 1, 1)).sum(dim=1)  # (N, h, w)
        total = total + weighted.mean(dim=(1, 2))
    return total  # (N,)


def _check_lpips_features(features, name: str, count: int, weights: Sequence[torch.Tensor]) -> None:
    if not isinstance(features, list | tuple) or not all(isinstance(f, torch.Tensor) for f in features):
        raise ValueError(
            f"backbone must return a list of feature maps (N, C, h, w); got {type(features).__name__} "
            f"for {name}"
        )
    if len(features) != len(weights):
        raise ValueError(
            f"weights must have one entry per backbone layer ({len(features)}); got {len(weights)}"
        )
    for index, (feature, weight) in enumerate(zip(features, weights, strict=True)):
        if feature.ndim != 4 or feature.shape[0] != count or feature.shape[1] != weight.numel():
            raise ValueError(
                f"backbone layer {index} must give ({count}, {weight.numel()}, h, w) features to match "
                f"weights[{index}]; got {tuple(feature.shape)}"
            )


def _lpips_weights(weights: Sequence[np.ndarray | torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    if not isinstance(weights, list | tuple) or len(weights) == 0:
        raise ValueError(
            f"weights must be a non-empty list of per-channel weight arrays; got {weights!r:.100}"
        )
    result = []
    for index, weight in enumerate(weights):
        weight = torch.as_tensor(weight).detach().flatten().to(device=device, dtype=torch.float32)  # (C,)
        if weight.numel() == 0 or not torch.isfinite(weight).all() or (weight < 0).any():
            raise ValueError(
                f"weights[{index}] must be a non-empty array of finite, non-negative per-channel "
                f"weights (LPIPS linear layers); got {weight.tolist()!r:.100}"
            )
        result.append(weight)
    return result


def _lpips_package_model(device: str | torch.device) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    try:
        package = importlib.import_module("lpips")
    except ImportError as error:
        raise ImportError(
            "lpips with backbone=None needs the `lpips` package (pip install lpips, or the evaluation "
            "extra: pip install 'cascade-video[evaluation]'), which loads AlexNet weights; or pass backbone= "
            "and weights="
        ) from error
    return package.LPIPS(net="alex", verbose=False).to(device).eval()


@torch.no_grad()
def lpips(
    videos: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    backbone: Callable[[torch.Tensor], Sequence[torch.Tensor]] | None = None,
    weights: Sequence[np.ndarray | torch.Tensor] | None = None,
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> Scores:
    """LPIPS per frame (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
    Metric"); lower is more similar.

    ``d(x, y) = sum_l mean_{h,w} sum_c w_{l,c} (x_hat_l - y_hat_l)^2_{c,h,w}`` where ``x_hat_l`` is layer
    ``l``'s feature map unit-normalised over channels (``f / (||f||_2 + 1e-10)``) and ``w_l`` the learned
    non-negative per-channel weights (LPIPS' 1x1 "lin" layers). Frames enter the backbone in [-1, 1].

    Args:
        videos, reference: ``(B, F, H, W, 3)`` float in [0, 1] or uint8, same shape.
        backbone: callable mapping frames ``(N, 3, H, W)`` float32 in [-1, 1] to a list of feature maps
            ``(N, C_l, h_l, w_l)`` (for LPIPS-Alex: its input scaling layer and the 5 ReLU outputs). ``None``
            uses the ``lpips`` package's ``LPIPS(net="alex")`` (v0.1 weights) when it is installed.
        weights: one array of ``C_l`` non-negative weights per layer (shape ``(C_l,)`` or ``(1, C_l, 1, 1)``);
            required with ``backbone``.
        batch_size: frames per backbone call.
        device: device the frames are moved to.
    """
    check_int("batch_size", batch_size, minimum=1)
    if backbone is not None and not callable(backbone):
        raise ValueError(f"backbone must be callable or None; got {type(backbone).__name__}")
    if backbone is not None and weights is None:
        raise ValueError("weights must be given with backbone (one per-channel array per layer); got None")
    generated, truth = _paired(videos, reference, torch.float32)
    batch, frames = generated.shape[:2]
    x = generated.flatten(0, 1).permute(0, 3, 1, 2) * 2.0 - 1.0  # (B*F, 3, H, W) in [-1, 1]
    y = truth.flatten(0, 1).permute(0, 3, 1, 2) * 2.0 - 1.0  # (B*F, 3, H, W) in [-1, 1]
    if backbone is None:
        model = _lpips_package_model(device)
        distances = [
            model(bx.to(device), by.to(device)).flatten()
            for bx, by in zip(x.split(batch_size), y.split(batch_size), strict=True)
        ]
    else:
        layer_weights = _lpips_weights(weights, torch.device(device))
        distances = []
        for bx, by in zip(x.split(batch_size), y.split(batch_size), strict=True):
            features_x, features_y = (
                backbone(bx.contiguous().to(device)),
                backbone(by.contiguous().to(device)),
            )
            _check_lpips_features(features_x, "videos", bx.shape[0], layer_weights)
            _check_lpips_features(features_y, "reference", by.shape[0], layer_weights)
            distances.append(_lpips_from_features(features_x, features_y, layer_weights))
    values = torch.cat(distances).double().cpu().reshape(batch, frames)  # (B, F)
    return Scores.from_values(values.numpy())
