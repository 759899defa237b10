"""The loss log on resume (issue 20): a run cuts loss.csv back to the checkpoint it resumes from, and starts
it empty when there is none, so a run killed at any moment and resumed logs each step once, as a run that
never stopped does; the log is rewritten atomically."""

import csv
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from diffusers import DDPMScheduler

from cascade.data import ShapesDataset
from cascade.testing.tiny_models import tiny_keyframes_components
from cascade.training import StageTrainer, TrainingConfig, latest_checkpoint
from cascade.training.trainer import LOSS_LOG, cut_loss_log

SETTINGS = dict(max_steps=6, batch_size=2, learning_rate=1e-3, caption_dropout=0.5, checkpoint_every=2)
HEADER = "step,loss,lr\r\n"


def make_trainer(output_dir, **overrides) -> StageTrainer:
    components = tiny_keyframes_components(seed=0)
    return StageTrainer(
        TrainingConfig(output_dir=str(output_dir), **{**SETTINGS, **overrides}),
        unet=components["unet"],
        text_encoder=components["text_encoder"],
        tokenizer=components["tokenizer"],
        noise_scheduler=DDPMScheduler(num_train_timesteps=1000),
        dataset=ShapesDataset(6, num_frames=2, height=8, width=8, seed=1),
    )


def log_rows(folder: Path) -> list[list[str]]:
    with (folder / LOSS_LOG).open(newline="") as file:
        return list(csv.reader(file))


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> list[list[str]]:
    """The log of a run that never stopped."""
    folder = tmp_path_factory.mktemp("straight")
    make_trainer(folder).train()
    rows = log_rows(folder)
    assert [row[0] for row in rows] == ["step", *map(str, range(1, 7))]
    return rows


def test_a_run_with_no_checkpoint_starts_its_log_empty(straight, tmp_path):
    # what a run killed before its first checkpoint leaves: rows, the last one cut off mid-write
    (tmp_path / LOSS_LOG).write_bytes((HEADER + "1,0.5,0.001\r\n2,0.4,0.001\r\n3,0.3").encode())
    make_trainer(tmp_path).train()
    assert log_rows(tmp_path) == straight
    # a run that does not resume starts afresh, whatever checkpoints the folder holds
    make_trainer(tmp_path, resume=False, max_steps=2).train()
    assert log_rows(tmp_path) == straight[:3]


def test_a_resumed_run_cuts_the_log_back_to_its_checkpoint(straight, tmp_path):
    assert make_trainer(tmp_path).train(stop_after=3) == 3  # checkpoints 2 and 3
    assert latest_checkpoint(tmp_path).name == "checkpoint-3"
    with (tmp_path / LOSS_LOG).open("a", newline="") as file:  # logged after the checkpoint, then killed
        file.write("4,0.5,0.001\r\n5,0.4,0.001\r\n1")  # a torn "16,...": its step alone would pass for 1
    make_trainer(tmp_path).train()
    assert log_rows(tmp_path) == straight


def test_a_run_killed_at_a_random_moment_and_resumed_logs_each_step_once(straight, tmp_path):
    rows = random.Random().randint(1, 5)  # killed once this many steps are logged, plus up to 50 ms
    # a fresh interpreter, not os.fork: a forked copy of a process whose OpenMP pool has run can hang in its
    # first parallel region, and would then be killed before it logged anything
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from {__name__} import make_trainer; make_trainer({str(tmp_path)!r}).train()",
        ],
        cwd=Path(__file__).parent,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    log, deadline = tmp_path / LOSS_LOG, time.monotonic() + 300
    try:
        while time.monotonic() < deadline and child.poll() is None:
            if log.exists() and log.read_bytes().count(b"\n") > rows:
                time.sleep(random.random() * 0.05)
                break
            time.sleep(0.002)
    finally:
        child.kill()
        child.wait()
    assert log.exists(), f"the run was killed before it logged a step (exit status {child.returncode})"
    make_trainer(tmp_path).train()
    assert log_rows(tmp_path) == straight, f"killed after {rows} rows"


def test_the_log_is_rewritten_atomically(tmp_path, monkeypatch):
    log = tmp_path / LOSS_LOG
    original = HEADER + "1,0.5,0.001\r\n2,0.4,0.001\r\n"
    log.write_bytes(original.encode())
    cut_loss_log(log, 2)  # nothing to cut: left as it is
    assert log.read_bytes() == original.encode()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the writer stopped half-way through

    monkeypatch.setattr(csv, "writer", killed)
    with pytest.raises(KeyboardInterrupt):
        cut_loss_log(log, 1)
    assert log.read_bytes() == original.encode()
    assert [path.name for path in tmp_path.iterdir()] == [LOSS_LOG]  # no partial file left
    monkeypatch.undo()
    cut_loss_log(log, 1)
    assert log.read_bytes() == (HEADER + "1,0.5,0.001\r\n").encode()
    cut_loss_log(log, 0)
    assert not log.exists()
