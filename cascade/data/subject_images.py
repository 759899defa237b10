"""A new subject for DreamBooth on the shapes world: a shape the world does not have, drawn here.

DreamBooth (Ruiz et al. 2022, "DreamBooth: Fine Tuning Text-to-Image Diffusion Models for Subject-Driven
Generation", arXiv:2208.12242) teaches a text-to-image model a subject from 3 to 5 of its images, captioned
with a rare identifier. :class:`SubjectImages` renders that handful: one shape of :data:`SUBJECT_SHAPES` (a
**cross**, a plus sign whose arms are a third of its bounding square wide, or a five-pointed **star**) in one
colour, at sizes and positions drawn like the world's, with the same anti-aliasing as the world's renderer.
:func:`subject_coverage` draws the shape anywhere, so evaluation can match generated frames against it.
"""

import math
from functools import partial

import numpy as np
from torch.utils.data import Dataset

from cascade.utils.checks import check_choice, check_int, is_int

from .frame_transforms import frames_to_tensor
from .shapes_render import colour_silhouettes, supersampled_coverage
from .shapes_world import COLORS, DIRECTIONS, PALETTE, SIZE_RANGE

SUBJECT_SHAPES = ("cross", "star")
MIN_SUBJECT_IMAGES = 3  # DreamBooth's fewest (Ruiz et al. 2022, sec. 4.1)
# The regular five-pointed star's inner radius over its outer one.
STAR_INNER_RATIO = 0.382


def _star_polygon(half: float) -> np.ndarray:  # (10, 2)
    """Vertices of a five-pointed star (point up) with outer radius ``half``, about the origin."""
    angles = -math.pi / 2 + np.arange(10) * math.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, half, half * STAR_INNER_RATIO)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _inside_polygon(polygon: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Even-odd rule: whether each point ``(dx, dy)`` lies inside ``polygon`` ``(N, 2)``."""
    inside = np.zeros(np.broadcast_shapes(dx.shape, dy.shape), dtype=bool)
    for (x0, y0), (x1, y1) in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        crosses = (y0 > dy) != (y1 > dy)
        x_at = x0 + (dy - y0) * (x1 - x0) / np.where(y1 != y0, y1 - y0, 1.0)
        inside ^= crosses & (dx < x_at)
    return inside


def _inside(shape: str, dx: np.ndarray, dy: np.ndarray, half: float) -> np.ndarray:
    """Whether offsets ``(dx, dy)`` (pixels, y down) from the bounding-square centre hit ``shape``."""
    if shape == "cross":
        arm = half / 3
        within = (np.abs(dx) <= half) & (np.abs(dy) <= half)
        return within & ((np.abs(dx) <= arm) | (np.abs(dy) <= arm))
    return _inside_polygon(_star_polygon(half), dx, dy)


def subject_coverage(
    shape: str, center_x: float, center_y: float, half: float, height: int, width: int
) -> np.ndarray:  # (H, W)
    """Fraction of each pixel of an ``(height, width)`` frame covered by the subject ``shape`` whose bounding
    square has its centre at ``(center_x, center_y)`` and half-side ``half``, all in pixels; supersampled as
    :func:`cascade.data.shapes_render.pixel_coverage` is."""
    check_choice("shape", shape, SUBJECT_SHAPES)
    return supersampled_coverage(partial(_inside, shape), center_x, center_y, half, height, width)


class SubjectImages(Dataset):
    """``images`` renders of one subject, for DreamBooth: items ``{"pixel_values": (3, 1, H, W) in [-1, 1],
    "caption": str}``, image ``i`` drawn from ``(seed, i)``.

    Args:
        images: how many (at least :data:`MIN_SUBJECT_IMAGES`, DreamBooth's fewest).
        shape: one of :data:`SUBJECT_SHAPES`.
        color: one of the world's colours.
        prompt: the caption, with the rare identifier; ``{direction}`` in it is replaced by a direction word
            drawn per image (a still image shows none; the world's text-to-image model was trained on such
            captions, so a sampling prompt with a direction word reads as it learned).
        height, width, seed: render size and the seed of sizes, positions and direction words.
        length: items of the dataset, cycling over the ``images`` (so a batch can be larger than the handful).
    """

    def __init__(
        self,
        images: int,
        shape: str = "cross",
        color: str = "yellow",
        prompt: str = "a sks moving {direction}",
        height: int = 16,
        width: int = 16,
        seed: int = 0,
        length: int | None = None,
    ):
        if not is_int(images) or images < MIN_SUBJECT_IMAGES:
            raise ValueError(
                f"`images` must be an int >= {MIN_SUBJECT_IMAGES} (DreamBooth learns a subject from 3 to 5 "
                f"images; fewer do not pin it down), got {images!r}."
            )
        self.images = images
        self.shape = check_choice("shape", shape, SUBJECT_SHAPES)
        self.color = check_choice("color", color, COLORS)
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"`prompt` must be a non-empty str, got {prompt!r}.")
        self.prompt = prompt
        self.height, self.width = check_int("height", height, minimum=1), check_int("width", width, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        self.length = images if length is None else check_int("length", length, minimum=images)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not is_int(index) or not 0 <= index < self.length:
            raise IndexError(f"`index` must be in [0, {self.length}), got {index!r}.")
        rng = np.random.default_rng((self.seed, int(index) % self.images))
        size = float(rng.uniform(*SIZE_RANGE))
        x, y = rng.uniform(size / 2, 1 - size / 2, size=2)
        direction = DIRECTIONS[rng.integers(len(DIRECTIONS))]
        half = size * min(self.height, self.width) / 2
        coverage = subject_coverage(
            self.shape, x * self.width, y * self.height, half, self.height, self.width
        )
        image = colour_silhouettes(coverage, PALETTE[self.color])  # (H, W, 3)
        return {
            "pixel_values": frames_to_tensor(image[None]),  # (3, 1, H, W)
            "caption": self.prompt.replace("{direction}", direction),
        }
