"""LoRA training (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", arXiv:2106.09685):
a stage's UNet keeps its weights and learns low-rank updates ``W + (alpha / rank) * B A`` of some of them.

With ``TrainingConfig.lora`` set, :class:`~cascade.training.StageTrainer` freezes the whole UNet and adds
peft LoRA layers (diffusers' ``add_adapter``) to the target modules of its **2D UNet** only (a
:class:`~cascade.models.VideoUNet`'s ``unet``): those are what diffusers' LoRA format addresses (keys
``unet.<2D module name>``) and what ``pipe.load_lora_weights`` loads (the keyframes pipeline puts them in
``pipe.unet.unet``). The temporal layers stay frozen as trained: the spatial weights are personalized under
a fixed motion model, AnimateDiff's separation. The default targets are the spatial attention projections
(``to_q``, ``to_k``, ``to_v``, ``to_out.0``, self- and cross-attention), as in diffusers' LoRA scripts.

The trained adapters are written by :func:`save_lora` as ``pytorch_lora_weights.safetensors`` in diffusers'
format, with the rank and alpha as metadata.
"""

import os
from typing import TYPE_CHECKING

import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from diffusers.utils import convert_state_dict_to_diffusers
from torch import nn

from cascade.models.video_unet import VideoUNet
from cascade.utils.checks import is_int, is_number

if TYPE_CHECKING:  # peft (the ``lora`` extra) is imported where LoRA layers are made or read
    from peft import LoraConfig

LORA_KEYS = ("rank", "alpha", "target_modules")
DEFAULT_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
# Layers LoRA adapts here: linear projections and convolutions (peft's layers that diffusers' format saves).
LORA_LAYERS = (nn.Linear, nn.Conv2d)


def lora_settings(lora) -> dict:
    """``{"rank", "alpha", "target_modules"}`` from the ``lora`` setting of a :class:`TrainingConfig`: a mapping
    with ``rank`` (an int >= 1), optional ``alpha`` (a number > 0, default the rank: scale 1) and optional
    ``target_modules`` (a non-empty list of module names of the 2D UNet, matched as peft matches them: the
    name or its last dotted parts; default :data:`DEFAULT_TARGET_MODULES`). ``ValueError`` names the bad key."""
    if not isinstance(lora, dict):
        raise ValueError(f"`lora` must be a mapping with keys {list(LORA_KEYS)}, got {lora!r}.")
    unknown = sorted(set(lora) - set(LORA_KEYS), key=str)
    if unknown:
        raise ValueError(f"`lora` has unknown key(s) {unknown}; allowed: {list(LORA_KEYS)}.")
    if "rank" not in lora:
        raise ValueError(f"`lora.rank` is required (an int >= 1), got only {sorted(lora)}.")
    rank = lora["rank"]
    if not is_int(rank) or rank < 1:
        raise ValueError(f"`lora.rank` must be an int >= 1, got {rank!r}.")
    alpha = lora.get("alpha", rank)
    if not is_number(alpha) or alpha <= 0:
        raise ValueError(f"`lora.alpha` must be a finite number > 0, got {alpha!r}.")
    targets = lora.get("target_modules", list(DEFAULT_TARGET_MODULES))
    if (
        not isinstance(targets, list | tuple)
        or not targets
        or not all(isinstance(name, str) and name for name in targets)
        or len(set(targets)) != len(targets)
    ):
        raise ValueError(
            f"`lora.target_modules` must be a non-empty list of distinct module names, got {targets!r}."
        )
    alpha = int(alpha) if is_int(alpha) else float(alpha)  # numpy numbers as Python's, for the saved metadata
    return {"rank": int(rank), "alpha": alpha, "target_modules": list(targets)}


def spatial_unet(unet: VideoUNet | UNet2DConditionModel) -> UNet2DConditionModel:
    """The 2D UNet that carries the LoRA layers: a VideoUNet's ``unet``, or ``unet`` itself."""
    return unet.unet if isinstance(unet, VideoUNet) else unet


def add_lora(unet: VideoUNet | UNet2DConditionModel, lora: dict) -> "LoraConfig":
    """Freezes ``unet`` and adds trainable LoRA layers (``lora``: see :func:`lora_settings`) to its 2D UNet's
    target modules; returns their peft config. ``ValueError`` naming ``lora.target_modules`` when a target
    matches no module of the 2D UNet, or matches one that is not a linear layer or 2D convolution."""
    from peft import LoraConfig

    settings = lora_settings(lora)
    modules = dict(spatial_unet(unet).named_modules())
    for target in settings["target_modules"]:
        matched = [
            module for name, module in modules.items() if name == target or name.endswith(f".{target}")
        ]
        if not matched:
            raise ValueError(
                f"`lora.target_modules` names {target!r}, which matches no module of the 2D UNet (module names "
                f"such as {list(DEFAULT_TARGET_MODULES)}, or their full dotted paths)."
            )
        kinds = sorted({type(module).__name__ for module in matched if not isinstance(module, LORA_LAYERS)})
        if kinds:
            raise ValueError(
                f"`lora.target_modules` names {target!r}, which matches {kinds} modules; LoRA adapts only "
                f"{[kind.__name__ for kind in LORA_LAYERS]} layers."
            )
    # peft's initialisation: A random, B zero, so training starts from the base model (Hu et al., sec. 4.1).
    config = LoraConfig(
        r=settings["rank"], lora_alpha=settings["alpha"], target_modules=settings["target_modules"]
    )
    unet.requires_grad_(False)
    spatial_unet(unet).add_adapter(config)
    return config


def lora_state_dict(unet: VideoUNet | UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """The LoRA weights of ``unet``'s 2D UNet in diffusers' format (without the ``unet.`` prefix)."""
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(spatial_unet(unet)))


def save_lora(
    folder: str | os.PathLike, unet: VideoUNet | UNet2DConditionModel, config: "LoraConfig"
) -> None:
    """Writes the LoRA of ``unet`` to ``folder/pytorch_lora_weights.safetensors`` in diffusers' format (with
    ``config`` as its metadata), which ``pipe.load_lora_weights(folder)`` loads into a pipeline of the base."""
    StableDiffusionLoraLoaderMixin.save_lora_weights(
        folder, unet_lora_layers=lora_state_dict(unet), unet_lora_adapter_metadata=config.to_dict()
    )
