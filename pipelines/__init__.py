"""The stage pipelines of the cascade, one file each (installed as ``cascade.pipelines``)."""

from .keyframes import KeyframesPipeline
from .stage_utils import VideoPipelineOutput

__all__ = ["KeyframesPipeline", "VideoPipelineOutput"]
