"""The base of every stage pipeline: the checks and the opening every call shares, noise, the guided denoising
loop, decoding, and saving and loading (:mod:`.hub_loading`).

Classifier-free guidance: Ho & Salimans 2022, arXiv:2207.12598; its rescaling: Lin et al. 2023, "Common
Diffusion Noise Schedules and Sample Steps are Flawed", arXiv:2305.08891, sec. 3.4. Frame windows:
:mod:`cascade.ops.windows`.
"""

import contextlib
import inspect
import os
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, SchedulerMixin, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.free_init_utils import FreeInitMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor
from transformers import CLIPTextModel, CLIPTokenizer

from cascade.models.video_unet import VideoUNet, downsampling_factor
from cascade.ops.latents import decode_video, encode_video
from cascade.ops.text import encode_text
from cascade.ops.windows import run_in_windows
from cascade.utils.atomic import write_folder_atomically
from cascade.utils.checks import check_bool, check_int, check_number, check_tensor_shape
from cascade.utils.devices import warn_if_emulated

from .control import FrameControl
from .hub_loading import (
    MODEL_INDEX,
    CodeFilesMixin,
    check_save_directory,
    local_folder,
    pickled_only_weights,
    saved_pipeline_class,
    stage_files,
)
from .inputs import (
    check_callback_inputs,
    check_custom_schedule,
    check_generator,
    check_output_type,
    check_prompts,
)
from .known_frames import KnownFrames
from .lora_loading import VideoLoraLoaderMixin
from .sample_checks import check_finite_pixels, check_finite_sample
from .stage_call import StageCall
from .unet_conventions import UNetConventionsMixin


