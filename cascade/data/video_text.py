"""Video-text and image-text datasets read from disk.

Layouts:

- videos: a folder of videos (mp4, gif, ...) plus a CSV or JSONL of ``path, caption`` rows with paths
  relative to the folder (the WebVid layout);
- images: a folder of images plus such a CSV/JSONL, or image files with sidecar captions
  (``cat.png`` + ``cat.txt``).

Items are dicts ``{"pixel_values": (C, F, H, W) float32 in [-1, 1], "caption": str}``; images are
one-frame videos ``(C, 1, H, W)``, so one model trains on both. Batched by torch's default collate,
``pixel_values`` becomes ``(B, C, F, H, W)``, the layout diffusers' video UNets take.

Bad files never stop a run. With ``validate=True`` (default) the constructor reads every file's
metadata (frame count and fps, or the image header) and drops unreadable, missing and too-short
files; any file that still fails in ``__getitem__`` is dropped then and the next index is returned
instead (deterministically: ``index + 1``, ``index + 2``, ... modulo the length). Every drop issues a
:class:`SkippedMediaWarning` and is recorded in ``dataset.skipped`` (path and reason). Drops made in
``DataLoader`` worker processes are recorded in the workers' copies only.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from cascade.utils.checks import check_choice, check_int, is_int

from .annotations import read_annotations
from .frame_sampling import CLIP_STARTS, VideoTooShortError, clip_offsets, sample_frame_indices
from .frame_transforms import frames_to_tensor, resize_center_crop
from .media_io import (
    IMAGE_EXTENSIONS,
    MediaReadError,
    VideoInfo,
    probe_video,
    read_image,
    read_video_frames,
    verify_image,
)


class SkippedMediaWarning(UserWarning):
    """A media file was left out of a dataset because it could not be used."""


@dataclass(frozen=True)
class SkippedItem:
    """A file left out of a dataset, and why."""

    path: str
    reason: str


@dataclass
class _Item:
    path: Path
    caption: str
    info: VideoInfo | None = None


def _check_root(root) -> Path:
    if not isinstance(root, str | Path) or not Path(root).is_dir():
        raise ValueError(f"`root` must be an existing directory, got {root!r}.")
    return Path(root)


class _SkippingDataset(Dataset):
    """Bookkeeping shared by the datasets: ``skipped``, warnings and the deterministic fallback."""

    def __init__(self):
        self.skipped: list[SkippedItem] = []
        self._items: list[_Item] = []
        self._failed: set[int] = set()

    def _skip(self, path: Path, reason: str) -> None:
        self.skipped.append(SkippedItem(str(path), reason))

    def _finish_scan(self, root: Path, kind: str, total: int) -> None:
        """Warns once about the files skipped by the constructor's scan; refuses an empty dataset."""
        if self.skipped:
            listed = "; ".join(f"{item.path} ({item.reason})" for item in self.skipped[:5])
            more = f"; and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            warnings.warn(
                f"skipped {len(self.skipped)} of {total} {kind}: {listed}{more}",
                SkippedMediaWarning,
                stacklevel=3,
            )
        if not self._items:
            raise ValueError(f"`root`={str(root)!r} holds no usable {kind} ({len(self.skipped)} skipped).")

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict:
        if not is_int(index) or not 0 <= index < len(self):
            raise IndexError(f"`index` must be an int in [0, {len(self)}), got {index!r}.")
        for attempt in range(len(self)):
            candidate = (int(index) + attempt) % len(self)
            if candidate in self._failed:
                continue
            try:
                return self._load(candidate)
            except (MediaReadError, VideoTooShortError) as error:
                self._failed.add(candidate)
                self._skip(self._items[candidate].path, str(error))
                warnings.warn(
                    f"skipped {self._items[candidate].path}: {error}", SkippedMediaWarning, stacklevel=2
                )
        raise RuntimeError(f"every item of this dataset failed to load; see `skipped` ({len(self.skipped)}).")

    def _load(self, index: int) -> dict:
        raise NotImplementedError


