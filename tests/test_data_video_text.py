"""Video-text and image-text datasets on tiny files written here: mp4 (imageio-ffmpeg), gif, png."""

import json
import warnings

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from cascade.data import (
    ImageTextDataset,
    MediaReadError,
    SkippedMediaWarning,
    VideoTextDataset,
    probe_video,
    read_annotations,
    read_video_frames,
)

MP4_LEVEL, GIF_LEVEL = 8, 20  # grey level step per frame: frame k is uniformly k * step


def _ramp(num_frames: int, step: int, height: int = 24, width: int = 32) -> np.ndarray:
    levels = np.arange(num_frames, dtype=np.uint8) * step
    return np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).copy()  # (F, H, W, 3)


@pytest.fixture(scope="module")
def video_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    (root / "clips").mkdir()
    imageio.mimwrite(root / "clips" / "ramp.mp4", _ramp(30, MP4_LEVEL), fps=24, macro_block_size=8)
    imageio.mimwrite(root / "ramp.gif", _ramp(12, GIF_LEVEL), duration=100, loop=0)  # 10 fps
    imageio.mimwrite(root / "short.mp4", _ramp(3, MP4_LEVEL), fps=24, macro_block_size=8)
    (root / "corrupt.mp4").write_bytes(b"not a video" * 50)
    rows = [
        ("clips/ramp.mp4", "an mp4 ramp"),
        ("corrupt.mp4", "broken"),
        ("ramp.gif", "a gif ramp"),
        ("short.mp4", "too short"),
        ("missing.mp4", "not on disk"),
    ]
    with open(root / "captions.csv", "w") as handle:
        handle.write("path,caption\n" + "".join(f"{path},{caption}\n" for path, caption in rows))
    with open(root / "captions.jsonl", "w") as handle:
        handle.write(
            "\n".join(json.dumps({"file": path, "text": caption}) for path, caption in rows) + "\n\n"
        )
    return root


def _levels(pixel_values) -> np.ndarray:
    """Mean grey level (0-255) of each frame of ``(C, F, H, W)`` values in [-1, 1]."""
    return ((pixel_values.mean(dim=(0, 2, 3)) + 1) * 127.5).numpy()


def test_media_reading(video_root):
    info = probe_video(video_root / "clips" / "ramp.mp4")
    assert (info.num_frames, info.fps) == (30, 24.0)
    info = probe_video(video_root / "ramp.gif")
    assert (info.num_frames, info.fps) == (12, 10.0)
    frames = read_video_frames(video_root / "ramp.gif", [5, 1, 5])
    assert frames.shape == (3, 24, 32, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(frames.mean(axis=(1, 2, 3)), [100, 20, 100], atol=2)
    with pytest.raises(MediaReadError, match="corrupt.mp4"):
        probe_video(video_root / "corrupt.mp4")
    with pytest.raises(MediaReadError, match="ended before frame 9"):
        read_video_frames(video_root / "short.mp4", [0, 9])
    with pytest.raises(ValueError, match="indices"):
        read_video_frames(video_root / "short.mp4", [-1])


def test_bad_videos_are_skipped_at_construction(video_root):
    with pytest.warns(SkippedMediaWarning, match="skipped 3 of 5 videos"):
        dataset = VideoTextDataset(
            video_root, video_root / "captions.csv", 4, 16, 16, stride=2, start="first"
        )
    assert len(dataset) == 2
    assert sorted(item.path.split("/")[-1] for item in dataset.skipped) == [
        "corrupt.mp4",
        "missing.mp4",
        "short.mp4",
    ]
    assert "too short: 3 frames, the clip spans 7" in {item.reason for item in dataset.skipped}
    mp4, gif = dataset[0], dataset[1]
    assert mp4["pixel_values"].shape == (3, 4, 16, 16) and mp4["caption"] == "an mp4 ramp"
    assert mp4["pixel_values"].min() >= -1 and mp4["pixel_values"].max() <= 1
    np.testing.assert_allclose(_levels(mp4["pixel_values"]), np.array([0, 2, 4, 6]) * MP4_LEVEL, atol=4)
    np.testing.assert_allclose(_levels(gif["pixel_values"]), np.array([0, 2, 4, 6]) * GIF_LEVEL, atol=4)
    assert gif["caption"] == "a gif ramp"
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch["pixel_values"].shape == (2, 3, 4, 16, 16) and batch["caption"] == [
        "an mp4 ramp",
        "a gif ramp",
    ]


def test_sampling_at_a_target_fps_uses_each_videos_fps(video_root):
    with pytest.warns(SkippedMediaWarning):
        dataset = VideoTextDataset(
            video_root, video_root / "captions.jsonl", 4, 8, 12, fps=8, start="first", path_column="file",
            caption_column="text",
        )  # fmt: skip
    assert len(dataset) == 2
    mp4, gif = dataset[0], dataset[1]
    assert mp4["pixel_values"].shape == (3, 4, 8, 12)
    np.testing.assert_allclose(
        _levels(mp4["pixel_values"]), np.array([0, 3, 6, 9]) * MP4_LEVEL, atol=4
    )  # 24 fps
    np.testing.assert_allclose(
        _levels(gif["pixel_values"]), np.array([0, 1, 3, 4]) * GIF_LEVEL, atol=4
    )  # 10 fps


def test_random_starts_are_deterministic_per_index_and_epoch(video_root):
    with pytest.warns(SkippedMediaWarning):
        dataset = VideoTextDataset(video_root, video_root / "captions.csv", 3, 8, 8, seed=1)
    starts = {int(round(_levels(dataset[0]["pixel_values"])[0] / MP4_LEVEL)) for _ in range(3)}
    assert len(starts) == 1
    for epoch in range(1, 8):
        dataset.set_epoch(epoch)
        starts.add(int(round(_levels(dataset[0]["pixel_values"])[0] / MP4_LEVEL)))
    assert len(starts) > 1 and all(0 <= s <= 27 for s in starts)


def test_failures_at_load_time_fall_back_to_the_next_item(video_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedMediaWarning)  # no scan, so no warning yet
        dataset = VideoTextDataset(
            video_root, video_root / "captions.csv", 4, 8, 8, start="first", validate=False
        )
    assert len(dataset) == 5 and dataset.skipped == []
    with pytest.warns(SkippedMediaWarning, match="corrupt.mp4"):
        item = dataset[1]  # corrupt -> the gif
    assert item["caption"] == "a gif ramp" and len(dataset.skipped) == 1
    with pytest.warns(SkippedMediaWarning) as record:
        assert dataset[3]["caption"] == "an mp4 ramp"  # too short, missing, wrap around to index 0
    assert sum(w.category is SkippedMediaWarning for w in record) == 2 and len(dataset.skipped) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedMediaWarning)  # known failures are not retried
        assert dataset[1]["caption"] == "a gif ramp"


