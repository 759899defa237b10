"""Training any stage of the cascade: denoising on a :class:`~cascade.models.VideoUNet` (or, for the 2D stages,
a ``UNet2DConditionModel``), with the stage's conditioning (:mod:`cascade.training.stage_inputs`).

The recipe follows the literature the cascade is built on:

- **2D pretraining, then inflation** (Singer et al. 2022, "Make-A-Video", sec. 3): the ``text_to_image``
  stage trains a 2D UNet (and, with ``train_text_encoder``, its text encoder) on frames; later stages
  inflate it. **Spatial freeze** (ibid., sec. 3.4): an inflated UNet's 2D weights can stay frozen while
  only the temporal layers train (``freeze_spatial=True``).
- **LoRA** (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", arXiv:2106.09685): with
  ``lora``, the whole UNet stays frozen and only low-rank adapters of its 2D UNet's projections train
  (:mod:`cascade.training.lora`).
- **Joint image-video training** (Ho et al. 2022, "Video Diffusion Models", sec. 3.2; Imagen Video):
  with an image dataset and ``image_every``, some micro-batches are images, as one-frame videos.
- **v-prediction** (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion
  Models", sec. 4; used by Imagen Video): the UNet predicts ``v = sqrt(a) * eps - sqrt(1 - a) * x0``
  instead of the noise ``eps`` (``prediction_type="v_prediction"``).
- **DreamBooth with prior preservation** (Ruiz et al. 2022, arXiv:2208.12242, sec. 3.3): with a
  ``prior_dataset``, each step's loss is the loss on the subject's images plus ``prior_loss_weight`` times the
  loss on a micro-batch of the class (the world's own images), so the model learns the subject without
  forgetting the rest.
- **ControlNet** (Zhang et al. 2023, "Adding Conditional Control to Text-to-Image Diffusion Models",
  arXiv:2302.05543): with a ``controlnet``, the stage's UNet and text encoder stay frozen and only the
  ControlNet trains, run on each frame with the frame's control image, its residuals added to the UNet's
  skip connections (:func:`cascade.pipelines.control.video_residuals`, what the keyframes pipeline runs).
- **Caption dropout for classifier-free guidance** (Ho & Salimans 2022, "Classifier-Free Diffusion
  Guidance"): each caption is replaced by the empty caption with probability ``caption_dropout``, so
  the same UNet learns the unconditional model that guidance needs.

Runs are resumable bit for bit: checkpoints (written atomically) hold the model, optimizer, learning
rate schedule, EMA, every process's RNG states and the position in the data streams, and the data order
is a function of ``(seed, epoch)`` only, so a run stopped and resumed reaches the same weights as one
that never stopped. So is the loss log (``loss.csv``): a run that starts or resumes first cuts it back to
the step it starts from (:func:`cut_loss_log`), so rows a stopped run logged after its last checkpoint, or
before any, are not kept twice.
"""

import copy
import csv
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from cascade.models.video_unet import VideoUNet
from cascade.ops.frames import fold_frames
from cascade.ops.text import encode_text
from cascade.pipelines.control import check_controlnet, video_residuals
from cascade.utils.atomic import partial_folder, replace_folder, write_atomically
from cascade.utils.checks import check_optional_int
from cascade.utils.devices import warn_if_emulated
from cascade.utils.distributed import processes_on_cpu

from .config import IMAGE_STAGES, TrainingConfig, training_stage
from .lora import add_lora
from .stable_target import ReferenceClips, stable_training_target
from .stage_inputs import stage_inputs
from .targets import training_target

CHECKPOINT_PREFIX = "checkpoint-"
TRAINING_STATE = "training_state.json"
LOSS_LOG = "loss.csv"
LOSS_LOG_HEADER = ["step", "loss", "lr"]
PRIOR_BATCH = "prior_batch"  # the key of a stream micro-batch's class micro-batch (prior preservation)


def timestep_weights(levels: int, config: TrainingConfig) -> torch.Tensor:  # (levels,)
    """Relative odds of each of ``levels`` timesteps in training: ``config.high_noise_weight`` for the noisiest
    ``config.high_noise_portion`` of them, 1 elsewhere (diffusers' SDXL script, ``timestep_bias_strategy``
    "later")."""
    weights = torch.ones(levels)
    weights[levels - max(1, round(levels * config.high_noise_portion)) :] = config.high_noise_weight
    return weights


