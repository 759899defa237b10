"""Training recipes: one YAML file says which stage to train, from what, on which data, and how.

    stage: keyframes                 # one of cascade.training.STAGES
    output_dir: runs/demo/keyframes  # checkpoints, loss.csv, and the trained stage in model/
    model:
      base: runs/demo/text_to_image/model   # a folder with unet/ (2D or VideoUNet), text_encoder/, tokenizer/
      inflate: {temporal_attention_heads: 4}  # options of cascade.inflate (video stages, 2D base)
      # or, from scratch: unet: {UNet2DConditionModel config}, and text_encoder: {vocabulary: shapes, ...}
      # text_encoder_from: FOLDER  (default: base); vae: FOLDER (latent space); noise_scheduler: {DDPM config}
      # tokenizer: {vocabulary: shapes, max_length: 8}  (replace the loaded encoder's word tokenizer)
      # under_temporal_layers: true  (text_to_image from a keyframes base: its VideoUNet's 2D UNet trains on
      #   images, DreamBooth, and is exported under the base's temporal layers as the base's pipeline)
      # controlnet: {conditioning_embedding_out_channels: [16]}  (train a ControlNet made from the base's
      #   UNet with these ControlNetModel.from_unet options, the base frozen; keyframes stage)
    data: {kind: shapes, length: 100000, num_frames: 8, height: 16, width: 16, seed: 0}
    image_data: {kind: image_text, root: ..., height: 16, width: 16}   # optional, with training.image_every
    prior_data: {kind: shapes, num_frames: 1, ...}   # optional: DreamBooth's class images (prior preservation)
    training: {max_steps: 3000, batch_size: 8, ...}   # TrainingConfig fields
    sampling: {scheduler: dpm_solver}   # the scheduler the exported pipeline samples with (or ddim)

:func:`run_recipe` trains (resuming from the last checkpoint) and, once ``max_steps`` are reached,
writes the stage's pipeline to ``output_dir/model`` (``text_to_image``: its components; a run with
``training.lora``: only its LoRA, for ``load_lora_weights`` on the base; a run with ``model.controlnet``: only
the ControlNet, for ``ControlNetModel.from_pretrained`` and the pipeline's ``controlnet``; a run with
``model.under_temporal_layers``: the base's keyframes pipeline with the trained spatial weights) atomically.
It runs the same under plain ``python`` and under ``accelerate launch``.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    SchedulerMixin,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTokenizer

from cascade.data import VOCABULARY, ImageTextDataset, ShapesDataset, SubjectImages, VideoTextDataset
from cascade.models.inflation import inflate, swap_spatial_weights
from cascade.models.video_unet import VideoUNet
from cascade.pipelines.keyframes import KeyframesPipeline
from cascade.utils.atomic import write_folder_atomically

from .config import IMAGE_STAGES, STAGES, TEXT_TO_IMAGE, TrainingConfig, training_stage
from .lora import save_lora
from .text_model import retokenize_text_encoder, small_text_encoder, word_tokenizer
from .trainer import StageTrainer

RECIPE_KEYS = ("stage", "output_dir", "model", "data", "image_data", "prior_data", "training", "sampling")
MODEL_KEYS = (
    "unet",
    "base",
    "text_encoder",
    "text_encoder_from",
    "tokenizer",
    "inflate",
    "vae",
    "noise_scheduler",
    "controlnet",
    "under_temporal_layers",
)
DATASETS = {
    "shapes": ShapesDataset,
    "video_text": VideoTextDataset,
    "image_text": ImageTextDataset,
    "subject": SubjectImages,
}
SAMPLING_SCHEDULERS = {"dpm_solver": DPMSolverMultistepScheduler, "ddim": DDIMScheduler}
# The highest noise level a saved scheduler samples from (see sampling_levels).
SAMPLING_MAX_SIGMA = 100.0
VOCABULARIES = {"shapes": VOCABULARY}
MODEL_FOLDER = "model"


@dataclass
class Recipe:
    """A parsed recipe; see the module docstring for the layout."""

    stage: str
    output_dir: Path
    model: dict
    data: dict
    image_data: dict | None
    prior_data: dict | None
    training: dict
    sampling: dict

    @property
    def model_dir(self) -> Path:
        """Where the trained stage is written."""
        return self.output_dir / MODEL_FOLDER

    def config(self) -> TrainingConfig:
        return TrainingConfig(output_dir=str(self.output_dir), stage=self.stage, **self.training)


def load_recipe(path: str | os.PathLike, **overrides) -> Recipe:
    """Reads and checks the recipe at ``path``; ``overrides`` replace ``output_dir`` or ``training`` fields
    (e.g. ``max_steps=10``). Unknown keys and bad values raise ``ValueError`` naming them and the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"`path` must be a recipe YAML file, got {str(path)!r} (not a file).")
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a recipe must be a mapping with keys {list(RECIPE_KEYS)}.")
    _check_keys(path, "the recipe", raw, RECIPE_KEYS, required=("stage", "output_dir", "model", "data"))
    model = raw["model"] or {}
    _check_keys(path, "model", model, MODEL_KEYS)
    if ("unet" in model) == ("base" in model):
        raise ValueError(
            f"{path}: `model` needs exactly one of `unet` (a 2D UNet config) and `base` (a folder)."
        )
    tokenizer = model.get("tokenizer")
    if tokenizer is not None:
        _check_keys(path, "model.tokenizer", tokenizer, ("vocabulary", "max_length"))
        if "text_encoder" in model:
            raise ValueError(
                f"{path}: `model.tokenizer` replaces a loaded encoder's; a new `text_encoder` has its own."
            )
    training = dict(raw.get("training") or {})
    unknown = sorted(
        set(training) - set(TrainingConfig.field_names()) | ({"output_dir", "stage"} & set(training))
    )
    if unknown:
        raise ValueError(
            f"{path}: unknown `training` key(s) {unknown}; allowed: TrainingConfig fields but output_dir, stage."
        )
    output_dir = overrides.pop("output_dir", None) or raw["output_dir"]
    training.update(overrides)
    for name in ("data", "image_data", "prior_data"):
        spec = raw.get(name)
        if spec is not None and (not isinstance(spec, dict) or spec.get("kind") not in DATASETS):
            raise ValueError(f"{path}: `{name}.kind` must be one of {list(DATASETS)}, got {spec!r}.")
    sampling = raw.get("sampling") or {}
    _check_keys(path, "sampling", sampling, ("scheduler",))
    if sampling.get("scheduler", "dpm_solver") not in SAMPLING_SCHEDULERS:
        raise ValueError(
            f"{path}: `sampling.scheduler` must be one of {list(SAMPLING_SCHEDULERS)}, got {sampling['scheduler']!r}."
        )
    if raw["stage"] not in STAGES:
        raise ValueError(f"{path}: `stage` must be one of {list(STAGES)}, got {raw['stage']!r}.")
    if model.get("under_temporal_layers") not in (None, True, False):
        raise ValueError(
            f"{path}: `model.under_temporal_layers` must be a bool, got {model['under_temporal_layers']!r}."
        )
    if model.get("under_temporal_layers") and (raw["stage"] != TEXT_TO_IMAGE.name or "base" not in model):
        raise ValueError(
            f"{path}: `model.under_temporal_layers` trains a keyframes base's 2D UNet as a text_to_image model; it "
            f"needs stage: {TEXT_TO_IMAGE.name} and a `base`, got stage {raw['stage']!r}."
        )
    recipe = Recipe(
        raw["stage"],
        Path(output_dir),
        model,
        raw["data"],
        raw.get("image_data"),
        raw.get("prior_data"),
        training,
        sampling,
    )
    recipe.config()  # checks the training fields
    return recipe


