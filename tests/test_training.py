import csv
import json
import math

import pytest
import torch
from diffusers import DDPMScheduler

from cascade.data import ShapesDataset
from cascade.testing.tiny_models import tiny_keyframes_components
from cascade.training import StageTrainer, TrainingConfig, latest_checkpoint, training_target


def make_trainer(output_dir, frames=2, **overrides) -> StageTrainer:
    settings = dict(
        output_dir=str(output_dir),
        max_steps=4,
        batch_size=2,
        learning_rate=1e-3,
        caption_dropout=0.5,
        checkpoint_every=0,
    )
    settings.update(overrides)
    components = tiny_keyframes_components(seed=0)
    return StageTrainer(
        TrainingConfig(**settings),
        unet=components["unet"],
        text_encoder=components["text_encoder"],
        tokenizer=components["tokenizer"],
        noise_scheduler=DDPMScheduler(num_train_timesteps=1000),
        dataset=ShapesDataset(6, num_frames=frames, height=8, width=8, seed=1),
    )


def weights(trainer: StageTrainer) -> dict[str, torch.Tensor]:
    unet = trainer.accelerator.unwrap_model(trainer.unet)
    return {name: value.detach().clone() for name, value in unet.state_dict().items()}


def read_log(trainer: StageTrainer) -> list[dict]:
    with trainer.loss_log.open(newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize("frames", [1, 3])
def test_training_changes_weights_and_logs_finite_losses(tmp_path, frames):
    trainer = make_trainer(tmp_path, frames=frames, max_steps=3)
    before = weights(trainer)
    assert trainer.train() == 3
    after = weights(trainer)
    assert any(not torch.equal(before[name], after[name]) for name in before)
    rows = read_log(trainer)
    assert [int(row["step"]) for row in rows] == [1, 2, 3]
    assert all(math.isfinite(float(row["loss"])) and float(row["lr"]) > 0 for row in rows)
    assert latest_checkpoint(tmp_path).name == "checkpoint-3"


def test_frozen_spatial_layers_train_only_temporal_parameters(tmp_path):
    trainer = make_trainer(tmp_path, frames=3, max_steps=2, freeze_spatial=True)
    before = weights(trainer)
    trainer.train()
    after = weights(trainer)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed
    assert all(name.startswith(("temporal_convs.", "temporal_attns.")) for name in changed), changed


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    # Accumulation, EMA, warm-up and caption dropout all carry state across the interruption; 6 items
    # in batches of 2 make an epoch of 3 micro-batches, so the run crosses epochs mid-step.
    settings = dict(
        max_steps=5,
        gradient_accumulation_steps=2,
        use_ema=True,
        ema_decay=0.9,
        lr_scheduler="cosine",
        lr_warmup_steps=2,
        checkpoint_every=2,
    )
    straight = make_trainer(tmp_path / "straight", **settings)
    straight.train()

    stopped = make_trainer(tmp_path / "stopped", **settings)
    assert stopped.train(stop_after=3) == 3
    state = json.loads((latest_checkpoint(tmp_path / "stopped") / "training_state.json").read_text())
    assert state == {
        "step": 3,
        "micro_batches": 6,
        "epoch": 2,
        "batch_in_epoch": 0,
        "seed": 0,
        "num_processes": 1,
    }
    resumed = make_trainer(tmp_path / "stopped", **settings)
    calls = []
    loss = resumed.loss
    resumed.loss = lambda batch: calls.append(batch) or loss(batch)
    assert resumed.train() == 5
    assert len(calls) == 4  # steps 4 and 5 only, of 2 micro-batches each: it resumed, not restarted

    expected, actual = weights(straight), weights(resumed)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-6, rtol=0, msg=name)
    for mine, theirs in zip(resumed.ema.shadow_params, straight.ema.shadow_params, strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=0)
    assert resumed.lr_scheduler.get_last_lr() == straight.lr_scheduler.get_last_lr()
    assert [row["step"] for row in read_log(resumed)] == ["1", "2", "3", "4", "5"]
    assert [row["loss"] for row in read_log(resumed)] == [row["loss"] for row in read_log(straight)]
    # checkpoints_total_limit=2 keeps the last two (3, the interruption's, is gone); no partial folder.
    assert sorted(p.name for p in (tmp_path / "stopped" / "checkpoints").iterdir()) == [
        "checkpoint-4",
        "checkpoint-5",
    ]


def test_v_prediction_target_is_the_velocity():
    scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type="v_prediction")
    sample, noise = torch.randn(2, 3, 2, 8, 8), torch.randn(2, 3, 2, 8, 8)
    timesteps = torch.tensor([10, 900])
    target = training_target(scheduler, sample, noise, timesteps)
    torch.testing.assert_close(target, scheduler.get_velocity(sample, noise, timesteps))
    alpha = scheduler.alphas_cumprod[timesteps].view(2, 1, 1, 1, 1)
    torch.testing.assert_close(target, alpha.sqrt() * noise - (1 - alpha).sqrt() * sample)
    epsilon = DDPMScheduler(num_train_timesteps=1000)
    assert training_target(epsilon, sample, noise, timesteps) is noise


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("prediction_type", "sample", "epsilon"),
        ("max_steps", 0, ">= 1"),
        ("caption_dropout", 1.5, "[0, 1]"),
        ("mixed_precision", "fp8", "bf16"),
        ("lr_scheduler", "warmup", "cosine"),
        ("lr_scheduler", "piecewise_constant", "cosine"),
        ("learning_rate", float("nan"), "> 0"),
        ("freeze_spatial", 1, "bool"),
        ("checkpoints_total_limit", 0, ">= 1"),
    ],
)
def test_bad_config_is_rejected(tmp_path, field, value, allowed):
    with pytest.raises(ValueError, match=field) as error:
        TrainingConfig(output_dir=str(tmp_path), **{field: value})
    assert allowed in str(error.value) and repr(value) in str(error.value)


def test_dataset_smaller_than_a_batch_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="at least one batch"):
        make_trainer(tmp_path, batch_size=7)
