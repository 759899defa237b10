"""The shapes world: parameters of synthetic clips of one coloured shape moving on a black background.

A clip is fully described by a :class:`ShapeParams`. Positions live in continuous normalised
coordinates (``x`` in widths from the left edge, ``y`` in heights from the top edge) and are a linear
function of normalised clip time ``t`` in [0, 1], so the same clip can be rendered at any resolution
and any frame count (see :mod:`cascade.data.shapes_render`): frame ``k`` of an ``F``-frame clip shows
time ``k / (F - 1)``, hence frame ``k`` of 8 frames equals frame ``4 k`` of 29 frames.

Geometry, in units of the frame's shorter side ``S = min(H, W)``: every shape fills a bounding square
of side ``size * S`` centred on the clip's position; the circle is inscribed in it, the triangle has
its base on the square's bottom edge and its apex at the middle of the top edge. Bounding-box fill
ratios are therefore 1 (square), pi / 4 (circle) and 1 / 2 (triangle).

Constants: sizes in [0.30, 0.40] of the shorter side, travel of [0.40, 0.50] of the frame along the
motion axis, start positions drawn so the whole shape stays inside the frame for the whole clip
(for any aspect ratio: normalised half-extents are at most ``size / 2`` on both axes).
"""

from dataclasses import asdict, dataclass

import numpy as np

from cascade.utils.checks import check_choice, check_int, check_number

BACKGROUND_RGB = (0.0, 0.0, 0.0)
# The corners of the RGB cube except black: every pair, and every colour and the background, are at
# least 1 apart in RGB.
PALETTE = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "white": (1.0, 1.0, 1.0),
}
COLORS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")
# Unit displacement per direction in image coordinates (y grows downwards).
DIRECTION_VECTORS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
DIRECTIONS = tuple(DIRECTION_VECTORS)
# Every word a caption can use: the vocabulary of a text encoder made for the shapes world.
VOCABULARY = ("a", "an", "moving", *COLORS, *SHAPES, *DIRECTIONS)
SIZE_RANGE = (0.30, 0.40)
DISTANCE_RANGE = (0.40, 0.50)


@dataclass(frozen=True)
class ShapeParams:
    """One clip of the shapes world.

    Attributes:
        color: a key of :data:`PALETTE`.
        shape: one of :data:`SHAPES`.
        direction: one of :data:`DIRECTIONS`.
        size: side of the shape's bounding square, as a fraction of the frame's shorter side.
        start_x: bounding-square centre at ``t = 0``, in frame widths from the left edge.
        start_y: bounding-square centre at ``t = 0``, in frame heights from the top edge.
        distance: distance travelled along ``direction`` over the clip, in frame widths (left/right)
            or heights (up/down).
    """

    color: str
    shape: str
    direction: str
    size: float
    start_x: float
    start_y: float
    distance: float

    def __post_init__(self):
        check_choice("color", self.color, COLORS)
        check_choice("shape", self.shape, SHAPES)
        check_choice("direction", self.direction, DIRECTIONS)
        for name in ("size", "start_x", "start_y", "distance"):
            value = getattr(self, name)
            check_number(name, value)
        if not 0 < self.size <= 1:
            raise ValueError(f"`size` must be in (0, 1], got {self.size!r}.")
        if not self.distance >= 0:
            raise ValueError(f"`distance` must be >= 0, got {self.distance!r}.")
        half = self.size / 2
        for name in ("start_x", "start_y"):
            value = getattr(self, name)
            if not half - 1e-9 <= value <= 1 - half + 1e-9:
                raise ValueError(
                    f"`{name}` must be in [size / 2, 1 - size / 2] = [{half}, {1 - half}], got {value!r}."
                )
        end_x, end_y = self.center_at(1.0)
        if not (half - 1e-9 <= end_x <= 1 - half + 1e-9 and half - 1e-9 <= end_y <= 1 - half + 1e-9):
            raise ValueError(
                f"`distance`={self.distance!r} moves the shape out of the frame: it would end at "
                f"({end_x:.3f}, {end_y:.3f}); the centre must stay in [{half}, {1 - half}]."
            )

    @property
    def rgb(self) -> tuple[float, float, float]:
        """The shape's colour as RGB in [0, 1]."""
        return PALETTE[self.color]

    @property
    def caption(self) -> str:
        """The caption of the clip, e.g. ``"a red circle moving left"``."""
        return make_caption(self.color, self.shape, self.direction)

    def center_at(self, t):
        """Bounding-square centre ``(x, y)`` at normalised time(s) ``t``, in normalised coordinates."""
        dx, dy = DIRECTION_VECTORS[self.direction]
        return self.start_x + dx * self.distance * t, self.start_y + dy * self.distance * t

    def to_dict(self) -> dict:
        """The parameters as a dict of str and float (batchable by torch's default collate);
        ``ShapeParams(**d)`` rebuilds them."""
        return asdict(self)


def make_caption(color: str, shape: str, direction: str) -> str:
    """The caption for a clip: ``"a {color} {shape} moving {direction}"``."""
    check_choice("color", color, COLORS)
    check_choice("shape", shape, SHAPES)
    check_choice("direction", direction, DIRECTIONS)
    return f"a {color} {shape} moving {direction}"


