"""ControlNet on the keyframes stage: a 2D ControlNet (Zhang et al. 2023, "Adding Conditional Control to
Text-to-Image Diffusion Models", arXiv:2302.05543; diffusers' ``ControlNetModel``, e.g. made with
``ControlNetModel.from_unet(pipe.unet.unet)``) run on each controlled frame, its residuals added to the
VideoUNet's skip connections and mid block for those frames (:meth:`cascade.VideoUNet.forward`), as
AnimateDiff's ControlNet pipeline runs one on the frames. Control can be given for some frames only
(``controlnet_frame_indices``, as SparseCtrl conditions a few keyframes: Guo et al. 2023, arXiv:2311.16933);
the other frames get no residual and follow through the temporal layers.

:class:`FrameControl` holds a call's control and gives the residuals of a window of frames at a step.
"""

from dataclasses import dataclass, replace

import torch
from diffusers import ControlNetModel

from cascade.ops.frames import fold_frames, unfold_frames
from cascade.utils.checks import check_number


def controlnet_list(controlnet) -> list[ControlNetModel]:
    """The ControlNets of a pipeline's ``controlnet`` component: none, one, or diffusers'
    ``MultiControlNetModel``'s."""
    if controlnet is None:
        return []
    return list(getattr(controlnet, "nets", [controlnet]))


def check_controlnet(controlnet: ControlNetModel, unet) -> None:
    """``ValueError`` naming ``controlnet`` when its residuals would not fit ``unet``'s 2D UNet: a different
    input channel count, block widths or text width."""
    if not isinstance(controlnet, ControlNetModel):
        raise ValueError(
            f"`controlnet` must be a diffusers ControlNetModel, got {type(controlnet).__name__}."
        )
    spatial = unet.unet.config
    for key, expected in (
        ("in_channels", unet.in_channels),
        ("block_out_channels", tuple(spatial.block_out_channels)),
        ("cross_attention_dim", spatial.cross_attention_dim),
        ("layers_per_block", spatial.layers_per_block),
    ):
        value = controlnet.config[key]
        value = tuple(value) if isinstance(value, list | tuple) else value
        if value != expected:
            raise ValueError(
                f"`controlnet` does not match the UNet: its {key} is {value}, the UNet's {expected}; make it from "
                "this stage's UNet (`ControlNetModel.from_unet(pipe.unet.unet)`) and train it."
            )


def control_size(controlnet: ControlNetModel, sample_size: tuple[int, int]) -> tuple[int, int]:
    """The height and width of the control frames ``controlnet`` reads for a sample ``(h, w)``: its
    conditioning embedding downsamples them by 2 for each of its blocks after the first."""
    factor = 2 ** (len(controlnet.config.conditioning_embedding_out_channels) - 1)
    return sample_size[0] * factor, sample_size[1] * factor


def per_net(name: str, value, count: int) -> list:
    """``value`` for each of ``count`` ControlNets: one for all, or a list of ``count``."""
    values = list(value) if isinstance(value, list | tuple) else [value] * count
    if len(values) != count:
        raise ValueError(
            f"`{name}` holds {len(values)} values for {count} ControlNet(s); give one or one each."
        )
    return values