def _check_keys(path: Path, where: str, mapping, allowed, required=()) -> None:
    if not isinstance(mapping, dict):
        raise ValueError(f"{path}: {where} must be a mapping, got {mapping!r}.")
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown} in {where}; allowed: {list(allowed)}.")
    missing = [key for key in required if key not in mapping]
    if missing:
        raise ValueError(f"{path}: {where} is missing {missing}.")


def build_text_model(recipe: Recipe) -> tuple[CLIPTextModel, CLIPTokenizer]:
    """A new text encoder and word tokenizer (``model.text_encoder``), or the ones saved in
    ``model.text_encoder_from`` (default ``model.base``); with ``model.tokenizer``, the saved encoder moves
    to a new word tokenizer (:func:`~cascade.training.text_model.retokenize_text_encoder`)."""
    spec = recipe.model.get("text_encoder")
    if spec is not None:
        spec = dict(spec)
        tokenizer = _word_tokenizer(spec)
        return small_text_encoder(tokenizer, seed=recipe.config().seed, **spec), tokenizer
    folder = recipe.model.get("text_encoder_from") or recipe.model.get("base")
    if folder is None:
        raise ValueError(
            "`model` needs `text_encoder` (a new one) or `text_encoder_from` with a `unet` config."
        )
    text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", use_safetensors=True)
    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    spec = recipe.model.get("tokenizer")
    if spec is None:
        return text_encoder, tokenizer
    new_tokenizer = _word_tokenizer(dict(spec))
    return retokenize_text_encoder(text_encoder, tokenizer, new_tokenizer), new_tokenizer


