"""Temporal layers and inflation of 2D UNets into video UNets.

The names below are imported on first use (PEP 562), like the package's top-level names.
"""

from cascade.utils.lazy_exports import lazy_exports

_EXPORTS = {
    "cascade.models.inflation": ["inflate", "swap_spatial_weights"],
    "cascade.models.motion_adapter": ["load_motion_adapter"],
    "cascade.models.temporal_layers": ["FramePositions", "TemporalAttention", "TemporalConvolution"],
    "cascade.models.video_unet": ["VideoUNet", "VideoUNetOutput"],
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
