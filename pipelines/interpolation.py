"""Stage 2 of the cascade: frame interpolation, ``F`` frames to ``(F - 1) * factor + 1``.

Masked frame interpolation (Singer et al. 2022, "Make-A-Video", arXiv:2209.14792, sec. 3.3, the
network ↑F): the given frames sit at every ``factor``-th position of the output; they and a binary
mask of those positions are concatenated to the noisy input as extra channels
(:func:`cascade.ops.conditioning.masked_frame_conditioning`), and the UNet denoises every frame. On top
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

Long videos run in overlapping windows of output frames (co-denoising, :mod:`cascade.ops.windows`). A
window is ``m * factor + 1`` frames and an overlap ``j * factor + 1`` frames, so every window and
every overlap starts and ends on a given frame: the model never extrapolates past the edge of a
window, and two neighbouring windows see the same given frames (identical conditioning, and the same
replaced values in the noisy input) at both ends of the frames they share. Their predictions are
blended only between those shared anchors, which is why the windows agree at the seams. The default
overlap is one whole interval between two given frames (``factor + 1`` frames), so each window also
sees the motion on the far side of a seam.
"""

import torch
from diffusers import AutoencoderKL, SchedulerMixin
from diffusers.video_processor import VideoProcessor
from transformers import CLIPTextModel, CLIPTokenizer

from cascade.models.video_unet import VideoUNet
from cascade.ops.conditioning import CONDITIONING_FILLS, interpolated_length, masked_frame_conditioning
from cascade.ops.windows import check_window
from cascade.utils.checks import check_choice, check_int, check_number

from .inputs import video_to_tensor
from .known_frames import KnownFrames
from .stage_base import VideoStagePipeline
from .stage_call import StageCall, stage_call


