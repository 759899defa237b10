"""Training the keyframes stage: text-to-video denoising on a :class:`~cascade.models.VideoUNet`.

The recipe follows the literature the cascade is built on:

- **Spatial freeze** (Singer et al. 2022, "Make-A-Video", sec. 3.4): the inflated UNet's 2D weights can
  stay frozen while only the temporal layers train (``freeze_spatial=True``). Videos of one frame are
  images, so the same loop also trains (or fine-tunes) on images.
- **v-prediction** (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion
  Models", sec. 4; used by Imagen Video): the UNet predicts ``v = sqrt(a) * eps - sqrt(1 - a) * x0``
  instead of the noise ``eps`` (``prediction_type="v_prediction"``).
- **Caption dropout for classifier-free guidance** (Ho & Salimans 2022, "Classifier-Free Diffusion
  Guidance"): each caption is replaced by the empty caption with probability ``caption_dropout``, so
  the same UNet learns the unconditional model that guidance needs.

Runs are resumable bit for bit: checkpoints (written atomically) hold the model, optimizer, learning
rate schedule, EMA, every process's RNG states and the position in the data stream, and the data order
is a function of ``(seed, epoch)`` only, so a run stopped and resumed reaches the same weights as one
that never stopped.
"""

import csv
import json
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import DDPMScheduler
from diffusers.optimization import SchedulerType, get_scheduler
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import CLIPTextModel, CLIPTokenizer

from cascade.atomic_write import write_atomically
from cascade.models import VideoUNet

PREDICTION_TYPES = ("epsilon", "v_prediction")
MIXED_PRECISIONS = ("no", "fp16", "bf16")
# Every diffusers schedule but piecewise_constant, which needs step rules of its own.
LR_SCHEDULERS = tuple(kind.value for kind in SchedulerType if kind != SchedulerType.PIECEWISE_CONSTANT)
CHECKPOINT_PREFIX = "checkpoint-"
TRAINING_STATE = "training_state.json"
LOSS_LOG = "loss.csv"


