"""Pictures of videos for the web app: frames laid out in a grid, small frames enlarged.

A keyframe of the demo cascade is 16x16 pixels: shown as it is, a browser would draw it as a speck or
blur it when scaling. Frames are enlarged by whole multiples with nearest-neighbour sampling, so every
generated pixel stays a sharp square, and laid out in rows of ``columns``.
"""

import numpy as np

from cascade.data.frame_checks import check_rgb_frames
from cascade.utils.checks import check_int

GAP_RGB = (48, 48, 48)  # between tiles: the frames' black background stays distinguishable


def to_uint8(frames) -> np.ndarray:
    """Frames ``(F, H, W, 3)``, uint8 or float in [0, 1], as uint8 ``(F, H, W, 3)``."""
    array = np.asarray(frames)
    if array.dtype == np.uint8:
        check_rgb_frames("frames", array / 255, ndim=4)
        return array
    return (check_rgb_frames("frames", array, ndim=4) * 255).round().astype(np.uint8)  # (F, H, W, 3)


def frame_grid(frames, columns: int = 8, tile: int = 64, gap: int = 2) -> np.ndarray:
    """Frames ``(F, H, W, 3)`` (uint8, or float in [0, 1]) as one uint8 picture ``(rows * h + gaps, columns
    * w + gaps, 3)``: frame ``k`` in row ``k // columns``, each enlarged by the largest whole factor that keeps
    its longer side at most ``tile`` (at least 1), ``gap`` pixels between tiles."""
    frames = to_uint8(frames)  # (F, H, W, 3)
    columns = check_int("columns", columns, minimum=1)
    tile = check_int("tile", tile, minimum=1)
    gap = check_int("gap", gap, minimum=0)
    count, height, width = frames.shape[:3]
    factor = max(1, tile // max(height, width))
    frames = frames.repeat(factor, axis=1).repeat(factor, axis=2)  # (F, H * factor, W * factor, 3)
    height, width = height * factor, width * factor
    columns = min(columns, count)
    rows = -(-count // columns)
    grid = np.empty((rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap, 3), np.uint8)
    grid[:] = GAP_RGB
    for index, frame in enumerate(frames):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        grid[top : top + height, left : left + width] = frame
    return grid
