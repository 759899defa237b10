"""Stage 1 of the cascade: text to a few small keyframes.

A text-conditioned video diffusion model (Ho et al. 2022, "Video Diffusion Models",
arXiv:2204.03458; the keyframe model D^t of Singer et al. 2022, "Make-A-Video", arXiv:2209.14792)
sampled with classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598). It works in a VAE's
latent space when the pipeline has a VAE (Blattmann et al. 2023, "Video LDM", arXiv:2304.08818) and
in pixel space when it has none. Stable Diffusion 1.5 LoRAs (Hu et al. 2021, "LoRA: Low-Rank Adaptation
of Large Language Models", arXiv:2106.09685) load into its spatial layers and text encoder.

Given frames (image-to-video, extension) and videos longer than the model's window are sampled by
reconstruction guidance or replacement (Ho et al. 2022, sec. 3.1; :mod:`.known_frames`): a long video is made
window after window, each window given the last frames of the one before, as VDM extends videos, or coarse to
fine (:mod:`.coarse_to_fine`).
"""

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    MultiControlNetModel,
    SchedulerMixin,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTokenizer

from cascade.models.inflation import inflate
from cascade.models.video_unet import VideoUNet
from cascade.ops.windows import check_window, window_starts
from cascade.utils.checks import check_choice, check_int, check_number

from .coarse_to_fine import blend_between, coarse_positions
from .control import FrameControl, check_controlnet, control_size, controlnet_list, per_net
from .editing import EditingMixin, steps_run
from .given_frames import are_frame_positions, given_frames
from .inputs import video_to_tensor
from .known_frames import CONDITIONING_METHODS, KnownFrames
from .sample_space import check_sample_space
from .stage_base import VideoStagePipeline
from .stage_call import StageCall, stage_call

# VDM's w_r; on the demo keyframes image-to-video read best at 20 of 1, 5, 20, 50, 150 (benchmarks/conditioning_quality.py)
RECONSTRUCTION_GUIDANCE_SCALE = 20.0
LONG_VIDEO_METHODS = ("extend", "coarse_to_fine")
# SDEdit strength of the coarse-to-fine fill; on the demo keyframes 0.3 kept every seam step within 2x the
# median step where 0.5 kept half (benchmarks/conditioning_quality.py)
FILL_STRENGTH = 0.3


