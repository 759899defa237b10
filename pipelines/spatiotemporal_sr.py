"""Stage 3 of the cascade: spatiotemporal super-resolution, a video upsampled in space by a video UNet.

The UNet's temporal layers see the frames together, so the upsampled frames agree with each other
(Singer et al. 2022, "Make-A-Video", arXiv:2209.14792, sec. 3.4, SR_l; the spatial super-resolution
stages of Ho et al. 2022, "Imagen Video", arXiv:2210.02303, which have temporal convolutions). The
low-resolution video conditions it through noise conditioning augmentation (Ho et al. 2022, "Cascaded
Diffusion Models", arXiv:2106.15282): see :mod:`cascade.pipelines.super_resolution`. A long video is
denoised in overlapping frame windows whose predictions are blended at every step (:mod:`cascade.ops.windows`),
so the UNet's memory is that of one window whatever the video's length.
"""

import torch

from cascade.models.video_unet import VideoUNet
from cascade.ops.windows import check_window

from .stage_call import StageCall, stage_call
from .super_resolution import LOW_RES_ARGUMENTS, SuperResolutionStagePipeline


class SpatioTemporalSRPipeline(SuperResolutionStagePipeline):
    """Upsamples a video's frames by ``upscale_factor`` with an inflated :class:`cascade.VideoUNet`.

    Components and options: see :class:`~cascade.pipelines.super_resolution.SuperResolutionStagePipeline`;
    ``unet`` must be a VideoUNet (for a 2D UNet, use :class:`SpatialSRPipeline`).
    """

    def check_inputs(self, *, video, noise_level, window, window_overlap, **common) -> None:
        """Raises ``ValueError`` naming the first bad argument, before any model runs."""
        if not isinstance(self.unet, VideoUNet):
            raise ValueError(
                f"`unet` must be a cascade VideoUNet for spatiotemporal super-resolution, got "
                f"{type(self.unet).__name__} (use SpatialSRPipeline for a 2D UNet)."
            )
        check_window(window, window_overlap)
        self.check_low_res_inputs(video, noise_level, common)

    @torch.no_grad()
    @stage_call(LOW_RES_ARGUMENTS)
    def __call__(self, call: StageCall, window: int | None = 16, window_overlap: int | None = None):
        """Upsamples each video of ``video`` by ``upscale_factor`` in height and width, keeping its frames.

        Args:
            window: frames the UNet sees at a time (all frames at once when ``None``).
            window_overlap: frames shared by consecutive windows, whose predictions are blended; default a
                quarter of the window (``window // 4``).

        The VAE decodes ``window`` frames at a time unless ``decode_chunk_size`` says otherwise, so decoding
        memory is bounded like denoising memory.
        """
        if window is not None and window_overlap is None:
            window_overlap = window // 4
        conditioning, noise_levels, shape = self.prepare_conditioning(call)
        latents = self.prepare_latents(shape, call)  # (B, C, F, h, w)
        latents = self.denoise(
            call,
            latents,
            conditioning=conditioning,  # (B, 3, F, h, w)
            class_labels=noise_levels,  # (B,)
            window=window,
            window_overlap=window_overlap or 0,
            free_init=True,
        )
        return self.finish(call, latents, window)
