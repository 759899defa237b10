"""The checks of the arguments every stage pipeline takes (prompts, generators, output types, callbacks) and
the conversion of a video argument to a tensor. Generic checks (ints, numbers, shapes) are
:mod:`cascade.utils.checks`; like them, these raise ``ValueError`` naming the argument."""

import inspect

import numpy as np
import PIL.Image
import torch

from cascade.data.video_fit import fit_video
from cascade.utils.checks import check_tensor_shape

OUTPUT_TYPES = ("np", "pt", "pil", "latent")


def check_output_type(output_type, allowed=OUTPUT_TYPES) -> None:
    if output_type not in allowed:
        raise ValueError(f"`output_type` must be one of {list(allowed)}, got {output_type!r}.")


def check_prompts(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, embed_dim: int) -> int:
    """Validates the prompt arguments and returns the batch size they define."""
    if (prompt is None) == (prompt_embeds is None):
        raise ValueError(
            "Give exactly one of `prompt` and `prompt_embeds`, got "
            f"prompt={prompt!r} and prompt_embeds={'a tensor' if prompt_embeds is not None else None}."
        )
    if prompt is not None:
        if isinstance(prompt, str):
            prompt = [prompt]
        if not isinstance(prompt, list) or not prompt or not all(isinstance(p, str) for p in prompt):
            raise ValueError(f"`prompt` must be a str or a non-empty list of str, got {prompt!r}.")
        batch_size = len(prompt)
    else:
        check_tensor_shape("prompt_embeds", prompt_embeds, (None, None, embed_dim))
        batch_size = prompt_embeds.shape[0]
    if negative_prompt is not None and negative_prompt_embeds is not None:
        raise ValueError("Give at most one of `negative_prompt` and `negative_prompt_embeds`, got both.")
    if negative_prompt is not None:
        negatives = [negative_prompt] if isinstance(negative_prompt, str) else negative_prompt
        if not isinstance(negatives, list) or not all(isinstance(p, str) for p in negatives):
            raise ValueError(f"`negative_prompt` must be a str or a list of str, got {negative_prompt!r}.")
        if len(negatives) != batch_size:
            raise ValueError(
                f"`negative_prompt` has {len(negatives)} entries but the prompts define a batch of {batch_size}."
            )
    if negative_prompt_embeds is not None:
        if prompt_embeds is None:
            raise ValueError("`negative_prompt_embeds` needs `prompt_embeds` too; got it with `prompt`.")
        check_tensor_shape("negative_prompt_embeds", negative_prompt_embeds, tuple(prompt_embeds.shape))
    return batch_size


def check_generator(generator, batch_size: int) -> None:
    if generator is None or isinstance(generator, torch.Generator):
        return
    if not isinstance(generator, list) or not all(isinstance(g, torch.Generator) for g in generator):
        raise ValueError(f"`generator` must be a torch.Generator or a list of them, got {generator!r}.")
    if len(generator) != batch_size:
        raise ValueError(
            f"`generator` is a list of {len(generator)} generators but the batch has {batch_size} videos "
            "(prompts x num_videos_per_prompt)."
        )


def check_callback_inputs(callback_inputs, allowed) -> None:
    if callback_inputs is None:
        return
    if not isinstance(callback_inputs, list | tuple) or not all(
        isinstance(name, str) for name in callback_inputs
    ):
        raise ValueError(
            f"`callback_on_step_end_tensor_inputs` must be a list of names from {list(allowed)}, got "
            f"{callback_inputs!r:.100}."
        )
    unknown = [name for name in callback_inputs if name not in allowed]
    if unknown:
        raise ValueError(f"`callback_on_step_end_tensor_inputs` has {unknown}, allowed: {list(allowed)}.")


