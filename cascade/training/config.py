"""``TrainingConfig``: the settings of one training run of any stage, checked when built.

A YAML recipe's ``training:`` section (:mod:`cascade.training.recipe`) is this dataclass's fields.
"""

import os
from dataclasses import dataclass, fields

from diffusers.optimization import SchedulerType

from cascade.ops.conditioning import CONDITIONING_FILLS
from cascade.pipelines.stages import STAGES as CASCADE_STAGES
from cascade.pipelines.stages import Stage, stage
from cascade.utils.checks import is_int, is_number

from .lora import lora_settings

# The 2D pretraining that later stages inflate: trained like a stage, but not a stage of the cascade.
TEXT_TO_IMAGE = Stage("text_to_image", "", "text", True, "the 2D text-to-image model the others inflate")


def training_stage(name: str) -> Stage:
    """What ``cascade train`` trains for stage ``name``: :data:`TEXT_TO_IMAGE` or a stage of the cascade."""
    return TEXT_TO_IMAGE if name == TEXT_TO_IMAGE.name else stage(name)


STAGES = (TEXT_TO_IMAGE.name, *(entry.name for entry in CASCADE_STAGES))
# Stages whose UNet denoises frames on their own: a 2D UNet2DConditionModel (or a VideoUNet on 1-frame clips).
IMAGE_STAGES = tuple(name for name in STAGES if training_stage(name).per_frame)
PREDICTION_TYPES = ("epsilon", "v_prediction")
MIXED_PRECISIONS = ("no", "fp16", "bf16")
# Every diffusers schedule but piecewise_constant, which needs step rules of its own.
LR_SCHEDULERS = tuple(kind.value for kind in SchedulerType if kind != SchedulerType.PIECEWISE_CONSTANT)


