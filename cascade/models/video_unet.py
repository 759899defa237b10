"""A video UNet grown from a pretrained 2D ``UNet2DConditionModel`` ("inflation").

The 2D UNet is kept whole, as diffusers built it, and runs on frames folded into the batch
(``(B, C, F, H, W) -> (B*F, C, H, W)``). Temporal layers sit beside it and are attached with forward
hooks: a :class:`~cascade.models.temporal_layers.TemporalConvolution` after each spatial ResNet
block and a :class:`~cascade.models.temporal_layers.TemporalAttention` after each spatial attention
block. No diffusers code is copied, the 2D weights keep their diffusers names under ``unet.``, and a
diffusers upgrade reaches the spatial path without touching ours.

References:
    - Singer et al. 2022, "Make-A-Video" (arXiv:2209.14792), section 3.2: pseudo-3D layers appended
      to pretrained spatial layers, initialised to the identity; train temporal layers only.
    - Ho et al. 2022, "Video Diffusion Models" (arXiv:2204.03458): factorised space-time UNet.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from diffusers import ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin
from diffusers.models.attention_processor import Attention, FusedAttnProcessor2_0
from diffusers.models.unets.unet_2d_blocks import CrossAttnUpBlock2D, UpBlock2D
from diffusers.utils import BaseOutput
from torch import nn

from cascade.ops.frames import fold_frames, unfold_frames
from cascade.utils.checks import check_bool, check_int, check_number, is_int

from .temporal_layers import TemporalAttention, TemporalConvolution


@dataclass
class VideoUNetOutput(BaseOutput):
    """Output of :class:`VideoUNet`: ``sample`` of shape ``(B, C, F, H, W)``."""

    sample: torch.Tensor


class _FrameCount:
    """The frame count of the video a :class:`VideoUNet` call runs on, shared by the VideoUNet and its forward
    hooks: set at the start of each call, and left as it is after it, so that gradient checkpointing, which
    runs a spatial block (and so its hook) again in the backward pass, reads the count of the call it
    differentiates (a backward follows its forward before the next forward, as in training)."""

    value = 1


class _ApplyTemporalLayer:
    """Forward hook (``with_kwargs=True``) that passes a spatial module's output through a temporal layer,
    with the frame count of the call and the text embeddings the spatial module was given (a transformer
    block's ``encoder_hidden_states``; ``None`` for a ResNet). Reading the text from the call, not from
    state, keeps gradient checkpointing's recomputation and ``copy.deepcopy`` of the model exact."""

    def __init__(self, layer: nn.Module, frames: _FrameCount):
        self.layer, self.frames = layer, frames

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict, output):
        text = kwargs.get("encoder_hidden_states")
        frames = self.frames.value
        if isinstance(output, torch.Tensor):
            return self.layer(output, frames, text)
        if isinstance(output, tuple):
            return (self.layer(output[0], frames, text),) + output[1:]
        return type(output)(sample=self.layer(output.sample, frames, text))


def _spatial_modules(unet: UNet2DConditionModel) -> Iterator[tuple[str, str, nn.Module]]:
    """Yields ``(name, kind, module)`` for each ResNet ("conv") and attention block of ``unet``.

    A ResNet of a block without attention blocks (``DownBlock2D``, ``UpBlock2D``) has kind "plain conv"."""
    blocks = [(f"down_blocks.{i}", b) for i, b in enumerate(unet.down_blocks)]
    if unet.mid_block is not None:
        blocks.append(("mid_block", unet.mid_block))
    blocks += [(f"up_blocks.{i}", b) for i, b in enumerate(unet.up_blocks)]
    for block_name, block in blocks:
        attentions = getattr(block, "attentions", None) or []
        for i, resnet in enumerate(getattr(block, "resnets", None) or []):
            yield f"{block_name}.resnets.{i}", "conv" if attentions else "plain conv", resnet
        for i, attention in enumerate(attentions):
            yield f"{block_name}.attentions.{i}", "attention", attention


def _output_channels(module: nn.Module) -> int:
    if getattr(module, "out_channels", None):
        return module.out_channels  # ResnetBlock2D
    if hasattr(module, "config") and "in_channels" in module.config:
        return module.config.out_channels or module.config.in_channels  # Transformer2DModel
    return module.query_dim  # Attention with a spatial residual (AttnDownBlock2D, UNetMidBlock2D)


