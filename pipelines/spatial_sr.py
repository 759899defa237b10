"""Stage 4 of the cascade: spatial super-resolution, every frame upsampled on its own.

At the highest resolution the cascade upsamples frame by frame, with no temporal layers (Singer et al.
2022, "Make-A-Video", arXiv:2209.14792, sec. 3.4, SR_h; the last spatial super-resolution stage of Ho
et al. 2022, "Imagen Video", arXiv:2210.02303). Starting every frame of a video from the same initial
noise (Make-A-Video, sec. 3.4) reduces flicker between the independently upsampled frames. The
low-resolution video conditions it through noise conditioning augmentation (Ho et al. 2022, "Cascaded
Diffusion Models", arXiv:2106.15282): see :mod:`cascade.pipelines.super_resolution`. Frames of all videos
are folded into one batch and denoised ``frame_chunk_size`` at a time, so memory is bounded by the chunk.
"""

from collections.abc import Callable

import numpy as np
import PIL.Image
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from cascade.models import VideoUNet

from .stage_utils import VideoPipelineOutput, check_positive_int, video_to_tensor
from .super_resolution import SuperResolutionStagePipeline


class SpatialSRPipeline(SuperResolutionStagePipeline):
    """Upsamples each frame by ``upscale_factor`` with a plain ``diffusers.UNet2DConditionModel`` (frames as
    images) or a :class:`cascade.VideoUNet` (each frame run as a one-frame video).

    Components and options: see :class:`~cascade.pipelines.super_resolution.SuperResolutionStagePipeline`.
    """

    def as_unet_input(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``(N, C, h, w)`` as the UNet takes them: images for a 2D UNet, one-frame videos
        ``(N, C, 1, h, w)`` for a VideoUNet."""
        return frames.unsqueeze(2) if isinstance(self.unet, VideoUNet) else frames

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
        frame_chunk_size: int = 8,
        same_noise_for_all_frames: bool = True,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        decode_chunk_size: int | None = None,
    ) -> VideoPipelineOutput | tuple:
        """Upsamples every frame of ``video`` by ``upscale_factor`` in height and width.

        Args:
            prompt: the text, or a list of texts (one per video). Give this or ``prompt_embeds``.
            video: the low-resolution videos as the previous stage returns them: ``np`` ``(B, F, H, W, 3)``
                or ``pt`` ``(B, F, 3, H, W)`` in [0, 1], a list of PIL frames or a list of such lists. ``H``
                and ``W`` times ``upscale_factor`` must be multiples of ``pipe.size_multiple``.
            noise_level: how much the low-resolution video is noised before conditioning, in
                ``[0, max_noise_level]``.
            negative_prompt: what guidance steers away from; the empty prompt when ``None``.
            num_inference_steps: denoising steps.
            guidance_scale: classifier-free guidance weight; guidance is off at 1 or less.
            num_videos_per_prompt: upsampled videos for each input video.
            generator: a generator, or one per output video, for reproducible noise.
            latents: starting noise ``(B * num_videos_per_prompt, C, F, h, w)``, used as given.
            prompt_embeds, negative_prompt_embeds: precomputed text embeddings ``(B, L, D)``.
            frame_chunk_size: frames (of all videos together) denoised at a time. With a deterministic
                scheduler (DDIM) the result does not depend on it.
            same_noise_for_all_frames: start every frame of a video from the same noise.
            output_type: ``"np"`` ``(B, F, H', W', 3)`` in [0, 1], ``"pt"`` ``(B, F, 3, H', W')``, ``"pil"``
                lists, or ``"latent"`` ``(B, C, F, h, w)``.
            return_dict: return a :class:`VideoPipelineOutput` rather than a tuple.
            callback_on_step_end: called as ``fn(pipe, step, timestep, kwargs)`` after each step of each
                chunk, with the chunk's ``latents`` (its frames as the UNet takes them); may return a dict
                of replaced tensors.
            callback_on_step_end_tensor_inputs: the tensors the callback receives (default ``["latents"]``).
            decode_chunk_size: frames decoded by the VAE at a time; default ``frame_chunk_size``.
        """
        callback_on_step_end_tensor_inputs = self.callback_tensor_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs
        )
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
        check_positive_int("frame_chunk_size", frame_chunk_size)
        if not isinstance(same_noise_for_all_frames, bool):
            raise ValueError(
                f"`same_noise_for_all_frames` must be a bool, got {same_noise_for_all_frames!r}."
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
        batch, channels, num_frames, height, width = self.latents_shape(
            prompt_embeds.shape[0], *low_res.shape[2:]
        )
        if latents is None and same_noise_for_all_frames:
            latents = self.prepare_latents(
                (batch, channels, 1, height, width), prompt_embeds.dtype, device, generator
            ).expand(-1, -1, num_frames, -1, -1)  # (B, C, F, h, w), one noise per video
        else:
            latents = self.prepare_latents(
                (batch, channels, num_frames, height, width), prompt_embeds.dtype, device, generator, latents
            )  # (B, C, F, h, w)

        def fold(video: torch.Tensor) -> torch.Tensor:  # (B, C, F, h, w) -> (B*F, C, h, w)
            return video.permute(0, 2, 1, 3, 4).reshape(batch * num_frames, -1, height, width)

        latents, conditioning = fold(latents), fold(conditioning)
        video_of_frame = torch.arange(batch * num_frames, device=device) // num_frames  # (B*F,)
        denoised = []
        for start in range(0, batch * num_frames, frame_chunk_size):
            chunk = slice(start, start + frame_chunk_size)
            videos = video_of_frame[chunk]  # (N,)
            denoised.append(
                self.denoise(
                    self.as_unet_input(latents[chunk]),
                    prompt_embeds[videos],
                    None if negative_prompt_embeds is None else negative_prompt_embeds[videos],
                    num_inference_steps,
                    [generator[v] for v in videos.tolist()] if isinstance(generator, list) else generator,
                    conditioning=self.as_unet_input(conditioning[chunk]),
                    class_labels=noise_levels[videos],
                    callback_on_step_end=callback_on_step_end,
                    callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
                ).reshape(latents[chunk].shape)  # (N, C, h, w)
            )
        latents = (
            torch.cat(denoised).reshape(batch, num_frames, channels, height, width).permute(0, 2, 1, 3, 4)
        )
        return self.finish(latents, output_type, return_dict, decode_chunk_size or frame_chunk_size)
