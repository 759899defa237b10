"""The arguments every stage pipeline's ``__call__`` takes, declared once with their defaults and documentation.

A stage pipeline writes its ``__call__`` with the arguments that are its own and decorates it with
:func:`stage_call`, which adds the common ones: ``prompt`` first, then the arguments of the stage's family
(the super-resolution stages share ``video`` and ``noise_level``), then the stage's own (``num_frames``,
``window``, ...), then the rest, as diffusers' video pipelines order them. ``inspect.signature`` and
``help`` show every argument. A call binds its arguments, checks them all with the pipeline's
``check_inputs`` (keyword arguments, before any model runs), refuses a call whose estimated peak memory
does not fit (:mod:`.memory_estimate`), runs the opening every stage shares (guidance
state, prompt encoding: :meth:`~cascade.pipelines.stage_base.VideoStagePipeline.begin_call`), and hands the
stage's body a :class:`StageCall` with the common arguments, the prompts encoded.
"""

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from .memory_estimate import preflight

_EMPTY = inspect.Parameter.empty


@dataclass
class Argument:
    """An argument of a stage pipeline's ``__call__``, declared once for the stages that take it."""

    name: str
    default: object
    annotation: object
    doc: str


COMMON_ARGUMENTS = (
    Argument(
        "prompt",
        None,
        str | list[str] | None,
        "the text, or a list of texts (a batch; one per video for a stage that takes a video). Give this or "
        "``prompt_embeds``.",
    ),
    Argument(
        "negative_prompt",
        None,
        str | list[str] | None,
        "what guidance steers away from; the empty prompt when ``None``.",
    ),
    Argument("num_inference_steps", 25, int, "denoising steps."),
    Argument(
        "timesteps",
        None,
        list[int] | None,
        "the timesteps to denoise at, decreasing, instead of the scheduler's spacing (``num_inference_steps`` is "
        "then their count); for schedulers whose ``set_timesteps`` takes ``timesteps`` (as diffusers' "
        "``retrieve_timesteps``).",
    ),
    Argument(
        "sigmas",
        None,
        list[float] | None,
        "the noise levels to denoise at, decreasing, instead of the scheduler's, as its ``set_timesteps`` takes "
        "them (Euler: one more than the steps, the last the final level).",
    ),
    Argument("guidance_scale", 7.5, float, "classifier-free guidance weight; guidance is off at 1 or less."),
    Argument("num_videos_per_prompt", 1, int, "videos generated for each prompt (and input video)."),
    Argument(
        "eta",
        0.0,
        float,
        "DDIM's eta in [0, 1] (Song et al. 2021, arXiv:2010.02502, eq. 16): the share of fresh noise in each "
        "step, 0 deterministic, 1 as DDPM; given to the scheduler's ``step`` where it takes an ``eta`` "
        "(DDIM), ignored by the others.",
    ),
    Argument(
        "generator",
        None,
        torch.Generator | list[torch.Generator] | None,
        "a generator, or one per output video, for reproducible noise.",
    ),
    Argument(
        "latents",
        None,
        torch.Tensor | None,
        "starting noise ``(B * num_videos_per_prompt, C, F, h, w)`` of the stage's output frames "
        "(``pipe.latents_shape``).",
    ),
    Argument("prompt_embeds", None, torch.Tensor | None, "precomputed text embeddings ``(B, L, D)``."),
    Argument(
        "negative_prompt_embeds",
        None,
        torch.Tensor | None,
        "precomputed negative text embeddings ``(B, L, D)``, with ``prompt_embeds``.",
    ),
    Argument(
        "clip_skip",
        None,
        int | None,
        "layers of the text encoder to skip from the last: the prompt is read from the hidden states that many "
        "layers earlier, through the final layer norm (as diffusers' Stable Diffusion pipelines); ignored with "
        "``prompt_embeds``.",
    ),
    Argument(
        "output_type",
        "np",
        str,
        '``"np"`` ``(B, F, H, W, 3)`` in [0, 1], ``"pt"`` ``(B, F, 3, H, W)``, ``"pil"`` (a list of lists of '
        'images), or ``"latent"`` ``(B, C, F, h, w)``.',
    ),
    Argument("return_dict", True, bool, "return a :class:`VideoPipelineOutput` rather than a tuple."),
    Argument(
        "cross_attention_kwargs",
        None,
        dict | None,
        "keyword arguments for the UNet's attention processors, given to its forward at every step; "
        '``{"scale": 0.5}`` sets the scale of loaded LoRAs for this call (0: as without them).',
    ),
    Argument(
        "guidance_rescale",
        0.0,
        float,
        "phi in [0, 1] of guidance rescaling (Lin et al. 2023, arXiv:2305.08891, sec. 3.4): the guided prediction "
        "rescaled to the conditional one's standard deviation, mixed in by this weight (0: plain guidance); "
        "with guidance only.",
    ),
    Argument(
        "callback_on_step_end",
        None,
        Callable | PipelineCallback | MultiPipelineCallbacks | None,
        "called as ``fn(pipe, step, timestep, tensors)`` after each denoising step; may return a dict of "
        "replaced tensors.",
    ),
    Argument(
        "callback_on_step_end_tensor_inputs",
        None,
        list[str] | None,
        'the tensors the callback receives (default ``["latents"]``).',
    ),
    Argument(
        "decode_chunk_size",
        None,
        int | None,
        "frames the VAE decodes (and encodes) at a time, bounding its memory; the stage's default when "
        "``None``.",
    ),
)
COMMON_NAMES = tuple(argument.name for argument in COMMON_ARGUMENTS)


