"""What the two super-resolution stages of the cascade share: the low-resolution video as conditioning.

The low-resolution video is resized to the grid of the noisy sample, noised to a chosen level and
concatenated to the UNet's input, and the level is given to the UNet as a class label: noise
conditioning augmentation (Ho et al. 2022, "Cascaded Diffusion Models", arXiv:2106.15282, sec. 4.1),
used by every super-resolution stage of Imagen Video (Ho et al. 2022, arXiv:2210.02303) and, as
``class_labels=noise_level``, by the Stable Diffusion x4 upscaler, whose layout this follows: in latent
space the low-resolution RGB frames are concatenated at latent resolution, so the default upscale factor
there is the VAE's scale factor. The stages are Make-A-Video's SR_l and SR_h (Singer et al. 2022,
arXiv:2209.14792, sec. 3.4).
"""

import math

import torch
from diffusers import AutoencoderKL, DDPMScheduler, SchedulerMixin, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from cascade.models.video_unet import VideoUNet
from cascade.ops.conditioning import noise_augment
from cascade.ops.frames import resize_frames
from cascade.utils.checks import check_int

from .inputs import video_to_tensor
from .sample_space import check_sample_space
from .stage_base import VideoStagePipeline
from .stage_call import Argument, StageCall

PIXEL_UPSCALE_FACTOR = 4  # the default in pixel space, as Make-A-Video's SR_l and the x4 upscaler
# The arguments both super-resolution stages take (in ``call.inputs``), after ``prompt``.
LOW_RES_ARGUMENTS = (
    Argument(
        "video",
        None,
        object,
        "the low-resolution videos as the previous stage returns them: ``np`` ``(B, F, H, W, 3)`` or ``pt`` "
        "``(B, F, 3, H, W)`` in [0, 1], a list of PIL frames or a list of such lists; ``H`` and ``W`` times "
        "``upscale_factor`` must be multiples of ``pipe.size_multiple``.",
    ),
    Argument(
        "noise_level",
        20,
        int,
        "how much the low-resolution video is noised before conditioning, in ``[0, max_noise_level]``: "
        "higher levels let the stage repair more of the previous stage's artefacts and follow its input less.",
    ),
)


