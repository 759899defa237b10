"""cascade: cascaded text-to-video generation built on diffusers."""

__version__ = "0.1.0"
