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
from diffusers.video_processor import VideoProcessor
from transformers import CLIPTextModel, CLIPTokenizer

from cascade.conditioning import noise_augment, resize_frames
from cascade.models import VideoUNet

from .stage_base import VideoStagePipeline
from .stage_utils import (
    check_positive_int,
    check_prompts,
)

PIXEL_UPSCALE_FACTOR = 4  # the default in pixel space, as Make-A-Video's SR_l and the x4 upscaler


def _check_int_range(name: str, value, low: int, high: int, meaning: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"`{name}` must be an int in [{low}, {high}]{meaning}, got {value!r}.")


class SuperResolutionStagePipeline(VideoStagePipeline):
    """Base of :class:`SpatioTemporalSRPipeline` and :class:`SpatialSRPipeline`; not used directly.

    Components: ``unet`` (reads the noisy sample then 3 low-resolution RGB channels, and the noise level
    as a class label), ``scheduler`` (any diffusers scheduler), ``low_res_scheduler`` (the DDPM schedule
    that noises the low-resolution video), ``text_encoder`` and ``tokenizer`` (CLIP), optional ``vae``.

    Args:
        upscale_factor: output frame size over input frame size; default: the VAE's scale factor with a
            VAE (the x4 upscaler's layout), 4 without.
        max_noise_level: the highest ``noise_level`` allowed (the x4 upscaler's 350).
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["vae"]

    def __init__(
        self,
        unet: VideoUNet | UNet2DConditionModel,
        scheduler: SchedulerMixin,
        low_res_scheduler: DDPMScheduler,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        vae: AutoencoderKL | None = None,
        upscale_factor: int | None = None,
        max_noise_level: int = 350,
    ):
        super().__init__()
        self.register_modules(
            unet=unet,
            scheduler=scheduler,
            low_res_scheduler=low_res_scheduler,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            vae=vae,
        )
        if upscale_factor is None:
            upscale_factor = self.vae_scale_factor if vae is not None else PIXEL_UPSCALE_FACTOR
        check_positive_int("upscale_factor", upscale_factor)
        levels = low_res_scheduler.config.num_train_timesteps
        _check_int_range(
            "max_noise_level", max_noise_level, 0, levels - 1, " (the low_res_scheduler's levels)"
        )
        self.register_to_config(upscale_factor=upscale_factor, max_noise_level=max_noise_level)
        self.video_processor = VideoProcessor(do_resize=False, vae_scale_factor=self.vae_scale_factor)

    def latents_shape(self, batch_size: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """Shape of the noisy sample for ``num_frames`` input frames of ``height`` x ``width``."""
        factor, vae_factor = self.config.upscale_factor, self.vae_scale_factor
        channels = self.spatial_unet.config.out_channels
        return (batch_size, channels, num_frames, height * factor // vae_factor, width * factor // vae_factor)

    def check_inputs(
        self,
        prompt,
        low_res,
        noise_level,
        negative_prompt,
        num_inference_steps,
        guidance_scale,
        num_videos_per_prompt,
        generator,
        latents,
        prompt_embeds,
        negative_prompt_embeds,
        output_type,
        callback_on_step_end_tensor_inputs,
        decode_chunk_size,
    ) -> None:
        """Raises ``ValueError`` naming the first bad argument, before any model runs. ``low_res`` is the
        video after :func:`video_to_tensor` (which has checked it), ``(B, 3, F, H, W)``."""
        config = self.spatial_unet.config
        if config.in_channels - config.out_channels != 3:
            raise ValueError(
                f"`unet` reads {config.in_channels} channels for {config.out_channels} noisy ones; a "
                "super-resolution UNet reads 3 more (the low-resolution RGB frames)."
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
        batch_size = check_prompts(
            prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, self.text_embedding_dim
        )
        if low_res.shape[0] != batch_size:
            raise ValueError(
                f"`video` has {low_res.shape[0]} videos but the prompts define a batch of {batch_size}."
            )
        height, width = low_res.shape[-2:]
        factor, multiple = self.config.upscale_factor, self.size_multiple
        if (height * factor) % multiple or (width * factor) % multiple:
            allowed = multiple // math.gcd(factor, multiple)
            raise ValueError(
                f"`video` frames must have a height and width that are multiples of {allowed} (upscaled x"
                f"{factor}, multiples of {multiple} for this model), got {height}x{width}."
            )
        _check_int_range(
            "noise_level", noise_level, 0, self.config.max_noise_level, " (the pipeline's max_noise_level)"
        )
        self.check_sampling_inputs(
            batch_size,
            num_inference_steps,
            guidance_scale,
            num_videos_per_prompt,
            generator,
            latents,
            lambda videos: self.latents_shape(videos, low_res.shape[2], height, width),
            output_type,
            callback_on_step_end_tensor_inputs,
            decode_chunk_size,
        )

    def prepare_conditioning(
        self,
        low_res: torch.Tensor,
        noise_level: int,
        num_videos_per_prompt: int,
        generator,
        device: torch.device,
        dtype: torch.dtype,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The UNet's conditioning channels and class labels for ``low_res`` ``(B, 3, F, H, W)`` in [-1, 1].

        Each video is repeated ``num_videos_per_prompt`` times, resized bilinearly to the noisy sample's grid
        (bilinear keeps the values in [-1, 1], unlike bicubic; no resize when the grid matches), then noised
        to ``noise_level`` with ``low_res_scheduler``. Returns ``(conditioning, noise_levels)``:
        ``(B * n, 3, F, h, w)`` and ``(B * n,)`` integers.
        """
        low_res = low_res.to(device=device, dtype=dtype).repeat_interleave(num_videos_per_prompt, dim=0)
        batch, _, frames, height, width = low_res.shape
        grid = self.latents_shape(batch, frames, height, width)[-2:]
        if (height, width) != grid:
            low_res = resize_frames(low_res, grid, "bilinear")  # (B, 3, F, h, w)
        noise_levels = torch.full((batch,), noise_level, dtype=torch.long, device=device)
        return noise_augment(low_res, noise_levels, self.low_res_scheduler, generator), noise_levels