def _frames_as_images(video: torch.Tensor | None) -> torch.Tensor | None:
    """``(B, C, F, h, w)`` -> ``(B * F, C, 1, h, w)``: every frame a one-frame clip."""
    return None if video is None else fold_frames(video).unsqueeze(2)


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


def cut_loss_log(path: str | os.PathLike, step: int) -> None:
    """Cuts the loss log at ``path`` back to its rows up to ``step``: removed at step 0 (a run starting
    afresh), else rewritten atomically, so a process killed at any moment leaves the old log or the new one.
    A last line without its line end (a run killed while appending it) and any row that does not parse
    are dropped with the rows past ``step``."""
    path = Path(path)
    check_optional_int("step", step, minimum=0)
    if step == 0:
        path.unlink(missing_ok=True)
        return
    if not path.is_file():
        return
    with path.open(newline="") as file:
        text = file.read()
    complete = text[: text.rfind("\n") + 1]  # "" when no line is complete
    rows = list(csv.reader(complete.splitlines()))
    kept = [row for row in rows[1:] if (logged := _logged_step(row)) is not None and logged <= step]
    if rows and rows[0] == LOSS_LOG_HEADER and kept == rows[1:] and complete == text:
        return  # nothing to cut

    def write(partial: Path) -> None:
        with partial.open("w", newline="") as file:
            csv.writer(file).writerows([LOSS_LOG_HEADER, *kept])

    write_atomically(path, write)


def _logged_step(row: list[str]) -> int | None:
    """The step of a loss log row ``[step, loss, lr]``, or ``None`` when the row does not parse."""
    if len(row) != len(LOSS_LOG_HEADER) or not row[0].isdigit():
        return None
    try:
        float(row[1]), float(row[2])
    except ValueError:
        return None
    return int(row[0])


def _checkpoints(folder: Path) -> list[Path]:
    """The complete ``checkpoint-{step}`` folders in ``folder``, by step."""
    found = [
        path
        for path in folder.glob(f"{CHECKPOINT_PREFIX}*")
        if path.name[len(CHECKPOINT_PREFIX) :].isdigit() and (path / TRAINING_STATE).is_file()
    ]
    return sorted(found, key=lambda path: int(path.name[len(CHECKPOINT_PREFIX) :]))