class VideoTextDataset(_SkippingDataset):
    """Clips of ``num_frames`` frames from a folder of videos captioned by a CSV/JSONL file.

    Args:
        root: the video folder; annotation paths are relative to it.
        annotations: the ``.csv`` (header row) or ``.jsonl`` caption file.
        num_frames: frames per clip.
        height, width: output size; frames are resized (smallest scale that covers it) and
            center-cropped.
        stride: take every ``stride``-th frame (default 1). Exclusive with ``fps``.
        fps: instead of a stride, sample at this frame rate using each video's fps metadata.
        start: where the clip starts: ``"random"`` (seeded by ``seed``, the epoch and the index),
            ``"center"`` or ``"first"``.
        seed: seed of the random clip starts.
        path_column, caption_column: column names (CSV) or keys (JSONL).
        validate: read every video's metadata now and drop unusable ones (see the module doc); this
            runs ffmpeg on each file (tens of milliseconds each), so for very large folders pass
            ``False`` and let ``__getitem__`` skip bad files as it meets them.

    Items: ``{"pixel_values": (C, F, H, W) float32 in [-1, 1], "caption": str}``.
    """

    def __init__(
        self,
        root,
        annotations,
        num_frames: int,
        height: int,
        width: int,
        stride: int | None = None,
        fps: float | None = None,
        start: str = "random",
        seed: int = 0,
        path_column: str = "path",
        caption_column: str = "caption",
        validate: bool = True,
    ):
        super().__init__()
        root = _check_root(root)
        self.num_frames = check_int("num_frames", num_frames, minimum=1)
        self.height = check_int("height", height, minimum=1)
        self.width = check_int("width", width, minimum=1)
        # Checks stride and fps (the source fps of this dry run is irrelevant).
        clip_offsets(num_frames, stride, fps, source_fps=1.0 if fps is not None else None)
        self.stride, self.fps = stride, fps
        self.start = check_choice("start", start, CLIP_STARTS)
        self.seed = check_int("seed", seed, minimum=0)
        self.epoch = 0
        rows = read_annotations(annotations, path_column, caption_column)
        for row in rows:
            item = _Item(root / row.path, row.caption)
            if validate:
                try:
                    item.info = probe_video(item.path)
                    self._check_length(item.info)
                except (MediaReadError, VideoTooShortError) as error:
                    self._skip(item.path, str(error))
                    continue
            self._items.append(item)
        self._finish_scan(root, "videos", len(rows))

    def set_epoch(self, epoch: int) -> None:
        """Changes the random clip starts (``start="random"``) for a new epoch."""
        self.epoch = check_int("epoch", epoch, minimum=0)

    def _check_length(self, info: VideoInfo) -> None:
        span = (
            int(clip_offsets(self.num_frames, self.stride, self.fps, info.fps if self.fps else None)[-1]) + 1
        )
        if span > info.num_frames:
            raise VideoTooShortError(f"too short: {info.num_frames} frames, the clip spans {span}")

    def _load(self, index: int) -> dict:
        item = self._items[index]
        info = item.info or probe_video(item.path)
        self._check_length(info)
        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.start == "random" else None
        indices = sample_frame_indices(
            info.num_frames,
            self.num_frames,
            self.stride,
            self.fps,
            info.fps if self.fps else None,
            self.start,
            rng,
        )
        video = frames_to_tensor(read_video_frames(item.path, indices))  # (C, F, H0, W0)
        return {"pixel_values": resize_center_crop(video, self.height, self.width), "caption": item.caption}


class ImageTextDataset(_SkippingDataset):
    """Captioned images as one-frame videos, for joint image-video training.

    Args:
        root: the image folder.
        annotations: a ``.csv``/``.jsonl`` caption file with paths relative to ``root``; if ``None``,
            every image under ``root`` (recursively, sorted) is captioned by the ``.txt`` file next to
            it with the same stem (images without one are skipped).
        height, width: output size (resize to cover, then center crop).
        path_column, caption_column: column names (CSV) or keys (JSONL).
        validate: check every image's header now and drop unreadable ones.

    Items: ``{"pixel_values": (C, 1, H, W) float32 in [-1, 1], "caption": str}``.
    """

    def __init__(
        self,
        root,
        height: int,
        width: int,
        annotations=None,
        path_column: str = "path",
        caption_column: str = "caption",
        validate: bool = True,
    ):
        super().__init__()
        root = _check_root(root)
        self.height = check_int("height", height, minimum=1)
        self.width = check_int("width", width, minimum=1)
        if annotations is None:
            candidates = self._sidecar_items(root)
        else:
            candidates = [
                _Item(root / row.path, row.caption)
                for row in read_annotations(annotations, path_column, caption_column)
            ]
        total = len(candidates) + len(self.skipped)  # sidecar mode skips images without captions already
        for item in candidates:
            if validate:
                try:
                    verify_image(item.path)
                except MediaReadError as error:
                    self._skip(item.path, str(error))
                    continue
            self._items.append(item)
        self._finish_scan(root, "images", total)

    def _sidecar_items(self, root: Path) -> list[_Item]:
        items = []
        for path in sorted(
            p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        ):
            caption_path = path.with_suffix(".txt")
            if caption_path.is_file():
                items.append(_Item(path, caption_path.read_text(encoding="utf-8").strip()))
            else:
                self._skip(path, f"no caption file {caption_path.name}")
        return items

    def _load(self, index: int) -> dict:
        item = self._items[index]
        video = frames_to_tensor(read_image(item.path)[None])  # (C, 1, H0, W0)
        return {"pixel_values": resize_center_crop(video, self.height, self.width), "caption": item.caption}
