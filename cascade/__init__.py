"""cascade: cascaded text-to-video generation built on diffusers.

A pretrained text-to-image UNet is *inflated* with temporal layers (:func:`inflate`) and each stage
of the cascade is a diffusers pipeline around such a :class:`VideoUNet`: keyframes, interpolation,
spatiotemporal and spatial super-resolution, chained by :class:`CascadePipeline`.

The names below are imported on first use (PEP 562), so ``import cascade`` and ``cascade --help`` do
not load torch and diffusers until a model is needed.
"""

from cascade.lazy_exports import lazy_exports

__version__ = "0.1.0"

_MODULE_OF = {
    **dict.fromkeys(
        [
            "FramePositions",
            "TemporalAttention",
            "TemporalConvolution",
            "VideoUNet",
            "VideoUNetOutput",
            "inflate",
            "load_motion_adapter",
        ],
        "cascade.models",
    ),
    **dict.fromkeys(
        [
            "CascadePipeline",
            "CascadePipelineOutput",
            "InterpolationPipeline",
            "KeyframesPipeline",
            "SpatialSRPipeline",
            "SpatioTemporalSRPipeline",
            "VideoPipelineOutput",
        ],
        "cascade.pipelines",
    ),
    **dict.fromkeys(["auto_dtype", "native_dtypes"], "cascade.utils.devices"),
}

__all__ = sorted(_MODULE_OF)


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)