@dataclass
class TrainingConfig:
    """Settings of a training run; invalid values raise ``ValueError`` naming the field.

    Args:
        output_dir: where checkpoints (``checkpoints/checkpoint-{step}``) and ``loss.csv`` go.
        stage: what is trained, one of :data:`STAGES`: ``text_to_image`` (the 2D pretraining later stages
            inflate), ``keyframes``, ``interpolation``, ``spatiotemporal_sr`` or ``spatial_sr``.
        max_steps: optimizer steps of the whole run (the learning rate schedule spans them).
        batch_size: videos (images for ``text_to_image``) per micro-batch and process.
        gradient_accumulation_steps: micro-batches per optimizer step.
        learning_rate, adam_beta1, adam_beta2, adam_weight_decay, adam_epsilon: AdamW settings.
        lr_scheduler: a ``diffusers.optimization`` schedule name; ``lr_warmup_steps``: its warm-up.
        max_grad_norm: gradients are clipped to this global norm.
        prediction_type: ``"epsilon"`` (the noise) or ``"v_prediction"`` (Salimans & Ho 2022).
        freeze_spatial: train only the temporal layers (Make-A-Video); else full fine-tuning.
        lora: train LoRA adapters (Hu et al. 2021, arXiv:2106.09685) instead of the UNet's weights, all of
            which stay frozen: ``{rank, alpha, target_modules}`` (:func:`cascade.training.lora.lora_settings`;
            default targets the spatial attention projections ``to_q``, ``to_k``, ``to_v``, ``to_out.0``). The
            adapters go into the 2D UNet only, never the temporal layers, because diffusers' LoRA format and
            ``load_lora_weights`` address the 2D UNet (:mod:`cascade.training.lora`); the run writes them as
            ``pytorch_lora_weights.safetensors``. Not with ``freeze_spatial`` or ``train_text_encoder``.
        train_text_encoder: train the text encoder with the UNet (the 2D pretraining of a model whose text
            encoder is its own); ``text_encoder_learning_rate`` is its learning rate.
        use_ema, ema_decay: keep an exponential moving average of the UNet's weights.
        caption_dropout: probability of replacing a caption by ``""`` (Ho & Salimans 2022).
        high_noise_weight, high_noise_portion: timesteps are drawn uniformly, except that the noisiest
            ``high_noise_portion`` of the schedule is drawn ``high_noise_weight`` times as often (the "later"
            timestep bias of diffusers' SDXL training script); what a prompt decides about a clip's layout
            and motion is learned there. ``high_noise_weight=1`` is uniform.
        reference_clips: ``keyframes`` stage: with ``K > 0``, the target is the stable target field (Xu et al.
            2023, :mod:`cascade.training.stable_target`) over each clip and ``K`` other clips with its
            caption, which the dataset draws (``same_caption``); 0: the ordinary target.
        shared_references: with ``reference_clips``, every clip of a caption gets the same ``K`` references
            (``caption_clips``, drawn once and kept in memory), so the target at the noisiest levels is a fixed
            estimate of the caption's mean clip rather than a new one each step.
        prior_loss_weight: DreamBooth's prior preservation (Ruiz et al. 2022, sec. 3.3): the weight of the class
            images' loss beside the subject's, when the recipe has ``prior_data``.
        mixed_precision: ``"no"``, ``"fp16"`` or ``"bf16"``, passed to ``Accelerator``.
        gradient_checkpointing: recompute activations in the backward pass (spatial and temporal layers).
        image_every: joint image-video training (Ho et al. 2022, "Video Diffusion Models", sec. 3.2): every
            ``image_every``-th micro-batch comes from the image dataset (0: never).
        interpolation_factor: ``interpolation`` stage: frames are known every this many frames.
        known_frame_dropout: ``interpolation`` stage: probability that a known frame between the first and
            the last of a clip is hidden too (random masks over the known frames).
        interpolation_fill: ``interpolation`` stage: what the conditioning holds between known frames,
            ``"zeros"`` (Make-A-Video) or ``"blend"`` (their linear blend); the exported pipeline keeps it.
        upscale_factor: super-resolution stages: output frame size over input frame size.
        max_noise_level: super-resolution stages: the low-resolution input is noised to a level drawn
            uniformly from ``[0, max_noise_level]`` (noise conditioning augmentation).
        checkpoint_every: write a checkpoint every this many optimizer steps (0: only when stopping).
        checkpoints_total_limit: checkpoints kept (older ones are deleted); ``None`` keeps all.
        resume: continue from the latest checkpoint in ``output_dir`` if there is one.
        seed: seeds the data order and, through ``accelerate``, the noise.
        num_workers: ``DataLoader`` worker processes.
    """

    output_dir: str
    stage: str = "keyframes"
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
    lora: dict | None = None
    train_text_encoder: bool = False
    text_encoder_learning_rate: float = 1e-4
    use_ema: bool = False
    ema_decay: float = 0.9999
    caption_dropout: float = 0.1
    high_noise_weight: float = 1.0
    high_noise_portion: float = 0.25
    reference_clips: int = 0
    shared_references: bool = False
    prior_loss_weight: float = 1.0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    image_every: int = 0
    interpolation_factor: int = 4
    known_frame_dropout: float = 0.0
    interpolation_fill: str = "zeros"
    upscale_factor: int = 4
    max_noise_level: int = 350
    checkpoint_every: int = 500
    checkpoints_total_limit: int | None = 2
    resume: bool = True
    seed: int = 0
    num_workers: int = 0

    def __post_init__(self):
        def fail(name: str, allowed: str):
            raise ValueError(f"`{name}` must be {allowed}, got {getattr(self, name)!r}.")

        if not isinstance(self.output_dir, str | os.PathLike) or not str(self.output_dir):
            fail("output_dir", "a non-empty path")
        for name in ("max_steps", "batch_size", "gradient_accumulation_steps", "interpolation_factor"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                fail(name, "an int >= 1")
        if not is_int(self.upscale_factor) or self.upscale_factor < 1:
            fail("upscale_factor", "an int >= 1")
        for name in (
            "lr_warmup_steps",
            "checkpoint_every",
            "seed",
            "num_workers",
            "image_every",
            "reference_clips",
        ):
            if not is_int(getattr(self, name)) or getattr(self, name) < 0:
                fail(name, "an int >= 0")
        if not is_int(self.max_noise_level) or not 0 <= self.max_noise_level < 1000:
            fail("max_noise_level", "an int in [0, 1000)")
        for name in (
            "learning_rate",
            "text_encoder_learning_rate",
            "adam_epsilon",
            "max_grad_norm",
            "prior_loss_weight",
        ):
            if not is_number(getattr(self, name)) or getattr(self, name) <= 0:
                fail(name, "a finite number > 0")
        if not is_number(self.adam_weight_decay) or self.adam_weight_decay < 0:
            fail("adam_weight_decay", "a finite number >= 0")
        for name in ("adam_beta1", "adam_beta2", "ema_decay"):
            if not is_number(getattr(self, name)) or not 0 <= getattr(self, name) < 1:
                fail(name, "a number in [0, 1)")
        if not is_number(self.high_noise_weight) or self.high_noise_weight <= 0:
            fail("high_noise_weight", "a finite number > 0")
        if not is_number(self.high_noise_portion) or not 0 < self.high_noise_portion <= 1:
            fail("high_noise_portion", "a number in (0, 1]")
        for name in ("caption_dropout", "known_frame_dropout"):
            if not is_number(getattr(self, name)) or not 0 <= getattr(self, name) <= 1:
                fail(name, "a number in [0, 1]")
        for name, allowed in (
            ("stage", STAGES),
            ("prediction_type", PREDICTION_TYPES),
            ("mixed_precision", MIXED_PRECISIONS),
            ("lr_scheduler", LR_SCHEDULERS),
            ("interpolation_fill", CONDITIONING_FILLS),
        ):
            if getattr(self, name) not in allowed:
                fail(name, f"one of {list(allowed)}")
        for name in (
            "freeze_spatial",
            "train_text_encoder",
            "use_ema",
            "gradient_checkpointing",
            "resume",
            "shared_references",
        ):
            if not isinstance(getattr(self, name), bool):
                fail(name, "a bool")
        if self.checkpoints_total_limit is not None and (
            not is_int(self.checkpoints_total_limit) or self.checkpoints_total_limit < 1
        ):
            fail("checkpoints_total_limit", "None or an int >= 1")
        if self.stage in IMAGE_STAGES and (self.freeze_spatial or self.image_every):
            name = "freeze_spatial" if self.freeze_spatial else "image_every"
            fail(name, f"off for the 2D stage {self.stage!r} (it has no temporal layers)")
        if self.reference_clips and self.stage != "keyframes":
            fail(
                "reference_clips",
                f"0 for the {self.stage!r} stage (only keyframes are conditioned on text alone)",
            )
        if self.lora is not None:
            self.lora = lora_settings(self.lora)
            for name in ("freeze_spatial", "train_text_encoder"):
                if getattr(self, name):
                    fail(name, "False with `lora` (a LoRA run trains the UNet's adapters and nothing else)")
        if self.shared_references and not self.reference_clips:
            fail("shared_references", "False unless reference_clips > 0 (it shares the reference clips)")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in fields(cls))
