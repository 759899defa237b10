"""What the web app's Generate tab runs: its settings, with the model's own defaults, their checks, and the
cascade run one stage at a time, so that each stage's frames can be shown as soon as that stage finishes.

Running the stages one by one computes exactly what one call of the cascade computes: stage ``i`` of the
stages run is seeded ``seed + i`` (as :class:`~cascade.pipelines.cascade.CascadePipeline` seeds it) and
gets the previous stage's frames as a tensor, in memory.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from cascade.pipelines.cascade import CascadePipeline
from cascade.pipelines.stages import STAGE_NAMES
from cascade.utils.checks import check_int, check_number


@dataclass(frozen=True)
class StageSettings:
    """The sampling settings the app offers for one stage."""

    num_inference_steps: int
    guidance_scale: float


@dataclass(frozen=True)
class GenerationRequest:
    """One press of Generate.

    Attributes:
        prompt, negative_prompt: the text (``negative_prompt`` empty: the empty prompt).
        seed: seeds stage ``i`` of the stages run with ``seed + i``.
        num_frames: the number of keyframes.
        stages: the stages to run, each with its settings, in cascade order.
    """

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    num_frames: int = 8
    stages: dict[str, StageSettings] = field(default_factory=dict)


@dataclass(frozen=True)
class StageOutput:
    """One finished stage: its name and its frames ``(F, H, W, 3)`` float32 in [0, 1]."""

    name: str
    frames: np.ndarray


def _check_cascade(cascade) -> None:
    if not isinstance(cascade, CascadePipeline):
        raise ValueError(f"`cascade` must be a CascadePipeline, got {type(cascade).__name__}.")


def _stage_default(cascade, name: str, argument: str):
    """``argument``'s default for stage ``name``: the cascade's ``stage_defaults``, else the stage's own."""
    return cascade.stage_defaults.get(name, {}).get(argument, cascade.stages[name].call_default(argument))


def default_settings(cascade) -> dict[str, StageSettings]:
    """Every stage of ``cascade`` with the settings it runs with when a call leaves them out."""
    _check_cascade(cascade)
    return {
        name: StageSettings(
            _stage_default(cascade, name, "num_inference_steps"),
            float(_stage_default(cascade, name, "guidance_scale")),
        )
        for name in cascade.stages
    }


def default_num_frames(cascade) -> int:
    """The number of keyframes ``cascade`` makes when a call leaves it out."""
    _check_cascade(cascade)
    if STAGE_NAMES[0] not in cascade.stages:
        raise ValueError(f"`cascade` must have a {STAGE_NAMES[0]} stage, it has {list(cascade.stages)}.")
    return _stage_default(cascade, STAGE_NAMES[0], "num_frames")


def check_request(cascade, request: GenerationRequest) -> None:
    """Raises ``ValueError`` naming the setting for anything in ``request`` that ``cascade`` cannot run, before
    any model runs: the stages (known, in cascade order, starting with keyframes), the prompts, the seed, and
    each stage's steps and guidance (with the messages the stage pipelines' own checks give). The number of
    keyframes is left to the keyframes stage, whose check runs before its model does."""
    _check_cascade(cascade)
    if not isinstance(request, GenerationRequest):
        raise ValueError(f"`request` must be a GenerationRequest, got {request!r}.")
    if not isinstance(request.prompt, str) or not request.prompt.strip():
        raise ValueError(f"`prompt` must be a non-empty str, got {request.prompt!r}.")
    if not isinstance(request.negative_prompt, str):
        raise ValueError(f"`negative_prompt` must be a str, got {request.negative_prompt!r}.")
    check_int("seed", request.seed, minimum=0)
    names = list(request.stages)
    unknown = [name for name in names if name not in cascade.stages]
    if unknown:
        raise ValueError(
            f"`stages` has {unknown}, which this model does not have; it has {list(cascade.stages)}."
        )
    if not names or names[0] != STAGE_NAMES[0]:
        raise ValueError(
            f"`stages` must start with {STAGE_NAMES[0]!r} (the app generates from a prompt), got {names}."
        )
    if names != [name for name in cascade.stages if name in names]:
        raise ValueError(f"`stages` must be in cascade order {list(cascade.stages)}, got {names}.")
    for name, settings in request.stages.items():
        try:
            check_int("num_inference_steps", settings.num_inference_steps, minimum=1)
            check_number("guidance_scale", settings.guidance_scale, minimum=0.0)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None


def step_callback(on_step: Callable[[str, int, int], None], name: str) -> Callable:
    """A ``callback_on_step_end`` for stage ``name`` that reports ``on_step(name, steps done, steps of the
    stage)`` after every denoising step."""
    if not callable(on_step):
        raise ValueError(f"`on_step` must be a callable (stage, steps done, steps), got {on_step!r}.")
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty str (a stage's name), got {name!r}.")

    def callback(pipeline, step: int, timestep, tensors: dict) -> dict:
        on_step(name, step + 1, pipeline.num_timesteps)
        return {}

    return callback


def run_stages(
    cascade, request: GenerationRequest, on_step: Callable[[str, int, int], None] | None = None
) -> Iterator[StageOutput]:
    """Checks ``request`` (:func:`check_request`), then runs its stages of ``cascade`` one at a time and yields
    each one's frames as it finishes; ``on_step(stage, steps done, steps of the stage)`` is called after every
    denoising step. The last output equals ``cascade.subset(stages)(prompt, seed=seed, ...)``'s frames."""
    check_request(cascade, request)
    video = None  # (1, F, 3, H, W) in [0, 1]: the previous stage's frames
    for index, (name, settings) in enumerate(request.stages.items()):
        stage_kwargs = {
            "num_inference_steps": settings.num_inference_steps,
            "guidance_scale": settings.guidance_scale,
            "seed": request.seed + index,
        }
        if name == STAGE_NAMES[0]:
            stage_kwargs["num_frames"] = request.num_frames
        if on_step is not None:
            stage_kwargs["callback_on_step_end"] = step_callback(on_step, name)
        video = cascade.subset([name])(
            request.prompt,
            negative_prompt=request.negative_prompt or None,
            video=video,
            stage_kwargs={name: stage_kwargs},
            output_type="pt",
        ).frames
        frames = video[0].permute(0, 2, 3, 1).float().cpu().numpy()  # (F, H, W, 3)
        yield StageOutput(name, frames)
