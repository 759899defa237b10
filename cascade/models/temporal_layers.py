"""Temporal layers that turn a pretrained 2D diffusion UNet into a video UNet.

Both layers are residual and start as the identity, so an inflated UNet at step 0 computes
exactly what the 2D UNet computes frame by frame, and a video of one frame is an image.

References:
    - Singer et al. 2022, "Make-A-Video" (arXiv:2209.14792): pseudo-3D convolution and attention,
      temporal layers initialised to the identity, spatial weights from a text-to-image model.
    - Ho et al. 2022, "Video Diffusion Models" (arXiv:2204.03458): factorised space-time attention.
    - Wang et al. 2023, "ModelScope Text-to-Video" (arXiv:2308.06571): the temporal convolution
      stack (diffusers' ``TemporalConvLayer``) used after each spatial ResNet block.
    - Guo et al. 2023, "AnimateDiff" (arXiv:2307.04725): temporal transformers with sinusoidal frame
      positions (diffusers' ``AnimateDiffTransformer3D``), which these layers reuse unchanged.
    - Vaswani et al. 2017, "Attention Is All You Need": sinusoidal positions.
"""

import math

import torch
from diffusers.models.resnet import TemporalConvLayer
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from torch import nn

from cascade.utils.checks import check_int, check_optional_int, is_int


def _check_channels(name: str, channels: int, groups: int) -> None:
    if not isinstance(channels, int) or channels <= 0:
        raise ValueError(f"`{name}` must be a positive int, got {channels!r}.")
    if not isinstance(groups, int) or groups <= 0 or channels % groups:
        raise ValueError(
            f"`norm_num_groups` must be a positive divisor of {name}={channels}, got {groups!r}."
        )


class FramePositions(nn.Module):
    """Adds sinusoidal frame positions (Vaswani et al. 2017) to a sequence of frame features.

    The values equal diffusers' ``SinusoidalPositionalEmbedding`` (the AnimateDiff table) at every
    position that table covers, but they are computed for the sequence at hand instead of read
    from a table of fixed length: there is no cap on the number of frames.
    """

    def __init__(self, dim: int):
        super().__init__()
        if not isinstance(dim, int) or dim <= 0 or dim % 2:
            raise ValueError(f"`dim` must be a positive even int, got {dim!r}.")
        self.dim = dim

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # (N, F, D)
        frames = hidden_states.shape[1]
        device = hidden_states.device
        position = torch.arange(frames, device=device).unsqueeze(1)  # (F, 1)
        div_term = torch.exp(torch.arange(0, self.dim, 2, device=device) * (-math.log(10000.0) / self.dim))
        table = torch.zeros(frames, self.dim, device=device)  # (F, D)
        table[:, 0::2] = torch.sin(position * div_term)
        table[:, 1::2] = torch.cos(position * div_term)
        return hidden_states + table.to(hidden_states.dtype)


class _CheckpointableTemporalLayer:
    """Runs ``_temporal_forward`` under gradient checkpointing when the model enables it. A layer is called as
    ``layer(hidden_states, num_frames, text)`` on frames folded into the batch ``(B*F, C, H, W)``;
    ``text`` is the per-frame text embeddings ``(B*F, L, D)`` the spatial block it follows was given (used by
    layers that attend to the text)."""

    gradient_checkpointing = False

    def forward(
        self, hidden_states: torch.Tensor, num_frames: int, text: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(
                self._temporal_forward, hidden_states, num_frames, text, use_reentrant=False
            )
        return self._temporal_forward(hidden_states, num_frames, text)


class TemporalConvolution(_CheckpointableTemporalLayer, TemporalConvLayer):
    """Residual stack of 1D convolutions over frames (kernel 3), identity at init.

    Runs after a spatial ResNet block on frames folded into the batch: ``(B*F, C, H, W)``, ``num_frames`` a
    video (:class:`cascade.VideoUNet` passes it).
    """

    def __init__(self, channels: int, norm_num_groups: int = 32):
        _check_channels("channels", channels, norm_num_groups)
        TemporalConvLayer.__init__(self, channels, channels, norm_num_groups=norm_num_groups)

    def _temporal_forward(self, hidden_states: torch.Tensor, num_frames: int, text=None) -> torch.Tensor:
        return TemporalConvLayer.forward(self, hidden_states, num_frames=num_frames)


class TemporalAttention(_CheckpointableTemporalLayer, AnimateDiffTransformer3D):
    """Residual self-attention over frames at every pixel, identity at init.

    An AnimateDiff motion module (two frame self-attentions and a feed-forward per layer) whose
    output projection starts at zero, with :class:`FramePositions` in place of the fixed-length
    position table. Attention goes through diffusers ``Attention`` processors, so SDPA, xformers
    and LoRA processors reach it like any spatial attention.

    With ``cross_attention_dim``, the second attention of each layer attends to the text embeddings
    instead of the frames, as the temporal blocks of Stable Video Diffusion do (Blattmann et al. 2023,
    "Stable Video Diffusion", arXiv:2311.15127; diffusers' ``TemporalBasicTransformerBlock``). Its queries
    carry the frame positions, so what the prompt says can act differently on each frame: how a prompt's
    motion ("moving left") is read. Memory: the text is repeated for every pixel, ``(B*H*W, L, D)``.
    """

    def __init__(
        self,
        channels: int,
        num_attention_heads: int = 8,
        norm_num_groups: int = 32,
        num_layers: int = 1,
        cross_attention_dim: int | None = None,
    ):
        _check_channels("channels", channels, norm_num_groups)
        if not is_int(num_attention_heads) or num_attention_heads <= 0 or channels % num_attention_heads:
            raise ValueError(
                f"`num_attention_heads` must be a positive divisor of channels={channels}, "
                f"got {num_attention_heads!r}."
            )
        check_int("num_layers", num_layers, minimum=1)
        check_optional_int("cross_attention_dim", cross_attention_dim, minimum=1)
        AnimateDiffTransformer3D.__init__(
            self,
            num_attention_heads=num_attention_heads,
            attention_head_dim=channels // num_attention_heads,
            in_channels=channels,
            num_layers=num_layers,
            norm_num_groups=norm_num_groups,
            cross_attention_dim=cross_attention_dim,
            double_self_attention=cross_attention_dim is None,
            positional_embeddings="sinusoidal",
            num_positional_embeddings=1,
        )
        for block in self.transformer_blocks:
            block.pos_embed = FramePositions(channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    @property
    def attends_to_text(self) -> bool:
        """Whether the second attention of each layer reads the text (``cross_attention_dim`` given)."""
        return self.transformer_blocks[0].attn2.is_cross_attention

    def _temporal_forward(self, hidden_states: torch.Tensor, num_frames: int, text=None) -> torch.Tensor:
        per_pixel = None
        if self.attends_to_text:
            if text is None:
                raise ValueError("this temporal layer attends to the text: pass `text` (B*F, L, D).")
            pixels = hidden_states.shape[-2] * hidden_states.shape[-1]
            per_video = text[::num_frames]  # (B, L, D): the frames of a video share their text
            per_pixel = per_video.repeat_interleave(pixels, dim=0)  # (B*H*W, L, D), the layer's folding order
        return AnimateDiffTransformer3D.forward(
            self, hidden_states, encoder_hidden_states=per_pixel, num_frames=num_frames
        )
