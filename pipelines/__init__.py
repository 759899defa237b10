"""The stage pipelines of the cascade, one file each (installed as ``cascade.pipelines``).

The names below are imported on first use (PEP 562), so reading the stage list
(:mod:`cascade.pipelines.stages`) does not load torch and diffusers.
"""

from cascade.utils.lazy_exports import lazy_exports

_EXPORTS = {
    "cascade.pipelines.cascade": ["CascadePipeline", "CascadePipelineOutput", "load_cascade"],
    "cascade.pipelines.interpolation": ["InterpolationPipeline"],
    "cascade.pipelines.keyframes": ["KeyframesPipeline"],
    "cascade.pipelines.spatial_sr": ["SpatialSRPipeline"],
    "cascade.pipelines.spatiotemporal_sr": ["SpatioTemporalSRPipeline"],
    "cascade.pipelines.stage_base": ["VideoPipelineOutput"],
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
