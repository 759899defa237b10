"""Stage 1 of the cascade: text to a few small keyframes.

A text-conditioned video diffusion model (Ho et al. 2022, "Video Diffusion Models",
arXiv:2204.03458; the keyframe model D^t of Singer et al. 2022, "Make-A-Video", arXiv:2209.14792)
sampled with classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598). It works in a VAE's
latent space when the pipeline has a VAE (Blattmann et al. 2023, "Video LDM", arXiv:2304.08818) and
in pixel space when it has none. Stable Diffusion 1.5 LoRAs (Hu et al. 2021, "LoRA: Low-Rank Adaptation
of Large Language Models", arXiv:2106.09685) load into its spatial layers and text encoder.
"""

import torch
from diffusers.loaders import StableDiffusionLoraLoaderMixin

from cascade.models.video_unet import VideoUNet
from cascade.utils.checks import check_int

from .editing import EditingMixin
from .stage_base import VideoStagePipeline
from .stage_call import StageCall, stage_call


class KeyframesPipeline(EditingMixin, VideoStagePipeline, StableDiffusionLoraLoaderMixin):
    """Generates keyframes from a prompt with an inflated :class:`cascade.VideoUNet`.

    Components (see :class:`~cascade.pipelines.stage_base.VideoStagePipeline`): ``unet`` (a VideoUNet with no
    extra input channels), ``scheduler`` (any diffusers scheduler), ``text_encoder`` and ``tokenizer`` (CLIP),
    and an optional ``vae``.

    ``pipe.load_lora_weights(path_or_repo_or_state_dict)`` loads a Stable Diffusion 1.5 LoRA (diffusers or
    Kohya format, through diffusers' ``StableDiffusionLoraLoaderMixin`` and peft): its ``unet`` weights go
    into the VideoUNet's 2D UNet (``pipe.unet.unet``), its ``text_encoder`` weights into the text encoder;
    temporal layers are left alone.

    ``pipe.invert(video, prompt)`` (DDIM inversion) and ``pipe.edit(video, prompt, source_prompt)`` (editing by
    inversion and self-attention injection, or the baselines): :mod:`cascade.pipelines.editing`.
    """

    @classmethod
    def load_lora_into_unet(cls, state_dict, network_alphas, unet, **kwargs):
        """Loads the ``unet.``-prefixed LoRA weights of ``state_dict`` into ``unet``'s 2D UNet, whose module
        names they use; see diffusers' ``StableDiffusionLoraLoaderMixin.load_lora_into_unet``."""
        spatial_unet = unet.unet if isinstance(unet, VideoUNet) else unet
        super().load_lora_into_unet(state_dict, network_alphas, spatial_unet, **kwargs)

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

    def check_inputs(self, *, num_frames, height, width, **common) -> None:
        """Raises ``ValueError`` naming the first bad argument, before any model runs."""
        if self.unet.conditioning_channels:
            raise ValueError(
                f"`unet` reads {self.unet.conditioning_channels} conditioning channels; a keyframes UNet reads none "
                "(conditioning stages use their own pipelines)."
            )
        check_int("num_frames", num_frames, minimum=1)
        height, width = self.frame_size(height, width)
        for name, value in (("height", height), ("width", width)):
            check_int(name, value, minimum=1)
            check_int(name, value, multiple_of=self.size_multiple, meaning=" for this model")
        self.check_common_inputs(
            lambda videos: self.latents_shape(videos, num_frames, height, width), **common
        )

    @torch.no_grad()
    @stage_call()
    def __call__(
        self, call: StageCall, num_frames: int = 8, height: int | None = None, width: int | None = None
    ):
        """Generates ``num_frames`` keyframes for each prompt.

        Args:
            num_frames: frames per video; any positive number.
            height, width: frame size in pixels, multiples of ``pipe.size_multiple``; default
                ``pipe.default_size``.
        """
        height, width = self.frame_size(height, width)
        shape = self.latents_shape(call.batch_size, num_frames, height, width)
        latents = self.prepare_latents(shape, call)  # (B, C, F, h, w)
        return self.finish(call, self.denoise(call, latents))
