"""Stage 4 of the cascade: spatial super-resolution, every frame upsampled on its own.

At the highest resolution the cascade upsamples frame by frame, with no temporal layers (Singer et al.
2022, "Make-A-Video", arXiv:2209.14792, sec. 3.4, SR_h; the last spatial super-resolution stage of Ho
et al. 2022, "Imagen Video", arXiv:2210.02303). Starting every frame of a video from the same initial
noise (Make-A-Video, sec. 3.4) reduces flicker between the independently upsampled frames. The
low-resolution video conditions it through noise conditioning augmentation (Ho et al. 2022, "Cascaded
Diffusion Models", arXiv:2106.15282): see :mod:`cascade.pipelines.super_resolution`. Frames of all videos
are folded into one batch and denoised ``frame_chunk_size`` at a time, so memory is bounded by the chunk.
"""

from dataclasses import replace

import torch

from cascade.models.video_unet import VideoUNet
from cascade.ops.frames import fold_frames, unfold_frames
from cascade.utils.checks import check_bool, check_int

from .stage_call import StageCall, stage_call
from .super_resolution import LOW_RES_ARGUMENTS, SuperResolutionStagePipeline


class SpatialSRPipeline(SuperResolutionStagePipeline):
    """Upsamples each frame by ``upscale_factor`` with a plain ``diffusers.UNet2DConditionModel`` (frames as
    images) or a :class:`cascade.VideoUNet` (each frame run as a one-frame video).

    Components and options: see :class:`~cascade.pipelines.super_resolution.SuperResolutionStagePipeline`.
    """

    def enable_free_init(self, *args, **kwargs):
        """Refused: FreeInit keeps a video's low spatio-temporal frequencies across its runs, and this stage
        denoises frames one by one."""
        raise ValueError(
            "FreeInit is not available on SpatialSRPipeline: it denoises frames one by one, with no temporal "
            "frequencies to keep; enable it on the keyframes, interpolation or spatiotemporal SR stage."
        )

    def as_unet_input(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``(N, C, h, w)`` as the UNet takes them: images for a 2D UNet, one-frame videos
        ``(N, C, 1, h, w)`` for a VideoUNet."""
        return frames.unsqueeze(2) if isinstance(self.unet, VideoUNet) else frames

    def check_inputs(
        self, *, video, noise_level, frame_chunk_size, same_noise_for_all_frames, **common
    ) -> None:
        """Raises ``ValueError`` naming the first bad argument, before any model runs."""
        check_int("frame_chunk_size", frame_chunk_size, minimum=1)
        check_bool("same_noise_for_all_frames", same_noise_for_all_frames)
        self.check_low_res_inputs(video, noise_level, common)

    @torch.no_grad()
    @stage_call(LOW_RES_ARGUMENTS)
    def __call__(self, call: StageCall, frame_chunk_size: int = 8, same_noise_for_all_frames: bool = True):
        """Upsamples every frame of ``video`` by ``upscale_factor`` in height and width.

        Args:
            frame_chunk_size: frames (of all videos together) denoised at a time. With a deterministic
                scheduler (DDIM) the result does not depend on it.
            same_noise_for_all_frames: start every frame of a video from the same noise (unless ``latents``
                are given, which are used as given).

        The step-end callback runs after each step of each chunk, with the chunk's ``latents`` (its frames
        as the UNet takes them), and one progress bar counts the steps of all chunks; the VAE decodes
        ``frame_chunk_size`` frames at a time unless ``decode_chunk_size`` says otherwise.
        """
        conditioning, noise_levels, shape = self.prepare_conditioning(call)
        batch, num_frames = shape[0], shape[2]
        if call.latents is None and same_noise_for_all_frames:  # (B, C, F, h, w), one noise per video
            latents = self.prepare_latents((*shape[:2], 1, *shape[3:]), call).expand(shape)
        else:
            latents = self.prepare_latents(shape, call)  # (B, C, F, h, w)
        latents, conditioning = fold_frames(latents), fold_frames(conditioning)  # (B*F, C, h, w)
        video_of_frame = torch.arange(batch * num_frames, device=latents.device) // num_frames  # (B*F,)
        generators = call.generator if isinstance(call.generator, list) else None
        denoised = []
        starts = range(0, batch * num_frames, frame_chunk_size)
        with self.call_progress_bar(call, len(starts)) as progress_bar:
            for start in starts:
                chunk = slice(start, start + frame_chunk_size)
                videos = video_of_frame[chunk]  # (N,)
                negative = call.negative_prompt_embeds
                chunk_call = replace(
                    call,
                    prompt_embeds=call.prompt_embeds[videos],
                    negative_prompt_embeds=None if negative is None else negative[videos],
                    generator=[generators[v] for v in videos.tolist()] if generators else call.generator,
                )
                denoised.append(
                    self.denoise(
                        chunk_call,
                        self.as_unet_input(latents[chunk]),
                        conditioning=self.as_unet_input(conditioning[chunk]),
                        class_labels=noise_levels[videos],
                        progress_bar=progress_bar,
                    ).reshape(latents[chunk].shape)  # (N, C, h, w)
                )
        latents = unfold_frames(torch.cat(denoised), batch)  # (B, C, F, h, w)
        return self.finish(call, latents, frame_chunk_size)