@dataclass
class KeyframesTrainingConfig:
    """Settings of a keyframes training run; invalid values raise ``ValueError`` naming the field.

    Args:
        output_dir: where checkpoints (``checkpoints/checkpoint-{step}``) and ``loss.csv`` go.
        max_steps: optimizer steps of the whole run (the learning rate schedule spans them).
        batch_size: videos per micro-batch and process.
        gradient_accumulation_steps: micro-batches per optimizer step.
        learning_rate, adam_beta1, adam_beta2, adam_weight_decay, adam_epsilon: AdamW settings.
        lr_scheduler: a ``diffusers.optimization`` schedule name; ``lr_warmup_steps``: its warm-up.
        max_grad_norm: gradients are clipped to this global norm.
        prediction_type: ``"epsilon"`` (the noise) or ``"v_prediction"`` (Salimans & Ho 2022).
        freeze_spatial: train only the temporal layers (Make-A-Video).
        use_ema, ema_decay: keep an exponential moving average of the weights.
        caption_dropout: probability of replacing a caption by ``""`` (Ho & Salimans 2022).
        mixed_precision: ``"no"``, ``"fp16"`` or ``"bf16"``, passed to ``Accelerator``.
        checkpoint_every: write a checkpoint every this many optimizer steps (0: only when stopping).
        checkpoints_total_limit: checkpoints kept (older ones are deleted); ``None`` keeps all.
        resume: continue from the latest checkpoint in ``output_dir`` if there is one.
        seed: seeds the data order and, through ``accelerate``, the noise.
        num_workers: ``DataLoader`` worker processes.
    """

    output_dir: str
    max_steps: int = 1000
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    max_grad_norm: float = 1.0
    prediction_type: str = "epsilon"
    freeze_spatial: bool = False
    use_ema: bool = False
    ema_decay: float = 0.9999
    caption_dropout: float = 0.1
    mixed_precision: str = "no"
    checkpoint_every: int = 500
    checkpoints_total_limit: int | None = 2
    resume: bool = True
    seed: int = 0
    num_workers: int = 0

    def __post_init__(self):
        def fail(name: str, allowed: str):
            raise ValueError(f"`{name}` must be {allowed}, got {getattr(self, name)!r}.")

        def is_int(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def is_number(value) -> bool:
            return (is_int(value) or isinstance(value, float)) and math.isfinite(value)

        if not isinstance(self.output_dir, str | os.PathLike) or not str(self.output_dir):
            fail("output_dir", "a non-empty path")
        for name in ("max_steps", "batch_size", "gradient_accumulation_steps"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                fail(name, "an int >= 1")
        for name in ("lr_warmup_steps", "checkpoint_every", "seed", "num_workers"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 0:
                fail(name, "an int >= 0")
        for name in ("learning_rate", "adam_epsilon", "max_grad_norm"):
            if not is_number(getattr(self, name)) or getattr(self, name) <= 0:
                fail(name, "a finite number > 0")
        if not is_number(self.adam_weight_decay) or self.adam_weight_decay < 0:
            fail("adam_weight_decay", "a finite number >= 0")
        for name in ("adam_beta1", "adam_beta2", "ema_decay"):
            if not is_number(getattr(self, name)) or not 0 <= getattr(self, name) < 1:
                fail(name, "a number in [0, 1)")
        if not is_number(self.caption_dropout) or not 0 <= self.caption_dropout <= 1:
            fail("caption_dropout", "a number in [0, 1]")
        for name, allowed in (
            ("prediction_type", PREDICTION_TYPES),
            ("mixed_precision", MIXED_PRECISIONS),
            ("lr_scheduler", LR_SCHEDULERS),
        ):
            if getattr(self, name) not in allowed:
                fail(name, f"one of {list(allowed)}")
        for name in ("freeze_spatial", "use_ema", "resume"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "a bool")
        if self.checkpoints_total_limit is not None and (
            not is_int(self.checkpoints_total_limit) or self.checkpoints_total_limit < 1
        ):
            fail("checkpoints_total_limit", "None or an int >= 1")


def training_target(
    scheduler: DDPMScheduler, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What the UNet learns to predict for ``sample`` ``(B, C, F, H, W)`` noised by ``noise`` (same shape)
    at ``timesteps`` ``(B,)``: the noise (``epsilon``) or ``v`` (``v_prediction``, Salimans & Ho 2022),
    by the scheduler's ``prediction_type``."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(sample, noise, timesteps)
    raise ValueError(
        f"`prediction_type` of the scheduler must be one of {list(PREDICTION_TYPES)}, got {kind!r}."
    )


class _MicroBatches(Sampler[list[int]]):
    """An endless stream of micro-batches of dataset indices, this process's share of each.

    Micro-batch ``m`` (counted over all processes) is slice ``m % per_epoch`` of a permutation of the
    dataset seeded by ``(seed, m // per_epoch)``, so the stream depends only on the seed and restarting it
    at ``start`` continues it exactly. Incomplete last batches of an epoch are dropped.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start: int, num_processes: int, rank: int):
        self.size, self.batch_size, self.seed, self.start = size, batch_size, seed, start
        self.num_processes, self.rank = num_processes, rank
        self.per_epoch = size // (batch_size * num_processes)

    def _permutation(self, epoch: int) -> list[int]:
        seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        return torch.randperm(self.size, generator=torch.Generator().manual_seed(seed)).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        micro_batch, epoch, order = self.start, None, None
        while True:
            if micro_batch // self.per_epoch != epoch:
                epoch = micro_batch // self.per_epoch
                order = self._permutation(epoch)
            first = ((micro_batch % self.per_epoch) * self.num_processes + self.rank) * self.batch_size
            yield order[first : first + self.batch_size]
            micro_batch += 1


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint of ``output_dir`` with the most steps, or ``None``."""
    found = _checkpoints(Path(output_dir, "checkpoints"))
    return found[-1] if found else None


def _checkpoints(folder: Path) -> list[Path]:
    """The complete ``checkpoint-{step}`` folders in ``folder``, by step."""
    found = [
        path
        for path in folder.glob(f"{CHECKPOINT_PREFIX}*")
        if path.name[len(CHECKPOINT_PREFIX) :].isdigit() and (path / TRAINING_STATE).is_file()
    ]
    return sorted(found, key=lambda path: int(path.name[len(CHECKPOINT_PREFIX) :]))


class KeyframesTrainer:
    """Trains ``unet`` to denoise the videos of ``dataset`` given their captions.

    Args:
        config: the run's :class:`KeyframesTrainingConfig`.
        unet: a :class:`~cascade.models.VideoUNet` on the dataset's channels (pixel space).
        text_encoder, tokenizer: a CLIP text encoder, kept frozen, and its tokenizer.
        noise_scheduler: gives the noise schedule (``add_noise``, ``get_velocity``); a copy is made with
            the config's ``prediction_type``, which the sampling scheduler must share.
        dataset: items ``{"pixel_values": (C, F, H, W) in [-1, 1], "caption": str, ...}``.
    """

    def __init__(
        self,
        config: KeyframesTrainingConfig,
        unet: VideoUNet,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        noise_scheduler: DDPMScheduler,
        dataset: Dataset,
    ):
        if not isinstance(config, KeyframesTrainingConfig):
            raise ValueError(f"`config` must be a KeyframesTrainingConfig, got {type(config).__name__}.")
        if not isinstance(unet, VideoUNet) or unet.conditioning_channels:
            raise ValueError("`unet` must be a VideoUNet without conditioning channels.")
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
        )
        self.noise_scheduler = DDPMScheduler.from_config(
            noise_scheduler.config, prediction_type=config.prediction_type
        )
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.requires_grad_(False).eval().to(self.accelerator.device)
        if config.freeze_spatial:
            unet.freeze_spatial_layers()
        unet.train()
        self.parameters = [parameter for parameter in unet.parameters() if parameter.requires_grad]
        optimizer = torch.optim.AdamW(
            self.parameters,
            lr=config.learning_rate,
            betas=(config.adam_beta1, config.adam_beta2),
            weight_decay=config.adam_weight_decay,
            eps=config.adam_epsilon,
        )
        processes = self.accelerator.num_processes  # the prepared schedule steps once per process
        lr_scheduler = get_scheduler(
            config.lr_scheduler,
            optimizer,
            num_warmup_steps=config.lr_warmup_steps * processes,
            num_training_steps=config.max_steps * processes,
        )
        self.unet, self.optimizer, self.lr_scheduler = self.accelerator.prepare(unet, optimizer, lr_scheduler)
        self.ema = None
        if config.use_ema:
            self.ema = EMAModel(self.parameters, decay=config.ema_decay)
            self.ema.to(self.accelerator.device)
            self.accelerator.register_for_checkpointing(self.ema)
        global_batch = config.batch_size * self.accelerator.num_processes
        if len(dataset) < global_batch:
            raise ValueError(
                f"`dataset` must hold at least one batch of batch_size * processes = {global_batch} items, "
                f"got {len(dataset)}."
            )
        self.dataset = dataset
        self.step = 0
        self.micro_batches = 0

    @property
    def loss_log(self) -> Path:
        return self.output_dir / LOSS_LOG

    def encode_captions(self, captions: list[str]) -> torch.Tensor:
        """CLIP text embeddings ``(B, L, D)`` of ``captions``, padded to the tokenizer's length."""
        ids = self.tokenizer(
            captions,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids  # (B, L)
        with torch.no_grad():
            return self.text_encoder(ids.to(self.accelerator.device))[0]  # (B, L, D)

    def loss(self, batch: dict) -> torch.Tensor:
        """The denoising loss of one micro-batch: MSE between the UNet's output and the target."""
        videos = batch["pixel_values"].to(self.accelerator.device)  # (B, C, F, H, W)
        batch_size = videos.shape[0]
        dropped = (torch.rand(batch_size) < self.config.caption_dropout).tolist()  # (B,)
        captions = ["" if drop else caption for drop, caption in zip(dropped, batch["caption"], strict=True)]
        text = self.encode_captions(captions)  # (B, L, D)
        noise = torch.randn(videos.shape).to(videos)  # (B, C, F, H, W), drawn on the CPU: reproducible
        levels = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, levels, (batch_size,)).to(videos.device)  # (B,), one per video
        noisy = self.noise_scheduler.add_noise(videos, noise, timesteps)  # (B, C, F, H, W)
        target = training_target(self.noise_scheduler, videos, noise, timesteps)  # (B, C, F, H, W)
        prediction = self.unet(noisy, timesteps, text).sample  # (B, C, F, H, W)
        return F.mse_loss(prediction.float(), target.float())

    def train(self, stop_after: int | None = None) -> int:
        """Trains to ``config.max_steps`` optimizer steps, or stops (with a checkpoint) after ``stop_after``;
        resumes from the latest checkpoint when ``config.resume``. Returns the step reached."""
        config = self.config
        if stop_after is not None and (
            isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1
        ):
            raise ValueError(f"`stop_after` must be None or an int >= 1, got {stop_after!r}.")
        end = config.max_steps if stop_after is None else min(stop_after, config.max_steps)
        checkpoint = latest_checkpoint(self.output_dir) if config.resume else None
        if checkpoint is not None:
            self._load(checkpoint)
        else:
            set_seed(config.seed, device_specific=True)  # noise, timesteps, caption dropout; per process
        batches = DataLoader(
            self.dataset,
            batch_sampler=_MicroBatches(
                len(self.dataset),
                config.batch_size,
                config.seed,
                self.micro_batches,
                self.accelerator.num_processes,
                self.accelerator.process_index,
            ),
            num_workers=config.num_workers,
            # The loader's own generator, so that starting it does not draw from the global RNG.
            generator=torch.Generator().manual_seed(config.seed),
        )
        running_loss = 0.0
        for batch in batches if self.step < end else ():
            with self.accelerator.accumulate(self.unet):
                loss = self.loss(batch)
                self.accelerator.backward(loss)
                if self.accelerator.sync_gradients:
                    self.accelerator.clip_grad_norm_(self.parameters, config.max_grad_norm)
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad()
            self.micro_batches += 1
            running_loss += self.accelerator.gather(loss.detach()).mean().item()
            if not self.accelerator.sync_gradients:
                continue
            if self.ema is not None:
                self.ema.step(self.parameters)
            self.step += 1
            self._log(running_loss / config.gradient_accumulation_steps)
            running_loss = 0.0
            every = config.checkpoint_every
            if self.step == end or (every and self.step % every == 0):
                self.save_checkpoint()
            if self.step == end:
                break
        return self.step

    def _log(self, loss: float) -> None:
        if not self.accelerator.is_main_process:
            return
        new = not self.loss_log.exists()
        self.loss_log.parent.mkdir(parents=True, exist_ok=True)
        with self.loss_log.open("a", newline="") as file:
            writer = csv.writer(file)
            if new:
                writer.writerow(["step", "loss", "lr"])
            writer.writerow([self.step, f"{loss:.8g}", f"{self.lr_scheduler.get_last_lr()[0]:.8g}"])

    def save_checkpoint(self) -> Path:
        """Writes ``checkpoints/checkpoint-{step}``: the accelerate state (model, optimizer, LR schedule,
        EMA, RNG states) and ``training_state.json`` (step, data position), into a hidden folder renamed
        into place, so a checkpoint folder is always complete. Older checkpoints beyond the limit go."""
        folder = self.output_dir / "checkpoints"
        final = folder / f"{CHECKPOINT_PREFIX}{self.step}"
        partial = folder / f".{final.name}.partial"
        if self.accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(partial))
        if self.accelerator.is_main_process:
            per_epoch = len(self.dataset) // (self.config.batch_size * self.accelerator.num_processes)
            state = {
                "step": self.step,
                "micro_batches": self.micro_batches,  # the data position, over all processes
                "epoch": self.micro_batches // per_epoch,
                "batch_in_epoch": self.micro_batches % per_epoch,
                "seed": self.config.seed,
            }
            (partial / TRAINING_STATE).write_text(json.dumps(state, indent=2))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(partial, final)
            limit = self.config.checkpoints_total_limit
            if limit is not None:
                older = [path for path in _checkpoints(folder) if path != final]
                for old in older[: max(len(older) - (limit - 1), 0)]:
                    shutil.rmtree(old)
        self.accelerator.wait_for_everyone()
        return final

    def _load(self, checkpoint: Path) -> None:
        state = json.loads((checkpoint / TRAINING_STATE).read_text())
        if state["seed"] != self.config.seed:
            raise ValueError(
                f"Checkpoint {checkpoint} was written with seed {state['seed']}, the config has "
                f"{self.config.seed}: the data order would differ."
            )
        self.accelerator.load_state(str(checkpoint))
        self.step, self.micro_batches = state["step"], state["micro_batches"]
        if self.accelerator.is_main_process and self.loss_log.exists():
            # Drop rows a stopped run logged after its last checkpoint: they will be logged again.
            with self.loss_log.open(newline="") as file:
                rows = list(csv.reader(file))
            kept = [rows[0]] + [row for row in rows[1:] if int(row[0]) <= self.step]

            def write(path: Path) -> None:
                with path.open("w", newline="") as file:
                    csv.writer(file).writerows(kept)

            write_atomically(self.loss_log, write)
