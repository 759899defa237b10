"""Stage 2 of the cascade: frame interpolation, ``F`` frames to ``(F - 1) * factor + 1``.

Masked frame interpolation (Singer et al. 2022, "Make-A-Video", arXiv:2209.14792, sec. 3.3, the
network ↑F): the given frames sit at every ``factor``-th position of the output; they and a binary
mask of those positions are concatenated to the noisy input as extra channels
(:func:`cascade.conditioning.masked_frame_conditioning`), and the UNet denoises every frame. On top
of that conditioning, the positions of the given frames are *replaced* after every step with the
given frames noised to the next step's level, and with the clean given frames after the last step
(the replacement method, the baseline of Ho et al. 2022, "Video Diffusion Models", arXiv:2204.03458,
sec. 3.1). This keeps the noisy input at those positions what a model trained on noised videos
expects, and makes the given frames come out as given: bit for bit in pixel space, within the VAE's
round-trip error in latent space (the given frames' latents are pasted, then decoded).

With ``strength < 1`` sampling starts from the linear blend of the given frames noised to an
intermediate level instead of from pure noise (SDEdit: Meng et al. 2021, "SDEdit: Guided Image
Synthesis and Editing with Stochastic Differential Equations", arXiv:2108.01073): the model then
corrects the blend rather than drawing the in-between frames from nothing.

Long videos run in overlapping windows of output frames (co-denoising, :mod:`cascade.windows`). A
window is ``m * factor + 1`` frames and an overlap ``j * factor + 1`` frames, so every window and
every overlap starts and ends on a given frame: the model never extrapolates past the edge of a
window, and two neighbouring windows see the same given frames (identical conditioning, and the same
replaced values in the noisy input) at both ends of the frames they share. Their predictions are
blended only between those shared anchors, which is why the windows agree at the seams. The default
overlap is one whole interval between two given frames (``factor + 1`` frames), so each window also
sees the motion on the far side of a seam.
"""

from collections.abc import Callable

import torch
from diffusers import AutoencoderKL, SchedulerMixin
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.video_processor import VideoProcessor
from transformers import CLIPTextModel, CLIPTokenizer

from cascade.conditioning import CONDITIONING_FILLS, interpolated_length, masked_frame_conditioning
from cascade.models import VideoUNet

from .stage_base import VideoStagePipeline
from .stage_utils import (
    VideoPipelineOutput,
    check_positive_int,
    check_prompts,
    encode_video,
    video_to_tensor,
)


def check_window(window, window_overlap, factor: int) -> None:
    """Checks that windows of ``window`` output frames, overlapping by ``window_overlap``, start and end on
    given frames (every ``factor``-th output frame)."""
    if window is None:
        if window_overlap is not None:
            raise ValueError(f"`window_overlap` needs a `window`, got window_overlap={window_overlap!r}.")
        return
    if (
        isinstance(window, bool)
        or not isinstance(window, int)
        or window < factor + 1
        or (window - 1) % factor
    ):
        examples = ", ".join(str(m * factor + 1) for m in (1, 2, 3))
        raise ValueError(
            f"`window` must be None or m * interpolation_factor + 1 output frames for an int m >= 1 "
            f"(here {examples}, ...), so that each window starts and ends on a given frame; got {window!r}."
        )
    if window_overlap is None:
        return
    if (
        isinstance(window_overlap, bool)
        or not isinstance(window_overlap, int)
        or not 1 <= window_overlap < window
        or (window_overlap - 1) % factor
    ):
        raise ValueError(
            f"`window_overlap` must be j * interpolation_factor + 1 frames for an int j >= 0, less than "
            f"window={window} (here 1, {factor + 1}, ...), so that overlaps start and end on given frames; "
            f"got {window_overlap!r}."
        )


