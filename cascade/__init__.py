"""cascade: cascaded text-to-video generation built on diffusers.

A pretrained text-to-image UNet is *inflated* with temporal layers (:func:`inflate`) and each stage
of the cascade is a diffusers pipeline around such a :class:`VideoUNet`: keyframes, interpolation,
spatiotemporal and spatial super-resolution, chained by :class:`CascadePipeline`.

The names below are imported on first use (PEP 562), so ``import cascade`` and ``cascade --help`` do
not load torch and diffusers until a model is needed.
"""

import importlib

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
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'cascade' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF])
