"""cascade: cascaded text-to-video generation built on diffusers.

A pretrained text-to-image UNet is *inflated* with temporal layers (:func:`inflate`) and each stage
of the cascade is a diffusers pipeline around such a :class:`VideoUNet`: keyframes, interpolation,
spatiotemporal and spatial super-resolution, chained by :class:`CascadePipeline`.
"""

from .models import (
    FramePositions,
    TemporalAttention,
    TemporalConvolution,
    VideoUNet,
    VideoUNetOutput,
    inflate,
    load_motion_adapter,
)
from .pipelines import (
    CascadePipeline,
    CascadePipelineOutput,
    InterpolationPipeline,
    KeyframesPipeline,
    SpatialSRPipeline,
    SpatioTemporalSRPipeline,
    VideoPipelineOutput,
)

__version__ = "0.1.0"

__all__ = [
    "CascadePipeline",
    "CascadePipelineOutput",
    "FramePositions",
    "InterpolationPipeline",
    "KeyframesPipeline",
    "SpatialSRPipeline",
    "SpatioTemporalSRPipeline",
    "TemporalAttention",
    "TemporalConvolution",
    "VideoPipelineOutput",
    "VideoUNet",
    "VideoUNetOutput",
    "inflate",
    "load_motion_adapter",
]
