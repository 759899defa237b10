"""Evaluation metrics for text-to-video generation: FVD/KVD, per-frame FID, IS, CLIPSIM, PSNR/SSIM/LPIPS,
temporal flickering and motion magnitude.

Every metric takes videos as ``(B, F, H, W, 3)`` numpy arrays or torch tensors, float in [0, 1] or uint8
in [0, 255], and raises ``ValueError`` naming the argument, its value and what is allowed on bad input.

The names below are imported on first use (PEP 562), so importing the package stays light.
"""

from cascade.utils.lazy_exports import lazy_exports

_EXPORTS = {
    "cascade.eval.clip_similarity": ["clip_preprocess", "clipsim", "default_image_processor"],
    "cascade.eval.detector": ["I3D_SHA256", "I3D_URL", "cached_download", "load_torchscript"],
    "cascade.eval.features": ["feature_statistics"],
    "cascade.eval.fid": ["frame_fid"],
    "cascade.eval.frechet": ["frechet_distance", "frechet_distance_from_features"],
    "cascade.eval.image_quality": ["lpips", "psnr", "ssim"],
    "cascade.eval.inception": ["inception_score"],
    "cascade.eval.kernel": ["kernel_distance"],
    "cascade.eval.scores": ["Scores"],
    "cascade.eval.temporal": ["motion_magnitude", "temporal_flickering"],
    "cascade.eval.video_distance": ["fvd", "i3d_features", "kvd", "tf1_resize_bilinear"],
    "cascade.eval.video_input": ["to_video_tensor"],
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