def parse_caption(caption: str) -> dict[str, str]:
    """Inverse of :func:`make_caption`: returns ``{"color", "shape", "direction"}``.

    Case, surrounding whitespace, repeated spaces and a trailing full stop are ignored. The result can
    be passed on as ``sample_params(rng, **parse_caption(caption))``.
    """
    if not isinstance(caption, str):
        raise ValueError(f"`caption` must be a str, got {caption!r}.")
    words = caption.strip().rstrip(".").lower().split()
    if (
        len(words) != 5
        or words[0] not in ("a", "an")
        or words[1] not in COLORS
        or words[2] not in SHAPES
        or words[3] != "moving"
        or words[4] not in DIRECTIONS
    ):
        raise ValueError(
            f"`caption` must read 'a <color> <shape> moving <direction>' with color in {COLORS}, "
            f"shape in {SHAPES} and direction in {DIRECTIONS}, got {caption!r}."
        )
    return {"color": words[1], "shape": words[2], "direction": words[4]}


def sample_params(
    rng: np.random.Generator, color: str | None = None, shape: str | None = None, direction: str | None = None
) -> ShapeParams:
    """Draws a clip uniformly: colour, shape and direction (unless given), size, distance, start.

    The same number of values is drawn from ``rng`` whether or not categories are given, so fixing one
    category does not change the others' stream.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"`rng` must be a numpy.random.Generator, got {rng!r}.")
    drawn_color, drawn_shape, drawn_direction = (
        COLORS[rng.integers(len(COLORS))],
        SHAPES[rng.integers(len(SHAPES))],
        DIRECTIONS[rng.integers(len(DIRECTIONS))],
    )
    color = drawn_color if color is None else check_choice("color", color, COLORS)
    shape = drawn_shape if shape is None else check_choice("shape", shape, SHAPES)
    direction = drawn_direction if direction is None else check_choice("direction", direction, DIRECTIONS)
    size = float(rng.uniform(*SIZE_RANGE))
    distance = float(rng.uniform(*DISTANCE_RANGE))
    half = size / 2
    along, across = rng.uniform(size=2)
    # Along the motion axis the start leaves room for the whole path; across it any in-frame position.
    dx, dy = DIRECTION_VECTORS[direction]
    start_along = half + along * (1 - size - distance)
    if dx + dy < 0:  # moving left or up: start at the far end
        start_along = 1 - start_along
    start_across = half + across * (1 - size)
    start_x, start_y = (start_along, start_across) if dx else (start_across, start_along)
    return ShapeParams(color, shape, direction, size, float(start_x), float(start_y), distance)


def frame_times(num_frames: int, time_span: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Normalised times of ``num_frames`` evenly spaced frames covering ``time_span`` (ends included).

    Times are computed as ``t0 + (t1 - t0) * (k / (F - 1))``: the division is correctly rounded, so
    frame ``k`` of ``F`` frames and frame ``k m`` of ``(F - 1) m + 1`` frames get bit-identical times.
    A single frame shows ``t0``.
    """
    num_frames = check_int("num_frames", num_frames, minimum=1)
    if len(time_span) != 2 or not 0 <= time_span[0] <= time_span[1] <= 1:
        raise ValueError(f"`time_span` must be (t0, t1) with 0 <= t0 <= t1 <= 1, got {time_span!r}.")
    t0, t1 = float(time_span[0]), float(time_span[1])
    fractions = np.array([k / (num_frames - 1) for k in range(num_frames)]) if num_frames > 1 else np.zeros(1)
    return t0 + (t1 - t0) * fractions  # (F,)


def shape_centers(params: ShapeParams, num_frames: int, time_span=(0.0, 1.0)) -> np.ndarray:
    """Ground truth: bounding-square centre ``(x, y)`` per frame, normalised; shape ``(F, 2)``."""
    if not isinstance(params, ShapeParams):
        raise ValueError(f"`params` must be a ShapeParams, got {params!r}.")
    x, y = params.center_at(frame_times(num_frames, time_span))
    return np.stack([x, y], axis=-1)  # (F, 2)


def shape_centroids(
    params: ShapeParams, num_frames: int, height: int, width: int, time_span=(0.0, 1.0)
) -> np.ndarray:
    """Ground truth: area centroid ``(x, y)`` per frame, normalised; shape ``(F, 2)``.

    This is what :func:`cascade.data.shapes_analysis.analyze_frame` estimates. It equals the
    bounding-square centre except for the triangle, whose centroid lies ``size / 6`` below it (in
    units of the shorter side, hence the dependence on ``height`` and ``width``).
    """
    height = check_int("height", height, minimum=1)
    width = check_int("width", width, minimum=1)
    centers = shape_centers(params, num_frames, time_span)  # (F, 2)
    if params.shape == "triangle":
        centers[:, 1] += params.size * min(height, width) / height / 6
    return centers


class ShapesWorld:
    """A seeded, indexable stream of shapes-world clips: ``ShapesWorld(seed)[i]`` is a
    :class:`ShapeParams` that depends only on ``(seed, i)``.

    ``color`` and ``shape``, when given, fix that category in every clip (a sub-world, e.g. red circles
    for a curriculum's first step); the rest of each clip is drawn as in the whole world.
    """

    def __init__(self, seed: int = 0, color: str | None = None, shape: str | None = None):
        self.seed = check_int("seed", seed, minimum=0)
        self.color = None if color is None else check_choice("color", color, COLORS)
        self.shape = None if shape is None else check_choice("shape", shape, SHAPES)

    def __getitem__(self, index: int) -> ShapeParams:
        check_int("index", index, minimum=0)
        return sample_params(np.random.default_rng((self.seed, int(index))), self.color, self.shape)
