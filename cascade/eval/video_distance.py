"""Frechet Video Distance and Kernel Video Distance on I3D features (Unterthiner et al. 2018).

The detector follows the interface of the public I3D TorchScript port (StyleGAN-V, Skorokhodov et al.
2022): ``detector(videos, rescale=bool, resize=bool, return_features=bool)`` with ``videos`` of shape
``(B, 3, F, H, W)``; ``return_features=True`` gives the 400 Kinetics logits (before the softmax) per clip.
"""

import os
from collections.abc import Callable

import numpy as np
import torch

from cascade.eval.detector import I3D_SHA256, I3D_URL, load_torchscript
from cascade.eval.frechet import frechet_distance_from_features
from cascade.eval.kernel import kernel_distance
from cascade.eval.video_input import check_same_shape, to_video_tensor
from cascade.utils.checks import check_choice, check_int

PROTOCOLS = ("original", "stylegan-v")
I3D_MIN_FRAMES = 10
I3D_RESOLUTION = 224

Detector = str | os.PathLike | Callable[..., torch.Tensor] | None


def _legacy_bilinear_indices(
    in_size: int, out_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # TF1 resize_bilinear (align_corners=False, half_pixel_centers=False): source = dest * in / out, float32.
    scale = torch.tensor(in_size / out_size, dtype=torch.float32, device=device)
    source = torch.arange(out_size, dtype=torch.float32, device=device) * scale
    low = source.floor().long().clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    return low, high, source - low.float()


def tf1_resize_bilinear(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(N, C, H, W)`` frames like TF1 ``tf.image.resize_bilinear`` (the original FVD code).

    Legacy TF1 sampling (``align_corners=False, half_pixel_centers=False``): output pixel ``i`` reads the
    input at ``i * in / out`` with linear interpolation, the last input pixel repeated past the border. This
    differs from PyTorch's ``F.interpolate(..., align_corners=False)`` (half-pixel centres).
    """
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or not frames.is_floating_point():
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a floating-point (N, C, H, W) tensor; got {shape}")
    if len(size) != 2:
        raise ValueError(f"size must be (height, width); got {size!r}")
    check_int("size[0]", size[0], minimum=1)
    check_int("size[1]", size[1], minimum=1)
    rows_low, rows_high, row_weight = _legacy_bilinear_indices(frames.shape[-2], size[0], frames.device)
    cols_low, cols_high, col_weight = _legacy_bilinear_indices(frames.shape[-1], size[1], frames.device)
    row_weight, col_weight = row_weight.to(frames), col_weight.to(frames)
    top, bottom = frames[..., rows_low, :], frames[..., rows_high, :]  # (N, C, size[0], W)
    frames = top + (bottom - top) * row_weight[:, None]
    left, right = frames[..., cols_low], frames[..., cols_high]  # (N, C, size[0], size[1])
    return left + (right - left) * col_weight


def _load_detector(detector: Detector, device: str | torch.device, cache_dir: str | os.PathLike | None):
    if detector is None:
        return load_torchscript(I3D_URL, sha256=I3D_SHA256, cache_dir=cache_dir, device=device)
    if isinstance(detector, str | os.PathLike):
        return load_torchscript(detector, device=device)
    if not callable(detector):
        raise ValueError(
            f"detector must be None, a TorchScript path or a callable; got {type(detector).__name__}"
        )
    if isinstance(detector, torch.nn.Module):
        return detector.to(device).eval()
    return detector


@torch.no_grad()
def _clip_features(
    clips: torch.Tensor,
    detector: Callable[..., torch.Tensor],
    protocol: str,
    batch_size: int,
    device: str | torch.device,
) -> np.ndarray:
    features = []
    for batch in clips.split(batch_size):  # (b, F, H, W, 3) in [0, 1]
        batch = batch.to(device)
        count, frames, height, width, _ = batch.shape
        if protocol == "original":
            flat = batch.permute(0, 1, 4, 2, 3).reshape(count * frames, 3, height, width)  # (b*F, 3, H, W)
            flat = tf1_resize_bilinear(flat, (I3D_RESOLUTION, I3D_RESOLUTION)) * 2.0 - 1.0  # [-1, 1]
            videos = flat.reshape(count, frames, 3, I3D_RESOLUTION, I3D_RESOLUTION).transpose(1, 2)
            output = detector(videos.contiguous(), rescale=False, resize=False, return_features=True)
        else:
            # (b, 3, F, H, W) at 8-bit levels in [0, 255]
            videos = torch.round(batch * 255.0).permute(0, 4, 1, 2, 3).contiguous()
            output = detector(videos, rescale=True, resize=True, return_features=True)
        if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != count:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ValueError(f"detector must return a ({count}, D) tensor of features; got {shape}")
        features.append(output.detach().double().cpu().numpy())
    result = np.concatenate(features)
    if not np.isfinite(result).all():
        raise ValueError("detector returned NaN or infinite features")
    return result


def _check_protocol_args(protocol: str, batch_size: int) -> None:
    check_choice("protocol", protocol, PROTOCOLS)
    check_int("batch_size", batch_size, minimum=1)


def i3d_features(
    videos: np.ndarray | torch.Tensor,
    detector: Detector = None,
    *,
    protocol: str = "original",
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """I3D logits ``(B, 400)`` of a batch of clips ``(B, F, H, W, 3)``, ``F >= 10``, per an FVD protocol.

    Protocols:
        ``"original"`` -- Unterthiner et al. 2018, "Towards Accurate Generative Models of Video: A New
            Metric & Challenges" (google-research ``frechet_video_distance.py``): every frame is resized to
            224x224 with TF1 bilinear resizing (:func:`tf1_resize_bilinear`, aspect ratio not kept), values
            scaled to [-1, 1] (float input is not quantised to 8 bits), and the detector called with
            ``rescale=False, resize=False, return_features=True``: the feature is the 400-d Kinetics-400
            logits.
        ``"stylegan-v"`` -- Skorokhodov et al. 2022, "StyleGAN-V: A Continuous Video Generator with the
            Price, Image Quality and Perks of StyleGAN2" (``compute_fvd``): the clip is passed at its own
            resolution as 8-bit levels in [0, 255] (float input is rounded, as StyleGAN-V feeds uint8
            frames) with ``rescale=True, resize=True, return_features=True``, i.e. the TorchScript
            detector's own PyTorch resize to 224x224 and rescale to [-1, 1]; the feature is again the raw
            400-d logits before the softmax. StyleGAN-V also fixes the sampling (2048 clips of 16
            consecutive frames for FVD16), which is the caller's job here.

    Args:
        videos: ``(B, F, H, W, 3)`` float in [0, 1] or uint8, at least 10 frames (I3D's temporal extent).
        detector: ``None`` downloads the pinned I3D TorchScript (:data:`I3D_URL`, SHA-256 :data:`I3D_SHA256`)
            to ``cache_dir``; a path loads a local TorchScript file; a callable is used as is.
        protocol: ``"original"`` or ``"stylegan-v"``.
        batch_size: clips per detector call.
        device: device the detector runs on.
        cache_dir: download cache for ``detector=None``.
    """
    _check_protocol_args(protocol, batch_size)
    clips = to_video_tensor(videos, "videos", min_frames=I3D_MIN_FRAMES)  # (B, F, H, W, 3)
    return _clip_features(clips, _load_detector(detector, device, cache_dir), protocol, batch_size, device)


def _paired_features(
    real_videos: np.ndarray | torch.Tensor,
    generated_videos: np.ndarray | torch.Tensor,
    detector: Detector,
    protocol: str,
    batch_size: int,
    device: str | torch.device,
    cache_dir: str | os.PathLike | None,
) -> tuple[np.ndarray, np.ndarray]:
    _check_protocol_args(protocol, batch_size)
    real = to_video_tensor(real_videos, "real_videos", min_frames=I3D_MIN_FRAMES)  # (B1, F, H, W, 3)
    generated = to_video_tensor(
        generated_videos, "generated_videos", min_frames=I3D_MIN_FRAMES
    )  # (B2, F, H, W, 3)
    check_same_shape(real, generated, "real_videos", "generated_videos", ignore_batch=True)
    net = _load_detector(detector, device, cache_dir)
    return (
        _clip_features(real, net, protocol, batch_size, device),
        _clip_features(generated, net, protocol, batch_size, device),
    )


def fvd(
    real_videos: np.ndarray | torch.Tensor,
    generated_videos: np.ndarray | torch.Tensor,
    detector: Detector = None,
    *,
    protocol: str = "original",
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
) -> float:
    """Frechet Video Distance (Unterthiner et al. 2018) between real and generated clips.

    The Frechet distance (:func:`~cascade.eval.frechet.frechet_distance`) between Gaussians fitted to the
    I3D logits of both sets, computed per ``protocol`` (see :func:`i3d_features` for both protocols and the
    ``detector`` argument). Both sets must have the same clip shape ``(F, H, W, 3)`` with ``F >= 10``; batch
    sizes may differ. FVD numbers are only comparable when protocol, detector weights, clip sampling and
    sample count are the same (papers use 2048 or more clips; fewer clips than the 400 feature dimensions
    warns). To get FVD and KVD from one detector pass, call :func:`i3d_features`, then
    :func:`~cascade.eval.frechet.frechet_distance_from_features` and
    :func:`~cascade.eval.kernel.kernel_distance`.
    """
    real, generated = _paired_features(
        real_videos, generated_videos, detector, protocol, batch_size, device, cache_dir
    )
    return frechet_distance_from_features(real, generated)


def kvd(
    real_videos: np.ndarray | torch.Tensor,
    generated_videos: np.ndarray | torch.Tensor,
    detector: Detector = None,
    *,
    protocol: str = "original",
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
) -> float:
    """Kernel Video Distance (Unterthiner et al. 2018): KID's polynomial-kernel MMD on I3D logits.

    :func:`~cascade.eval.kernel.kernel_distance` (Binkowski et al. 2018) with ``num_subsets`` subsets of
    ``subset_size`` clips, on features from :func:`i3d_features` with the given ``protocol``. Same input
    rules as :func:`fvd`.
    """
    check_int("num_subsets", num_subsets, minimum=1)
    check_int("subset_size", subset_size, minimum=1)
    real, generated = _paired_features(
        real_videos, generated_videos, detector, protocol, batch_size, device, cache_dir
    )
    return kernel_distance(real, generated, num_subsets=num_subsets, subset_size=subset_size, seed=seed)