@dataclass
class StageCall:
    """The common arguments of one stage call (see :data:`COMMON_ARGUMENTS`). After the opening
    (:meth:`~cascade.pipelines.stage_base.VideoStagePipeline.begin_call`), ``prompt_embeds`` and
    ``negative_prompt_embeds`` hold the encoded prompts ``(B * num_videos_per_prompt, L, D)`` on the
    execution device (the negative ones ``None`` without guidance), and
    ``callback_on_step_end_tensor_inputs`` the tensors the callback receives."""

    prompt: str | list[str] | None
    negative_prompt: str | list[str] | None
    num_inference_steps: int
    timesteps: list[int] | None
    sigmas: list[float] | None
    guidance_scale: float
    num_videos_per_prompt: int
    eta: float
    generator: torch.Generator | list[torch.Generator] | None
    latents: torch.Tensor | None
    prompt_embeds: torch.Tensor | None
    negative_prompt_embeds: torch.Tensor | None
    clip_skip: int | None
    output_type: str
    return_dict: bool
    cross_attention_kwargs: dict | None
    guidance_rescale: float
    callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None
    callback_on_step_end_tensor_inputs: list[str] | None
    decode_chunk_size: int | None
    inputs: dict = field(default_factory=dict)  # the arguments of the stage's family, by name

    @property
    def batch_size(self) -> int:
        """Videos in the batch: prompts times ``num_videos_per_prompt`` (after the opening)."""
        return self.prompt_embeds.shape[0]

    def common(self) -> dict:
        """The common arguments, by name."""
        return {name: getattr(self, name) for name in COMMON_NAMES}

    @classmethod
    def with_defaults(cls, **arguments) -> "StageCall":
        """A call of the common ``arguments`` given, the others at their defaults (for a pipeline method
        other than ``__call__`` that runs the denoising loop, such as inversion)."""
        unknown = sorted(set(arguments) - set(COMMON_NAMES))
        if unknown:
            raise ValueError(
                f"`arguments` has {unknown}, which are not common arguments {list(COMMON_NAMES)}."
            )
        return cls(
            **{argument.name: arguments.get(argument.name, argument.default) for argument in COMMON_ARGUMENTS}
        )


def _parameters(arguments, defaults: dict) -> list[inspect.Parameter]:
    return [
        inspect.Parameter(
            argument.name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=defaults.get(argument.name, argument.default),
            annotation=argument.annotation,
        )
        for argument in arguments
    ]


def _document(doc: str | None, family: tuple[Argument, ...], defaults: dict) -> str:
    lines = [(doc or "").rstrip()]
    for title, arguments in (
        ("of this stage's family", family),
        ("every stage pipeline takes", COMMON_ARGUMENTS),
    ):
        if arguments:
            lines += ["", f"    Arguments {title}:"]
        for argument in arguments:
            default = defaults.get(argument.name, argument.default)
            lines.append(f"        {argument.name} (default ``{default!r}``): {argument.doc}")
    return "\n".join(lines) + "\n"


def stage_call(family: tuple[Argument, ...] = (), **defaults) -> Callable:
    """Decorates a stage pipeline's ``__call__(self, call, <stage arguments>)``: the pipeline's ``__call__``
    then takes ``prompt``, the ``family`` arguments (handed to the body in ``call.inputs``), the stage
    arguments and the other common arguments; ``defaults`` override the common defaults for this stage
    (e.g. ``guidance_scale=4.0``)."""
    unknown = sorted(set(defaults) - set(COMMON_NAMES))
    if unknown:
        raise ValueError(f"`defaults` names {unknown}, which are not common arguments {list(COMMON_NAMES)}.")

    def decorate(function: Callable) -> Callable:
        own = list(inspect.signature(function).parameters.values())
        if [parameter.name for parameter in own[:2]] != ["self", "call"]:
            raise ValueError(f"{function.__qualname__} must take (self, call, ...), got {own[:2]}.")
        stage_parameters = own[2:]
        family_names = [argument.name for argument in family]
        clash = sorted({parameter.name for parameter in stage_parameters} & {*COMMON_NAMES, *family_names})
        if clash:
            raise ValueError(f"{function.__qualname__} redeclares common or family arguments {clash}.")
        common = _parameters(COMMON_ARGUMENTS, defaults)
        signature = inspect.Signature(
            [own[0], common[0], *_parameters(family, {}), *stage_parameters, *common[1:]]
        )
        stage_names = [parameter.name for parameter in stage_parameters]

        @functools.wraps(function)
        def wrapper(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            del arguments["self"]
            self.check_inputs(**arguments)
            preflight(self, arguments)
            call = StageCall(
                **{name: arguments[name] for name in COMMON_NAMES},
                inputs={name: arguments[name] for name in family_names},
            )
            return function(self, self.begin_call(call), **{name: arguments[name] for name in stage_names})

        wrapper.__signature__ = signature
        wrapper.__doc__ = _document(function.__doc__, family, defaults)
        return wrapper

    return decorate