class SuperResolutionStagePipeline(VideoStagePipeline):
    """Base of :class:`SpatioTemporalSRPipeline` and :class:`SpatialSRPipeline`; not used directly.

    Components: ``unet`` (reads the noisy sample then 3 low-resolution RGB channels, and the noise level
    as a class label), ``scheduler`` (any diffusers scheduler), ``low_res_scheduler`` (the DDPM schedule
    that noises the low-resolution video), ``text_encoder`` and ``tokenizer`` (CLIP), optional ``vae``.

    ``low_res_scheduler=None`` builds, saves and loads, as diffusers' Stable Diffusion x4 upscaler allows, but
    a call then raises a ``ValueError`` naming it (the x4 upscaler fails with an ``AttributeError`` inside
    its call): noise conditioning augmentation needs the schedule, and there is no default for it.

    Args:
        upscale_factor: output frame size over input frame size; default: the VAE's scale factor with a
            VAE (the x4 upscaler's layout), 4 without.
        max_noise_level: the highest ``noise_level`` allowed (the x4 upscaler's 350); below the
            ``low_res_scheduler``'s number of levels.
    """

    _optional_components = ["vae", "low_res_scheduler"]

    def __init__(
        self,
        unet: VideoUNet | UNet2DConditionModel,
        scheduler: SchedulerMixin,
        low_res_scheduler: DDPMScheduler | None,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        vae: AutoencoderKL | None = None,
        upscale_factor: int | None = None,
        max_noise_level: int = 350,
    ):
        super().__init__(unet, scheduler, text_encoder, tokenizer, vae)
        self.register_modules(low_res_scheduler=low_res_scheduler)
        if upscale_factor is None:
            upscale_factor = self.vae_scale_factor if vae is not None else PIXEL_UPSCALE_FACTOR
        check_int("upscale_factor", upscale_factor, minimum=1)
        if low_res_scheduler is None:
            check_int("max_noise_level", max_noise_level, minimum=0)
        else:
            levels = low_res_scheduler.config.num_train_timesteps
            check_int(
                "max_noise_level", max_noise_level, 0, levels - 1, meaning=" (the low_res_scheduler's levels)"
            )
        self.register_to_config(upscale_factor=upscale_factor, max_noise_level=max_noise_level)

    def output_shape(self, num_frames, size, settings: dict) -> tuple:
        return num_frames, None if size is None else size * self.config.upscale_factor

    def input_size_problem(self, size: int) -> str | None:
        if (size * self.config.upscale_factor) % self.size_multiple:
            return (
                f"upsamples by {self.config.upscale_factor} and needs output sizes that are multiples of "
                f"{self.size_multiple}"
            )
        return None

    def latents_shape(self, batch_size: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """Shape of the noisy sample for ``num_frames`` input frames of ``height`` x ``width``."""
        factor, vae_factor = self.config.upscale_factor, self.vae_scale_factor
        channels = self.spatial_unet.config.out_channels
        return (batch_size, channels, num_frames, height * factor // vae_factor, width * factor // vae_factor)

    def check_low_res_inputs(self, video, noise_level, common: dict) -> None:
        """Checks the UNet, the low-resolution ``video``, ``noise_level`` and the ``common`` arguments."""
        config = self.spatial_unet.config
        if config.in_channels - config.out_channels != 3:
            raise ValueError(
                f"`unet` reads {config.in_channels} channels for {config.out_channels} noisy ones; a "
                "super-resolution UNet reads 3 more (the low-resolution RGB frames)."
            )
        check_sample_space(config.out_channels, self.vae, common["output_type"])
        if self.low_res_scheduler is None:
            raise ValueError(
                "`low_res_scheduler` is None; a super-resolution stage noises the low-resolution video with it "
                "(noise conditioning augmentation): set `pipe.low_res_scheduler`, e.g. to the DDPMScheduler the "
                "UNet was trained with."
            )
        levels = self.low_res_scheduler.config.num_train_timesteps
        if self.config.max_noise_level >= levels:
            raise ValueError(
                f"`low_res_scheduler` has {levels} noise levels, too few for max_noise_level="
                f"{self.config.max_noise_level}: it needs at least {self.config.max_noise_level + 1}."
            )
        if self.spatial_unet.class_embedding is None:
            raise ValueError(
                "`unet` has no class embedding; a super-resolution UNet takes the noise level as a class "
                "label (like the x4 upscaler's num_class_embeds=1000)."
            )
        labels = config.num_class_embeds
        if config.class_embed_type is None and labels is not None and labels <= self.config.max_noise_level:
            raise ValueError(
                f"`unet` has num_class_embeds={labels}, too few for max_noise_level="
                f"{self.config.max_noise_level}: it needs at least {self.config.max_noise_level + 1}."
            )
        low_res = video_to_tensor(video, self.video_processor)  # (B, 3, F, H, W)
        height, width = low_res.shape[-2:]
        factor, multiple = self.config.upscale_factor, self.size_multiple
        if (height * factor) % multiple or (width * factor) % multiple:
            allowed = multiple // math.gcd(factor, multiple)
            raise ValueError(
                f"`video` frames must have a height and width that are multiples of {allowed} (upscaled x"
                f"{factor}, multiples of {multiple} for this model), got {height}x{width}."
            )
        check_int(
            "noise_level",
            noise_level,
            0,
            self.config.max_noise_level,
            meaning=" (the pipeline's max_noise_level)",
        )
        batch_size = self.check_common_inputs(
            lambda videos: self.latents_shape(videos, low_res.shape[2], height, width), **common
        )
        if low_res.shape[0] != batch_size:
            raise ValueError(
                f"`video` has {low_res.shape[0]} videos but the prompts define a batch of {batch_size}."
            )

    def prepare_conditioning(self, call: StageCall) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """The UNet's conditioning for the call's low-resolution ``video`` at its ``noise_level``.

        Each video is repeated ``num_videos_per_prompt`` times, resized bilinearly to the noisy sample's grid
        (bilinear keeps the values in [-1, 1], unlike bicubic; no resize when the grid matches), then noised
        to ``noise_level`` with ``low_res_scheduler``. Returns ``(conditioning, noise_levels, shape)``:
        ``(B * n, 3, F, h, w)``, ``(B * n,)`` integers and the noisy sample's shape.
        """
        low_res = video_to_tensor(call.inputs["video"], self.video_processor)  # (B, 3, F, H, W) in [-1, 1]
        device, dtype = call.prompt_embeds.device, call.prompt_embeds.dtype
        low_res = low_res.to(device=device, dtype=dtype).repeat_interleave(call.num_videos_per_prompt, dim=0)
        batch, _, frames, height, width = low_res.shape
        shape = self.latents_shape(batch, frames, height, width)
        if (height, width) != shape[-2:]:
            low_res = resize_frames(low_res, shape[-2:], "bilinear")  # (B, 3, F, h, w)
        noise_levels = torch.full((batch,), call.inputs["noise_level"], dtype=torch.long, device=device)
        conditioning = noise_augment(low_res, noise_levels, self.low_res_scheduler, call.generator)
        return conditioning, noise_levels, shape
