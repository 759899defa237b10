"""Datasets: video-text and image-text folders on disk, and the synthetic shapes world.

Every dataset item is ``{"pixel_values": (C, F, H, W) float32 in [-1, 1], "caption": str, ...}``;
batched, ``(B, C, F, H, W)``, the layout of diffusers' video UNets. Images are ``(C, 1, H, W)``.

The names below are imported on first use (PEP 562), so importing the package stays light.
"""

from cascade.utils.lazy_exports import lazy_exports

_EXPORTS = {
    "cascade.data.annotations": ["Annotation", "read_annotations"],
    "cascade.data.frame_sampling": [
        "CLIP_STARTS",
        "VideoTooShortError",
        "clip_offsets",
        "sample_frame_indices",
    ],
    "cascade.data.frame_transforms": ["frames_to_tensor", "resize_center_crop"],
    "cascade.data.media_io": [
        "MediaReadError",
        "VideoInfo",
        "probe_video",
        "read_image",
        "read_video_frames",
        "verify_image",
    ],
    "cascade.data.shapes_analysis": [
        "FrameAnalysis",
        "VideoAnalysis",
        "analyze_frame",
        "analyze_video",
        "estimate_direction",
    ],
    "cascade.data.shapes_dataset": ["ShapesDataset"],
    "cascade.data.shapes_render": ["render_clip", "shape_coverage"],
    "cascade.data.shapes_world": [
        "BACKGROUND_RGB",
        "COLORS",
        "DIRECTIONS",
        "DIRECTION_VECTORS",
        "PALETTE",
        "SHAPES",
        "ShapeParams",
        "ShapesWorld",
        "VOCABULARY",
        "frame_times",
        "make_caption",
        "parse_caption",
        "sample_params",
        "shape_centers",
        "shape_centroids",
    ],
    "cascade.data.subject_images": ["SUBJECT_SHAPES", "SubjectImages", "subject_coverage"],
    "cascade.data.video_text": ["ImageTextDataset", "SkippedItem", "SkippedMediaWarning", "VideoTextDataset"],
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