def downsampling_factor(unet: UNet2DConditionModel) -> int:
    """How much a 2D UNet shrinks height and width: 2 to the number of its down blocks that downsample."""
    return 2 ** sum(1 for block in unet.down_blocks if getattr(block, "downsamplers", None))


def _frames_of(name: str, video: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
    """A video tensor ``(B, C, F, H, W)`` of the sample's batch and frame count as the 2D UNet's frames
    ``(B*F, C, H, W)``; ``ValueError`` naming ``name`` otherwise."""
    if (
        not isinstance(video, torch.Tensor)
        or video.ndim != 5
        or video.shape[0] != batch
        or video.shape[2] != frames
    ):
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(
            f"`{name}` must be video tensors (B={batch}, C, F={frames}, H, W), like the sample; got {shape}."
        )
    return fold_frames(video)


def _per_frame(name: str, value, batch: int, frames: int):
    """Repeats a per-video tensor ``(B, ...)`` or accepts a per-frame one ``(B, F)`` as ``(B*F, ...)``."""
    if not isinstance(value, torch.Tensor) or value.ndim == 0 or (name == "timestep" and value.shape == (1,)):
        return value  # None, or one value the 2D UNet broadcasts
    if value.ndim == 2 and value.shape == (batch, frames) and name in ("timestep", "class_labels"):
        return value.reshape(batch * frames)
    if value.shape[0] != batch:
        raise ValueError(
            f"`{name}` must have batch size {batch} (the sample's), got shape {tuple(value.shape)}."
        )
    return value.repeat_interleave(frames, dim=0)


class VideoUNet(ModelMixin, AttentionMixin, ConfigMixin):
    """A ``UNet2DConditionModel`` inflated with temporal layers; build one with :func:`cascade.inflate`.

    Args:
        unet_config: the config of the 2D UNet (as ``dict(unet.config)``).
        temporal_convolutions: add a temporal convolution after each spatial ResNet block.
        temporal_attention: add temporal self-attention after each spatial attention block.
        extra_in_channels: widen ``conv_in`` by this many zero-initialised input channels
            (conditioning frames, masks, low-resolution videos).
        temporal_attention_heads: heads of each temporal attention (must divide its channels).
        temporal_attention_layers: transformer layers in each temporal attention.
        temporal_attention_placement: where temporal attention goes. ``"attentions"``: after each
            spatial attention block. ``"animatediff"``: where AnimateDiff (Guo et al. 2023) puts its
            motion modules, so that a ``MotionAdapter`` fits (:func:`cascade.models.motion_adapter.
            load_motion_adapter`): after each spatial attention block, and after each ResNet of the
            blocks that have no attention block (``DownBlock2D``, ``UpBlock2D``), keyed by that ResNet.
        temporal_cross_attention: the temporal attention layers also attend to the text (their second
            attention, whose queries carry frame positions; see
            :class:`~cascade.models.temporal_layers.TemporalAttention`), so a prompt can steer motion.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        unet_config: dict,
        temporal_convolutions: bool = True,
        temporal_attention: bool = True,
        extra_in_channels: int = 0,
        temporal_attention_heads: int = 8,
        temporal_attention_layers: int = 1,
        temporal_attention_placement: str = "attentions",
        temporal_cross_attention: bool = False,
    ):
        super().__init__()
        if not isinstance(unet_config, dict) or "in_channels" not in unet_config:
            raise ValueError(
                f"`unet_config` must be a UNet2DConditionModel config dict, got {unet_config!r}."
            )
        check_int("extra_in_channels", extra_in_channels, minimum=0)
        check_bool("temporal_convolutions", temporal_convolutions)
        check_bool("temporal_attention", temporal_attention)
        check_bool("temporal_cross_attention", temporal_cross_attention)
        if temporal_cross_attention and temporal_attention_placement != "attentions":
            raise ValueError(
                "`temporal_cross_attention` needs temporal_attention_placement='attentions' (the text reaches "
                f"temporal layers through the spatial attention blocks), got {temporal_attention_placement!r}."
            )
        if temporal_attention_placement not in ("attentions", "animatediff"):
            raise ValueError(
                "`temporal_attention_placement` must be 'attentions' or 'animatediff', "
                f"got {temporal_attention_placement!r}."
            )
        attends_after = {"attention"} | (
            {"plain conv"} if temporal_attention_placement == "animatediff" else set()
        )
        config = {key: value for key, value in unet_config.items() if not key.startswith("_")}
        config["in_channels"] = unet_config["in_channels"] + extra_in_channels
        self.unet = UNet2DConditionModel.from_config(config)
        self._frames = _FrameCount()
        groups = config.get("norm_num_groups", 32)
        self.temporal_convs = nn.ModuleDict()
        self.temporal_attns = nn.ModuleDict()
        for name, kind, module in _spatial_modules(self.unet):
            key = name.replace(".", "_")
            channels = _output_channels(module)
            if kind != "attention" and temporal_convolutions:
                self.temporal_convs[key] = TemporalConvolution(channels, norm_num_groups=groups)
                module.register_forward_hook(
                    _ApplyTemporalLayer(self.temporal_convs[key], self._frames), with_kwargs=True
                )
            if kind in attends_after and temporal_attention:  # after the temporal convolution, if any
                self.temporal_attns[key] = TemporalAttention(
                    channels,
                    num_attention_heads=temporal_attention_heads,
                    norm_num_groups=groups,
                    num_layers=temporal_attention_layers,
                    cross_attention_dim=config.get("cross_attention_dim")
                    if temporal_cross_attention
                    else None,
                )
                module.register_forward_hook(
                    _ApplyTemporalLayer(self.temporal_attns[key], self._frames), with_kwargs=True
                )

    @property
    def in_channels(self) -> int:
        """Channels of the noisy sample (the UNet predicts as many); conditioning channels come after them."""
        return self.unet.config.out_channels

    @property
    def conditioning_channels(self) -> int:
        """Input channels after the noisy sample's: the extra ones plus, for a 2D UNet that already read
        conditioning (the x4 upscaler's low-resolution RGB), its input channels beyond its output ones."""
        return self.unet.config.in_channels - self.unet.config.out_channels

    @property
    def out_channels(self) -> int:
        return self.unet.config.out_channels

    @property
    def cross_attention_dim(self) -> int:
        return self.unet.config.cross_attention_dim

    @property
    def sample_size(self):
        return self.unet.config.sample_size

    @property
    def downsampling_factor(self) -> int:
        """How much the UNet shrinks height and width: sizes must be multiples of it."""
        return downsampling_factor(self.unet)

    def temporal_layers(self) -> Iterator[nn.Module]:
        yield from self.temporal_convs.values()
        yield from self.temporal_attns.values()

    def temporal_parameters(self) -> Iterator[nn.Parameter]:
        for layer in self.temporal_layers():
            yield from layer.parameters()

    def freeze_spatial_layers(self, train_conv_in: bool = False) -> None:
        """Freezes every 2D weight and leaves the temporal layers trainable (Make-A-Video, sec. 3.4).

        ``train_conv_in=True`` keeps ``conv_in`` trainable too, for stages whose extra input
        channels must learn to read their conditioning.
        """
        check_bool("train_conv_in", train_conv_in)
        self.unet.requires_grad_(False)
        self.unet.conv_in.requires_grad_(train_conv_in)
        for layer in self.temporal_layers():
            layer.requires_grad_(True)

    # Pipeline LoRA management (diffusers' ``unload_lora_weights``, ``fuse_lora``, ``set_adapters`` and
    # friends) calls these on ``pipe.unet``; the LoRA layers live in the 2D UNet, so each call goes there.
    @property
    def peft_config(self) -> dict:
        return self.unet.peft_config

    def fuse_lora(self, *args, **kwargs):
        return self.unet.fuse_lora(*args, **kwargs)

    def unfuse_lora(self, *args, **kwargs):
        return self.unet.unfuse_lora(*args, **kwargs)

    def unload_lora(self):
        return self.unet.unload_lora()

    def set_adapters(self, *args, **kwargs):
        return self.unet.set_adapters(*args, **kwargs)

    def enable_lora(self):
        return self.unet.enable_lora()

    def disable_lora(self):
        return self.unet.disable_lora()

    def delete_adapters(self, *args, **kwargs):
        return self.unet.delete_adapters(*args, **kwargs)

    # FreeU, fused projections and attention slicing: the diffusers UNet conventions pipelines reach for
    # (StableDiffusionMixin, DiffusionPipeline.enable_attention_slicing), each acting on this model for real.
    def enable_freeu(self, s1: float, s2: float, b1: float, b2: float) -> None:
        """Turns FreeU on (Si et al. 2023, "FreeU: Free Lunch in Diffusion U-Net", arXiv:2309.11497): in the two
        lowest-resolution up blocks of the 2D UNet, the backbone features are scaled by ``b1`` / ``b2`` (half
        their channels) and the low frequencies of the skip features by ``s1`` / ``s2``, frame by frame as in
        diffusers' ``UNetMotionModel``; the temporal layers are left as they are. Applied by diffusers' up
        blocks, so it needs them to be ``UpBlock2D`` or ``CrossAttnUpBlock2D`` (``ValueError`` otherwise:
        other blocks ignore the factors). :meth:`disable_freeu` restores the model's output bit for bit.
        Values the paper gives for SD 1.5: ``s1=0.9, s2=0.2, b1=1.2, b2=1.4``."""
        for name, value in (("s1", s1), ("s2", s2), ("b1", b1), ("b2", b2)):
            check_number(name, value)
        unsupported = [
            type(block).__name__
            for block in list(self.unet.up_blocks)[:2]
            if not isinstance(block, UpBlock2D | CrossAttnUpBlock2D)
        ]
        if unsupported:
            raise ValueError(
                "FreeU acts in the two lowest-resolution up blocks, which must be UpBlock2D or "
                f"CrossAttnUpBlock2D; this UNet's are {unsupported}, which would ignore it."
            )
        self.unet.enable_freeu(s1=s1, s2=s2, b1=b1, b2=b2)

    def disable_freeu(self) -> None:
        """Turns FreeU (:meth:`enable_freeu`) off."""
        self.unet.disable_freeu()

    def _attention_modules(self) -> list[Attention]:
        """Every diffusers ``Attention`` of the model: the 2D UNet's, then the temporal layers'."""
        return [module for module in self.modules() if isinstance(module, Attention)]

    def fuse_qkv_projections(self) -> None:
        """Fuses the query, key and value projections of every attention, spatial and temporal, into one matrix
        (key and value for a cross-attention) and runs them with diffusers' ``FusedAttnProcessor2_0``: the same
        output up to float rounding, with fewer, larger matrix products. :meth:`unfuse_qkv_projections` puts
        the processors in use before back. Attention with added key/value projections is refused
        (``ValueError``), as diffusers' ``UNet2DConditionModel`` refuses it."""
        added = sorted(
            {type(p).__name__ for p in self.attn_processors.values() if "Added" in type(p).__name__}
        )
        if added:
            raise ValueError(
                f"fused projections do not support attention with added key/value projections {added}."
            )
        self._unfused_processors = self.attn_processors
        for module in self._attention_modules():
            module.fuse_projections()
        self.set_attn_processor(FusedAttnProcessor2_0())

    def unfuse_qkv_projections(self) -> None:
        """Puts back the attention processors that :meth:`fuse_qkv_projections` replaced (nothing to do when
        the projections are not fused)."""
        unfused = getattr(self, "_unfused_processors", None)
        if unfused is not None:
            self.set_attn_processor(dict(unfused))
            self._unfused_processors = None

    def set_attention_slice(self, slice_size: str | int | None = "auto") -> None:
        """Computes every attention, spatial and temporal, a slice of its batch-times-heads at a time (less
        memory, same output up to float rounding); what diffusers' ``DiffusionPipeline.enable_attention_slicing``
        calls. ``slice_size``: ``"auto"`` (half the heads of each attention), ``"max"`` (one at a time), an int
        no larger than the fewest heads of any attention, or ``None`` (slicing off: diffusers' default
        processor on every attention, as for a 2D UNet)."""
        modules = self._attention_modules()
        fewest = min(module.sliceable_head_dim for module in modules)
        if slice_size not in ("auto", "max", None) and not (is_int(slice_size) and 1 <= slice_size <= fewest):
            raise ValueError(
                f"`slice_size` must be 'auto', 'max', None or an int in [1, {fewest}] (the fewest heads of an "
                f"attention of this model), got {slice_size!r}."
            )
        for module in modules:
            heads = module.sliceable_head_dim
            module.set_attention_slice({"auto": max(heads // 2, 1), "max": 1}.get(slice_size, slice_size))

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict | None = None,
        added_cond_kwargs: dict | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        down_block_additional_residuals: tuple[torch.Tensor, ...] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> VideoUNetOutput | tuple:
        """Denoises a video.

        Args:
            sample: noisy video ``(B, C, F, H, W)``, with the extra conditioning channels appended.
            timestep: a number, ``(B,)``, or one per frame ``(B, F)``.
            encoder_hidden_states: text embeddings ``(B, L, D)``, shared by the frames of a video.
            class_labels: ``(B,)`` or ``(B, F)``, for UNets with a class embedding (noise level).
            ``timestep_cond``, ``attention_mask`` and ``encoder_attention_mask`` are repeated per frame;
            ``cross_attention_kwargs`` and ``added_cond_kwargs`` go to the 2D UNet unchanged.
            down_block_additional_residuals, mid_block_additional_residual: a ControlNet's residuals for each
                frame (Zhang et al. 2023, "Adding Conditional Control to Text-to-Image Diffusion Models",
                arXiv:2302.05543), video tensors ``(B, C_i, F, H_i, W_i)`` added to the 2D UNet's skip
                connections and mid block as diffusers' ``UNet2DConditionModel`` adds them.
        """
        if not isinstance(sample, torch.Tensor) or sample.ndim != 5:
            shape = tuple(sample.shape) if isinstance(sample, torch.Tensor) else type(sample).__name__
            raise ValueError(f"`sample` must be a tensor of shape (B, C, F, H, W), got {shape}.")
        batch, channels, frames = sample.shape[:3]
        if channels != self.unet.config.in_channels:
            raise ValueError(
                f"`sample` must have {self.unet.config.in_channels} channels ({self.in_channels} noisy + "
                f"{self.conditioning_channels} conditioning), got {channels}."
            )
        if not isinstance(encoder_hidden_states, torch.Tensor) or encoder_hidden_states.ndim != 3:
            raise ValueError(
                "`encoder_hidden_states` must be a tensor of shape (B, L, D), got "
                f"{getattr(encoder_hidden_states, 'shape', encoder_hidden_states)!r}."
            )
        self._frames.value = frames
        residuals = {}
        if down_block_additional_residuals is not None:
            residuals["down_block_additional_residuals"] = tuple(
                _frames_of("down_block_additional_residuals", residual, batch, frames)
                for residual in down_block_additional_residuals
            )  # each (B*F, C_i, H_i, W_i)
        if mid_block_additional_residual is not None:
            residuals["mid_block_additional_residual"] = _frames_of(
                "mid_block_additional_residual", mid_block_additional_residual, batch, frames
            )  # (B*F, C, H', W')
        output = self.unet(
            fold_frames(sample),  # (B*F, C, H, W)
            _per_frame("timestep", timestep, batch, frames),
            _per_frame("encoder_hidden_states", encoder_hidden_states, batch, frames),
            class_labels=_per_frame("class_labels", class_labels, batch, frames),
            timestep_cond=_per_frame("timestep_cond", timestep_cond, batch, frames),
            attention_mask=_per_frame("attention_mask", attention_mask, batch, frames),
            cross_attention_kwargs=cross_attention_kwargs,
            added_cond_kwargs=added_cond_kwargs,
            encoder_attention_mask=_per_frame(
                "encoder_attention_mask", encoder_attention_mask, batch, frames
            ),
            **residuals,
            return_dict=False,
        )[0]  # (B*F, C', H, W)
        output = unfold_frames(output, batch)  # (B, C', F, H, W)
        if not return_dict:
            return (output,)
        return VideoUNetOutput(sample=output)