class InterpolationPipeline(VideoStagePipeline):
    """Inserts ``interpolation_factor - 1`` frames between each pair of frames of a video, guided by a prompt.

    Components: ``unet`` (a :class:`cascade.VideoUNet` whose input is the noisy sample, the given frames and
    their mask: ``conditioning_channels == in_channels + 1``), ``scheduler`` (any diffusers scheduler),
    ``text_encoder`` and ``tokenizer`` (CLIP), and an optional ``vae`` (latent space with it, pixels without).
    ``conditioning_fill`` (saved in the pipeline's config) is what the UNet was trained to see between the
    given frames: ``"zeros"`` (Make-A-Video) or ``"blend"`` (their linear blend; see
    :func:`cascade.conditioning.masked_frame_conditioning`).
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
        conditioning_fill: str = "zeros",
    ):
        super().__init__()
        if conditioning_fill not in CONDITIONING_FILLS:
            raise ValueError(
                f"`conditioning_fill` must be one of {list(CONDITIONING_FILLS)}, got {conditioning_fill!r}."
            )
        self.register_modules(
            unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer, vae=vae
        )
        self.register_to_config(conditioning_fill=conditioning_fill)
        self.video_processor = VideoProcessor(do_resize=False, vae_scale_factor=self.vae_scale_factor)
        # Converts frames without mapping them to [-1, 1], so the given frames reach the output bit for bit.
        self.frame_processor = VideoProcessor(do_resize=False, do_normalize=False)

    def check_inputs(
        self,
        prompt,
        negative_prompt,
        video,
        interpolation_factor,
        num_inference_steps,
        guidance_scale,
        num_videos_per_prompt,
        generator,
        latents,
        prompt_embeds,
        negative_prompt_embeds,
        window,
        window_overlap,
        output_type,
        callback_on_step_end_tensor_inputs,
        decode_chunk_size,
        strength=1.0,
    ) -> None:
        """Raises ``ValueError`` naming the first bad argument, before any model runs. ``video`` is the input
        already converted by :func:`video_to_tensor`, ``(B, 3, F, H, W)``."""
        channels = self.vae.config.latent_channels if self.vae is not None else 3
        if self.unet.in_channels != channels or self.unet.conditioning_channels != channels + 1:
            raise ValueError(
                f"`unet` must denoise {channels} channels and read {channels + 1} conditioning channels (the "
                f"given frames and their mask), got in_channels={self.unet.in_channels} and "
                f"conditioning_channels={self.unet.conditioning_channels}."
            )
        batch_size = check_prompts(
            prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, self.text_embedding_dim
        )
        num_videos, _, num_frames, height, width = video.shape
        if num_videos != batch_size:
            raise ValueError(
                f"`video` has {num_videos} videos but the prompts define a batch of {batch_size}; give one "
                "prompt (or embedding) per video."
            )
        if num_frames < 2:
            raise ValueError(f"`video` must have at least 2 frames to interpolate between, got {num_frames}.")
        multiple = self.size_multiple
        if height % multiple or width % multiple:
            raise ValueError(
                f"`video` frames must have a height and width that are multiples of {multiple} for this model, "
                f"got {height}x{width}."
            )
        check_positive_int("interpolation_factor", interpolation_factor)
        check_window(window, window_overlap, interpolation_factor)
        factor = self.vae_scale_factor
        length = interpolated_length(num_frames, interpolation_factor)
        self.check_sampling_inputs(
            batch_size,
            num_inference_steps,
            guidance_scale,
            num_videos_per_prompt,
            generator,
            latents,
            lambda videos: (videos, self.unet.in_channels, length, height // factor, width // factor),
            output_type,
            callback_on_step_end_tensor_inputs,
            decode_chunk_size,
        )
        if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0 < strength <= 1:
            raise ValueError(f"`strength` must be a number in (0, 1], got {strength!r}.")

    def encode_frames(self, pixels: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
        """The given frames ``(B, 3, F, H, W)`` in [-1, 1] as the sample holds them: VAE latents
        ``(B, C, F, h, w)`` in latent space, the pixels themselves in pixel space."""
        if self.vae is None:
            return pixels
        return encode_video(self.vae, pixels.to(self.vae.dtype), chunk_size)

    def noised_blend(
        self, blend: torch.Tensor, noise: torch.Tensor, num_inference_steps: int, begin: int
    ) -> torch.Tensor:
        """The linear blend of the given frames ``(B, C, F', h, w)`` noised with ``noise`` to the level of step
        ``begin`` of ``num_inference_steps`` (SDEdit's starting point)."""
        start = self.timesteps_from(num_inference_steps, begin, blend.device)[:1].repeat(
            blend.shape[0]
        )  # (B,)
        return self.scheduler.add_noise(blend, noise, start)

    def known_frames_after_step(self, known: torch.Tensor, noise: torch.Tensor, step: int) -> torch.Tensor:
        """The given frames ``(B, C, F, h, w)`` at the noise level of the sample after denoising step ``step``:
        noised with ``noise`` to the next timestep, or clean after the last step."""
        timesteps = self.scheduler.timesteps
        if step + 1 == len(timesteps):
            return known
        return self.scheduler.add_noise(known, noise, timesteps[step + 1 : step + 2])

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        video=None,
        interpolation_factor: int = 4,
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 4.0,
        strength: float = 1.0,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        window: int | None = None,
        window_overlap: int | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        decode_chunk_size: int | None = None,
    ) -> VideoPipelineOutput | tuple:
        """Interpolates each video to ``F' = (F - 1) * interpolation_factor + 1`` frames, the given frame ``i``
        at output position ``i * interpolation_factor``.

        Args:
            prompt: the text, or a list of texts (one per video). Give this or ``prompt_embeds``.
            video: the frames to interpolate, as a stage returns them: ``np`` ``(B, F, H, W, 3)`` or ``pt``
                ``(B, F, 3, H, W)`` floats in [0, 1], a list of PIL frames (one video) or a list of such lists.
                ``B`` must equal the number of prompts, ``F >= 2``, and ``H``, ``W`` multiples of
                ``pipe.size_multiple``.
            interpolation_factor: output frames per input interval; ``factor - 1`` new frames go between
                each pair of given frames.
            negative_prompt: what guidance steers away from; the empty prompt when ``None``.
            num_inference_steps: denoising steps (of which ``int(num_inference_steps * strength)`` run, at
                least one).
            guidance_scale: classifier-free guidance weight; guidance is off at 1 or less. Lower than for
                keyframes by default, since the given frames already fix most of the content.
            strength: in (0, 1]; below 1, sampling starts from the linear blend of the given frames noised to
                the level ``strength`` of the way up the schedule (SDEdit) instead of from pure noise.
            num_videos_per_prompt: interpolations generated for each (prompt, video) pair.
            generator: a generator, or one per output video, for reproducible noise.
            latents: starting noise ``(B * num_videos_per_prompt, C, F', h, w)`` (with ``strength < 1``, the
                noise added to the blend).
            prompt_embeds, negative_prompt_embeds: precomputed text embeddings ``(B, L, D)``.
            window: output frames the UNet sees at once, ``m * interpolation_factor + 1`` (all when ``None``),
                so that memory is bounded for long videos; typically the length the model was trained on.
            window_overlap: output frames shared by consecutive windows, ``j * interpolation_factor + 1``;
                default one interval (``interpolation_factor + 1``), or 1 when a window is one interval.
            output_type: ``"np"`` ``(B, F', H, W, 3)`` in [0, 1], ``"pt"`` ``(B, F', 3, H, W)``,
                ``"pil"`` lists, or ``"latent"`` ``(B, C, F', h, w)``.
            return_dict: return a :class:`VideoPipelineOutput` rather than a tuple.
            callback_on_step_end: called as ``fn(pipe, step, timestep, kwargs)`` after each step, once the given
                frames are replaced; may return a dict of replaced tensors.
            callback_on_step_end_tensor_inputs: the tensors the callback receives (default ``["latents"]``).
            decode_chunk_size: frames encoded and decoded by the VAE at a time (all at once when ``None``).

        In pixel space the given frames come out exactly as given (as float32); in latent space they come out
        as a VAE encode-decode round trip of them.
        """
        callback_on_step_end_tensor_inputs = self.callback_tensor_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        given = video_to_tensor(video, self.frame_processor)  # (B, 3, F, H, W) in [0, 1]
        self.check_inputs(
            prompt,
            negative_prompt,
            given,
            interpolation_factor,
            num_inference_steps,
            guidance_scale,
            num_videos_per_prompt,
            generator,
            latents,
            prompt_embeds,
            negative_prompt_embeds,
            window,
            window_overlap,
            output_type,
            callback_on_step_end_tensor_inputs,
            decode_chunk_size,
            strength,
        )
        factor = interpolation_factor
        if window is not None and window_overlap is None:
            window_overlap = factor + 1 if window > factor + 1 else 1
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
        given = given.to(device).repeat_interleave(num_videos_per_prompt, dim=0)  # (B, 3, F, H, W)
        known = self.encode_frames(self.video_processor.normalize(given), decode_chunk_size)
        known = known.to(prompt_embeds.dtype)  # (B, C, F, h, w)
        frames, mask = masked_frame_conditioning(
            known, factor, self.config.conditioning_fill
        )  # (B, C, F', h, w), (B, 1, F', h, w)
        latents = self.prepare_latents(frames.shape, prompt_embeds.dtype, device, generator, latents)
        all_noise = latents / self.scheduler.init_noise_sigma  # (B, C, F', h, w)
        noise = all_noise[:, :, ::factor]  # (B, C, F, h, w): the given frames' noise
        begin = num_inference_steps - max(1, int(num_inference_steps * strength))  # at least one step runs
        if begin:
            blend = (  # (B, C, F', h, w): the conditioning already is the blend when the model was trained so
                frames
                if self.config.conditioning_fill == "blend"
                else masked_frame_conditioning(known, factor, "blend")[0]
            )
            latents = self.noised_blend(blend, all_noise, num_inference_steps, begin)

        def replace_known_frames(pipe, step, timestep, tensors):
            replaced = tensors["latents"].clone()  # (B, C, F', h, w)
            replaced[:, :, ::factor] = self.known_frames_after_step(known, noise, begin + step)
            if callback_on_step_end is None:
                return {"latents": replaced}
            visible = {**tensors, "latents": replaced}
            requested = {name: visible[name] for name in callback_on_step_end_tensor_inputs}
            return {"latents": replaced, **(callback_on_step_end(pipe, step, timestep, requested) or {})}

        latents = self.denoise(
            latents,
            prompt_embeds,
            negative_prompt_embeds,
            num_inference_steps,
            generator,
            conditioning=torch.cat([frames, mask], dim=1),  # (B, C + 1, F', h, w)
            window=window,
            window_overlap=window_overlap or 0,
            callback_on_step_end=replace_known_frames,
            callback_on_step_end_tensor_inputs=["latents", *callback_on_step_end_tensor_inputs],
            begin_step=begin,
        )  # (B, C, F', h, w)

        if output_type == "latent":
            output = latents
        else:
            pixels = self.decode(latents, decode_chunk_size)  # (B, 3, F', H, W) in [-1, 1]
            pixels = self.video_processor.denormalize(pixels)  # in [0, 1]
            if self.vae is None:
                pixels[:, :, ::factor] = given.to(pixels.dtype)  # as given, without a [-1, 1] round trip
            output = self.frame_processor.postprocess_video(pixels, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (output,)
        return VideoPipelineOutput(frames=output)
