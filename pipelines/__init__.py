"""The stage pipelines of the cascade, one file each (installed as ``cascade.pipelines``)."""

from .cascade import CascadePipeline, CascadePipelineOutput
from .interpolation import InterpolationPipeline
from .keyframes import KeyframesPipeline
from .spatial_sr import SpatialSRPipeline
from .spatiotemporal_sr import SpatioTemporalSRPipeline
from .stage_utils import VideoPipelineOutput

__all__ = [
    "CascadePipeline",
    "CascadePipelineOutput",
    "InterpolationPipeline",
    "KeyframesPipeline",
    "SpatialSRPipeline",
    "SpatioTemporalSRPipeline",
    "VideoPipelineOutput",
]