class StageTrainer:
    """Trains ``unet`` to denoise the clips of ``dataset`` given their captions, as ``config.stage`` says.

    Args:
        config: the run's :class:`TrainingConfig`.
        unet: a :class:`~cascade.models.VideoUNet` for the video stages, a ``UNet2DConditionModel`` (or a
            VideoUNet, trained on single frames) for ``text_to_image`` and ``spatial_sr``; its input
            channels are the sample's plus the stage's conditioning (interpolation: ``C + 1``, super-
            resolution: 3, with a class embedding for the noise level).
        text_encoder, tokenizer: a CLIP text encoder (frozen unless ``config.train_text_encoder``) and its
            tokenizer.
        noise_scheduler: gives the noise schedule (``add_noise``, ``get_velocity``); a copy is made with
            the config's ``prediction_type``, which the sampling scheduler must share.
        dataset: items ``{"pixel_values": (C, F, H, W) in [-1, 1], "caption": str, ...}``; for the 2D stages
            each frame is one image, for super-resolution the frames are the high-resolution target.
        vae: train in this VAE's latent space (frozen); pixel space when ``None``.
        low_res_scheduler: the schedule that noises super-resolution inputs (default: DDPM, 1000 levels,
            the x4 upscaler's); the pipeline's ``low_res_scheduler`` must match it.
        image_dataset: images as one-frame clips for joint image-video training (with ``config.image_every``).
        prior_dataset: DreamBooth's class images (prior preservation): every micro-batch of ``dataset`` comes
            with one of these, its loss weighted by ``config.prior_loss_weight``.
        controlnet: train this ControlNet (made from the UNet's 2D UNet, ``ControlNetModel.from_unet``) on the
            ``keyframes`` stage, the UNet and text encoder frozen; the dataset's items then carry
            ``"control_values"`` ``(3, F, H, W)`` in [0, 1], the control frames of each clip.
    """

    def __init__(
        self,
        config: TrainingConfig,
        unet: VideoUNet | UNet2DConditionModel,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        noise_scheduler: DDPMScheduler,
        dataset: Dataset,
        vae: AutoencoderKL | None = None,
        low_res_scheduler: DDPMScheduler | None = None,
        image_dataset: Dataset | None = None,
        controlnet: ControlNetModel | None = None,
        prior_dataset: Dataset | None = None,
    ):
        if not isinstance(config, TrainingConfig):
            raise ValueError(f"`config` must be a TrainingConfig, got {type(config).__name__}.")
        self.config = config
        if controlnet is not None:
            self._check_controlnet(controlnet, unet, dataset)
        self._check_unet(unet, vae)
        if (image_dataset is None) != (config.image_every == 0):
            raise ValueError(
                f"`image_dataset` and `image_every` go together: got image_every={config.image_every} and "
                f"{'no' if image_dataset is None else 'an'} image dataset."
            )
        self.output_dir = Path(config.output_dir)
        self.accelerator = Accelerator(
            cpu=processes_on_cpu(),
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
        )
        device = self.accelerator.device
        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.mixed_precision)
        if half is not None:
            warn_if_emulated(half, device)
        self.noise_scheduler = DDPMScheduler.from_config(
            noise_scheduler.config, prediction_type=config.prediction_type
        )
        self.low_res_scheduler = low_res_scheduler or DDPMScheduler(num_train_timesteps=1000)
        self.vae = None if vae is None else vae.requires_grad_(False).eval().to(device)
        self.tokenizer = tokenizer
        text_encoder.requires_grad_(config.train_text_encoder).train(config.train_text_encoder)
        # The LoRA's peft config (``None`` for full fine-tuning): what the saved LoRA's metadata holds.
        self.lora_config = None if config.lora is None else add_lora(unet, config.lora)
        if config.freeze_spatial:
            unet.freeze_spatial_layers()
        if controlnet is not None:
            unet.requires_grad_(False)
        # What trains: the UNet (or its LoRA, or its temporal layers), or the ControlNet.
        trained = unet if controlnet is None else controlnet
        if config.gradient_checkpointing:
            trained.enable_gradient_checkpointing()
        trained.train()
        self.parameters = [parameter for parameter in trained.parameters() if parameter.requires_grad]
        groups = [{"params": self.parameters, "lr": config.learning_rate}]
        if config.train_text_encoder:
            groups.append(
                {"params": list(text_encoder.parameters()), "lr": config.text_encoder_learning_rate}
            )
        optimizer = torch.optim.AdamW(
            groups,
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
        self.controlnet = None
        if config.train_text_encoder:
            self.unet, self.text_encoder, self.optimizer, self.lr_scheduler = self.accelerator.prepare(
                unet, text_encoder, optimizer, lr_scheduler
            )
        elif controlnet is not None:
            self.unet, self.text_encoder = unet.eval().to(device), text_encoder.to(device)
            self.controlnet, self.optimizer, self.lr_scheduler = self.accelerator.prepare(
                controlnet, optimizer, lr_scheduler
            )
        else:
            self.text_encoder = text_encoder.to(device)
            self.unet, self.optimizer, self.lr_scheduler = self.accelerator.prepare(
                unet, optimizer, lr_scheduler
            )
        self.ema = None
        if config.use_ema:
            self.ema = EMAModel(self.parameters, decay=config.ema_decay)
            self.ema.to(device)
            self.accelerator.register_for_checkpointing(self.ema)
        global_batch = config.batch_size * processes
        if prior_dataset is not None and image_dataset is not None:
            raise ValueError(
                "`prior_dataset` (DreamBooth) and `image_dataset` (joint training) do not go together."
            )
        named = (("dataset", dataset), ("image_dataset", image_dataset), ("prior_dataset", prior_dataset))
        for name, data in named:
            if data is not None and len(data) < global_batch:
                raise ValueError(
                    f"`{name}` must hold at least one batch of batch_size * processes = {global_batch} items, "
                    f"got {len(data)}."
                )
        if config.reference_clips:
            dataset = ReferenceClips(dataset, config.reference_clips, config.shared_references)
        self.dataset, self.image_dataset, self.prior_dataset = dataset, image_dataset, prior_dataset
        self.step = 0
        self.micro_batches = 0

    def _check_unet(self, unet, vae) -> None:
        stage = self.config.stage
        allowed = (VideoUNet, UNet2DConditionModel) if stage in IMAGE_STAGES else (VideoUNet,)
        if not isinstance(unet, allowed):
            names = " or ".join(kind.__name__ for kind in allowed)
            raise ValueError(f"`unet` must be a {names} for the {stage!r} stage, got {type(unet).__name__}.")
        spatial = unet.unet if isinstance(unet, VideoUNet) else unet
        sample_channels = vae.config.latent_channels if vae is not None else 3
        extra = training_stage(stage).conditioning_channels(sample_channels)
        config = spatial.config
        if config.in_channels != sample_channels + extra or config.out_channels != sample_channels:
            raise ValueError(
                f"`unet` must read {sample_channels} + {extra} channels and predict {sample_channels} for the "
                f"{stage!r} stage {'with' if vae is not None else 'without'} a VAE, got in_channels="
                f"{config.in_channels}, out_channels={config.out_channels}."
            )
        if training_stage(stage).conditioning == "low_res" and spatial.class_embedding is None:
            raise ValueError(
                "`unet` needs a class embedding (num_class_embeds) for the noise level of a super-resolution stage."
            )

    def _check_controlnet(self, controlnet, unet, dataset) -> None:
        config = self.config
        if config.stage != "keyframes":
            raise ValueError(
                f"`controlnet` trains on the 'keyframes' stage (the pipeline that takes one), got stage={config.stage!r}."
            )
        for name in ("freeze_spatial", "train_text_encoder"):
            if getattr(config, name):
                raise ValueError(f"`{name}` must be False with `controlnet` (only the ControlNet trains).")
        if config.lora is not None:
            raise ValueError("`lora` must be None with `controlnet` (only the ControlNet trains).")
        check_controlnet(controlnet, unet)
        if "control_values" not in dataset[0]:
            raise ValueError(
                "`dataset` items must carry 'control_values' (3, F, H, W) in [0, 1] to train a ControlNet, e.g. "
                "ShapesDataset(control='silhouette')."
            )

    @property
    def loss_log(self) -> Path:
        return self.output_dir / LOSS_LOG

    def encode_captions(self, captions: list[str]) -> torch.Tensor:
        """CLIP text embeddings ``(B, L, D)`` of ``captions``, padded to the tokenizer's length; with
        gradients when the text encoder trains. Without the prompt warnings of generation: a dataset's
        captions would give one for each caption with a word the vocabulary lacks or too many tokens."""
        with torch.set_grad_enabled(self.config.train_text_encoder):
            return encode_text(
                self.tokenizer, self.text_encoder, captions, self.accelerator.device, warn=False
            )

    def loss(self, batch: dict) -> torch.Tensor:
        """The denoising loss of one micro-batch: MSE between the UNet's output and the target."""
        videos = batch["pixel_values"].to(self.accelerator.device)  # (B, 3, F, H, W)
        batch_size, frames = videos.shape[0], videos.shape[2]
        dropped = (torch.rand(batch_size) < self.config.caption_dropout).tolist()  # (B,)
        captions = ["" if drop else caption for drop, caption in zip(dropped, batch["caption"], strict=True)]
        text = self.encode_captions(captions)  # (B, L, D)
        with torch.no_grad():
            inputs = stage_inputs(self.config, videos, self.vae, self.low_res_scheduler)
        sample, conditioning, labels = inputs.sample, inputs.conditioning, inputs.class_labels
        if self.config.stage in IMAGE_STAGES:  # every frame an image: (B*F, C, 1, h, w)
            sample, conditioning = (_frames_as_images(x) for x in (sample, conditioning))
            text = text.repeat_interleave(frames, dim=0)  # (B*F, L, D)
            labels = None if labels is None else labels.repeat_interleave(frames)  # (B*F,)
        if not isinstance(self.accelerator.unwrap_model(self.unet), VideoUNet):
            sample, conditioning = (None if x is None else x[:, :, 0] for x in (sample, conditioning))
        noise = torch.randn(sample.shape).to(sample)  # drawn on the CPU: reproducible
        timesteps = self._draw_timesteps(sample.shape[0]).to(sample.device)  # one per video (image)
        noisy = self.noise_scheduler.add_noise(sample, noise, timesteps)
        if "reference_values" in batch:
            references = self._reference_samples(batch["reference_values"])  # (B, K, C, F, h, w)
            unconditional = torch.tensor(dropped, device=sample.device)  # (B,)
            target = stable_training_target(
                self.noise_scheduler, sample, noise, timesteps, references, unconditional
            )
        else:
            target = training_target(self.noise_scheduler, sample, noise, timesteps)
        model_input = noisy if conditioning is None else torch.cat([noisy, conditioning.to(noisy)], dim=1)
        residuals = {}
        if self.controlnet is not None:
            control = batch["control_values"].to(noisy)  # (B, 3, F, H, W)
            down, mid = video_residuals(self.controlnet, model_input, timesteps, text, control)
            residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        prediction = self.unet(model_input, timesteps, text, class_labels=labels, **residuals).sample
        return F.mse_loss(prediction.float(), target.float())

    @torch.no_grad()
    def _reference_samples(self, clips: torch.Tensor) -> torch.Tensor:
        """Reference clips ``(B, K, 3, F, H, W)`` as samples ``(B, K, C, F, h, w)``: encoded when in latent space."""
        batch, count = clips.shape[:2]
        flat = clips.flatten(0, 1).to(self.accelerator.device)  # (B * K, 3, F, H, W)
        samples = stage_inputs(self.config, flat, self.vae, self.low_res_scheduler).sample
        return samples.unflatten(0, (batch, count))

    def _draw_timesteps(self, count: int) -> torch.Tensor:
        """``count`` training timesteps: uniform, or with the noisiest ``high_noise_portion`` of the schedule
        ``high_noise_weight`` times as likely."""
        levels = self.noise_scheduler.config.num_train_timesteps
        if self.config.high_noise_weight == 1:
            return torch.randint(0, levels, (count,))
        return torch.multinomial(timestep_weights(levels, self.config), count, replacement=True)

    def _batches(self, dataset: Dataset, start: int) -> Iterator[dict]:
        config = self.config
        return iter(
            DataLoader(
                dataset,
                batch_sampler=_MicroBatches(
                    len(dataset),
                    config.batch_size,
                    config.seed,
                    start,
                    self.accelerator.num_processes,
                    self.accelerator.process_index,
                ),
                num_workers=config.num_workers,
                # The loader's own generator, so that starting it does not draw from the global RNG.
                generator=torch.Generator().manual_seed(config.seed),
            )
        )

    def _stream(self) -> Iterator[dict]:
        """Micro-batches from the current position on: with ``image_every = k``, micro-batches ``k - 1``,
        ``2k - 1``, ... are images; each dataset's own position follows from the overall count."""
        every, count = self.config.image_every, self.micro_batches
        images_seen = count // every if every else 0
        videos = self._batches(self.dataset, count - images_seen)
        images = self._batches(self.image_dataset, images_seen) if every else None
        priors = None if self.prior_dataset is None else self._batches(self.prior_dataset, count)
        while True:
            count += 1
            batch = next(images) if every and count % every == 0 else next(videos)
            yield batch if priors is None else {**batch, PRIOR_BATCH: next(priors)}

    def step_loss(self, batch: dict) -> torch.Tensor:
        """The loss of a micro-batch of the stream: :meth:`loss`, plus ``prior_loss_weight`` times the loss of
        the class micro-batch that comes with it under DreamBooth's prior preservation."""
        prior = batch.get(PRIOR_BATCH)
        loss = self.loss(batch)
        return loss if prior is None else loss + self.config.prior_loss_weight * self.loss(prior)

    def train(self, stop_after: int | None = None) -> int:
        """Trains to ``config.max_steps`` optimizer steps, or stops (with a checkpoint) after ``stop_after``;
        resumes from the latest checkpoint when ``config.resume``. Shows a progress bar with the loss and
        steps/s on the main process. Returns the step reached."""
        config = self.config
        check_optional_int("stop_after", stop_after, minimum=1)
        end = config.max_steps if stop_after is None else min(stop_after, config.max_steps)
        checkpoint = latest_checkpoint(self.output_dir) if config.resume else None
        if checkpoint is not None:
            self._load(checkpoint)
        else:
            set_seed(config.seed, device_specific=True)  # noise, timesteps, caption dropout; per process
        if self.accelerator.is_main_process:
            # Rows a stopped run logged after its last checkpoint (or before any) will be logged again.
            cut_loss_log(self.loss_log, self.step)
        progress = tqdm(
            total=end,
            initial=self.step,
            desc=f"train {config.stage}",
            unit="step",
            disable=not self.accelerator.is_main_process,
        )
        trained = [self.unet, self.text_encoder] if config.train_text_encoder else [self.trained_module]
        running_loss = 0.0
        for batch in self._stream() if self.step < end else ():
            with self.accelerator.accumulate(*trained):
                loss = self.step_loss(batch)
                self.accelerator.backward(loss)
                if self.accelerator.sync_gradients:
                    self.accelerator.clip_grad_norm_(
                        [p for group in self.optimizer.param_groups for p in group["params"]],
                        config.max_grad_norm,
                    )
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
            step_loss = running_loss / config.gradient_accumulation_steps
            self._log(step_loss)
            progress.update()
            progress.set_postfix(loss=f"{step_loss:.4f}")
            running_loss = 0.0
            every = config.checkpoint_every
            if self.step == end or (every and self.step % every == 0):
                self.save_checkpoint()
            if self.step == end:
                break
        progress.close()
        return self.step

    @property
    def trained_module(self) -> torch.nn.Module:
        """The prepared module whose weights train: the ControlNet when there is one, else the UNet."""
        return self.unet if self.controlnet is None else self.controlnet

    def trained_models(self) -> tuple[VideoUNet | UNet2DConditionModel, CLIPTextModel]:
        """The UNet (with the EMA weights when EMA is on) and the text encoder, unwrapped, in eval mode: what
        a pipeline should be built from. The training copy is left as it is."""
        unet = self._exported(self.unet)
        text_encoder = copy.deepcopy(self.accelerator.unwrap_model(self.text_encoder))
        return unet, text_encoder.eval().requires_grad_(False)

    def trained_controlnet(self) -> ControlNetModel:
        """The trained ControlNet (with the EMA weights when EMA is on), unwrapped, in eval mode."""
        if self.controlnet is None:
            raise ValueError("This trainer trains no ControlNet (it was built without `controlnet`).")
        return self._exported(self.controlnet)

    def _exported(self, module: torch.nn.Module) -> torch.nn.Module:
        """An unwrapped copy of ``module`` in eval mode, with the EMA weights when EMA averages its
        parameters (those of :attr:`trained_module`)."""
        module = self.accelerator.unwrap_model(module)
        averaged = self.ema is not None and module is self.accelerator.unwrap_model(self.trained_module)
        if averaged:
            self.ema.store(self.parameters)
            self.ema.copy_to(self.parameters)
        exported = copy.deepcopy(module)
        if averaged:
            self.ema.restore(self.parameters)
        return exported.eval().requires_grad_(False)

    def _log(self, loss: float) -> None:
        if not self.accelerator.is_main_process:
            return
        new = not self.loss_log.exists()
        self.loss_log.parent.mkdir(parents=True, exist_ok=True)
        with self.loss_log.open("a", newline="") as file:
            writer = csv.writer(file)
            if new:
                writer.writerow(LOSS_LOG_HEADER)
            writer.writerow([self.step, f"{loss:.8g}", f"{self.lr_scheduler.get_last_lr()[0]:.8g}"])

    def save_checkpoint(self) -> Path:
        """Writes ``checkpoints/checkpoint-{step}``: the accelerate state (model, optimizer, LR schedule,
        EMA, RNG states) and ``training_state.json`` (step, data position), into a hidden folder renamed
        into place, so a checkpoint folder is always complete. Older checkpoints beyond the limit go."""
        folder = self.output_dir / "checkpoints"
        final = folder / f"{CHECKPOINT_PREFIX}{self.step}"
        partial = partial_folder(final)
        if self.accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(partial))
        self.accelerator.wait_for_everyone()  # every process has written its part before the rename
        if self.accelerator.is_main_process:
            per_epoch = len(self.dataset) // (self.config.batch_size * self.accelerator.num_processes)
            state = {
                "step": self.step,
                "micro_batches": self.micro_batches,  # the data position, over all processes
                "epoch": self.micro_batches // per_epoch,
                "batch_in_epoch": self.micro_batches % per_epoch,
                "seed": self.config.seed,
                "num_processes": self.accelerator.num_processes,
            }
            (partial / TRAINING_STATE).write_text(json.dumps(state, indent=2))
            replace_folder(partial, final)
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
