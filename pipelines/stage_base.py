"""The base of every stage pipeline: prompt encoding, noise, the guided denoising loop, decoding, and
saving and loading (:mod:`.hub_loading`).

Classifier-free guidance: Ho & Salimans 2022, arXiv:2207.12598. Frame windows: :mod:`cascade.windows`.
"""

import inspect
import os
from collections.abc import Callable

import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils.torch_utils import randn_tensor

from cascade.models import VideoUNet
from cascade.models.video_unet import downsampling_factor
from cascade.utils.devices import warn_if_emulated
from cascade.windows import run_in_windows

from .hub_loading import (
    MODEL_INDEX,
    CodeFilesMixin,
    local_folder,
    pickled_only_weights,
    saved_pipeline_class,
    stage_files,
)
from .stage_utils import (
    VideoPipelineOutput,
    check_callback_inputs,
    check_generator,
    check_number,
    check_output_type,
    check_positive_int,
    check_prompts,
    check_tensor_shape,
    decode_latents,
    encode_text,
)


class VideoStagePipeline(CodeFilesMixin, DiffusionPipeline):
    """What the stage pipelines share. Subclasses register ``unet`` (a :class:`cascade.VideoUNet`),
    ``scheduler``, ``text_encoder``, ``tokenizer`` and optionally ``vae``, and implement ``__call__``."""

    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """diffusers' ``DiffusionPipeline.from_pretrained``, except that:

        - weights load from safetensors only, unless ``use_safetensors=False`` (then pickled ``.bin`` weights,
          as diffusers reads that flag);
        - a Hub repo id is resolved through the Hugging Face cache, offline too (``HF_HUB_OFFLINE=1`` or
          ``local_files_only=True``), and one not cached then raises
          :class:`~cascade.pipelines.hub_loading.ModelNotCachedError` naming it;
        - a folder saved by one of our pipelines loads without ``trust_remote_code``: its code files, when
          byte-identical to the ones :meth:`save_pretrained` writes, only import this package.

        A folder saved from another class of ours is refused with a ``ValueError`` naming that class.
        """
        if kwargs.get("use_safetensors") is None:
            kwargs["use_safetensors"] = True
        folder = local_folder(pretrained_model_name_or_path, MODEL_INDEX, stage_files, kwargs)
        saved_class = saved_pipeline_class(folder)
        if saved_class is not None and "custom_pipeline" not in kwargs:
            if cls is not saved_class:
                then = f", then `{cls.__name__}.from_pipe(pipeline)`" if issubclass(cls, saved_class) else ""
                raise ValueError(
                    f"{str(pretrained_model_name_or_path)!r} was saved from {saved_class.__name__} (see its "
                    f"{MODEL_INDEX}), not {cls.__name__}; load it with {saved_class.__name__}.from_pretrained{then}."
                )
            kwargs["trust_remote_code"] = True
        try:
            pipeline = super().from_pretrained(folder, **kwargs)
        except OSError as error:
            pickled = pickled_only_weights(folder)
            if kwargs["use_safetensors"] is not True or not pickled:
                raise
            raise OSError(
                f"{str(pretrained_model_name_or_path)!r} has pickled weights and no safetensors file for them "
                f"({', '.join(pickled)}), and weights load from safetensors only. Pass `use_safetensors=False` "
                "to load pickled weights, from a source you trust (unpickling can run code)."
            ) from error
        # diffusers recorded the folder it loaded: for a repo id, the snapshot in the cache
        pipeline.register_to_config(_name_or_path=pretrained_model_name_or_path)
        return pipeline

    @property
    def vae_scale_factor(self) -> int:
        """How much smaller the latents are than the frames (1 in pixel space)."""
        vae = getattr(self, "vae", None)
        return 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1

    @property
    def size_multiple(self) -> int:
        """Frame height and width (of the output, for a super-resolution stage) must be multiples of this."""
        return self.vae_scale_factor * downsampling_factor(self.spatial_unet)

    @property
    def spatial_unet(self) -> UNet2DConditionModel:
        """The 2D UNet: ``unet`` itself, or the one a VideoUNet inflates."""
        return self.unet.unet if isinstance(self.unet, VideoUNet) else self.unet

    @property
    def text_embedding_dim(self) -> int:
        """Width of the text embeddings the UNet attends to."""
        return self.spatial_unet.config.cross_attention_dim

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
            prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, self.text_embedding_dim
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

    def finish(
        self, latents: torch.Tensor, output_type: str, return_dict: bool, decode_chunk_size: int | None
    ) -> VideoPipelineOutput | tuple:
        """Decodes the denoised sample ``(B, C, F, h, w)`` to ``output_type`` frames, frees offloaded models
        and returns the pipeline output."""
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

    @staticmethod
    def callback_tensor_inputs(callback_on_step_end, callback_on_step_end_tensor_inputs) -> list[str]:
        """The tensors the step-end callback receives: a diffusers ``PipelineCallback``'s own, else the ones
        asked for, else ``["latents"]``."""
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            return callback_on_step_end.tensor_inputs
        return callback_on_step_end_tensor_inputs or ["latents"]

    def check_sampling_inputs(
        self,
        batch_size: int,
        num_inference_steps,
        guidance_scale,
        num_videos_per_prompt,
        generator,
        latents,
        latents_shape,
        output_type,
        callback_on_step_end_tensor_inputs,
        decode_chunk_size,
    ) -> None:
        """Checks the arguments every stage's ``__call__`` shares, for a batch of ``batch_size`` prompts;
        ``latents_shape(videos)`` gives the shape given ``latents`` must have."""
        check_positive_int("num_inference_steps", num_inference_steps)
        check_number("guidance_scale", guidance_scale, 0.0)
        check_positive_int("num_videos_per_prompt", num_videos_per_prompt)
        check_generator(generator, batch_size * num_videos_per_prompt)
        if latents is not None:
            check_tensor_shape("latents", latents, latents_shape(batch_size * num_videos_per_prompt))
        check_output_type(output_type)
        check_callback_inputs(callback_on_step_end_tensor_inputs, self._callback_tensor_inputs)
        if decode_chunk_size is not None:
            check_positive_int("decode_chunk_size", decode_chunk_size)

    def prepare_latents(self, shape, dtype, device, generator, latents=None) -> torch.Tensor:
        """Starting noise ``(B, C, F, h, w)``, scaled by the scheduler's initial sigma."""
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            latents = latents.to(device=device, dtype=dtype)
        return latents * self.scheduler.init_noise_sigma

    def timesteps_from(self, num_inference_steps: int, begin_step: int, device) -> torch.Tensor:
        """Sets the scheduler to ``num_inference_steps`` and returns its timesteps from step ``begin_step``
        on, the scheduler told to start there (diffusers' ``set_begin_index``) when ``begin_step > 0``."""
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        first = begin_step * self.scheduler.order
        if first and hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(first)
        return self.scheduler.timesteps[first:]

    def decode(self, latents: torch.Tensor, decode_chunk_size: int | None) -> torch.Tensor:
        """Pixels ``(B, 3, F, H, W)`` in [-1, 1] from the denoised sample."""
        if self.vae is None:
            return latents
        return decode_latents(self.vae, latents.to(self.vae.dtype), decode_chunk_size)

    def denoise(
        self,
        latents: torch.Tensor,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None,
        num_inference_steps: int,
        generator=None,
        conditioning: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        window: int | None = None,
        window_overlap: int = 0,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        begin_step: int = 0,
    ) -> torch.Tensor:
        """Runs the scheduler from noise ``latents`` ``(B, C, F, h, w)`` to a clean sample; from step
        ``begin_step`` of ``num_inference_steps`` (``latents`` then at that step's noise level), as diffusers'
        image-to-image pipelines do.

        ``conditioning`` ``(B, k, F, h, w)`` is concatenated to the model input as the UNet's extra input
        channels; ``class_labels`` ``(B,)`` go to its class embedding. The UNet sees ``window`` frames at a
        time, overlapping by ``window_overlap``, its guided predictions blended (all frames at once when
        ``None``; then ``latents`` may also be images ``(B, C, h, w)`` for a 2D UNet). Guidance uses
        ``self.guidance_scale``.
        """
        warn_if_emulated(self.unet.dtype, latents.device)
        timesteps = self.timesteps_from(num_inference_steps, begin_step, latents.device)
        self._num_timesteps = len(timesteps)
        step_parameters = inspect.signature(self.scheduler.step).parameters
        step_kwargs = {"generator": generator} if "generator" in step_parameters else {}
        tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        guided = self.do_classifier_free_guidance

        def guided_prediction(model_input: torch.Tensor, frames: slice, t) -> torch.Tensor:
            # The window's scaled latents (B, C, W, h, w) -> its guided prediction (B, C, W, h, w). Conditioning
            # and the guidance batch are built per window, so memory follows the window, not the video.
            if conditioning is not None:
                model_input = torch.cat(
                    [model_input, conditioning[:, :, frames].to(model_input.dtype)], dim=1
                )
            embeds, labels = prompt_embeds, class_labels
            if guided:
                model_input = torch.cat([model_input, model_input])  # (2B, C + k, W, h, w)
                embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
                labels = None if class_labels is None else torch.cat([class_labels, class_labels])
            prediction = self.unet(model_input, t, encoder_hidden_states=embeds, class_labels=labels).sample
            if guided:
                unconditional, conditional = prediction.chunk(2)
                prediction = unconditional + self.guidance_scale * (conditional - unconditional)
            return prediction

        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                prediction = run_in_windows(
                    lambda sample, frames, t=t: guided_prediction(sample, frames, t),
                    self.scheduler.scale_model_input(latents, t),
                    window,
                    window_overlap,
                )
                latents = self.scheduler.step(prediction, t, latents, **step_kwargs).prev_sample

                if callback_on_step_end is not None:
                    available = {
                        "latents": latents,
                        "prompt_embeds": prompt_embeds,
                        "negative_prompt_embeds": negative_prompt_embeds,
                    }
                    tensors = {name: available[name] for name in tensor_inputs}
                    replaced = callback_on_step_end(self, i, t, tensors) or {}
                    latents = replaced.get("latents", latents)
                    prompt_embeds = replaced.get("prompt_embeds", prompt_embeds)
                    negative_prompt_embeds = replaced.get("negative_prompt_embeds", negative_prompt_embeds)
                progress_bar.update()
        return latents