def video_to_tensor(video, processor, name: str = "video") -> torch.Tensor:
    """A video as a previous stage returns it, as ``(B, 3, F, H, W)`` in [-1, 1].

    Accepts ``np`` ``(B, F, H, W, 3)`` and ``pt`` ``(B, F, 3, H, W)`` floats in [0, 1], a list of PIL frames
    (one video) or a list of such lists (a batch). ``processor`` is the pipeline's ``VideoProcessor``.
    """
    if isinstance(video, (np.ndarray, torch.Tensor)):
        channel_axis = -1 if isinstance(video, np.ndarray) else 2
        layout = "(B, F, H, W, 3)" if isinstance(video, np.ndarray) else "(B, F, 3, H, W)"
        if video.ndim != 5 or video.shape[channel_axis] != 3:
            raise ValueError(f"`{name}` must have shape {layout}, got {tuple(video.shape)}.")
        if 0 in video.shape:
            raise ValueError(f"`{name}` must hold frames, got an empty array of shape {tuple(video.shape)}.")
        values = torch.as_tensor(video)
        if (
            not values.is_floating_point()
            or not torch.isfinite(values).all()
            or values.min() < 0
            or values.max() > 1
        ):
            raise ValueError(f"`{name}` must hold finite floats in [0, 1] (a stage's `np` or `pt` output).")
    elif isinstance(video, list) and video:
        videos = video if isinstance(video[0], list) else [video]
        if not all(v and all(isinstance(f, PIL.Image.Image) for f in v) for v in videos):
            raise ValueError(
                f"`{name}` must be a list of PIL images or a list of such lists, got {video!r:.200}."
            )
        if len({(len(v), f.size) for v in videos for f in v}) != 1:
            raise ValueError(f"`{name}`: every video must have the same number of frames and frame size.")
    else:
        raise ValueError(
            f"`{name}` must be an np array (B, F, H, W, 3), a tensor (B, F, 3, H, W) or PIL frames, "
            f"got {type(video).__name__}."
        )
    return processor.preprocess_video(video)  # (B, 3, F, H, W) in [-1, 1]


def fit_videos(video, num_frames: int, size: int, name: str = "video") -> np.ndarray:
    """Clips of any frame count and size (``np`` ``(B, F, H, W, 3)`` or ``pt`` ``(B, F, 3, H, W)`` in [0, 1]) as
    float32 ``(B, num_frames, size, size, 3)``: :func:`cascade.data.video_fit.fit_video` of each."""
    if isinstance(video, torch.Tensor) and video.ndim == 5:
        video = video.permute(0, 1, 3, 4, 2).cpu().numpy()  # (B, F, H, W, 3)
    if not isinstance(video, np.ndarray) or video.ndim != 5 or video.shape[-1] != 3:
        raise ValueError(
            f"`{name}` must be an np array (B, F, H, W, 3) or a tensor (B, F, 3, H, W) in [0, 1], got "
            f"{type(video).__name__} of shape {tuple(getattr(video, 'shape', ()))}."
        )
    if video.shape[1] < 2:
        raise ValueError(
            f"`{name}` must have at least 2 frames (a single image is no video), got {video.shape[1]}."
        )
    return np.stack([fit_video(clip, num_frames, size, size) for clip in video])


def check_custom_schedule(scheduler, timesteps, sigmas) -> None:
    """``timesteps`` or ``sigmas`` (not both): ``None``, or a non-empty decreasing list of numbers that
    ``scheduler.set_timesteps`` takes (timesteps: ints in ``[0, num_train_timesteps)``; sigmas: ``>= 0``)."""
    if timesteps is not None and sigmas is not None:
        raise ValueError("give `timesteps` or `sigmas`, not both.")
    for name, values in (("timesteps", timesteps), ("sigmas", sigmas)):
        if values is None:
            continue
        top = scheduler.config.get("num_train_timesteps")
        numbers = list(values) if isinstance(values, list | tuple) else None
        valid = bool(numbers) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in numbers
        )
        if valid and name == "timesteps":
            valid = all(float(v).is_integer() and 0 <= v and (top is None or v < top) for v in numbers)
        if valid and name == "sigmas":
            valid = all(v >= 0 for v in numbers)
        if not valid or any(a <= b for a, b in zip(numbers[:-1], numbers[1:], strict=True)):
            allowed = f"ints in [0, {top})" if name == "timesteps" else "numbers >= 0"
            raise ValueError(
                f"`{name}` must be a non-empty strictly decreasing list of {allowed}, got {values!r:.100}."
            )
        if name not in inspect.signature(scheduler.set_timesteps).parameters:
            raise ValueError(
                f"`{name}`: the scheduler {type(scheduler).__name__} takes no custom {name} (its `set_timesteps` has "
                f"no `{name}` argument); use `num_inference_steps`, or a scheduler that does, such as "
                f"{'DPMSolverMultistepScheduler' if name == 'timesteps' else 'EulerDiscreteScheduler'}."
            )
        try:  # what else the scheduler requires of them (UniPC: sigmas only with flow sigmas)
            scheduler.set_timesteps(**{name: numbers})
        except (ValueError, TypeError) as error:
            raise ValueError(f"`{name}`: {type(scheduler).__name__} refused them: {error}") from None
