"""Datasets: video-text and image-text folders on disk, and the synthetic shapes world.

Every dataset item is ``{"pixel_values": (C, F, H, W) float32 in [-1, 1], "caption": str, ...}``;
batched, ``(B, C, F, H, W)``, the layout of diffusers' video UNets. Images are ``(C, 1, H, W)``.
"""

from .annotations import Annotation, read_annotations
from .frame_sampling import CLIP_STARTS, VideoTooShortError, clip_offsets, sample_frame_indices
from .frame_transforms import frames_to_tensor, resize_center_crop
from .media_io import MediaReadError, VideoInfo, probe_video, read_image, read_video_frames, verify_image
from .shapes_analysis import FrameAnalysis, VideoAnalysis, analyze_frame, analyze_video, estimate_direction
from .shapes_dataset import ShapesDataset
from .shapes_render import render_clip, shape_coverage
from .shapes_world import (
    BACKGROUND_RGB,
    COLORS,
    DIRECTION_VECTORS,
    DIRECTIONS,
    PALETTE,
    SHAPES,
    VOCABULARY,
    ShapeParams,
    ShapesWorld,
    frame_times,
    make_caption,
    parse_caption,
    sample_params,
    shape_centers,
    shape_centroids,
)
from .video_text import ImageTextDataset, SkippedItem, SkippedMediaWarning, VideoTextDataset

__all__ = [
    "BACKGROUND_RGB",
    "CLIP_STARTS",
    "COLORS",
    "DIRECTIONS",
    "DIRECTION_VECTORS",
    "PALETTE",
    "SHAPES",
    "VOCABULARY",
    "Annotation",
    "FrameAnalysis",
    "ImageTextDataset",
    "MediaReadError",
    "ShapeParams",
    "ShapesDataset",
    "ShapesWorld",
    "SkippedItem",
    "SkippedMediaWarning",
    "VideoAnalysis",
    "VideoInfo",
    "VideoTextDataset",
    "VideoTooShortError",
    "analyze_frame",
    "analyze_video",
    "clip_offsets",
    "estimate_direction",
    "frame_times",
    "frames_to_tensor",
    "make_caption",
    "parse_caption",
    "probe_video",
    "read_annotations",
    "read_image",
    "read_video_frames",
    "render_clip",
    "resize_center_crop",
    "sample_frame_indices",
    "sample_params",
    "shape_centers",
    "shape_centroids",
    "shape_coverage",
    "verify_image",
]
