"""cascade: cascaded text-to-video generation built on diffusers.

A pretrained text-to-image UNet is *inflated* with temporal layers (:func:`inflate`) and each stage
of the cascade is a diffusers pipeline around such a :class:`VideoUNet`: keyframes, interpolation,
spatiotemporal and spatial super-resolution, chained by :class:`CascadePipeline`.

The names below are imported on first use (PEP 562), so ``import cascade`` and ``cascade --help`` do
not load torch and diffusers until a model is needed. The package's layers, and where each module sits
in them, are described in ARCHITECTURE.md.
"""

from cascade import models, pipelines
from cascade.utils.lazy_exports import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    **models._EXPORTS,
    **pipelines._EXPORTS,
    "cascade.utils.devices": ["auto_dtype", "native_dtypes"],
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
