"""Evaluation metrics for text-to-video generation: FVD/KVD, per-frame FID, IS, CLIPSIM, PSNR/SSIM/LPIPS,
temporal flickering and motion magnitude.

Every metric takes videos as ``(B, F, H, W, 3)`` numpy arrays or torch tensors, float in [0, 1] or uint8
in [0, 255], and raises ``ValueError`` naming the argument, its value and what is allowed on bad input.
"""

from cascade.eval.clip_similarity import clip_preprocess, clipsim
from cascade.eval.detector import I3D_SHA256, I3D_URL, cached_download, load_torchscript
from cascade.eval.features import feature_statistics
from cascade.eval.fid import frame_fid
from cascade.eval.frechet import frechet_distance, frechet_distance_from_features
from cascade.eval.image_quality import lpips, psnr, ssim
from cascade.eval.inception_score import inception_score
from cascade.eval.kernel import kernel_distance
from cascade.eval.scores import Scores
from cascade.eval.temporal import motion_magnitude, temporal_flickering
from cascade.eval.video_distance import fvd, i3d_features, kvd, tf1_resize_bilinear
from cascade.eval.video_input import to_video_tensor

__all__ = [
    "I3D_SHA256",
    "I3D_URL",
    "Scores",
    "cached_download",
    "clip_preprocess",
    "clipsim",
    "feature_statistics",
    "frame_fid",
    "frechet_distance",
    "frechet_distance_from_features",
    "fvd",
    "i3d_features",
    "inception_score",
    "kernel_distance",
    "kvd",
    "load_torchscript",
    "lpips",
    "motion_magnitude",
    "psnr",
    "ssim",
    "temporal_flickering",
    "tf1_resize_bilinear",
    "to_video_tensor",
]