def _word_tokenizer(spec: dict) -> CLIPTokenizer:
    """The word tokenizer of a ``text_encoder`` or ``tokenizer`` spec; pops its keys from ``spec``."""
    words = spec.pop("vocabulary", "shapes")
    words = VOCABULARIES.get(words, words) if isinstance(words, str) else words
    return word_tokenizer(list(words), spec.pop("max_length", 8))


def build_unet(recipe: Recipe, sample_channels: int) -> VideoUNet | UNet2DConditionModel:
    """The UNet to train: a new 2D UNet (``model.unet``) or the base's, inflated for the video stages
    (with the masked-frame channels for interpolation)."""
    spec = recipe.model.get("unet")
    if spec is not None:
        import torch

        torch.manual_seed(recipe.config().seed)
        unet = UNet2DConditionModel(**spec)
    else:
        folder = Path(recipe.model["base"], "unet")
        kind = json.loads((folder / "config.json").read_text()).get("_class_name")
        loader = VideoUNet if kind == VideoUNet.__name__ else UNet2DConditionModel
        unet = loader.from_pretrained(folder, use_safetensors=True)
        if recipe.model.get("under_temporal_layers"):
            return spatial_copy(unet, folder)
    if recipe.stage in IMAGE_STAGES or isinstance(unet, VideoUNet):
        return unet
    options = dict(recipe.model.get("inflate") or {})
    entry = training_stage(recipe.stage)
    if (
        entry.conditioning == "known_frames"
    ):  # new input channels; a super-resolution base reads its own already
        options.setdefault("extra_in_channels", entry.conditioning_channels(sample_channels))
    return inflate(unet, **options)


def spatial_copy(unet: VideoUNet, folder: Path) -> UNet2DConditionModel:
    """A plain 2D UNet with the weights of ``unet``'s (which runs its temporal layers in hooks)."""
    if not isinstance(unet, VideoUNet):
        raise ValueError(
            f"`model.under_temporal_layers` needs a base whose unet is a VideoUNet, got a {type(unet).__name__} "
            f"in {folder}."
        )
    spatial = UNet2DConditionModel.from_config(unet.unet.config)
    spatial.load_state_dict(unet.unet.state_dict())
    return spatial


def build_dataset(spec: dict):
    spec = dict(spec)
    return DATASETS[spec.pop("kind")](**spec)


