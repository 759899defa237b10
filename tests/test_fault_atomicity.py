"""Faults leave nothing half-done (issue 20, part 4): a process killed with SIGKILL at a random moment while it
saves a stage or a cascade, writes a video, builds a stage (``cascade build``) or evaluates (``cascade eval``)
leaves the old state or the new, never a broken folder or file; a full disk (a file size limit,
``RLIMIT_FSIZE``) gives an ``OSError`` naming the file and leaves nothing of it.

Each run to kill is a fresh interpreter (not ``os.fork``: a forked copy of a process whose OpenMP pool has run
can hang). It sets up, writes its reference results, says it is ready by creating a file, then repeats the
operation until it is killed, a random time later."""

import hashlib
import json
import os
import random
import resource
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cascade.cli import main
from cascade.data.media_io import read_video, write_video
from cascade.hub.build import build
from cascade.hub.manifest import read_manifest
from cascade.pipelines import CascadePipeline, KeyframesPipeline
from cascade.pipelines.hub_loading import check_weight_hashes
from cascade.testing import fresh_interpreter
from cascade.testing.tiny_models import (
    tiny_cascade_stages,
    tiny_keyframes_components,
    tiny_text_encoder,
    tiny_tokenizer,
    tiny_unet2d,
    tiny_vae,
)