class InterpolationPipeline(VideoStagePipeline):
    """Inserts ``interpolation_factor - 1`` frames between each pair of frames of a video, guided by a prompt.

    Components: ``unet`` (a :class:`cascade.VideoUNet` whose input is the noisy sample, the given frames and
    their mask: ``conditioning_channels == in_channels + 1``), ``scheduler`` (any diffusers scheduler),
    ``text_encoder`` and ``tokenizer`` (CLIP), and an optional ``vae`` (latent space with it, pixels without).
    ``conditioning_fill`` (saved in the pipeline's config) is what the UNet was trained to see between the
    given frames: ``"zeros"`` (Make-A-Video) or ``"blend"`` (their linear blend; see
    :func:`cascade.ops.conditioning.masked_frame_conditioning`).
    """

    def __init__(
        self,
        unet: VideoUNet,
        scheduler: SchedulerMixin,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        vae: AutoencoderKL | None = None,
        conditioning_fill: str = "zeros",
    ):
        check_choice("conditioning_fill", conditioning_fill, CONDITIONING_FILLS)
        super().__init__(unet, scheduler, text_encoder, tokenizer, vae)
        self.register_to_config(conditioning_fill=conditioning_fill)
        # Converts frames without mapping them to [-1, 1], so the given frames reach the output bit for bit.
        self.frame_processor = VideoProcessor(do_resize=False, do_normalize=False)

    def output_shape(self, num_frames, size, settings: dict) -> tuple:
        factor = settings.get("interpolation_factor", self.call_default("interpolation_factor"))
        return (None if num_frames is None else interpolated_length(num_frames, factor)), size

    def input_size_problem(self, size: int) -> str | None:
        if size % self.size_multiple:
            return f"needs frame sizes that are multiples of {self.size_multiple}"
        return None

    def check_inputs(
        self, *, video, interpolation_factor, strength, window, window_overlap, **common
    ) -> None:
        """Raises ``ValueError`` naming the first bad argument, before any model runs."""
        channels = self.vae.config.latent_channels if self.vae is not None else 3
        if self.unet.in_channels != channels or self.unet.conditioning_channels != channels + 1:
            raise ValueError(
                f"`unet` must denoise {channels} channels and read {channels + 1} conditioning channels (the "
                f"given frames and their mask), got in_channels={self.unet.in_channels} and "
                f"conditioning_channels={self.unet.conditioning_channels}."
            )
        given = video_to_tensor(video, self.frame_processor)  # (B, 3, F, H, W)
        num_videos, _, num_frames, height, width = given.shape
        if num_frames < 2:
            raise ValueError(f"`video` must have at least 2 frames to interpolate between, got {num_frames}.")
        multiple = self.size_multiple
        if height % multiple or width % multiple:
            raise ValueError(
                f"`video` frames must have a height and width that are multiples of {multiple} for this model, "
                f"got {height}x{width}."
            )
        check_int("interpolation_factor", interpolation_factor, minimum=1)
        check_window(window, window_overlap, anchor_every=interpolation_factor)
        check_number("strength", strength, greater_than=0, maximum=1)
        length, factor = interpolated_length(num_frames, interpolation_factor), self.vae_scale_factor
        batch_size = self.check_common_inputs(
            lambda videos: (videos, self.unet.in_channels, length, height // factor, width // factor),
            **common,
        )
        if num_videos != batch_size:
            raise ValueError(
                f"`video` has {num_videos} videos but the prompts define a batch of {batch_size}; give one "
                "prompt (or embedding) per video."
            )

    def noised_blend(
        self, blend: torch.Tensor, noise: torch.Tensor, call: StageCall, begin: int
    ) -> torch.Tensor:
        """The linear blend of the given frames ``(B, C, F', h, w)`` noised with ``noise`` to the level of step
        ``begin`` of the call's schedule (SDEdit's starting point)."""
        start = self.timesteps_from(call, begin, blend.device)[:1].repeat(blend.shape[0])  # (B,)
        return self.scheduler.add_noise(blend, noise, start)

    @torch.no_grad()
    @stage_call(guidance_scale=4.0)
    def __call__(
        self,
        call: StageCall,
        video=None,
        interpolation_factor: int = 4,
        strength: float = 1.0,
        window: int | None = None,
        window_overlap: int | None = None,
    ):
        """Interpolates each video to ``F' = (F - 1) * interpolation_factor + 1`` frames, the given frame ``i``
        at output position ``i * interpolation_factor``. In pixel space the given frames come out exactly as
        given (as float32); in latent space as a VAE encode-decode round trip of them.

        Args:
            video: the frames to interpolate, as a stage returns them: ``np`` ``(B, F, H, W, 3)`` or ``pt``
                ``(B, F, 3, H, W)`` floats in [0, 1], a list of PIL frames (one video) or a list of such lists.
                ``B`` must equal the number of prompts, ``F >= 2``, and ``H``, ``W`` multiples of
                ``pipe.size_multiple``.
            interpolation_factor: output frames per input interval; ``factor - 1`` new frames go between
                each pair of given frames.
            strength: in (0, 1]; below 1, sampling starts from the linear blend of the given frames noised to
                the level ``strength`` of the way up the schedule (SDEdit) instead of from pure noise, and
                ``int(num_inference_steps * strength)`` steps run (at least one). ``latents`` is then the
                noise added to the blend.
            window: output frames the UNet sees at once, ``m * interpolation_factor + 1`` (all when ``None``),
                so that memory is bounded for long videos; typically the length the model was trained on.
            window_overlap: output frames shared by consecutive windows, ``j * interpolation_factor + 1``;
                default one interval (``interpolation_factor + 1``), or 1 when a window is one interval.

        Guidance is lower than for keyframes by default, since the given frames already fix most of the
        content. The step-end callback runs once the given frames are replaced.
        """
        factor = interpolation_factor
        if window is not None and window_overlap is None:
            window_overlap = factor + 1 if window > factor + 1 else 1
        given = video_to_tensor(video, self.frame_processor)  # (B, 3, F, H, W) in [0, 1]
        given = given.to(call.prompt_embeds.device).repeat_interleave(call.num_videos_per_prompt, dim=0)
        known = self.encode_frames(self.video_processor.normalize(given), call.decode_chunk_size)
        known = known.to(call.prompt_embeds.dtype)  # (B, C, F, h, w)
        frames, mask = masked_frame_conditioning(
            known, factor, self.config.conditioning_fill
        )  # (B, C, F', h, w), (B, 1, F', h, w)
        latents = self.prepare_latents(frames.shape, call)
        all_noise = latents / self.scheduler.init_noise_sigma  # (B, C, F', h, w)
        noise = all_noise[:, :, ::factor]  # (B, C, F, h, w): the given frames' noise
        steps = call.num_inference_steps
        begin = steps - max(1, int(steps * strength))  # at least one step runs
        if begin:
            blend = (  # (B, C, F', h, w): the conditioning already is the blend when the model was trained so
                frames
                if self.config.conditioning_fill == "blend"
                else masked_frame_conditioning(known, factor, "blend")[0]
            )
            latents = self.noised_blend(blend, all_noise, call, begin)
        latents = self.denoise(
            call,
            latents,
            conditioning=torch.cat([frames, mask], dim=1),  # (B, C + 1, F', h, w)
            window=window,
            window_overlap=window_overlap or 0,
            begin_step=begin,
            known=KnownFrames(known, list(range(0, frames.shape[2], factor)), noise, method="replacement"),
            free_init=True,  # when the whole schedule runs (strength 1): from pure noise
        )  # (B, C, F', h, w)

        if call.output_type == "latent":
            return self.output(call, latents)
        pixels = self.decode(latents, call.decode_chunk_size)  # (B, 3, F', H, W) in [-1, 1]
        pixels = self.video_processor.denormalize(pixels)  # in [0, 1]
        if self.vae is None:
            pixels[:, :, ::factor] = given.to(pixels.dtype)  # as given, without a [-1, 1] round trip
        return self.output(call, self.frame_processor.postprocess_video(pixels, call.output_type))