def build_trainer(recipe: Recipe) -> StageTrainer:
    """The :class:`StageTrainer` of ``recipe``: its models, datasets and settings."""
    vae_folder = recipe.model.get("vae")
    vae = None if vae_folder is None else AutoencoderKL.from_pretrained(vae_folder, use_safetensors=True)
    text_encoder, tokenizer = build_text_model(recipe)
    unet = build_unet(recipe, 3 if vae is None else vae.config.latent_channels)
    image_data, prior_data = recipe.image_data, recipe.prior_data
    controlnet = None
    if "controlnet" in recipe.model:
        controlnet = build_controlnet(recipe, unet)
    return StageTrainer(
        recipe.config(),
        unet,
        text_encoder,
        tokenizer,
        DDPMScheduler(**(recipe.model.get("noise_scheduler") or {})),
        build_dataset(recipe.data),
        vae=vae,
        image_dataset=None if image_data is None else build_dataset(image_data),
        controlnet=controlnet,
        prior_dataset=None if prior_data is None else build_dataset(prior_data),
    )


def build_controlnet(recipe: Recipe, unet: VideoUNet) -> ControlNetModel:
    """A new ControlNet made from ``unet``'s 2D UNet (``ControlNetModel.from_unet``: its encoder's weights, zero
    convolutions out) with the options of ``model.controlnet``; its control embedding drawn from the seed."""
    import torch

    options = recipe.model["controlnet"] or {}
    if not isinstance(unet, VideoUNet):
        raise ValueError(f"`model.controlnet` needs a video stage's base UNet, got a {type(unet).__name__}.")
    if not isinstance(options, dict):
        raise ValueError(
            f"`model.controlnet` must be a mapping of ControlNetModel.from_unet options, got {options!r}."
        )
    torch.manual_seed(recipe.config().seed)
    try:
        return ControlNetModel.from_unet(unet.unet, **options)
    except TypeError as error:
        raise ValueError(
            f"`model.controlnet` has an option ControlNetModel.from_unet does not take: {error}"
        ) from None


def sampling_scheduler(name: str, noise_scheduler: DDPMScheduler) -> SchedulerMixin:
    """The scheduler saved with a trained stage: ``name``'s class of :data:`SAMPLING_SCHEDULERS` on the training
    schedule, without its pure-noise top (:func:`sampling_levels`). Its config also states ``clip_sample: false``
    (as Stable Diffusion's does), so that a scheduler swapped in with ``from_config`` samples as this one does:
    unsaid, DDIM clips its estimate of the clean sample to [-1, 1] but steps on with the unclipped noise estimate,
    and under classifier-free guidance, whose estimate leaves [-1, 1], the two disagree and the colours go wrong."""
    if not isinstance(noise_scheduler, SchedulerMixin) or not hasattr(noise_scheduler, "alphas_cumprod"):
        raise ValueError(
            f"`noise_scheduler` must be a diffusers scheduler with `alphas_cumprod`, got {type(noise_scheduler)}."
        )
    levels = sampling_levels(noise_scheduler.alphas_cumprod)
    schedule = {}
    if levels < noise_scheduler.config.num_train_timesteps:
        schedule = {"num_train_timesteps": levels, "trained_betas": noise_scheduler.betas[:levels].tolist()}
    scheduler = SAMPLING_SCHEDULERS[name].from_config(noise_scheduler.config, **schedule)
    scheduler.register_to_config(clip_sample=False)
    return scheduler


