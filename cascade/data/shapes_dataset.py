"""``ShapesDataset``: shapes-world clips rendered on the fly as a torch ``Dataset``."""

import numpy as np
import torch
from torch.utils.data import Dataset

from cascade.utils.checks import check_choice, check_int, is_int

from .frame_transforms import frames_to_tensor
from .shapes_render import colour_silhouettes, render_silhouettes
from .shapes_world import (
    COLORS,
    DIRECTIONS,
    SHAPES,
    ShapeParams,
    ShapesWorld,
    frame_times,
    parse_caption,
    sample_params,
)

# Control signals an item can carry beside its clip.
CONTROLS = ("silhouette",)


class ShapesDataset(Dataset):
    """``length`` clips of the shapes world, item ``i`` being ``ShapesWorld(seed)[i]`` rendered.

    Items have the layout of :class:`~cascade.data.video_text.VideoTextDataset` plus the parameters:
    ``{"pixel_values": (C, F, H, W) float32 in [-1, 1], "caption": str, "params": dict}``, where
    ``params`` is :meth:`~cascade.data.shapes_world.ShapeParams.to_dict` (str and float values, so
    torch's default collate batches it). The same ``(seed, index)`` always gives the same item.

    Args:
        length: number of clips.
        num_frames, height, width: render size; any size shows the same motion.
        seed: seed of the clip parameters.
        time_span: the part of normalised clip time [0, 1] the frames cover.
        window: when given, item ``i`` is ``window`` consecutive frames of the ``num_frames`` rendered, at an
            offset drawn from ``(seed, i)``: windows of a long clip, with the long clip's motion per frame.
        color, shape: when given, every clip has this colour (shape): the sub-world of
            :class:`~cascade.data.shapes_world.ShapesWorld`.
        control: ``"silhouette"`` adds ``"control_values"`` to each item: the shape's coverage of each pixel,
            float32 ``(3, F, H, W)`` in [0, 1] (white on black, the control video of a silhouette ControlNet).
    """

    def __init__(
        self,
        length: int,
        num_frames: int = 8,
        height: int = 16,
        width: int = 16,
        seed: int = 0,
        time_span: tuple[float, float] = (0.0, 1.0),
        window: int | None = None,
        color: str | None = None,
        shape: str | None = None,
        control: str | None = None,
    ):
        self.length = check_int("length", length, minimum=1)
        self.num_frames = check_int("num_frames", num_frames, minimum=1)
        self.height = check_int("height", height, minimum=1)
        self.width = check_int("width", width, minimum=1)
        frame_times(num_frames, time_span)  # checks time_span
        self.time_span = (float(time_span[0]), float(time_span[1]))
        self.world = ShapesWorld(seed, color, shape)
        if window is not None and (check_int("window", window, minimum=1) > num_frames):
            raise ValueError(f"`window` must be at most num_frames={num_frames}, got {window!r}.")
        self.window = window
        if control is not None:
            check_choice("control", control, CONTROLS)
        self.control = control

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        self._check_index(index)
        params = self.world[index]
        frames = self._window(np.random.default_rng((self.world.seed, int(index), 1)))
        silhouettes = self._silhouettes(params)[frames]  # (F, H, W)
        item = {
            "pixel_values": frames_to_tensor(colour_silhouettes(silhouettes, params.rgb)),
            "caption": params.caption,
            "params": params.to_dict(),
        }
        if self.control == "silhouette":
            item["control_values"] = torch.from_numpy(silhouettes)[None].repeat(3, 1, 1, 1)  # (3, F, H, W)
        return item

    def same_caption(self, index: int, count: int) -> torch.Tensor:  # (count, C, F, H, W)
        """``count`` other clips with item ``index``'s caption (colour, shape and direction), their size,
        start and travel drawn anew from ``(seed, index)``: samples of the same conditional distribution,
        e.g. the reference batch of a stable target field (:mod:`cascade.training.stable_target`)."""
        self._check_index(index)
        count = check_int("count", count, minimum=1)
        params = self.world[index]
        rng = np.random.default_rng((self.world.seed, int(index), 2))
        return self._draw_clips(rng, count, params.color, params.shape, params.direction)

    def caption_clips(self, caption: str, count: int) -> torch.Tensor:  # (count, C, F, H, W)
        """``count`` clips with ``caption``, their size, start and travel drawn from ``(seed, caption)``: the
        same clips whichever item asks, e.g. a fixed reference set per caption whose mean is the caption's
        mean clip (:class:`cascade.training.stable_target.ReferenceClips` with ``shared=True``)."""
        words = parse_caption(caption)
        count = check_int("count", count, minimum=1)
        key = (
            COLORS.index(words["color"]),
            SHAPES.index(words["shape"]),
            DIRECTIONS.index(words["direction"]),
        )
        rng = np.random.default_rng((self.world.seed, *key, 3))
        return self._draw_clips(rng, count, words["color"], words["shape"], words["direction"])

    def _draw_clips(
        self, rng: np.random.Generator, count: int, color: str, shape: str, direction: str
    ) -> torch.Tensor:  # (count, C, F, H, W)
        """``count`` clips of one caption, parameters (and window offsets) drawn from ``rng``."""
        return torch.stack(
            [
                self._render(sample_params(rng, color, shape, direction), self._window(rng))
                for _ in range(count)
            ]
        )

    def _check_index(self, index) -> None:
        if not is_int(index) or not 0 <= index < self.length:
            raise IndexError(f"`index` must be in [0, {self.length}), got {index!r}.")

    def _window(self, offsets: np.random.Generator) -> slice:
        """The item's frames of the rendered clip: all, or with ``window`` a window at an offset drawn from
        ``offsets``."""
        if self.window is None:
            return slice(None)
        first = int(offsets.integers(self.num_frames - self.window + 1))
        return slice(first, first + self.window)

    def _silhouettes(self, params: ShapeParams) -> np.ndarray:  # (F, H, W)
        """The coverage of every rendered frame of the clip of ``params``."""
        return render_silhouettes(params, self.num_frames, self.height, self.width, self.time_span)

    def _render(self, params: ShapeParams, frames: slice) -> torch.Tensor:  # (C, F, H, W)
        """The clip of ``params`` in [-1, 1], its ``frames`` of the rendered clip."""
        return frames_to_tensor(colour_silhouettes(self._silhouettes(params)[frames], params.rgb))
