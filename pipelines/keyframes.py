"""Stage 1 of the cascade: text to a few small keyframes.

A text-conditioned video diffusion model (Ho et al. 2022, "Video Diffusion Models",
arXiv:2204.03458; the keyframe model D^t of Singer et al. 2022, "Make-A-Video", arXiv:2209.14792)
sampled with classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598). It works in a VAE's
latent space when the pipeline has a VAE (Blattmann et al. 2023, "Video LDM", arXiv:2304.08818) and
in pixel space when it has none.
"""

import inspect
from collections.abc import Callable

import torch
from diffusers import AutoencoderKL, DiffusionPipeline, SchedulerMixin
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor
from transformers import CLIPTextModel, CLIPTokenizer

from cascade.models import VideoUNet

from .stage_utils import (
    VideoPipelineOutput,
    check_callback_inputs,
    check_generator,
    check_number,
    check_output_type,
    check_positive_int,
    check_prompts,
    check_size,
    check_tensor_shape,
    decode_latents,
    encode_text,
)


class KeyframesPipeline(DiffusionPipeline):
    """Generates keyframes from a prompt with an inflated :class:`cascade.VideoUNet`.

    Components: ``unet`` (a VideoUNet with no extra input channels), ``scheduler`` (any diffusers
    scheduler), ``text_encoder`` and ``tokenizer`` (CLIP), and an optional ``vae``.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["vae"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

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

    @property
    def vae_scale_factor(self) -> int:
        """How much smaller the latents are than the frames (1 in pixel space)."""
        vae = getattr(self, "vae", None)
        return 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1

    @property
    def size_multiple(self) -> int:
        """Frame height and width must be multiples of this."""
        return self.vae_scale_factor * self.unet.downsampling_factor

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        device: torch.device,
        num_videos_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns ``(prompt_embeds, negative_prompt_embeds)``, each ``(B * num_videos_per_prompt, L, D)``;
        the negative ones are ``None`` without guidance. A missing negative prompt is the empty one."""
        batch_size = check_prompts(
            prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, self.unet.cross_attention_dim
        )
        if prompt_embeds is None:
            prompts = [prompt] if isinstance(prompt, str) else prompt
            prompt_embeds = encode_text(self.tokenizer, self.text_encoder, prompts, device)
        prompt_embeds = prompt_embeds.to(device=device, dtype=self.text_encoder.dtype)
        if do_classifier_free_guidance and negative_prompt_embeds is None:
            negatives = negative_prompt or ""
            negatives = [negatives] * batch_size if isinstance(negatives, str) else negatives
            negative_prompt_embeds = encode_text(self.tokenizer, self.text_encoder, negatives, device)
        if not do_classifier_free_guidance:
            negative_prompt_embeds = None
        else:
            negative_prompt_embeds = negative_prompt_embeds.to(device=device, dtype=prompt_embeds.dtype)
            negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
        return prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0), negative_prompt_embeds

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
        if self.unet.config.extra_in_channels:
            raise ValueError(
                f"`unet` has extra_in_channels={self.unet.config.extra_in_channels}; a keyframes UNet takes none "
                "(conditioning stages use their own pipelines)."
            )
        batch_size = check_prompts(
            prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, self.unet.cross_attention_dim
        )
        check_positive_int("num_frames", num_frames)
        check_size("height", height, self.size_multiple)
        check_size("width", width, self.size_multiple)
        check_positive_int("num_inference_steps", num_inference_steps)
        check_number("guidance_scale", guidance_scale, 0.0)
        check_positive_int("num_videos_per_prompt", num_videos_per_prompt)
        check_generator(generator, batch_size * num_videos_per_prompt)
        if latents is not None:
            shape = self.latents_shape(batch_size * num_videos_per_prompt, num_frames, height, width)
            check_tensor_shape("latents", latents, shape)
        check_output_type(output_type)
        check_callback_inputs(callback_on_step_end_tensor_inputs, self._callback_tensor_inputs)
        if decode_chunk_size is not None:
            check_positive_int("decode_chunk_size", decode_chunk_size)

    def latents_shape(self, batch_size: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        factor = self.vae_scale_factor
        return (batch_size, self.unet.in_channels, num_frames, height // factor, width // factor)

    def prepare_latents(self, shape, dtype, device, generator, latents=None) -> torch.Tensor:
        """Starting noise ``(B, C, F, h, w)``, scaled by the scheduler's initial sigma."""
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            latents = latents.to(device=device, dtype=dtype)
        return latents * self.scheduler.init_noise_sigma

    def decode(self, latents: torch.Tensor, decode_chunk_size: int | None) -> torch.Tensor:
        """Pixels ``(B, 3, F, H, W)`` in [-1, 1] from the denoised sample."""
        if self.vae is None:
            return latents
        return decode_latents(self.vae, latents.to(self.vae.dtype), decode_chunk_size)

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
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        callback_on_step_end_tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
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
        batch_size = prompt_embeds.shape[0]

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        latents = self.prepare_latents(
            self.latents_shape(batch_size, num_frames, height, width),
            prompt_embeds.dtype,
            device,
            generator,
            latents,
        )  # (B, C, F, h, w)
        step_parameters = inspect.signature(self.scheduler.step).parameters
        step_kwargs = {"generator": generator} if "generator" in step_parameters else {}

        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.do_classifier_free_guidance:
                    model_input = torch.cat([latents, latents])  # (2B, C, F, h, w)
                    embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
                else:
                    model_input, embeds = latents, prompt_embeds
                model_input = self.scheduler.scale_model_input(model_input, t)
                prediction = self.unet(model_input, t, encoder_hidden_states=embeds).sample
                if self.do_classifier_free_guidance:
                    unconditional, conditional = prediction.chunk(2)
                    prediction = unconditional + guidance_scale * (conditional - unconditional)
                latents = self.scheduler.step(prediction, t, latents, **step_kwargs).prev_sample

                if callback_on_step_end is not None:
                    available = {
                        "latents": latents,
                        "prompt_embeds": prompt_embeds,
                        "negative_prompt_embeds": negative_prompt_embeds,
                    }
                    tensors = {name: available[name] for name in callback_on_step_end_tensor_inputs}
                    replaced = callback_on_step_end(self, i, t, tensors) or {}
                    latents = replaced.get("latents", latents)
                    prompt_embeds = replaced.get("prompt_embeds", prompt_embeds)
                    negative_prompt_embeds = replaced.get("negative_prompt_embeds", negative_prompt_embeds)
                progress_bar.update()

        if output_type == "latent":
            frames = latents
        else:
            frames = self.video_processor.postprocess_video(
                self.decode(latents, decode_chunk_size), output_type
            )
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return VideoPipelineOutput(frames=frames)
