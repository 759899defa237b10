"""Anti-aliased rendering of shapes-world clips (:mod:`cascade.data.shapes_world`).

The renderer is a pure function of ``(params, num_frames, height, width, time_span)``. Each pixel's
value is ``background + coverage * (colour - background)``, with coverage estimated by supersampling
on a regular ``SUPERSAMPLING x SUPERSAMPLING`` grid of sample points per pixel; box-downsampling a
high-resolution render therefore approximately equals a direct low-resolution render.
"""

from collections.abc import Callable
from functools import partial

import numpy as np

from cascade.utils.checks import check_choice, check_int, check_number

from .shapes_world import BACKGROUND_RGB, SHAPES, ShapeParams, frame_times

SUPERSAMPLING = 16


def _inside(shape: str, dx: np.ndarray, dy: np.ndarray, half: float) -> np.ndarray:
    """Whether offsets ``(dx, dy)`` (pixels, y down) from the bounding-square centre hit the shape."""
    if shape == "square":
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "circle":
        return dx * dx + dy * dy <= half * half
    # Triangle: apex at (0, -half), base from (-half, half) to (half, half).
    return (dy <= half) & (np.abs(dx) <= (dy + half) / 2)


def shape_coverage(params: ShapeParams, t: float, height: int, width: int) -> np.ndarray:
    """Fraction of each pixel covered by the shape at normalised time ``t``; shape ``(H, W)``."""
    if not isinstance(params, ShapeParams):
        raise ValueError(f"`params` must be a ShapeParams, got {params!r}.")
    height = check_int("height", height, minimum=1)
    width = check_int("width", width, minimum=1)
    center_x, center_y = params.center_at(float(t))
    half = params.size * min(height, width) / 2
    return pixel_coverage(params.shape, center_x * width, center_y * height, half, height, width)


def pixel_coverage(
    shape: str, center_x: float, center_y: float, half: float, height: int, width: int
) -> np.ndarray:
    """Fraction of each pixel of an ``(height, width)`` frame covered by ``shape`` whose bounding square has
    its centre at ``(center_x, center_y)`` and half-side ``half``, all in pixels (pixel ``i`` spans
    ``[i, i + 1)``); shape ``(H, W)``. The part outside the frame is cut off."""
    check_choice("shape", shape, SHAPES)
    return supersampled_coverage(partial(_inside, shape), center_x, center_y, half, height, width)


def supersampled_coverage(
    inside: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
    center_x: float,
    center_y: float,
    half: float,
    height: int,
    width: int,
) -> np.ndarray:  # (H, W)
    """Fraction of each pixel covered by a shape inside the square of half-side ``half`` centred on
    ``(center_x, center_y)`` (pixels), ``inside(dx, dy, half)`` saying which offsets from the centre it covers:
    the mean over ``SUPERSAMPLING x SUPERSAMPLING`` sample points per pixel."""
    for name, value in (("center_x", center_x), ("center_y", center_y), ("half", half)):
        check_number(name, value)
    if half < 0:
        raise ValueError(f"`half` must be >= 0, got {half!r}.")
    height = check_int("height", height, minimum=1)
    width = check_int("width", width, minimum=1)
    coverage = np.zeros((height, width))  # (H, W)
    # Only the pixels that the bounding square touches need samples.
    x0, x1 = max(int(np.floor(center_x - half)), 0), min(int(np.ceil(center_x + half)), width)
    y0, y1 = max(int(np.floor(center_y - half)), 0), min(int(np.ceil(center_y + half)), height)
    if x0 >= x1 or y0 >= y1:
        return coverage
    offsets = (np.arange(SUPERSAMPLING) + 0.5) / SUPERSAMPLING
    xs = (np.arange(x0, x1)[:, None] + offsets).ravel()  # (w * s,)
    ys = (np.arange(y0, y1)[:, None] + offsets).ravel()  # (h * s,)
    hits = inside(xs[None, :] - center_x, ys[:, None] - center_y, half)  # (h * s, w * s)
    hits = hits.reshape(y1 - y0, SUPERSAMPLING, x1 - x0, SUPERSAMPLING)
    coverage[y0:y1, x0:x1] = hits.mean(axis=(1, 3))
    return coverage


def render_silhouettes(
    params: ShapeParams, num_frames: int, height: int, width: int, time_span: tuple[float, float] = (0.0, 1.0)
) -> np.ndarray:
    """The shape's coverage of each pixel of each frame, float32 ``(F, H, W)`` in [0, 1]: the clip's silhouettes
    (the control signal of a silhouette ControlNet); frame ``k`` shows time
    :func:`~cascade.data.shapes_world.frame_times` ``[k]``."""
    if not isinstance(params, ShapeParams):
        raise ValueError(f"`params` must be a ShapeParams, got {params!r}.")
    height = check_int("height", height, minimum=1)
    width = check_int("width", width, minimum=1)
    times = frame_times(num_frames, time_span)
    return np.stack([shape_coverage(params, t, height, width) for t in times]).astype(np.float32)


def render_clip(
    params: ShapeParams, num_frames: int, height: int, width: int, time_span: tuple[float, float] = (0.0, 1.0)
) -> np.ndarray:
    """Renders a clip as float32 frames ``(F, H, W, 3)`` in [0, 1] (the frame layout of diffusers'
    ``export_to_video``); frame ``k`` shows time :func:`~cascade.data.shapes_world.frame_times` ``[k]``."""
    return colour_silhouettes(render_silhouettes(params, num_frames, height, width, time_span), params.rgb)


def colour_silhouettes(coverage: np.ndarray, rgb) -> np.ndarray:
    """Frames ``(..., H, W, 3)`` float32 of the colour ``rgb`` over the background, by ``coverage``
    ``(..., H, W)`` in [0, 1]."""
    background, color = np.asarray(BACKGROUND_RGB), np.asarray(rgb)
    return (background + coverage[..., None] * (color - background)).astype(np.float32)