def rescale_guidance(
    guided: torch.Tensor, conditional: torch.Tensor, guidance_rescale: float
) -> torch.Tensor:
    """Guidance rescaling (Lin et al. 2023, arXiv:2305.08891, sec. 3.4, eqs. 15-16): the guided prediction
    ``(B, C, F, h, w)`` (or images ``(B, C, h, w)``) scaled per video to the standard deviation of the
    ``conditional`` one (over its channels, frames and pixels), then mixed with the guided one:
    ``guidance_rescale`` of the rescaled, the rest of the guided."""
    dims = tuple(range(1, guided.ndim))  # all but the batch: (C, F, h, w)
    rescaled = guided * (conditional.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return torch.lerp(guided, rescaled, guidance_rescale)


@dataclass
class VideoPipelineOutput(BaseOutput):
    """Frames of a stage: ``np`` ``(B, F, H, W, 3)`` in [0, 1], ``pt`` ``(B, F, 3, H, W)``, ``pil`` a list
    (per video) of lists of images, or ``latent`` ``(B, C, F, h, w)``."""

    frames: np.ndarray | torch.Tensor | list[list[PIL.Image.Image]]


class VideoStagePipeline(
    CodeFilesMixin, UNetConventionsMixin, VideoLoraLoaderMixin, FreeInitMixin, DiffusionPipeline
):
    """What the stage pipelines share. Its components are every stage's: ``unet`` (a
    :class:`cascade.VideoUNet`), ``scheduler`` (any diffusers scheduler), ``text_encoder`` and ``tokenizer``
    (CLIP), and an optional ``vae`` (latent space with it, pixel space without). A stage with more components
    or settings has an ``__init__`` of its own. Subclasses implement ``check_inputs`` (which calls
    :meth:`check_common_inputs`), :meth:`output_shape` and :meth:`input_size_problem`, and write their own
    ``__call__``, decorated with :func:`~cascade.pipelines.stage_call.stage_call`."""

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["vae"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        unet: VideoUNet,
        scheduler: SchedulerMixin,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        vae: AutoencoderKL | None = None,
    ):
        super().__init__()
        self.register_modules(
            unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer, vae=vae
        )
        self.video_processor = VideoProcessor(do_resize=False, vae_scale_factor=self.vae_scale_factor)
        self._interrupt = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """diffusers' ``DiffusionPipeline.from_pretrained``, except that:

        - weights load from safetensors only, unless ``use_safetensors=False`` (then each component from its
          safetensors where it has them, else from its pickled ``.bin`` weights);
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

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """diffusers' ``DiffusionPipeline.save_pretrained`` (with the code files and weight hashes of
        :class:`~cascade.pipelines.hub_loading.CodeFilesMixin`), written to a hidden folder beside
        ``save_directory`` and then put in its place (:func:`~cascade.utils.atomic.write_folder_atomically`): a
        save that fails or is killed leaves the folder as it was, a full disk raising an ``OSError`` naming it.
        ``save_directory`` must be new, empty or a saved pipeline (``ValueError`` otherwise: it is replaced
        as a whole). With ``push_to_hub=True`` the repo id defaults to the folder's name, as in diffusers."""
        target = check_save_directory(save_directory, MODEL_INDEX, "pipeline")
        if kwargs.get("push_to_hub"):
            kwargs.setdefault("repo_id", target.name)
        write_folder_atomically(
            target, lambda partial: super(VideoStagePipeline, self).save_pretrained(partial, **kwargs)
        )

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
    def text_embedding_dim(self) -> int | None:
        """Width of the text embeddings the UNet attends to; the text encoder's width in a pipeline built without
        a UNet (to encode prompts alone); ``None`` (any) with neither."""
        if self.unet is not None:
            return self.spatial_unet.config.cross_attention_dim
        if self.text_encoder is not None:
            return self.text_encoder.config.hidden_size
        return None

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        """Whether the call is interrupted: a step-end callback sets ``pipe._interrupt = True`` (as for
        diffusers' pipelines) and the denoising stops after that step, the output made from the sample as it
        then is (a later window or chunk of the call runs no step). Each call starts uninterrupted."""
        return self._interrupt

    def call_default(self, argument: str):
        """The default of ``argument`` in this pipeline's ``__call__``."""
        return inspect.signature(self.__call__).parameters[argument].default

    def output_shape(self, num_frames: int | None, size: int | None, settings: dict) -> tuple:
        """``(frames, size)`` this stage outputs for ``num_frames`` input frames of ``size`` x ``size`` pixels,
        called with ``settings`` (its ``stage_kwargs``); ``None`` where that is not known here."""
        raise NotImplementedError

    def input_size_problem(self, size: int) -> str | None:
        """Why this stage cannot take input frames of ``size`` x ``size`` pixels, or ``None`` when it can."""
        return None

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        device: torch.device,
        num_videos_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        clip_skip: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns ``(prompt_embeds, negative_prompt_embeds)``, each ``(B * num_videos_per_prompt, L, D)``;
        the negative ones are ``None`` without guidance. A missing negative prompt is the empty one. ``clip_skip``
        reads the prompts that many text encoder layers before the last (:func:`~cascade.ops.text.encode_text`)."""
        batch_size = check_prompts(
            prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, self.text_embedding_dim
        )
        if prompt_embeds is None:
            prompts = [prompt] if isinstance(prompt, str) else prompt
            prompt_embeds = encode_text(
                self.tokenizer, self.text_encoder, prompts, device, clip_skip=clip_skip
            )
        # the text encoder's dtype; without one (embeddings given), the UNet's, else the embeddings' own
        dtype = next(
            (model.dtype for model in (self.text_encoder, self.unet) if model is not None),
            prompt_embeds.dtype,
        )
        prompt_embeds = prompt_embeds.to(device=device, dtype=dtype)
        if do_classifier_free_guidance and negative_prompt_embeds is None:
            negatives = negative_prompt or ""
            negatives = [negatives] * batch_size if isinstance(negatives, str) else negatives
            negative_prompt_embeds = encode_text(
                self.tokenizer, self.text_encoder, negatives, device, clip_skip=clip_skip
            )
        if not do_classifier_free_guidance:
            negative_prompt_embeds = None
        else:
            negative_prompt_embeds = negative_prompt_embeds.to(device=device, dtype=prompt_embeds.dtype)
            negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
        prompt_embeds = prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
        # returned by the names __call__ takes them by (diffusers' common tests map them so)
        return prompt_embeds, negative_prompt_embeds

    def check_common_inputs(
        self,
        latents_shape,
        *,
        prompt,
        negative_prompt,
        num_inference_steps,
        timesteps,
        sigmas,
        guidance_scale,
        num_videos_per_prompt,
        eta,
        generator,
        latents,
        prompt_embeds,
        negative_prompt_embeds,
        clip_skip,
        output_type,
        return_dict,
        cross_attention_kwargs,
        guidance_rescale,
        callback_on_step_end,
        callback_on_step_end_tensor_inputs,
        decode_chunk_size,
    ) -> int:
        """Checks the arguments every stage takes and returns the batch size the prompts define;
        ``latents_shape(videos)`` gives the shape given ``latents`` must have for a batch of ``videos``."""
        batch_size = check_prompts(
            prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, self.text_embedding_dim
        )
        check_int("num_inference_steps", num_inference_steps, minimum=1)
        check_custom_schedule(self.scheduler, timesteps, sigmas)
        if clip_skip is not None:
            layers = self.text_encoder.config.num_hidden_layers if self.text_encoder is not None else 1
            check_int(
                "clip_skip",
                clip_skip,
                minimum=0,
                maximum=layers - 1,
                meaning=" (the text encoder's layers - 1)",
            )
        check_number("guidance_scale", guidance_scale, minimum=0.0)
        check_int("num_videos_per_prompt", num_videos_per_prompt, minimum=1)
        check_number("eta", eta, minimum=0.0, maximum=1.0)
        check_generator(generator, batch_size * num_videos_per_prompt)
        if latents is not None:
            check_tensor_shape("latents", latents, latents_shape(batch_size * num_videos_per_prompt))
        for name, tensor in (
            ("latents", latents),
            ("prompt_embeds", prompt_embeds),
            ("negative_prompt_embeds", negative_prompt_embeds),
        ):
            if tensor is not None and not torch.isfinite(tensor).all():
                raise ValueError(f"`{name}` must be finite, got a tensor holding nan or inf.")
        check_output_type(output_type)
        check_bool("return_dict", return_dict)
        if cross_attention_kwargs is not None:
            if not isinstance(cross_attention_kwargs, dict) or not all(
                isinstance(key, str) for key in cross_attention_kwargs
            ):
                raise ValueError(
                    "`cross_attention_kwargs` must be None or a dict of keyword arguments for the UNet's attention "
                    f"processors, such as {{'scale': 0.5}}, got {cross_attention_kwargs!r:.100}."
                )
            if "scale" in cross_attention_kwargs:
                check_number("cross_attention_kwargs['scale']", cross_attention_kwargs["scale"])
        check_number("guidance_rescale", guidance_rescale, minimum=0.0, maximum=1.0)
        if callback_on_step_end is not None and not callable(callback_on_step_end):
            raise ValueError(
                "`callback_on_step_end` must be a function fn(pipe, step, timestep, tensors) or a diffusers "
                f"PipelineCallback, got {callback_on_step_end!r:.100}."
            )
        if not isinstance(callback_on_step_end, PipelineCallback | MultiPipelineCallbacks):
            check_callback_inputs(callback_on_step_end_tensor_inputs, self._callback_tensor_inputs)
        if decode_chunk_size is not None:
            check_int("decode_chunk_size", decode_chunk_size, minimum=1)
        return batch_size

    def begin_call(self, call: StageCall) -> StageCall:
        """The opening every stage's call shares, once its arguments are checked: sets the guidance state,
        starts uninterrupted, encodes the prompts on the execution device and settles the tensors the step-end
        callback receives (a diffusers ``PipelineCallback``'s own, else the ones asked for, else
        ``["latents"]``)."""
        self._guidance_scale = call.guidance_scale
        self._interrupt = False
        if call.timesteps is not None or call.sigmas is not None:  # their steps, as the scheduler counts them
            self.timesteps_from(call, 0, self._execution_device)
            call.num_inference_steps = self.scheduler.num_inference_steps
        call.prompt_embeds, call.negative_prompt_embeds = self.encode_prompt(
            call.prompt,
            self._execution_device,
            call.num_videos_per_prompt,
            self.do_classifier_free_guidance,
            call.negative_prompt,
            call.prompt_embeds,
            call.negative_prompt_embeds,
            call.clip_skip,
        )
        if isinstance(call.callback_on_step_end, PipelineCallback | MultiPipelineCallbacks):
            call.callback_on_step_end_tensor_inputs = call.callback_on_step_end.tensor_inputs
        call.callback_on_step_end_tensor_inputs = call.callback_on_step_end_tensor_inputs or ["latents"]
        return call

    def prepare_latents(self, shape, call: StageCall) -> torch.Tensor:
        """Starting noise ``shape`` ``(B, C, F, h, w)`` (the call's ``latents`` when given), scaled by the
        scheduler's initial sigma."""
        device, dtype = call.prompt_embeds.device, call.prompt_embeds.dtype
        if call.latents is None:
            return (
                randn_tensor(shape, generator=call.generator, device=device, dtype=dtype)
                * self.scheduler.init_noise_sigma
            )
        return call.latents.to(device=device, dtype=dtype) * self.scheduler.init_noise_sigma

    def timesteps_from(self, call: StageCall, begin_step: int, device) -> torch.Tensor:
        """Sets the scheduler to the call's schedule (its ``num_inference_steps``, or its custom ``timesteps``
        or ``sigmas``) and returns its timesteps from step ``begin_step`` on, the scheduler told to start there
        (diffusers' ``set_begin_index``) when ``begin_step > 0``."""
        if call.timesteps is not None:
            self.scheduler.set_timesteps(timesteps=list(call.timesteps), device=device)
        elif call.sigmas is not None:
            self.scheduler.set_timesteps(sigmas=list(call.sigmas), device=device)
        else:
            self.scheduler.set_timesteps(call.num_inference_steps, device=device)
        first = begin_step * self.scheduler.order
        if first and hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(first)
        return self.scheduler.timesteps[first:]

    def call_progress_bar(self, call: StageCall, runs: int):
        """The one progress bar of a call that runs the denoising loop ``runs`` times (once per window or chunk),
        each run from the first step: its total is all their steps. :meth:`denoise` advances it."""
        steps = len(self.timesteps_from(call, 0, self._execution_device)) * self.free_init_runs(0)
        return self.progress_bar(total=runs * steps)

    def free_init_runs(self, begin_step: int) -> int:
        """Times the denoising loop runs from step ``begin_step``: FreeInit's iterations when it is enabled
        (:meth:`enable_free_init`) and the loop starts from pure noise, else once."""
        return self._free_init_num_iters if self.free_init_enabled and begin_step == 0 else 1

    def enable_free_init(self, num_iters: int = 3, use_fast_sampling: bool = False, **options):
        """FreeInit (Wu et al. 2023, "FreeInit: Bridging Initialization Gap in Video Diffusion Models",
        arXiv:2312.07537): the loop runs ``num_iters`` times from pure noise, each run after the first from the
        last run's sample diffused back to the top of the schedule with its low spatio-temporal frequencies
        kept and its high ones drawn afresh (diffusers' ``FreeInitMixin``, whose ``options`` are taken:
        ``method``, ``order``, ``spatial_stop_frequency``, ``temporal_stop_frequency``). Its fast sampling
        (fewer steps in early runs) is not supported: a ``ValueError``."""
        check_int("num_iters", num_iters, minimum=1)
        if use_fast_sampling:
            raise ValueError(
                "`use_fast_sampling=True` is not supported: every FreeInit run takes the call's schedule; lower "
                "`num_inference_steps` instead."
            )
        super().enable_free_init(num_iters, use_fast_sampling, **options)

    def encode_frames(self, pixels: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
        """Frames ``(B, 3, F, H, W)`` in [-1, 1] as the sample holds them: VAE latents ``(B, C, F, h, w)`` in
        latent space, the pixels themselves in pixel space."""
        if self.vae is None:
            return pixels
        return encode_video(self.vae, pixels.to(self.vae.dtype), chunk_size)

    def decode(self, latents: torch.Tensor, decode_chunk_size: int | None) -> torch.Tensor:
        """Pixels ``(B, 3, F, H, W)`` in [-1, 1] from the denoised sample; a VAE whose decode overflows (float16)
        raises :class:`~cascade.pipelines.sample_checks.NonFiniteSampleError` rather than return black frames."""
        if self.vae is None:
            return latents
        pixels = decode_video(self.vae, latents.to(self.vae.dtype), decode_chunk_size)
        check_finite_pixels(pixels, type(self).__name__)
        return pixels

    def denoise(
        self,
        call: StageCall,
        latents: torch.Tensor,
        conditioning: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        window: int | None = None,
        window_overlap: int = 0,
        begin_step: int = 0,
        end_step: int | None = None,
        known: KnownFrames | None = None,
        progress_bar=None,
        free_init: bool = False,
        control: FrameControl | None = None,
    ) -> torch.Tensor:
        """Runs the scheduler from noise ``latents`` ``(B, C, F, h, w)`` to a clean sample; from step
        ``begin_step`` of ``call.num_inference_steps`` (``latents`` then at that step's noise level), as
        diffusers' image-to-image pipelines do, and up to step ``end_step`` (exclusive; ``None``: to the end).

        ``conditioning`` ``(B, k, F, h, w)`` is concatenated to the model input as the UNet's extra input
        channels; ``class_labels`` ``(B,)`` go to its class embedding. The UNet sees ``window`` frames at a
        time, overlapping by ``window_overlap``, its guided predictions blended (all frames at once when
        ``None``; then ``latents`` may also be images ``(B, C, h, w)`` for a 2D UNet). Guidance uses
        ``self.guidance_scale``, rescaled by ``call.guidance_rescale`` (:func:`rescale_guidance`) per window.

        ``control`` (:mod:`.control`): ControlNet residuals for the controlled frames of each window, from the
        guided batch, at the steps each net acts.

        With ``free_init`` (a video sampled from pure noise) and FreeInit enabled (:meth:`enable_free_init`),
        the loop runs once per FreeInit iteration (:meth:`free_init_runs`).

        ``known`` frames of the output are given (:mod:`.known_frames`): the sample's known frames are replaced
        after every step (before the step-end callback), and with reconstruction guidance each window's
        prediction is corrected towards them.

        The sampling stops early once a step-end callback sets :attr:`interrupt`. Each step advances
        ``progress_bar``, the call's (:meth:`call_progress_bar`) when it denoises in several runs; a bar of its
        own when ``None``.

        A sample that is not finite after a step raises
        :class:`~cascade.pipelines.sample_checks.NonFiniteSampleError` (:mod:`.sample_checks`).
        """
        warn_if_emulated(self.unet.dtype, latents.device)

        def schedule() -> torch.Tensor:
            timesteps = self.timesteps_from(call, begin_step, latents.device)
            if end_step is not None:
                timesteps = timesteps[: (end_step - begin_step) * self.scheduler.order]
            return timesteps

        timesteps = schedule()
        runs = self.free_init_runs(begin_step) if free_init else 1
        self._num_timesteps = len(timesteps)
        step_parameters = inspect.signature(self.scheduler.step).parameters
        # the scheduler's step takes what it has of these (DDIM: both; Euler: generator only)
        step_kwargs = {
            name: value
            for name, value in (("generator", call.generator), ("eta", call.eta))
            if name in step_parameters
        }
        guided = self.do_classifier_free_guidance
        prompt_embeds, negative_prompt_embeds = call.prompt_embeds, call.negative_prompt_embeds

        def guided_prediction(model_input: torch.Tensor, frames: slice, t, step: int) -> torch.Tensor:
            if known is None:
                return classifier_free_prediction(model_input, frames, t, step)
            return known.guided_prediction(
                lambda noisy: classifier_free_prediction(noisy, frames, t, step),
                model_input,
                frames,
                self.scheduler,
                t,
            )

        def classifier_free_prediction(
            model_input: torch.Tensor, frames: slice, t, step: int
        ) -> torch.Tensor:
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
            residuals = {}
            if control is not None:
                residuals = control.residuals(model_input, t, embeds, frames, step, len(timesteps))
            prediction = self.unet(
                model_input,
                t,
                encoder_hidden_states=embeds,
                class_labels=labels,
                cross_attention_kwargs=call.cross_attention_kwargs,
                **residuals,
            ).sample
            if guided:
                unconditional, conditional = prediction.chunk(2)
                prediction = unconditional + self.guidance_scale * (conditional - unconditional)
                if call.guidance_rescale > 0:
                    prediction = rescale_guidance(prediction, conditional, call.guidance_rescale)
            return prediction

        with (
            self.progress_bar(total=runs * len(timesteps))
            if progress_bar is None
            else contextlib.nullcontext(progress_bar)
        ) as progress_bar:
            for run in range(runs):
                if runs > 1:  # FreeInit: the last run's sample, its low frequencies re-noised
                    latents, _ = self._apply_free_init(
                        latents, run, call.num_inference_steps, latents.device, latents.dtype, call.generator
                    )
                    timesteps = schedule()
                for i, t in enumerate(timesteps):
                    if self.interrupt:
                        return latents
                    prediction = run_in_windows(
                        lambda sample, frames, t=t, i=i: guided_prediction(sample, frames, t, i),
                        self.scheduler.scale_model_input(latents, t),
                        window,
                        window_overlap,
                    )
                    latents = self.scheduler.step(prediction, t, latents, **step_kwargs).prev_sample
                    check_finite_sample(latents, type(self).__name__, i, len(timesteps), self.guidance_scale)
                    if known is not None:
                        latents = known.after_step(
                            latents, self.scheduler, timesteps[i + 1] if i + 1 < len(timesteps) else None
                        )

                    if call.callback_on_step_end is not None:
                        available = {
                            "latents": latents,
                            "prompt_embeds": prompt_embeds,
                            "negative_prompt_embeds": negative_prompt_embeds,
                        }
                        tensors = {name: available[name] for name in call.callback_on_step_end_tensor_inputs}
                        replaced = call.callback_on_step_end(self, i, t, tensors) or {}
                        latents = replaced.get("latents", latents)
                        prompt_embeds = replaced.get("prompt_embeds", prompt_embeds)
                        negative_prompt_embeds = replaced.get(
                            "negative_prompt_embeds", negative_prompt_embeds
                        )
                    progress_bar.update()
        return latents

    def finish(self, call: StageCall, latents: torch.Tensor, decode_chunk_size: int | None = None):
        """Decodes the denoised sample ``(B, C, F, h, w)`` to ``call.output_type`` frames (the VAE taking
        ``call.decode_chunk_size`` frames at a time, else ``decode_chunk_size``), frees offloaded models and
        returns the pipeline output."""
        if call.output_type == "latent":
            frames = latents
        else:
            pixels = self.decode(latents, call.decode_chunk_size or decode_chunk_size)
            frames = self.video_processor.postprocess_video(pixels, call.output_type)
        return self.output(call, frames)

    def output(self, call: StageCall, frames) -> VideoPipelineOutput | tuple:
        """The pipeline's return value for ``frames``, once the offloaded models are freed."""
        self.maybe_free_model_hooks()
        if not call.return_dict:
            return (frames,)
        return VideoPipelineOutput(frames=frames)
