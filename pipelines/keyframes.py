"""Stage 1 of the cascade: text to a few small keyframes.

A text-conditioned video diffusion model (Ho et al. 2022, "Video Diffusion Models",
arXiv:2204.03458; the keyframe model D^t of Singer et al. 2022, "Make-A-Video", arXiv:2209.14792)
sampled with classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598). It works in a VAE's
latent space when the pipeline has a VAE (Blattmann et al. 2023, "Video LDM", arXiv:2304.08818) and
in pixel space when it has none. Stable Diffusion 1.5 LoRAs (Hu et al. 2021, "LoRA: Low-Rank Adaptation
of Large Language Models", arXiv:2106.09685) load into its spatial layers and text encoder.

Given frames (image-to-video, extension) and videos longer than the model's window are sampled by
reconstruction guidance or replacement (Ho et al. 2022, sec. 3.1; :mod:`.known_frames`): a long video is made
window after window, each window given the last frames of the one before, as VDM extends videos.
"""

import torch

from cascade.ops.windows import check_window, window_starts
from cascade.utils.checks import check_choice, check_int, check_number

from .editing import EditingMixin
from .given_frames import given_frames
from .known_frames import CONDITIONING_METHODS, KnownFrames
from .sample_space import check_sample_space
from .stage_base import VideoStagePipeline
from .stage_call import StageCall, stage_call

# VDM's w_r; on the demo keyframes image-to-video read best at 20 of 1, 5, 20, 50, 150 (benchmarks/conditioning_quality.py)
RECONSTRUCTION_GUIDANCE_SCALE = 20.0


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
        if window is not None and window < num_frames and window_overlap == 0:
            raise ValueError(
                "`window_overlap` must be at least 1 when the video is longer than a window: each window is "
                "given the frames it shares with the one before."
            )
        batch_size = self.check_common_inputs(
            lambda videos: self.latents_shape(videos, num_frames, height, width), **common
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
        video = torch.empty_like(latents)  # (B, C, F, h, w)
        window = num_frames if window is None else window
        starts = window_starts(num_frames, window, window // 2 if window_overlap is None else window_overlap)
        window = min(window, num_frames)  # a window longer than the video is the whole video
        with self.call_progress_bar(call, len(starts)) as progress_bar:
            for start in starts:
                positions = [index for index in range(start, start + window) if index in given]
                known = None
                if positions:
                    known = KnownFrames(
                        torch.stack([given[index] for index in positions], dim=2),  # (B, C, K', h, w)
                        [index - start for index in positions],
                        noise[:, :, positions],
                        conditioning_method,
                        reconstruction_guidance_scale,
                    )
                sample = self.denoise(
                    call, latents[:, :, start : start + window], known=known, progress_bar=progress_bar
                )  # (B, C, W, h, w)
                given.update({start + offset: sample[:, :, offset] for offset in range(window)})
                video[:, :, start : start + window] = sample
        return self.finish(call, video)
