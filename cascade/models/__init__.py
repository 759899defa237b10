"""Temporal layers and inflation of 2D UNets into video UNets."""

from .inflate import inflate
from .motion_adapter import load_motion_adapter
from .temporal_layers import FramePositions, TemporalAttention, TemporalConvolution
from .video_unet import VideoUNet, VideoUNetOutput

__all__ = [
    "FramePositions",
    "TemporalAttention",
    "TemporalConvolution",
    "VideoUNet",
    "VideoUNetOutput",
    "inflate",
    "load_motion_adapter",
]