def sampling_levels(alphas_cumprod, max_sigma: float = SAMPLING_MAX_SIGMA) -> int:
    """How many of a training schedule's timesteps (from t=0) a saved scheduler keeps: those whose noise level
    sigma = sqrt((1 - alpha_bar) / alpha_bar) is at most ``max_sigma``.

    Above sigma 100 (a signal-to-noise ratio under 1e-4) a model's input is noise to within 1% and it predicts
    the data's mean whatever the level, so sampling from sigma 100 loses nothing it could use. Keeping them
    breaks the sigma-space second-order solvers (Karras et al. 2022) that diffusers' Heun and KDPM2-ancestral schedulers
    implement: ``squaredcos_cap_v2`` (Nichol & Dhariwal 2021) caps its last beta at 0.999, which puts t=999 at
    sigma 20291 (t=998 at 642), so their first step spans sigma 20291 to about 9 and its second-order
    correction, the change of the model's estimate between the two levels times (20291 - 9) / (2 * 9), wrecks
    the sample. Below the cut every kept level keeps its trained noise level exactly."""
    import torch

    alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    if (
        alphas_cumprod.ndim != 1
        or len(alphas_cumprod) == 0
        or not bool(torch.all(alphas_cumprod[1:] <= alphas_cumprod[:-1]))
    ):
        raise ValueError(
            f"`alphas_cumprod` must be a non-empty 1-D non-increasing schedule, got shape {tuple(alphas_cumprod.shape)}."
        )
    if not max_sigma > 0:
        raise ValueError(f"`max_sigma` must be > 0, got {max_sigma!r}.")
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()  # (T,) non-decreasing in t
    levels = int((sigmas <= max_sigma).sum())
    if levels == 0:
        raise ValueError(
            f"`max_sigma` ({max_sigma}) is below the schedule's lowest noise level, {float(sigmas[0]):.4g}."
        )
    return levels


def export_stage(recipe: Recipe, trainer: StageTrainer) -> Path:
    """Writes the trained stage to ``recipe.model_dir`` atomically: its pipeline (``save_pretrained``), or
    for ``text_to_image`` its components (``unet/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), or
    for a LoRA run its LoRA (``pytorch_lora_weights.safetensors``, :func:`~cascade.training.lora.save_lora`)."""
    if trainer.controlnet is not None:
        controlnet = trainer.trained_controlnet()
        return write_folder_atomically(recipe.model_dir, controlnet.save_pretrained)
    unet, text_encoder = trainer.trained_models()
    if trainer.lora_config is not None:
        return write_folder_atomically(
            recipe.model_dir, lambda folder: save_lora(folder, unet, trainer.lora_config)
        )
    components = {
        "unet": unet,
        "scheduler": sampling_scheduler(
            recipe.sampling.get("scheduler", "dpm_solver"), trainer.noise_scheduler
        ),
        "text_encoder": text_encoder,
        "tokenizer": trainer.tokenizer,
        "vae": trainer.vae,
    }
    config, entry = trainer.config, training_stage(recipe.stage)

    def write(folder: Path) -> None:
        if recipe.model.get("under_temporal_layers"):
            base = KeyframesPipeline.from_pretrained(recipe.model["base"], use_safetensors=True)
            swap_spatial_weights(base.unet, unet)
            personalized = {**base.components, "text_encoder": text_encoder, "tokenizer": trainer.tokenizer}
            KeyframesPipeline(**personalized).save_pretrained(folder)
            return
        if entry is TEXT_TO_IMAGE:
            for name, component in components.items():
                if component is not None:
                    component.save_pretrained(folder / name)
            return
        options = {}
        if entry.conditioning == "low_res":
            options = {
                "low_res_scheduler": trainer.low_res_scheduler,
                "upscale_factor": config.upscale_factor,
                "max_noise_level": config.max_noise_level,
            }
        elif entry.conditioning == "known_frames":
            options = {"conditioning_fill": config.interpolation_fill}
        entry.pipeline_class(**components, **options).save_pretrained(folder)

    return write_folder_atomically(recipe.model_dir, write)


def run_recipe(path: str | os.PathLike, stop_after: int | None = None, **overrides) -> Path | None:
    """Trains the stage of the recipe at ``path`` (resuming) and exports it when ``max_steps`` are reached.
    Returns the exported folder, or ``None`` when stopped early (``stop_after``) or not the main process."""
    recipe = load_recipe(path, **overrides)
    trainer = build_trainer(recipe)
    step = trainer.train(stop_after=stop_after)
    exported = None
    if step == trainer.config.max_steps and trainer.accelerator.is_main_process:
        exported = export_stage(recipe, trainer)
    trainer.accelerator.wait_for_everyone()
    return exported
