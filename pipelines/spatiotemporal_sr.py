"""Stage 3 of the cascade: spatiotemporal super-resolution, a video upsampled in space by a video UNet.

The UNet's temporal layers see the frames together, so the upsampled frames agree with each other
(Singer et al. 2022, "Make-A-Video", arXiv:2209.14792, sec. 3.4, SR_l; the spatial super-resolution
stages of Ho et al. 2022, "Imagen Video", arXiv:2210.02303, which have temporal convolutions). The
low-resolution video conditions it through noise conditioning augmentation (Ho et al. 2022, "Cascaded
Diffusion Models", arXiv:2106.15282): see :mod:`cascade.pipelines.super_resolution`. A long video is
denoised in overlapping frame windows whose predictions are blended at every step (:mod:`cascade.windows`),
so the UNet's memory is that of one window whatever the video's length.
"""

from collections.abc import Callable

import numpy as np
import PIL.Image
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from cascade.models import VideoUNet

from .stage_utils import VideoPipelineOutput, check_positive_int, video_to_tensor
from .super_resolution import SuperResolutionStagePipeline


class SpatioTemporalSRPipeline(SuperResolutionStagePipeline):
    """Upsamples a video's frames by ``upscale_factor`` with an inflated :class:`cascade.VideoUNet`.

    Components and options: see :class:`~cascade.pipelines.super_resolution.SuperResolutionStagePipeline`;
    ``unet`` must be a VideoUNet (for a 2D UNet, use :class:`SpatialSRPipeline`).
    """

    def check_window(self, window, window_overlap) -> None:
        if not isinstance(self.unet, VideoUNet):
            raise ValueError(
                f"`unet` must be a cascade VideoUNet for spatiotemporal super-resolution, got "
                f"{type(self.unet).__name__} (use SpatialSRPipeline for a 2D UNet)."
            )
        if window is not None:
            check_positive_int("window", window)
        if isinstance(window_overlap, bool) or not isinstance(window_overlap, int) or window_overlap < 0:
            raise ValueError(f"`window_overlap` must be an int >= 0, got {window_overlap!r}.")
        if window is not None and window_overlap >= window:
            raise ValueError(
                f"`window_overlap` must be an int in [0, window={window}), got {window_overlap}."
            )

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        video: np.ndarray | torch.Tensor | list[PIL.Image.Image] | list[list[PIL.Image.Image]] | None = None,
        noise_level: int = 20,
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 7.5,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        window: int | None = 16,
        window_overlap: int = 4,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        decode_chunk_size: int | None = None,
    ) -> VideoPipelineOutput | tuple:
        """Upsamples each video of ``video`` by ``upscale_factor`` in height and width, keeping its frames.

        Args:
            prompt: the text, or a list of texts (one per video). Give this or ``prompt_embeds``.
            video: the low-resolution videos as the previous stage returns them: ``np`` ``(B, F, H, W, 3)``
                or ``pt`` ``(B, F, 3, H, W)`` in [0, 1], a list of PIL frames or a list of such lists. ``H``
                and ``W`` times ``upscale_factor`` must be multiples of ``pipe.size_multiple``.
            noise_level: how much the low-resolution video is noised before conditioning, in
                ``[0, max_noise_level]``: higher levels let the stage repair more of the previous stage's
                artefacts and follow its input less.
            negative_prompt: what guidance steers away from; the empty prompt when ``None``.
            num_inference_steps: denoising steps.
            guidance_scale: classifier-free guidance weight; guidance is off at 1 or less.
            num_videos_per_prompt: upsampled videos for each input video.
            generator: a generator, or one per output video, for reproducible noise.
            latents: starting noise ``(B * num_videos_per_prompt, C, F, h, w)``, ``h = H * upscale_factor /
                vae factor``.
            prompt_embeds, negative_prompt_embeds: precomputed text embeddings ``(B, L, D)``.
            window: frames the UNet sees at a time (all frames at once when ``None``).
            window_overlap: frames shared by consecutive windows, whose predictions are blended.
            output_type: ``"np"`` ``(B, F, H', W', 3)`` in [0, 1], ``"pt"`` ``(B, F, 3, H', W')``, ``"pil"``
                lists, or ``"latent"`` ``(B, C, F, h, w)``.
            return_dict: return a :class:`VideoPipelineOutput` rather than a tuple.
            callback_on_step_end: called as ``fn(pipe, step, timestep, kwargs)`` after each step; may return
                a dict of replaced tensors.
            callback_on_step_end_tensor_inputs: the tensors the callback receives (default ``["latents"]``).
            decode_chunk_size: frames decoded by the VAE at a time; default ``window`` (all frames when
                both are ``None``), so decoding memory is bounded like denoising memory.
        """
        callback_on_step_end_tensor_inputs = self.callback_tensor_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        self.check_window(window, window_overlap)
        low_res = video_to_tensor(video, self.video_processor)  # (B, 3, F, H, W) in [-1, 1]
        self.check_inputs(
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
        conditioning, noise_levels = self.prepare_conditioning(
            low_res, noise_level, num_videos_per_prompt, generator, device, prompt_embeds.dtype
        )  # (B, 3, F, h, w), (B,)
        latents = self.prepare_latents(
            self.latents_shape(prompt_embeds.shape[0], *low_res.shape[2:]),
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
            conditioning=conditioning,
            class_labels=noise_levels,
            window=window,
            window_overlap=window_overlap,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )
        return self.finish(latents, output_type, return_dict, decode_chunk_size or window)