def test_video_dataset_arguments_are_checked(video_root, tmp_path):
    csv = video_root / "captions.csv"
    with pytest.raises(ValueError, match="num_frames.*0"):
        VideoTextDataset(video_root, csv, 0, 8, 8)
    with pytest.raises(ValueError, match="stride"):
        VideoTextDataset(video_root, csv, 4, 8, 8, stride=2, fps=8)
    with pytest.raises(ValueError, match="start.*'last'"):
        VideoTextDataset(video_root, csv, 4, 8, 8, start="last")
    with pytest.raises(ValueError, match="root"):
        VideoTextDataset(tmp_path / "nowhere", csv, 4, 8, 8)
    with pytest.raises(ValueError, match="caption_column.*'text'"):
        read_annotations(csv, caption_column="text")
    with pytest.raises(ValueError, match=r"\.csv"):
        read_annotations(video_root / "ramp.gif")
    (tmp_path / "bad.csv").write_text("path,caption\ncorrupt.mp4,x\n")
    with pytest.raises(ValueError, match="no usable videos"), pytest.warns(SkippedMediaWarning):
        VideoTextDataset(video_root, tmp_path / "bad.csv", 4, 8, 8)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    (root / "sub").mkdir()
    Image.new("RGB", (20, 10), (255, 0, 0)).save(root / "red.png")
    (root / "red.txt").write_text("a red picture\n")
    Image.new("RGB", (10, 30), (0, 0, 255)).save(root / "sub" / "blue.jpg")
    (root / "sub" / "blue.txt").write_text("a blue picture")
    Image.new("RGB", (8, 8)).save(root / "uncaptioned.png")
    (root / "broken.png").write_bytes(b"\x89PNG garbage")
    (root / "broken.txt").write_text("broken")
    (root / "captions.csv").write_text(
        "path,caption\nred.png,red from csv\nbroken.png,x\nsub/blue.jpg,blue\n"
    )
    return root


def test_image_folder_with_sidecar_captions(image_root):
    with pytest.warns(SkippedMediaWarning, match="skipped 2 of 4 images"):
        dataset = ImageTextDataset(image_root, 12, 16)
    assert len(dataset) == 2 and len(dataset.skipped) == 2
    assert {item.path.split("/")[-1] for item in dataset.skipped} == {"uncaptioned.png", "broken.png"}
    red, blue = dataset[0], dataset[1]
    assert red["pixel_values"].shape == (3, 1, 12, 16) and red["caption"] == "a red picture"
    assert red["pixel_values"][0].min() > 0.99 and red["pixel_values"][1:].max() < -0.99
    assert blue["caption"] == "a blue picture" and blue["pixel_values"][2].min() > 0.9


def test_image_folder_with_caption_file(image_root):
    with pytest.warns(SkippedMediaWarning, match="broken.png"):
        dataset = ImageTextDataset(image_root, 8, 8, annotations=image_root / "captions.csv")
    assert [dataset[i]["caption"] for i in range(len(dataset))] == ["red from csv", "blue"]
    with pytest.raises(ValueError, match="height"):
        ImageTextDataset(image_root, 0, 8)
