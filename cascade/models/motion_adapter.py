"""AnimateDiff motion modules in an inflated :class:`~cascade.models.video_unet.VideoUNet`.

Guo et al. 2023, "AnimateDiff: Animate Your Personalized Text-to-Image Diffusion Models without
Specific Tuning" (arXiv:2307.04725), trains motion modules (temporal transformers) beside a frozen
Stable Diffusion UNet and ships them on their own; diffusers holds them in a ``MotionAdapter``.
Our :class:`~cascade.models.temporal_layers.TemporalAttention` is the same module class
(``AnimateDiffTransformer3D``), so a motion module's weights load into it unchanged, except the
fixed position table ``pos_embed.pe``, which :class:`~cascade.models.temporal_layers.FramePositions`
computes for any number of frames instead (the values agree where the table has them).
"""

from collections.abc import Iterator

import torch
from diffusers import MotionAdapter
from torch import nn

from .temporal_layers import FramePositions
from .video_unet import VideoUNet


def _motion_module_hosts(
    video_unet: VideoUNet, adapter: MotionAdapter
) -> Iterator[tuple[str, str, nn.Module]]:
    """Yields ``(adapter name, VideoUNet key, motion module)``: where each motion module goes.

    AnimateDiff puts motion module ``j`` of a block after its ``j``-th attention block, or after its
    ``j``-th ResNet when the block has no attention; in the mid block after the attention (the
    order of diffusers' ``UNetMidBlockCrossAttnMotion``: resnet, then attention -> motion -> resnet).
    """
    unet = video_unet.unet
    groups = [
        ("down_blocks", unet.down_blocks, adapter.down_blocks),
        ("up_blocks", unet.up_blocks, adapter.up_blocks),
    ]
    if adapter.mid_block is not None:
        groups.append(("mid_block", [unet.mid_block], [adapter.mid_block]))
    for group, blocks, adapter_blocks in groups:
        for i, (block, adapter_block) in enumerate(zip(blocks, adapter_blocks, strict=True)):
            prefix = group if group == "mid_block" else f"{group}_{i}"
            adapter_prefix = group if group == "mid_block" else f"{group}.{i}"
            hosts = "attentions" if getattr(block, "attentions", None) else "resnets"
            if len(adapter_block.motion_modules) != len(getattr(block, hosts)):
                raise ValueError(
                    f"The adapter's {adapter_prefix} has {len(adapter_block.motion_modules)} motion modules but "
                    f"the UNet's {adapter_prefix} has {len(getattr(block, hosts))} {hosts}."
                )
            for j, module in enumerate(adapter_block.motion_modules):
                yield f"{adapter_prefix}.motion_modules.{j}", f"{prefix}_{hosts}_{j}", module


def _check_position_table(name: str, table: torch.Tensor) -> None:
    """Raises unless a motion module's position table ``(1, L, D)`` equals :class:`FramePositions`."""
    ours = FramePositions(table.shape[-1])(torch.zeros(table.shape, dtype=torch.float64))  # (1, L, D)
    tolerance = max(torch.finfo(table.dtype).eps, 1e-6)
    if not torch.allclose(table.double().cpu(), ours, atol=tolerance, rtol=0):
        raise ValueError(
            f"The position table `{name}` is not the sinusoidal table FramePositions computes "
            f"(max abs diff {(table.double().cpu() - ours).abs().max():.3g})."
        )


def load_motion_adapter(video_unet: VideoUNet, adapter: MotionAdapter) -> VideoUNet:
    """Copies an AnimateDiff ``MotionAdapter``'s motion modules into ``video_unet``'s temporal attention.

    ``video_unet`` must be inflated with ``temporal_attention_placement="animatediff"`` and the
    adapter's head count and transformer layers (``temporal_attention_heads``,
    ``temporal_attention_layers``); ``temporal_convolutions=False`` reproduces diffusers'
    ``UNetMotionModel.from_unet2d(unet, adapter)``. Temporal attention the adapter has no weights for
    (the mid block's, for an adapter without ``use_motion_mid_block``) is left as it is.
    Weights are copied (in ``video_unet``'s dtype and device); everything is checked before any is.

    Returns ``video_unet``.
    """
    if not isinstance(video_unet, VideoUNet):
        raise ValueError(f"`video_unet` must be a cascade VideoUNet, got {type(video_unet).__name__}.")
    if not isinstance(adapter, MotionAdapter):
        raise ValueError(f"`adapter` must be a diffusers MotionAdapter, got {type(adapter).__name__}.")
    if adapter.conv_in is not None:
        raise ValueError(
            f"`adapter` has conv_in_channels={adapter.config.conv_in_channels} (a PIA adapter); only motion "
            "modules can be loaded."
        )
    unet_channels = list(video_unet.unet.config.block_out_channels)
    if list(adapter.config.block_out_channels) != unet_channels:
        raise ValueError(
            f"`adapter` has block_out_channels={list(adapter.config.block_out_channels)} but the UNet has "
            f"{unet_channels}."
        )
    state = {}
    for adapter_name, key, module in _motion_module_hosts(video_unet, adapter):
        if key not in video_unet.temporal_attns:
            raise ValueError(
                f"The VideoUNet has no temporal attention `{key}` for the adapter's `{adapter_name}`: inflate with "
                "temporal_attention=True and temporal_attention_placement='animatediff' (it has "
                f"{video_unet.config.temporal_attention_placement!r})."
            )
        layer = video_unet.temporal_attns[key]
        heads = (module.transformer_blocks[0].attn1.heads, layer.transformer_blocks[0].attn1.heads)
        if heads[0] != heads[1]:
            raise ValueError(
                f"The adapter's `{adapter_name}` has {heads[0]} attention heads but the VideoUNet's `{key}` has "
                f"{heads[1]}: inflate with temporal_attention_heads={heads[0]}."
            )
        depth = (len(module.transformer_blocks), len(layer.transformer_blocks))
        if depth[0] != depth[1]:
            raise ValueError(
                f"The adapter's `{adapter_name}` has {depth[0]} transformer layers but the VideoUNet's `{key}` has "
                f"{depth[1]}: inflate with temporal_attention_layers={depth[0]}."
            )
        weights = {}
        for name, value in module.state_dict().items():
            if name.endswith("pos_embed.pe"):
                _check_position_table(f"{adapter_name}.{name}", value)
            else:
                weights[name] = value
        if weights.keys() != layer.state_dict().keys():
            raise ValueError(
                f"The adapter's `{adapter_name}` and the VideoUNet's `{key}` have different weights: "
                f"{sorted(weights.keys() ^ layer.state_dict().keys())}."
            )
        state[key] = weights
    for key, weights in state.items():
        video_unet.temporal_attns[key].load_state_dict(weights)
    return video_unet