class KeyframesPipeline(EditingMixin, VideoStagePipeline):
    """Generates keyframes from a prompt with an inflated :class:`cascade.VideoUNet`.

    Components (see :class:`~cascade.pipelines.stage_base.VideoStagePipeline`): ``unet`` (a VideoUNet with no
    extra input channels), ``scheduler`` (any diffusers scheduler), ``text_encoder`` and ``tokenizer`` (CLIP),
    and an optional ``vae``.

    ``pipe.load_lora_weights(path_or_repo_or_state_dict)`` loads a Stable Diffusion 1.5 LoRA, as every stage
    does (:mod:`cascade.pipelines.lora_loading`): its ``unet`` weights go into the VideoUNet's 2D UNet
    (``pipe.unet.unet``), its ``text_encoder`` weights into the text encoder; temporal layers are left alone.

    ``pipe.invert(video, prompt)`` (DDIM inversion) and ``pipe.edit(video, prompt, source_prompt)`` (editing by
    inversion and self-attention injection, or the baselines): :mod:`cascade.pipelines.editing`.
    """

    _optional_components = ["vae", "controlnet"]

    def __init__(
        self,
        unet: VideoUNet | UNet2DConditionModel,
        scheduler: SchedulerMixin,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        vae: AutoencoderKL | None = None,
        controlnet: ControlNetModel | MultiControlNetModel | None = None,
    ):
        """A 2D ``unet`` (a text-to-image model's) is inflated on construction (:func:`cascade.inflate`: identity
        temporal layers, so the pipeline starts as the image model run on each frame), as diffusers'
        ``AnimateDiffPipeline`` takes a 2D UNet: ``KeyframesPipeline.from_pipe(stable_diffusion_pipeline)``
        shares its text encoder, tokenizer, VAE and scheduler and inflates its UNet.

        ``controlnet`` (optional, :mod:`.control`): a ControlNet made from the 2D UNet, or several (a list, held
        as diffusers' ``MultiControlNetModel``), saved and loaded with the pipeline."""
        if isinstance(unet, UNet2DConditionModel):
            unet = inflate(unet)
        if isinstance(controlnet, list | tuple):
            controlnet = MultiControlNetModel(list(controlnet))
        for net in controlnet_list(controlnet):
            check_controlnet(net, unet)
        super().__init__(
            unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer, vae=vae
        )
        self.register_modules(controlnet=controlnet)

    @property
    def default_size(self) -> int | None:
        """Frame height and width when a call sets none: the UNet's ``sample_size`` times the VAE factor."""
        return self.unet.sample_size * self.vae_scale_factor if self.unet.sample_size else None

    def frame_size(self, height: int | None, width: int | None) -> tuple:
        """``(height, width)`` of a call, :attr:`default_size` where it sets none."""
        return tuple(self.default_size if value is None else value for value in (height, width))

    def output_shape(self, num_frames, size, settings: dict) -> tuple:
        frames = settings.get("num_frames", self.call_default("num_frames"))
        return frames, settings.get("height") or self.default_size

    def latents_shape(self, batch_size: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        factor = self.vae_scale_factor
        return (batch_size, self.unet.in_channels, num_frames, height // factor, width // factor)

    def given_frames(self, image, conditioning_frames, conditioning_frame_indices, num_frames, height, width):
        """The call's given frames ``(1 or B, 3, K, H, W)`` in [-1, 1] and their positions (:func:`given_frames`)."""
        return given_frames(
            image,
            conditioning_frames,
            conditioning_frame_indices,
            self.video_processor,
            num_frames,
            (height, width),
        )

    def check_inputs(
        self,
        *,
        num_frames,
        height,
        width,
        image,
        conditioning_frames,
        conditioning_frame_indices,
        conditioning_method,
        reconstruction_guidance_scale,
        window,
        window_overlap,
        long_video_method,
        fill_strength,
        control_video,
        controlnet_conditioning_scale,
        control_guidance_start,
        control_guidance_end,
        controlnet_frame_indices,
        **common,
    ) -> None:
        """Raises ``ValueError`` naming the first bad argument, before any model runs."""
        if self.unet.conditioning_channels:
            raise ValueError(
                f"`unet` reads {self.unet.conditioning_channels} conditioning channels; a keyframes UNet reads none "
                "(conditioning stages use their own pipelines)."
            )
        check_sample_space(self.unet.in_channels, self.vae, common["output_type"])
        check_int("num_frames", num_frames, minimum=1)
        height, width = self.frame_size(height, width)
        for name, value in (("height", height), ("width", width)):
            check_int(name, value, minimum=1)
            check_int(name, value, multiple_of=self.size_multiple, meaning=" for this model")
        check_choice("conditioning_method", conditioning_method, CONDITIONING_METHODS)
        check_number("reconstruction_guidance_scale", reconstruction_guidance_scale, minimum=0.0)
        check_window(window, window_overlap)
        check_choice("long_video_method", long_video_method, LONG_VIDEO_METHODS)
        check_number("fill_strength", fill_strength, greater_than=0.0, maximum=1.0)
        if (
            long_video_method == "coarse_to_fine"
            and window is not None
            and window < num_frames
            and window < 2
        ):
            raise ValueError(
                f"`window` must be at least 2 for long_video_method='coarse_to_fine' (the first and the last "
                f"frame are coarse frames), got {window}."
            )
        if window is not None and window < num_frames and window_overlap == 0:
            raise ValueError(
                "`window_overlap` must be at least 1 when the video is longer than a window: each window is "
                "given the frames it shares with the one before."
            )
        batch_size = self.check_common_inputs(
            lambda videos: self.latents_shape(videos, num_frames, height, width), **common
        )
        # checked here, before any model runs, and kept for the call's body (as diffusers keeps _guidance_scale)
        self._frame_control = control = self.frame_control(
            control_video,
            controlnet_conditioning_scale,
            control_guidance_start,
            control_guidance_end,
            controlnet_frame_indices,
            num_frames,
            height,
            width,
        )
        if control is not None and any(frames.shape[0] not in (1, batch_size) for frames in control.frames):
            raise ValueError(
                f"`control_video` holds {max(f.shape[0] for f in control.frames)} videos but the prompts define a "
                f"batch of {batch_size}; give one, or one per prompt."
            )
        given, _ = self.given_frames(
            image, conditioning_frames, conditioning_frame_indices, num_frames, height, width
        )
        if given is not None and given.shape[0] not in (1, batch_size):
            name = "image" if image is not None else "conditioning_frames"
            raise ValueError(
                f"`{name}` holds {given.shape[0]} videos but the prompts define a batch of {batch_size}; give one, "
                "or one per prompt."
            )

    def frame_control(
        self, control_video, scale, guidance_start, guidance_end, frame_indices, num_frames, height, width
    ) -> FrameControl | None:
        """The call's control (:class:`~.control.FrameControl`: frames ``(1 or B, 3, K, H, W)`` in [0, 1]) from
        ``control_video`` (one video, or a list with one per ControlNet); ``None`` without. ``ValueError``
        naming the argument for control without a ControlNet or the other way round, frames that are not the
        size the ControlNet reads, or positions that are not ``K`` distinct frames of the video."""
        nets = controlnet_list(self.controlnet)
        if control_video is None:
            if nets:
                raise ValueError("`control_video` is needed: this pipeline has a `controlnet`.")
            if frame_indices is not None:
                raise ValueError("`controlnet_frame_indices` needs `control_video`.")
            return None
        if not nets:
            raise ValueError(
                "`control_video` needs a ControlNet: build the pipeline with `controlnet=` (a ControlNetModel made "
                "from this stage's UNet, trained)."
            )
        several = len(nets) > 1 and isinstance(control_video, list | tuple)
        videos = list(control_video) if several else [control_video]
        if len(videos) != len(nets):
            raise ValueError(
                f"`control_video` must hold one video per ControlNet ({len(nets)}), got {len(videos)}."
            )
        frames = [(video_to_tensor(video, self.video_processor, "control_video") + 1) / 2 for video in videos]
        sample_size = tuple(size // self.vae_scale_factor for size in (height, width))
        for net, video in zip(nets, frames, strict=True):
            expected = control_size(net, sample_size)
            if tuple(video.shape[-2:]) != expected:
                raise ValueError(
                    f"`control_video` frames must be {expected[0]}x{expected[1]} (what the ControlNet reads for "
                    f"{height}x{width} frames), got {video.shape[-2]}x{video.shape[-1]}."
                )
        count = frames[0].shape[2]
        if frame_indices is None and count != num_frames:
            raise ValueError(
                f"`control_video` has {count} frames for a video of num_frames={num_frames}; give one control frame "
                "per frame, or `controlnet_frame_indices` to say which frames they control."
            )
        indices = list(range(count)) if frame_indices is None else frame_indices
        if any(video.shape[2] != count for video in frames) or not are_frame_positions(
            indices, count, num_frames
        ):
            raise ValueError(
                f"`controlnet_frame_indices` must be {count} distinct ints in [0, num_frames={num_frames}) (one per "
                f"control frame), got {frame_indices!r}."
            )
        return FrameControl(
            nets,
            frames,
            list(indices),
            per_net("controlnet_conditioning_scale", scale, len(nets)),
            per_net("control_guidance_start", guidance_start, len(nets)),
            per_net("control_guidance_end", guidance_end, len(nets)),
        )

    @torch.no_grad()
    @stage_call()
    def __call__(
        self,
        call: StageCall,
        num_frames: int = 8,
        height: int | None = None,
        width: int | None = None,
        image=None,
        conditioning_frames=None,
        conditioning_frame_indices: list[int] | None = None,
        conditioning_method: str = "reconstruction",
        reconstruction_guidance_scale: float = RECONSTRUCTION_GUIDANCE_SCALE,
        window: int | None = None,
        window_overlap: int | None = None,
        long_video_method: str = "extend",
        fill_strength: float = FILL_STRENGTH,
        control_video=None,
        controlnet_conditioning_scale: float | list[float] = 1.0,
        control_guidance_start: float | list[float] = 0.0,
        control_guidance_end: float | list[float] = 1.0,
        controlnet_frame_indices: list[int] | None = None,
    ):
        """Generates ``num_frames`` keyframes for each prompt.

        Args:
            num_frames: frames per video; any positive number.
            height, width: frame size in pixels, multiples of ``pipe.size_multiple``; default
                ``pipe.default_size``.
            image: the first frame (image-to-video), ``height`` x ``width``, in [0, 1]: a PIL image (RGB), a list
                of them (one per prompt), an np array ``(H, W, 3)`` / ``(B, H, W, 3)`` or a tensor ``(3, H, W)`` /
                ``(B, 3, H, W)``.
            conditioning_frames: given frames instead of ``image``: a video as a stage returns it (``np``
                ``(B, K, H, W, 3)``, ``pt`` ``(B, K, 3, H, W)`` or PIL frames), one for all prompts or one per
                prompt; they come out at ``conditioning_frame_indices`` (default ``0, ..., K - 1``: extending
                the video).
            conditioning_method: ``"reconstruction"`` (reconstruction guidance) or ``"replacement"`` (the
                baseline) for the given frames and the frames a window shares with the one before.
            reconstruction_guidance_scale: VDM's weight ``w_r`` of reconstruction guidance.
            window: frames the UNet denoises at once (all when ``None``); a longer video is made window after
                window, each given the last ``window_overlap`` frames of the one before (default half a window).
                Typically the number of frames the model was trained on.
            window_overlap: frames consecutive windows share, ``1 <= window_overlap < window``.
            long_video_method: how a video longer than ``window`` is made: ``"extend"`` (window after window,
                as above: VDM's autoregressive extension, the video a longer time) or ``"coarse_to_fine"``
                (:mod:`.coarse_to_fine`: ``window`` frames spread over the whole video, then the frames between
                them from their blend in overlapping windows: the motion of one window, in more frames). Given
                frames that fall on the coarse positions steer the coarse frames too.
            fill_strength: ``"coarse_to_fine"``: how far up the schedule, in (0, 1], the blend of the coarse
                frames is noised before the frames between are denoised (SDEdit's strength).
            control_video: with a ``controlnet`` (:mod:`.control`): the control frames in [0, 1] (a video as
                ``conditioning_frames`` takes one, at the size the ControlNet reads: ``height`` x ``width`` for a
                latent stage with a Stable Diffusion ControlNet), one video for all prompts or one per prompt; a
                list of such videos, one per ControlNet, for several.
            controlnet_conditioning_scale: each ControlNet's residuals are multiplied by it.
            control_guidance_start, control_guidance_end: the fraction of the steps during which each ControlNet
                acts.
            controlnet_frame_indices: the frames the control frames are for (default every frame, in order);
                the others get no control and follow through the temporal layers (SparseCtrl's setting).

        The given frames come out as given: bit for bit in pixel space, as their VAE round trip in latent space.
        """
        height, width = self.frame_size(height, width)
        shape = self.latents_shape(call.batch_size, num_frames, height, width)
        latents = self.prepare_latents(shape, call)  # (B, C, F, h, w)
        noise = latents / self.scheduler.init_noise_sigma  # (B, C, F, h, w)
        pixels, indices = self.given_frames(
            image, conditioning_frames, conditioning_frame_indices, num_frames, height, width
        )  # (1 or B', 3, K, H, W) in [-1, 1]
        given = {}  # output position -> its frames (B, C, h, w) as the sample holds them
        if pixels is not None:
            repeat = call.num_videos_per_prompt if pixels.shape[0] > 1 else call.batch_size
            pixels = pixels.to(latents.device).repeat_interleave(repeat, dim=0)
            encoded = self.encode_frames(pixels, call.decode_chunk_size).to(latents.dtype)  # (B, C, K, h, w)
            given = {index: encoded[:, :, k] for k, index in enumerate(indices)}
        window = num_frames if window is None else window
        window_overlap = window // 2 if window_overlap is None else window_overlap
        guidance = {"method": conditioning_method, "guidance_scale": reconstruction_guidance_scale}
        control = self._frame_control  # control_video and the ControlNet settings, as check_inputs made them
        if control is not None:
            control.frames = [frames.to(latents.device) for frames in control.frames]
        if long_video_method == "coarse_to_fine" and window < num_frames:
            video = self.coarse_to_fine(
                call, latents, noise, given, guidance, window, window_overlap, fill_strength, control
            )
        else:
            video = self.window_after_window(
                call, latents, noise, given, guidance, window, window_overlap, control
            )
        return self.finish(call, video)

    def window_after_window(
        self, call, latents, noise, given: dict, guidance: dict, window, window_overlap, control=None
    ):
        """The video ``(B, C, F, h, w)`` from its noise ``latents``, ``window`` frames at a time, each window
        given the frames it shares with the one before (and the call's ``given`` frames inside it)."""
        num_frames = latents.shape[2]
        given = dict(given)
        video = torch.empty_like(latents)  # (B, C, F, h, w)
        starts = window_starts(num_frames, window, window_overlap)
        window = min(window, num_frames)  # a window longer than the video is the whole video
        with self.call_progress_bar(call, len(starts)) as progress_bar:
            for start in starts:
                sample = self.denoise(
                    call,
                    latents[:, :, start : start + window],
                    known=known_frames(given, range(start, start + window), noise, guidance),
                    progress_bar=progress_bar,
                    free_init=True,
                    control=None if control is None else control.at(range(start, start + window)),
                )  # (B, C, W, h, w)
                given.update({start + offset: sample[:, :, offset] for offset in range(window)})
                video[:, :, start : start + window] = sample
        return video

    def coarse_to_fine(
        self,
        call,
        latents,
        noise,
        given: dict,
        guidance: dict,
        window,
        window_overlap,
        fill_strength,
        control=None,
    ):
        """The video ``(B, C, F, h, w)`` from its noise ``latents`` coarse to fine (:mod:`.coarse_to_fine`):
        ``window`` frames spread over the video (given those of the call's ``given`` frames that fall on
        them), then every frame from their linear blend noised ``fill_strength`` of the way up the schedule,
        denoised in overlapping windows with the call's given frames given. The coarse frames are not held:
        they are refined with their neighbours, which on the demo kept the steps into and out of them closer to
        the others (benchmarks/conditioning_quality.py)."""
        num_frames, steps = latents.shape[2], call.num_inference_steps
        positions = coarse_positions(num_frames, window)
        begin = steps - steps_run(steps, fill_strength)
        total = len(self.timesteps_from(call, 0, latents.device)) * self.free_init_runs(0) + len(
            self.timesteps_from(call, begin, latents.device)
        )
        with self.progress_bar(total=total) as progress_bar:
            coarse = self.denoise(
                call,
                latents[:, :, positions],
                known=known_frames(given, positions, noise, guidance),
                progress_bar=progress_bar,
                free_init=True,
                control=None if control is None else control.at(positions),
            )  # (B, C, W, h, w)
            start = self.timesteps_from(call, begin, latents.device)[:1].repeat(latents.shape[0])  # (B,)
            blend = self.scheduler.add_noise(blend_between(coarse, positions, num_frames), noise, start)
            return self.denoise(
                call,
                blend,  # (B, C, F, h, w)
                window=window,
                window_overlap=window_overlap,
                begin_step=begin,
                known=known_frames(given, range(num_frames), noise, guidance),
                progress_bar=progress_bar,
                control=control,
            )


def known_frames(given: dict, positions, noise: torch.Tensor, guidance: dict) -> KnownFrames | None:
    """The frames of ``given`` (output position -> ``(B, C, h, w)``) among ``positions`` (the output
    positions a denoising run makes, in its order) as that run's :class:`KnownFrames`, noised by ``noise``
    ``(B, C, F, h, w)`` at their output positions; ``None`` when none is given there."""
    positions = list(positions)
    inside = [position for position in positions if position in given]
    if not inside:
        return None
    return KnownFrames(
        torch.stack([given[position] for position in inside], dim=2),  # (B, C, K, h, w)
        [positions.index(position) for position in inside],
        noise[:, :, inside],
        guidance["method"],
        guidance["guidance_scale"],
    )