READY = "ready"


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder``."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def visible(folder: Path) -> list[str]:
    """The names in ``folder`` not hidden (a killed writer may leave its hidden temporary, never more)."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def kill_at_random(code: str, folder: Path, longest: float) -> float:
    """Runs ``code`` in a fresh interpreter, waits until it creates ``folder/ready``, kills it with SIGKILL up
    to ``longest`` seconds later and returns the delay."""
    child = fresh_interpreter.start(code, Path(__file__).parent)
    deadline = time.monotonic() + 300
    try:
        while not (folder / READY).exists():
            assert child.poll() is None, child.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the child never became ready"
            time.sleep(0.01)
        delay = random.random() * longest
        time.sleep(delay)
        assert child.poll() is None, child.stderr.read().decode()[-3000:]  # still at work when killed
    finally:
        child.kill()
        child.wait()
    return delay


def _save_two_states(folder: str, kind: str) -> None:
    """In the child: saves state A to ``target`` and the references ``a`` and ``b``, then saves B and A in
    turn to ``target`` until killed."""
    folder = Path(folder)
    if kind == "stage":
        states = [KeyframesPipeline(**tiny_keyframes_components(seed=seed)) for seed in (0, 1)]
    else:
        states = [CascadePipeline(**tiny_cascade_stages(seed=seed)) for seed in (0, 1)]
    for state, name in zip(states, ("a", "b"), strict=True):
        state.save_pretrained(folder / name)
    states[0].save_pretrained(folder / "target")
    (folder / READY).touch()
    while True:
        for state in (states[1], states[0]):
            state.save_pretrained(folder / "target")


@pytest.mark.parametrize("kind", ["stage", "cascade"])
def test_save_pretrained_killed_at_a_random_moment_leaves_the_old_or_the_new_folder(kind, tmp_path):
    delay = kill_at_random(
        f"from {__name__} import _save_two_states as s; s({str(tmp_path)!r}, {kind!r})", tmp_path, 3
    )
    saved = tree(tmp_path / "target")
    assert saved in (tree(tmp_path / "a"), tree(tmp_path / "b")), f"killed {delay:.2f} s in"
    assert visible(tmp_path) == ["a", "b", READY, "target"]
    pipeline_class = KeyframesPipeline if kind == "stage" else CascadePipeline
    pipeline_class.from_pretrained(tmp_path / "target")  # loads, its weights' hashes checked
    pipeline_class.from_pretrained(tmp_path / "a").save_pretrained(tmp_path / "target")  # saving again works
    assert sorted(os.listdir(tmp_path)) == ["a", "b", READY, "target"]  # what the kill left is gone


def _write_two_videos(folder: str, suffix: str) -> None:
    """In the child: writes videos A and B as references, then B and A in turn to ``target`` until killed."""
    folder = Path(folder)
    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 256, (24, 64, 64, 3), dtype=np.uint8) for _ in range(2)]  # (F, H, W, 3)
    for video, name in zip(videos, ("a", "b"), strict=True):
        write_video(video, folder / f"{name}{suffix}", 8)
    write_video(videos[0], folder / f"target{suffix}", 8)
    (folder / READY).touch()
    while True:
        for video in (videos[1], videos[0]):
            write_video(video, folder / f"target{suffix}", 8)


@pytest.mark.parametrize("suffix", [".npz", ".mp4"])
def test_a_video_write_killed_at_a_random_moment_leaves_the_old_or_the_new_file(suffix, tmp_path):
    delay = kill_at_random(
        f"from {__name__} import _write_two_videos as w; w({str(tmp_path)!r}, {suffix!r})", tmp_path, 2
    )
    target = (tmp_path / f"target{suffix}").read_bytes()
    assert target in ((tmp_path / f"a{suffix}").read_bytes(), (tmp_path / f"b{suffix}").read_bytes()), delay
    assert read_video(tmp_path / f"target{suffix}").shape == (24, 64, 64, 3)
    assert visible(tmp_path) == sorted([f"a{suffix}", f"b{suffix}", READY, f"target{suffix}"])


def _tiny_sd15(folder: Path) -> None:
    """A tiny SD 1.5-like checkpoint laid out as the real one."""
    from diffusers import PNDMScheduler

    tiny_unet2d("sd15", sample_size=8).save_pretrained(folder / "unet")
    tiny_text_encoder().save_pretrained(folder / "text_encoder")
    tiny_tokenizer().save_pretrained(folder / "tokenizer")
    tiny_vae().save_pretrained(folder / "vae")
    PNDMScheduler(skip_prk_steps=True).save_pretrained(folder / "scheduler")


def _build_until_killed(folder: str) -> None:
    """In the child: builds the keyframes stage into ``reference``, then into ``out0``, ``out1``, ... until
    killed."""
    folder = Path(folder)
    manifest = read_manifest(folder / "manifest.yaml")
    build(manifest, "keyframes", folder / "reference")
    (folder / READY).touch()
    for index in range(10**6):
        build(manifest, "keyframes", folder / f"out{index}")


def test_cascade_build_killed_at_a_random_moment_leaves_no_broken_folder(tmp_path):
    import yaml

    base = tmp_path / "base"
    _tiny_sd15(base)
    files = [{"path": path, "sha256": digest} for path, digest in tree(base).items()]
    entry = {
        "kind": "local",
        "path": str(base),
        "subfolder": "unet",
        "license": "mit",
        "files": files,
        "inflation": {},
    }
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"version": 1, "stages": {"keyframes": entry}}))
    delay = kill_at_random(
        f"from {__name__} import _build_until_killed as b; b({str(tmp_path)!r})", tmp_path, 3
    )
    # inflation draws the temporal layers' weights at random, so builds differ in their weights: each folder
    # must hold the reference's files, and weights matching the sha256 it records for them
    reference = sorted(tree(tmp_path / "reference" / "keyframes"))
    outs = sorted(tmp_path.glob("out*"), key=lambda path: int(path.name[3:]))
    assert outs, f"killed {delay:.2f} s in, before a build started"
    for out in outs:
        assert visible(out) in ([], ["keyframes"])
        if visible(out):
            assert sorted(tree(out / "keyframes")) == reference, f"{out.name}, killed {delay:.2f} s in"
            assert check_weight_hashes(out / "keyframes")
    last = outs[-1]
    if not (last / "keyframes").exists():  # the build the kill stopped runs again over what it left
        assert (
            main(["build", "keyframes", "--manifest", str(tmp_path / "manifest.yaml"), "-o", str(last)]) == 0
        )
        assert sorted(tree(last / "keyframes")) == reference
    assert visible(last) == ["keyframes"]
    KeyframesPipeline.from_pretrained(last / "keyframes")


def _evaluate_until_killed(folder: str) -> None:
    """In the child: ``cascade eval`` of the tiny cascade with seed 0 (the reference run), then with seeds 1,
    2, ... into ``out`` until killed."""
    folder = Path(folder)
    argv = ["eval", "--prompts", str(folder / "prompts.txt"), "--model", str(folder / "model")]
    argv += ["--stages", "keyframes", "--num-frames", "3", "--steps", "1"]
    assert main([*argv, "-o", str(folder / "out"), "--seed", "0"]) == 0
    (folder / READY).touch()
    for seed in range(1, 10**6):
        assert main([*argv, "-o", str(folder / "out"), "--seed", str(seed)]) == 0


def test_cascade_eval_killed_at_a_random_moment_leaves_only_complete_files(tmp_path):
    assert main(["init-tiny", str(tmp_path / "model")]) == 0
    (tmp_path / "prompts.txt").write_text("a red circle moving right\na blue square moving up\n")
    delay = kill_at_random(
        f"from {__name__} import _evaluate_until_killed as e; e({str(tmp_path)!r})", tmp_path, 4
    )
    out = tmp_path / "out"
    assert visible(out) == ["contact_sheet.png", "report.json", "report.md", "videos"], delay
    json.loads((out / "report.json").read_text())
    Image.open(out / "contact_sheet.png").verify()
    videos = [out / "videos" / name for name in visible(out / "videos")]
    assert videos and all(path.suffix == ".npz" for path in videos)
    assert all(read_video(path).shape[:1] == (3,) for path in videos), f"killed {delay:.2f} s in"


def _write_with_a_size_limit(folder: str) -> None:
    """In the child: each write with a file size limit of 1 kB (SIGXFSZ ignored, so a write past it fails
    with EFBIG instead of killing the process); prints what each raised."""
    folder = Path(folder)
    frames = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)  # (F, H, W, 3)
    stage = KeyframesPipeline(**tiny_keyframes_components())
    cascade = CascadePipeline(**tiny_cascade_stages())
    generate = ["generate", "a red circle moving right", "--frames", "2", "--steps", "1"]
    writes = {
        "video.npz": lambda: write_video(frames, folder / "video.npz", 8),
        "video.mp4": lambda: write_video(frames, folder / "video.mp4", 8),
        "video.gif": lambda: write_video(frames, folder / "video.gif", 8),
        "stage": lambda: stage.save_pretrained(folder / "stage"),
        "cascade": lambda: cascade.save_pretrained(folder / "cascade"),
        "generated.mp4": lambda: print(
            main([*generate, "-o", str(folder / "generated.mp4")]), file=sys.stderr
        ),
    }
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    raised = {}
    for name, write in writes.items():
        try:
            write()
            raised[name] = None
        except Exception as error:  # what each write raises is the result
            raised[name] = [type(error).__name__, getattr(error, "errno", None), str(error)]
    print(json.dumps(raised))


def test_a_full_disk_gives_a_clear_error_and_leaves_no_partial_file(tmp_path):
    child = fresh_interpreter.run(
        f"from {__name__} import _write_with_a_size_limit as w; w({str(tmp_path)!r})", Path(__file__).parent
    )
    assert child.returncode == 0, child.stderr[-3000:]
    raised = json.loads(child.stdout.strip().splitlines()[-1])
    for name in ("video.npz", "video.gif", "stage", "cascade"):
        kind, number, message = raised[name]
        assert kind == "OSError" and number == 27, raised[name]  # EFBIG
        assert message.startswith(
            f"[Errno 27] cannot write {str(tmp_path / name)!r}: File too large (the disk is full"
        )
    kind, _, message = raised["video.mp4"]  # ffmpeg, a process of its own, hit the limit
    assert kind == "OSError" and "the encoder wrote 0 of 8 frames (is the disk full" in message
    # the command line: one line, exit status 2
    assert raised["generated.mp4"] is None
    assert (
        f"cascade generate: error: [Errno 5] cannot write {str(tmp_path / 'generated.mp4')!r}" in child.stderr
    )
    assert child.stderr.rstrip().endswith("\n2")
    assert os.listdir(tmp_path) == []  # no file, no folder, no hidden partial


def test_a_stage_is_saved_only_where_it_may_replace_the_folder(tmp_path):
    stage = KeyframesPipeline(**tiny_keyframes_components())
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not an empty folder or a saved pipeline; give a new"):
        stage.save_pretrained(tmp_path / "notes")  # it would be replaced as a whole
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
    stage.save_pretrained(tmp_path / "saved")
    stage.save_pretrained(tmp_path / "saved")  # a saved pipeline is replaced
    assert sorted(os.listdir(tmp_path)) == ["notes", "saved"]
