"""Stage 1 of the cascade: text to a few small keyframes.

A text-conditioned video diffusion model (Ho et al. 2022, "Video Diffusion Models",
arXiv:2204.03458; the keyframe model D^t of Singer et al. 2022, "Make-A-Video", arXiv:2209.14792)
sampled with classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598). It works in a VAE's
latent space when the pipeline has a VAE (Blattmann et al. 2023, "Video LDM", arXiv:2304.08818) and
in pixel space when it has none. Stable Diffusion 1.5 LoRAs (Hu et al. 2021, "LoRA: Low-Rank Adaptation
of Large Language Models", arXiv:2106.09685) load into its spatial layers and text encoder.
"""

from collections.abc import Callable

import torch
from diffusers import AutoencoderKL, SchedulerMixin
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from diffusers.video_processor import VideoProcessor
from transformers import CLIPTextModel, CLIPTokenizer

from cascade.models import VideoUNet

from .stage_base import VideoStagePipeline
from .stage_utils import (
    VideoPipelineOutput,
    check_positive_int,
    check_prompts,
    check_size,
)


class KeyframesPipeline(VideoStagePipeline, StableDiffusionLoraLoaderMixin):
    """Generates keyframes from a prompt with an inflated :class:`cascade.VideoUNet`.

    Components: ``unet`` (a VideoUNet with no extra input channels), ``scheduler`` (any diffusers
    scheduler), ``text_encoder`` and ``tokenizer`` (CLIP), and an optional ``vae``.

    ``pipe.load_lora_weights(path_or_repo_or_state_dict)`` loads a Stable Diffusion 1.5 LoRA (diffusers or
    Kohya format, through diffusers' ``StableDiffusionLoraLoaderMixin`` and peft): its ``unet`` weights go
    into the VideoUNet's 2D UNet (``pipe.unet.unet``), its ``text_encoder`` weights into the text encoder;
    temporal layers are left alone.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["vae"]

    def __init__(
        self,
        unet: VideoUNet,
        scheduler: SchedulerMixin,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        vae: AutoencoderKL | None = None,
    ):
        super().__init__()
        self.register_modules(
            unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer, vae=vae
        )
        self.video_processor = VideoProcessor(do_resize=False, vae_scale_factor=self.vae_scale_factor)

    @classmethod
    def load_lora_into_unet(cls, state_dict, network_alphas, unet, **kwargs):
        """Loads the ``unet.``-prefixed LoRA weights of ``state_dict`` into ``unet``'s 2D UNet, whose module
        names they use; see diffusers' ``StableDiffusionLoraLoaderMixin.load_lora_into_unet``."""
        spatial_unet = unet.unet if isinstance(unet, VideoUNet) else unet
        super().load_lora_into_unet(state_dict, network_alphas, spatial_unet, **kwargs)

    def check_inputs(
        self,
        prompt,
        negative_prompt,
        num_frames,
        height,
        width,
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
        """Raises ``ValueError`` naming the first bad argument, before any model runs."""
        if self.unet.conditioning_channels:
            raise ValueError(
                f"`unet` reads {self.unet.conditioning_channels} conditioning channels; a keyframes UNet reads none "
                "(conditioning stages use their own pipelines)."
            )
        batch_size = check_prompts(
            prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, self.text_embedding_dim
        )
        check_positive_int("num_frames", num_frames)
        check_size("height", height, self.size_multiple)
        check_size("width", width, self.size_multiple)
        self.check_sampling_inputs(
            batch_size,
            num_inference_steps,
            guidance_scale,
            num_videos_per_prompt,
            generator,
            latents,
            lambda videos: self.latents_shape(videos, num_frames, height, width),
            output_type,
            callback_on_step_end_tensor_inputs,
            decode_chunk_size,
        )

    def latents_shape(self, batch_size: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        factor = self.vae_scale_factor
        return (batch_size, self.unet.in_channels, num_frames, height // factor, width // factor)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        num_frames: int = 8,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 7.5,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        decode_chunk_size: int | None = None,
    ) -> VideoPipelineOutput | tuple:
        """Generates ``num_frames`` keyframes for each prompt.

        Args:
            prompt: the text, or a list of texts (a batch). Give this or ``prompt_embeds``.
            negative_prompt: what guidance steers away from; the empty prompt when ``None``.
            num_frames: frames per video; any positive number.
            height, width: frame size in pixels, multiples of ``pipe.size_multiple``; default: the
                UNet's ``sample_size`` times the VAE factor.
            num_inference_steps: denoising steps.
            guidance_scale: classifier-free guidance weight; guidance is off at 1 or less.
            num_videos_per_prompt: videos generated for each prompt.
            generator: a generator, or one per video, for reproducible noise.
            latents: starting noise ``(B * num_videos_per_prompt, C, F, h, w)``.
            prompt_embeds, negative_prompt_embeds: precomputed text embeddings ``(B, L, D)``.
            output_type: ``"np"`` ``(B, F, H, W, 3)`` in [0, 1], ``"pt"`` ``(B, F, 3, H, W)``, ``"pil"`` lists,
                or ``"latent"`` ``(B, C, F, h, w)``.
            return_dict: return a :class:`VideoPipelineOutput` rather than a tuple.
            callback_on_step_end: called as ``fn(pipe, step, timestep, kwargs)`` after each step; may return
                a dict of replaced tensors.
            callback_on_step_end_tensor_inputs: the tensors the callback receives (default ``["latents"]``).
            decode_chunk_size: frames decoded by the VAE at a time (all at once when ``None``).
        """
        callback_on_step_end_tensor_inputs = self.callback_tensor_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        default_size = self.unet.sample_size * self.vae_scale_factor if self.unet.sample_size else None
        height = default_size if height is None else height
        width = default_size if width is None else width
        self.check_inputs(
            prompt,
            negative_prompt,
            num_frames,
            height,
            width,
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
        )
        self._guidance_scale = guidance_scale
        device = self._execution_device

        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt,
            device,
            num_videos_per_prompt,
            self.do_classifier_free_guidance,
            negative_prompt,
            prompt_embeds,
            negative_prompt_embeds,
        )
        latents = self.prepare_latents(
            self.latents_shape(prompt_embeds.shape[0], num_frames, height, width),
            prompt_embeds.dtype,
            device,
            generator,
            latents,
        )  # (B, C, F, h, w)
        latents = self.denoise(
            latents,
            prompt_embeds,
            negative_prompt_embeds,
            num_inference_steps,
            generator,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )

        return self.finish(latents, output_type, return_dict, decode_chunk_size)
