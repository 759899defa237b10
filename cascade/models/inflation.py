"""Inflation: build a :class:`~cascade.models.video_unet.VideoUNet` from a pretrained 2D UNet.

Singer et al. 2022, "Make-A-Video" (arXiv:2209.14792), sec. 3.2: the spatial layers keep the
text-to-image weights and temporal layers start as the identity, so the inflated model reproduces
the image model frame by frame before any video training.
"""

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
