"""Inflation: build a :class:`~cascade.models.video_unet.VideoUNet` from a pretrained 2D UNet
(:func:`inflate`), and put another 2D model's weights under its temporal layers (:func:`swap_spatial_weights`).

Singer et al. 2022, "Make-A-Video" (arXiv:2209.14792), sec. 3.2: the spatial layers keep the
text-to-image weights and temporal layers start as the identity, so the inflated model reproduces
the image model frame by frame before any video training.
"""

from collections.abc import Mapping

import torch
from diffusers import UNet2DConditionModel

from .video_unet import VideoUNet


def inflate(unet: UNet2DConditionModel, **options) -> VideoUNet:
    """Returns a video UNet that keeps every weight of ``unet`` and adds identity temporal layers.

    Args:
        unet: any ``diffusers.UNet2DConditionModel``; it is not modified.
        **options: :class:`VideoUNet` options: ``temporal_convolutions``, ``temporal_attention``,
            ``extra_in_channels``, ``temporal_attention_heads``, ``temporal_attention_layers``,
            ``temporal_attention_placement`` (``"animatediff"`` to hold AnimateDiff motion modules),
            ``temporal_cross_attention`` (temporal attention that also reads the text).

    The ``extra_in_channels`` new input channels of ``conv_in`` start at zero, so the output does
    not depend on them until they are trained.
    """
    if not isinstance(unet, UNet2DConditionModel):
        raise ValueError(f"`unet` must be a diffusers UNet2DConditionModel, got {type(unet).__name__}.")
    unknown = set(options) - set(VideoUNet._get_init_keys(VideoUNet)) | ({"unet_config"} & set(options))
    if unknown:
        allowed = sorted(set(VideoUNet._get_init_keys(VideoUNet)) - {"self", "unet_config"})
        raise ValueError(f"Unknown inflation option(s) {sorted(unknown)}; allowed: {allowed}.")
    config = {key: value for key, value in unet.config.items() if not key.startswith("_")}
    video_unet = VideoUNet(unet_config=config, **options)
    state = unet.state_dict()
    extra = video_unet.config.extra_in_channels
    if extra:
        weight = state["conv_in.weight"]  # (C_out, C_in, k, k)
        zeros = weight.new_zeros(weight.shape[0], extra, *weight.shape[2:])
        state["conv_in.weight"] = torch.cat([weight, zeros], dim=1)  # (C_out, C_in + extra, k, k)
    video_unet.unet.load_state_dict(state)
    if unet.dtype != video_unet.dtype or unet.device != video_unet.device:
        video_unet.to(device=unet.device, dtype=unet.dtype)
    return video_unet


def swap_spatial_weights(
    video_unet: VideoUNet, spatial: UNet2DConditionModel | Mapping[str, torch.Tensor]
) -> VideoUNet:
    """Puts a fine-tuned 2D model's weights under ``video_unet``'s trained temporal layers, in place.

    The separation Make-A-Video (Singer et al. 2022, sec. 3.4) and AnimateDiff (Guo et al. 2023,
    arXiv:2307.04725) rely on: the temporal layers learn motion on top of fixed spatial weights, so spatial
    weights fine-tuned from the same base (DreamBooth, a style fine-tune) can be put under them and the video
    model moves the new subject as it moved the old. Every 2D weight of ``video_unet`` is replaced; the temporal
    layers, and the extra input channels of ``conv_in`` (a stage's conditioning), are kept.

    Args:
        video_unet: the video UNet whose temporal layers stay.
        spatial: a ``UNet2DConditionModel`` of the same layout as ``video_unet``'s 2D UNet (for any SD-1.x-
            shaped UNet: same blocks, widths and text width), or its state dict in diffusers' names.

    Returns ``video_unet``. ``ValueError`` naming ``spatial`` when its weights' names or shapes differ from
    the 2D UNet's, before any weight changes.
    """
    if not isinstance(video_unet, VideoUNet):
        raise ValueError(f"`video_unet` must be a VideoUNet, got {type(video_unet).__name__}.")
    if isinstance(spatial, UNet2DConditionModel):
        state = spatial.state_dict()
    elif isinstance(spatial, Mapping) and all(isinstance(v, torch.Tensor) for v in spatial.values()):
        state = dict(spatial)
    else:
        raise ValueError(
            f"`spatial` must be a UNet2DConditionModel or its state dict, got {type(spatial).__name__}."
        )
    target = video_unet.unet.state_dict()
    missing, unexpected = sorted(set(target) - set(state)), sorted(set(state) - set(target))
    if missing or unexpected:
        raise ValueError(
            f"`spatial` does not have the 2D UNet's weights: {len(missing)} missing (first {missing[:3]}), "
            f"{len(unexpected)} unexpected (first {unexpected[:3]}); give a UNet of the same layout as "
            "video_unet's 2D UNet (the base the video model was inflated from, fine-tuned)."
        )
    extra = video_unet.config.extra_in_channels
    conv_in = target["conv_in.weight"]  # (C_out, C_in + extra, k, k)
    expected = {name: tuple(value.shape) for name, value in target.items()}
    expected["conv_in.weight"] = (conv_in.shape[0], conv_in.shape[1] - extra, *conv_in.shape[2:])
    wrong = [name for name in target if tuple(state[name].shape) != expected[name]]
    if wrong:
        name = wrong[0]
        raise ValueError(
            f"`spatial` has {len(wrong)} weight(s) of another shape than the 2D UNet's, first {name!r}: "
            f"{tuple(state[name].shape)}, expected {expected[name]}."
        )
    if extra:  # the conditioning channels stay as the video stage trained them
        state["conv_in.weight"] = torch.cat([state["conv_in.weight"].to(conv_in), conv_in[:, -extra:]], dim=1)
    video_unet.unet.load_state_dict(state)
    return video_unet