def video_residuals(
    controlnet: ControlNetModel,
    sample: torch.Tensor,  # (B, C, K, h, w)
    timestep,
    embeds: torch.Tensor,  # (B, L, D)
    images: torch.Tensor,  # (B, 3, K, H, W) in [0, 1]
    conditioning_scale: float = 1.0,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``controlnet``'s residuals for each frame of ``sample``, run on the frames folded into the batch: the
    down-block residuals and the mid-block residual, each ``(B, C_i, K, h_i, w_i)`` as
    :meth:`cascade.VideoUNet.forward` takes them. ``timestep`` is one for all (a number or 0-d tensor) or one
    per video ``(B,)``."""
    batch, frames = sample.shape[0], sample.shape[2]
    if isinstance(timestep, torch.Tensor) and timestep.ndim == 1:
        timestep = timestep.repeat_interleave(frames)  # (B K,)
    down, mid = controlnet(
        fold_frames(sample),
        timestep,
        embeds.repeat_interleave(frames, dim=0),  # (B K, L, D)
        controlnet_cond=fold_frames(images),
        conditioning_scale=conditioning_scale,
        return_dict=False,
    )  # each (B K, C_i, h_i, w_i)
    return [unfold_frames(residual, batch) for residual in down], unfold_frames(mid, batch)


@dataclass
class FrameControl:
    """A call's ControlNets with their control frames ``(B, 3, K, H, W)`` in [0, 1] (one tensor each) at the
    output positions ``frame_indices`` (``K``), each net's ``conditioning_scale`` and the fraction of the steps,
    ``guidance_start`` to ``guidance_end``, during which it acts."""

    controlnets: list[ControlNetModel]
    frames: list[torch.Tensor]
    frame_indices: list[int]
    conditioning_scale: list[float]
    guidance_start: list[float]
    guidance_end: list[float]

    def __post_init__(self):
        for start, end in zip(self.guidance_start, self.guidance_end, strict=True):
            check_number("control_guidance_start", start, minimum=0.0, maximum=1.0)
            check_number("control_guidance_end", end, minimum=0.0, maximum=1.0)
            if start >= end:
                raise ValueError(
                    f"`control_guidance_start` ({start}) must be below `control_guidance_end` ({end})."
                )
        for scale in self.conditioning_scale:
            check_number("controlnet_conditioning_scale", scale)

    def at(self, positions) -> "FrameControl | None":
        """The control of the frames a denoising run makes, ``positions`` (output positions, in the run's
        order), indexed as the run's frames; ``None`` when none of them is controlled."""
        positions = list(positions)
        inside = [
            (k, positions.index(index)) for k, index in enumerate(self.frame_indices) if index in positions
        ]
        if not inside:
            return None
        given_at = [k for k, _ in inside]
        return replace(
            self,
            frames=[frames[:, :, given_at] for frames in self.frames],
            frame_indices=[p for _, p in inside],
        )

    def residuals(
        self, sample: torch.Tensor, timestep, embeds: torch.Tensor, frames: slice, step: int, steps: int
    ) -> dict:
        """The UNet's residual arguments for the window ``frames`` of the video at ``step`` of ``steps``:
        ``sample`` ``(B', C, W, h, w)`` as the UNet takes it (``B'`` a multiple of the control's batch: the
        guidance batch), ``embeds`` ``(B', L, D)``. Empty when no net acts on a frame of the window now."""
        inside = [
            (k, index - frames.start)
            for k, index in enumerate(self.frame_indices)
            if frames.start <= index < frames.stop
        ]
        acting = [
            n
            for n in range(len(self.controlnets))
            if step / steps >= self.guidance_start[n] and (step + 1) / steps <= self.guidance_end[n]
        ]
        if not inside or not acting:
            return {}
        given_at, window_at = [k for k, _ in inside], [position for _, position in inside]
        batch, window = sample.shape[0], sample.shape[2]
        controlled = sample[:, :, window_at]  # (B', C, K', h, w)
        down_total, mid_total = None, None
        for n in acting:
            images = self.frames[n][:, :, given_at].to(sample.dtype)  # (B, 3, K', H, W)
            images = images.repeat(batch // images.shape[0], 1, 1, 1, 1)  # (B', 3, K', H, W)
            down, mid = video_residuals(
                self.controlnets[n], controlled, timestep, embeds, images, self.conditioning_scale[n]
            )  # each (B', C_i, K', h_i, w_i)
            down_total = (
                down if down_total is None else [a + b for a, b in zip(down_total, down, strict=True)]
            )
            mid_total = mid if mid_total is None else mid_total + mid

        def in_window(residual: torch.Tensor) -> torch.Tensor:
            # (B', C_i, K', h_i, w_i) at the controlled frames -> (B', C_i, W, h_i, w_i), zero elsewhere
            video = residual.new_zeros(*residual.shape[:2], window, *residual.shape[3:])
            video[:, :, window_at] = residual
            return video

        return {
            "down_block_additional_residuals": tuple(in_window(residual) for residual in down_total),
            "mid_block_additional_residual": in_window(mid_total),
        }
