"""The cascade: any ordered subset of the four stages, chained in memory.

Quality comes from a chain of models that each solve an easier problem (Ho et al. 2022, "Cascaded
Diffusion Models", arXiv:2106.15282; Ho et al. 2022, "Imagen Video", arXiv:2210.02303; Singer et al.
2022, "Make-A-Video", arXiv:2209.14792): keyframes, frame interpolation, spatiotemporal and spatial
super-resolution. The prompt is encoded once per distinct text encoder, and each stage hands its
frames to the next as a tensor.
"""

import hashlib
import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from cascade.utils.atomic import write_folder_atomically
from cascade.utils.checks import check_bool, check_optional_int
from cascade.utils.package_data import shipped_path

from .hub_loading import MODEL_INDEX, WEIGHT_HASHES, CodeFilesMixin, check_save_directory, local_folder
from .inputs import check_generator, check_output_type, fit_videos, video_to_tensor
from .interpolation import InterpolationPipeline
from .keyframes import KeyframesPipeline
from .memory_estimate import preflight_cascade
from .spatial_sr import SpatialSRPipeline
from .spatiotemporal_sr import SpatioTemporalSRPipeline
from .stages import STAGE_NAMES, stage

INDEX_FILE = "cascade_index.json"
EDIT_SETTINGS = {"method", "num_inference_steps", "guidance_scale", "attention_injection", "strength"}
# The demo cascade trained by configs/demo: the repository's weights/demo, or the wheel's copy of it.
DEMO_MODEL = shipped_path("weights/demo")


def _check_cascade_output_type(output_type: str) -> None:
    """A cascade's final frames are pixels: ``np``, ``pt`` or ``pil``."""
    if output_type == "latent":
        raise ValueError("`output_type` must be one of ['np', 'pt', 'pil'] for a cascade, got 'latent'.")
    check_output_type(output_type)


@dataclass
class CascadePipelineOutput(BaseOutput):
    """``frames`` of the last stage, in the requested ``output_type``; ``stage_frames`` maps each stage to its
    output ``(B, F, 3, H, W)`` in [0, 1] when ``return_stage_outputs=True``, else ``None``."""

    frames: np.ndarray | torch.Tensor | list
    stage_frames: dict[str, torch.Tensor] | None = None


class CascadePipeline(CodeFilesMixin, DiffusionPipeline):
    """Chains stage pipelines, in the order keyframes, interpolation, spatiotemporal SR, spatial SR.

    Args:
        keyframes, interpolation, spatiotemporal_sr, spatial_sr: the stage pipelines, keyword arguments; any
            subset, at least one, run in that order. Without a keyframes stage, ``__call__`` needs a ``video``.
        stage_defaults: per-stage settings used when a call does not set them, in the layout of
            ``stage_kwargs`` (e.g. the sampling settings a trained cascade was tuned with); saved with the
            cascade. A call's ``stage_kwargs`` override them key by key.

    Stage compatibility (frame channels and sizes, scale factors) is checked here, before any model runs.
    The stages are the pipeline's components, so ``DiffusionPipeline.from_pretrained`` loads a saved cascade
    stage by stage (see :meth:`save_pretrained`).
    """

    _optional_components = list(STAGE_NAMES)

    def __new__(cls, *args, **kwargs):
        """Refuses keyword arguments that name no stage with a ``ValueError`` listing the allowed ones, where
        ``__init__`` (which takes each stage as an argument of its own, for diffusers to read) would raise a
        bare ``TypeError``."""
        unknown = [name for name in kwargs if name not in STAGE_NAMES and name != "stage_defaults"]
        if unknown:
            raise ValueError(f"Unknown stage(s) {unknown}; allowed: {list(STAGE_NAMES)}.")
        return super().__new__(cls)

    def __init__(
        self,
        *,
        keyframes: KeyframesPipeline | None = None,
        interpolation: InterpolationPipeline | None = None,
        spatiotemporal_sr: SpatioTemporalSRPipeline | None = None,
        spatial_sr: SpatialSRPipeline | None = None,
        stage_defaults: dict[str, dict] | None = None,
    ):
        super().__init__()
        given = {
            "keyframes": keyframes,
            "interpolation": interpolation,
            "spatiotemporal_sr": spatiotemporal_sr,
            "spatial_sr": spatial_sr,
        }
        stages = {name: stage for name, stage in given.items() if stage is not None}
        if not stages:
            raise ValueError(f"Give at least one stage, as keyword arguments named from {list(STAGE_NAMES)}.")
        for name, pipeline in stages.items():
            if not isinstance(pipeline, stage(name).pipeline_class):
                raise ValueError(
                    f"Stage {name!r} must be a {stage(name).pipeline}, got {type(pipeline).__name__}."
                )
        self.stages = stages
        self._check_compatibility()
        self.stage_defaults = self._check_stage_kwargs("stage_defaults", stage_defaults)
        self.register_modules(**given)
        self.register_to_config(stage_defaults=self.stage_defaults or None)

    def _check_compatibility(self) -> None:
        size, previous = None, None
        for name, pipeline in self.stages.items():
            problem = None if size is None else pipeline.input_size_problem(size)
            if problem:
                raise ValueError(
                    f"Stage {previous!r} outputs {size}x{size} frames but stage {name!r} {problem}."
                )
            if pipeline.text_embedding_dim != pipeline.text_encoder.config.hidden_size:
                raise ValueError(
                    f"Stage {name!r}: its UNet attends to {pipeline.text_embedding_dim}-d text but its text "
                    f"encoder gives {pipeline.text_encoder.config.hidden_size}-d embeddings."
                )
            size, previous = pipeline.output_shape(None, size, {})[1], name

    def output_shapes(self, num_frames: int | None, stage_kwargs: dict | None = None) -> dict[str, tuple]:
        """``{stage: (frames, size)}``: what each stage outputs, from its ``stage_kwargs`` (the cascade's
        ``stage_defaults`` filling in) and the keyframes' ``num_frames``; ``None`` where not known."""
        settings = {**self.stage_defaults, **(stage_kwargs or {})}
        frames, size, shapes = num_frames, None, {}
        for name, pipeline in self.stages.items():
            frames, size = pipeline.output_shape(frames, size, settings.get(name, {}))
            shapes[name] = (frames, size)
        return shapes

    def _check_stage_kwargs(self, argument: str, stage_kwargs: dict) -> dict:
        """Checks per-stage settings (``stage_kwargs`` or ``stage_defaults``): known stages, dicts of arguments
        the stage's ``__call__`` takes, none the cascade sets itself, int seeds. Returns them (a new dict; ``{}``
        for ``None``)."""
        if stage_kwargs is not None and not isinstance(stage_kwargs, dict):
            raise ValueError(
                f"`{argument}` must be a dict of per-stage settings, {{stage: {{argument: value}}}}, got "
                f"{stage_kwargs!r:.100}."
            )
        stage_kwargs = dict(stage_kwargs or {})
        unknown = [name for name in stage_kwargs if name not in self.stages]
        if unknown:
            raise ValueError(
                f"`{argument}` names stage(s) {unknown} not in this cascade {list(self.stages)}."
            )
        reserved = {
            "prompt",
            "negative_prompt",
            "video",
            "prompt_embeds",
            "negative_prompt_embeds",
            "output_type",
            "generator",
            "return_dict",
            "num_videos_per_prompt",
        }
        for name, settings in stage_kwargs.items():
            if not isinstance(settings, dict):
                raise ValueError(f"`{argument}[{name!r}]` must be a dict, got {settings!r}.")
            if reserved & set(settings):
                raise ValueError(
                    f"`{argument}[{name!r}]` sets {sorted(reserved & set(settings))}, which the cascade "
                    "sets itself; use `seed` instead of `generator` there (or the cascade's own `generator`)."
                )
            accepted = set(inspect.signature(self.stages[name].__call__).parameters) | {"seed"}
            unknown_settings = sorted(set(settings) - accepted)
            if unknown_settings:
                raise ValueError(
                    f"`{argument}[{name!r}]` has {unknown_settings}, which {type(self.stages[name]).__name__} "
                    f"does not take; allowed: {sorted(accepted - reserved)}."
                )
            check_optional_int(f"{argument}[{name!r}]['seed']", settings.get("seed"))
        return stage_kwargs

    @property
    def needs_video(self) -> bool:
        """Whether a call needs a ``video``: the first stage takes one (it is not ``keyframes``)."""
        return stage(next(iter(self.stages))).takes_video

    def subset(self, names: list[str]) -> "CascadePipeline":
        """A cascade of this one's stages named in ``names`` (in cascade order), sharing their pipelines and
        this cascade's ``stage_defaults`` for them."""
        missing = [name for name in names if name not in self.stages]
        if missing:
            raise ValueError(
                f"`names` has stage(s) {missing} this cascade does not have; it has {list(self.stages)}."
            )
        kept = {name: pipeline for name, pipeline in self.stages.items() if name in names}
        defaults = {name: settings for name, settings in self.stage_defaults.items() if name in kept}
        return type(self)(stage_defaults=defaults, **kept)

    @property
    def text_encoders(self) -> list:
        """The distinct ``(tokenizer, text_encoder)`` pairs of the stages."""
        pairs = []
        for pipeline in self.stages.values():
            if all(pipeline.text_encoder is not encoder for _, encoder in pairs):
                pairs.append((pipeline.tokenizer, pipeline.text_encoder))
        return pairs

    def to(self, *args, **kwargs) -> "CascadePipeline":
        for pipeline in self.stages.values():
            pipeline.to(*args, **kwargs)
        return self

    def enable_model_cpu_offload(self, **kwargs) -> None:
        for pipeline in self.stages.values():
            pipeline.enable_model_cpu_offload(**kwargs)

    def enable_sequential_cpu_offload(self, **kwargs) -> None:
        """diffusers' ``enable_sequential_cpu_offload`` (``kwargs``: its ``gpu_id``, ``device``) on every stage:
        each submodule moves to the accelerator only while it runs. diffusers' own method would find no model
        among the cascade's components, which are pipelines, and offload nothing."""
        for pipeline in self.stages.values():
            pipeline.enable_sequential_cpu_offload(**kwargs)

    def set_progress_bar_config(self, **kwargs) -> None:
        for pipeline in self.stages.values():
            pipeline.set_progress_bar_config(**kwargs)

    def set_attention_slice(self, slice_size: str | int | None) -> None:
        """Every stage's UNet computes attention in ``slice_size`` slices (``None``: at once); what
        ``enable_attention_slicing`` and ``disable_attention_slicing`` call. diffusers' own method would find no
        model among the cascade's components, which are pipelines, and slice nothing."""
        for pipeline in self.stages.values():
            pipeline.set_attention_slice(slice_size)

    def enable_freeu(self, s1: float, s2: float, b1: float, b2: float) -> None:
        """FreeU (Si et al. 2023, arXiv:2309.11497) with these factors on every stage's UNet, as diffusers'
        ``enable_freeu`` sets it on a pipeline's; :meth:`disable_freeu` takes it off."""
        for pipeline in self.stages.values():
            pipeline.enable_freeu(s1=s1, s2=s2, b1=b1, b2=b2)

    def disable_freeu(self) -> None:
        for pipeline in self.stages.values():
            pipeline.disable_freeu()

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
    ) -> None:
        """Writes one subfolder per stage (each a stage's ``save_pretrained``, given ``safe_serialization``,
        ``variant`` and ``max_shard_size`` as diffusers' pipelines take them), ``cascade_index.json`` (read
        by :meth:`from_pretrained`), and ``model_index.json`` with its code files, so that
        ``DiffusionPipeline.from_pretrained(folder_or_repo, trust_remote_code=True)`` loads the cascade too,
        each stage as a component (see :mod:`~cascade.pipelines.hub_loading`). Written to a temporary folder
        first, then renamed, so a failed save leaves nothing half-written."""
        target = check_save_directory(save_directory, INDEX_FILE, "cascade")
        options = {
            "safe_serialization": safe_serialization,
            "variant": variant,
            "max_shard_size": max_shard_size,
        }

        def write(partial: Path) -> None:
            for name, pipeline in self.stages.items():
                pipeline.save_pretrained(partial / name, **options)
            index = {"_class_name": type(self).__name__, "stages": list(self.stages)}
            if self.stage_defaults:
                index["stage_defaults"] = self.stage_defaults
            (partial / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
            self.save_config(partial)

        write_folder_atomically(target, write)

    @classmethod
    def from_pretrained(cls, pretrained_path: str | os.PathLike, **kwargs) -> "CascadePipeline":
        """Loads a folder written by :meth:`save_pretrained`, or a Hub repo id holding one (through the Hugging
        Face cache; offline too, see :func:`~cascade.pipelines.hub_loading.local_folder`). Stages whose text
        encoders are byte-identical on disk share one loaded encoder, so the prompt is encoded once for them.
        ``kwargs`` go to each stage's ``from_pretrained``, Hub ones (``revision``, ``cache_dir``, ``token``,
        ``force_download``, ``local_files_only``) to the download; weights load from safetensors only unless
        ``use_safetensors=False``. The weight files are checked against the sha256 recorded when the cascade
        was saved (its ``weights_sha256.json`` covers every stage's, else each stage's own) unless
        ``verify_weights=False``; a file that differs raises
        :class:`~cascade.pipelines.hub_loading.WeightsChangedError` naming it."""
        verify = kwargs.get("verify_weights", True)
        allow_pickled = kwargs.get("use_safetensors") is False
        folder = local_folder(pretrained_path, INDEX_FILE, _saved_stage_files, kwargs)  # checks the hashes
        if allow_pickled:  # local_folder turned the opt-in into diffusers' None; each stage reads it again
            kwargs["use_safetensors"] = False
        kwargs["verify_weights"] = verify is True and not (folder / WEIGHT_HASHES).is_file()  # not twice
        index_path = folder / INDEX_FILE
        if not index_path.is_file():
            raise ValueError(f"`pretrained_path` {str(folder)!r} has no {INDEX_FILE}; is it a saved cascade?")
        index = json.loads(index_path.read_text())
        names = index.get("stages")
        if not isinstance(names, list) or not names:
            raise ValueError(
                f'{str(index_path)!r} must list the cascade\'s stages under "stages", got {names!r}.'
            )
        stages, shared = {}, {}
        for name in names:
            if name not in STAGE_NAMES:
                raise ValueError(f"{INDEX_FILE} names unknown stage {name!r}; allowed: {list(STAGE_NAMES)}.")
            key = _text_encoder_fingerprint(folder / name)
            components = (
                dict(zip(("tokenizer", "text_encoder"), shared[key], strict=True)) if key in shared else {}
            )
            pipeline = stage(name).pipeline_class.from_pretrained(folder / name, **components, **kwargs)
            shared.setdefault(key, (pipeline.tokenizer, pipeline.text_encoder))
            stages[name] = pipeline
        return cls(stage_defaults=index.get("stage_defaults"), **stages)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        video=None,
        stage_kwargs: dict[str, dict] | None = None,
        seed: int | None = None,
        output_type: str = "np",
        return_stage_outputs: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> CascadePipelineOutput | tuple:
        """Generates a video for ``prompt`` through every stage.

        Args:
            prompt, negative_prompt: the text (a str or a list: a batch), shared by all stages.
            video: the input of the first stage when it is not ``keyframes`` (any form a stage accepts).
            stage_kwargs: per-stage settings, e.g. ``{"keyframes": {"num_inference_steps": 25,
                "guidance_scale": 9.0, "seed": 1}, "interpolation": {"interpolation_factor": 4},
                "spatiotemporal_sr": {"noise_level": 50}}``; ``seed`` in a stage's dict seeds that stage.
            seed: seeds every stage without a seed of its own (stage ``i`` gets ``seed + i``); a shorthand
                for ``generator``, which cannot be given with it.
            output_type: ``np``, ``pt`` or ``pil`` for the final frames.
            return_stage_outputs: also return each stage's frames.
            generator: as diffusers' pipelines take it: one ``torch.Generator``, or a list of one per prompt;
                every stage without a seed of its own draws from it in turn, so the same generator state
                gives the same video.
        """
        stage_kwargs = self._check_stage_kwargs("stage_kwargs", stage_kwargs)
        stage_kwargs = {
            name: {**self.stage_defaults.get(name, {}), **stage_kwargs.get(name, {})} for name in self.stages
        }
        _check_cascade_output_type(output_type)
        check_bool("return_stage_outputs", return_stage_outputs)
        check_bool("return_dict", return_dict)
        first = next(iter(self.stages))
        if self.needs_video != (video is not None):
            raise ValueError(
                f"`video` must be given exactly when the first stage takes a video (every stage but "
                f"keyframes does); first stage is {first!r} and video is {'given' if video is not None else 'None'}."
            )
        check_optional_int("seed", seed)
        if seed is not None and generator is not None:
            raise ValueError(
                f"Give `seed` or `generator`, not both (got seed={seed} and a generator): `seed` is a shorthand "
                "for a generator seeded with it."
            )
        check_generator(generator, len(prompt) if isinstance(prompt, list) else 1)
        self._preflight(prompt, video, stage_kwargs, return_stage_outputs)

        embeddings = self._encode_prompt(prompt, negative_prompt)
        stage_frames = {}
        names = list(self.stages)
        for index, (name, pipeline) in enumerate(self.stages.items()):
            settings = dict(stage_kwargs.get(name, {}))
            stage_seed = settings.pop("seed", None if seed is None else seed + index)
            stage_generator = generator if stage_seed is None else torch.Generator().manual_seed(stage_seed)
            positive, negative = embeddings[id(pipeline.text_encoder)]
            inputs = {"video": video} if stage(name).takes_video else {}
            last = index == len(names) - 1
            result = pipeline(
                prompt_embeds=positive,
                negative_prompt_embeds=negative,
                generator=stage_generator,
                output_type=output_type if last and not return_stage_outputs else "pt",
                **inputs,
                **settings,
            ).frames
            video = result
            if return_stage_outputs:
                stage_frames[name] = result
        frames = video
        if return_stage_outputs:
            frames = self._postprocess(names[-1], frames, output_type)
        if not return_dict:
            return (frames, stage_frames or None)
        return CascadePipelineOutput(frames=frames, stage_frames=stage_frames or None)

    @torch.no_grad()
    def edit(
        self,
        video,
        prompt: str | list[str],
        source_prompt: str | list[str] = "",
        num_frames: int | None = None,
        stage_kwargs: dict[str, dict] | None = None,
        seed: int | None = None,
        output_type: str = "np",
        return_stage_outputs: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | list[torch.Generator] | None = None,
        **edit_settings,
    ) -> CascadePipelineOutput | tuple:
        """Edits ``video`` from ``source_prompt`` to ``prompt`` with the keyframes stage, then runs the later
        stages on the edited keyframes, so the result has the cascade's frame count and size.

        Args:
            video: the clips to edit, any frame count and size: ``np`` ``(B, F, H, W, 3)`` or ``pt``
                ``(B, F, 3, H, W)`` in [0, 1]. Each is brought to ``num_frames`` frames (default: the keyframes
                stage's ``num_frames`` setting, else 8) of the keyframes stage's size: frames sampled evenly
                over the clip, resized to cover the size and center-cropped (:mod:`cascade.data.video_fit`).
            prompt, source_prompt: the target text and what the clips show (one text, or one per clip).
            stage_kwargs, seed, output_type, return_stage_outputs, return_dict, generator: as in :meth:`__call__`,
                for the stages after the keyframes (``seed`` also seeds the keyframes stage's edit, stage ``i``
                getting ``seed + i``; ``generator``, one or one per clip, is drawn from by the edit, then by
                each later stage in turn).
            **edit_settings: :meth:`KeyframesPipeline.edit <cascade.pipelines.editing.EditingMixin.edit>`'s
                ``method``, ``num_inference_steps``, ``guidance_scale``, ``attention_injection``, ``strength``.
        """
        if STAGE_NAMES[0] not in self.stages:
            raise ValueError(
                f"editing needs a cascade with a {STAGE_NAMES[0]} stage; it has {list(self.stages)}."
            )
        unknown = sorted(set(edit_settings) - EDIT_SETTINGS)
        if unknown:
            raise ValueError(f"`edit_settings` has {unknown}; allowed: {sorted(EDIT_SETTINGS)}.")
        stage_kwargs = self._check_stage_kwargs("stage_kwargs", stage_kwargs)
        check_optional_int("seed", seed)
        if seed is not None and generator is not None:
            raise ValueError(
                f"Give `seed` or `generator`, not both (got seed={seed} and a generator): `seed` is a shorthand "
                "for a generator seeded with it."
            )
        _check_cascade_output_type(output_type)
        check_bool("return_stage_outputs", return_stage_outputs)
        check_bool("return_dict", return_dict)
        keyframes = self.stages[STAGE_NAMES[0]]
        num_frames = num_frames or self.stage_defaults.get(STAGE_NAMES[0], {}).get("num_frames", 8)
        clips = fit_videos(video, num_frames, keyframes.default_size)  # (B, F, S, S, 3)
        check_generator(generator, clips.shape[0])
        edited = keyframes.edit(
            clips,
            prompt,
            source_prompt,
            generator=generator if seed is None else torch.Generator().manual_seed(seed),
            output_type="pt",
            **edit_settings,
        ).frames  # (B, F, 3, S, S)
        later = [name for name in self.stages if name != STAGE_NAMES[0]]
        if not later:
            frames = self._postprocess(STAGE_NAMES[0], edited, output_type)
            stage_frames = {STAGE_NAMES[0]: edited} if return_stage_outputs else None
            return CascadePipelineOutput(frames, stage_frames) if return_dict else (frames, stage_frames)
        seeds = {name: {"seed": seed + index} for index, name in enumerate(self.stages) if seed is not None}
        settings = {name: {**seeds.get(name, {}), **stage_kwargs.get(name, {})} for name in later}
        result = self.subset(later)(
            prompt,
            video=edited,
            stage_kwargs=settings,
            output_type=output_type,
            return_stage_outputs=return_stage_outputs,
            generator=generator,
        )
        stage_frames = {STAGE_NAMES[0]: edited, **result.stage_frames} if return_stage_outputs else None
        return (
            CascadePipelineOutput(result.frames, stage_frames)
            if return_dict
            else (result.frames, stage_frames)
        )

    def _preflight(self, prompt, video, stage_kwargs: dict, return_stage_outputs: bool) -> None:
        """Refuses, before any stage runs, a call one of whose stages cannot fit in memory
        (:func:`~cascade.pipelines.memory_estimate.preflight_cascade`); each stage checks its own call again."""
        if video is None:
            videos, shape = 1 if isinstance(prompt, str) else len(prompt), None
        else:
            first = next(iter(self.stages.values()))
            videos, _, *shape = video_to_tensor(video, first.video_processor).shape  # (B, 3, F, H, W)
        preflight_cascade(self, videos, shape, stage_kwargs, return_stage_outputs)

    def _postprocess(self, name: str, frames: torch.Tensor, output_type: str):
        """Stage ``name``'s ``pt`` frames ``(B, F, 3, H, W)`` in [0, 1] as ``output_type``."""
        if output_type == "pt":
            return frames
        return self.stages[name].video_processor.postprocess_video(
            frames.permute(0, 2, 1, 3, 4) * 2 - 1, output_type
        )

    def _encode_prompt(self, prompt, negative_prompt) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Encodes the prompt once per distinct text encoder: ``id(text_encoder) -> (positive, negative)``."""
        embeddings = {}
        for pipeline in self.stages.values():
            if id(pipeline.text_encoder) in embeddings:
                continue
            embeddings[id(pipeline.text_encoder)] = pipeline.encode_prompt(
                prompt, pipeline._execution_device, 1, True, negative_prompt
            )
        return embeddings


def _saved_stage_files(index: dict) -> list[str]:
    """Patterns of the files a saved cascade with ``cascade_index.json`` holding ``index`` loads from."""
    stages = index.get("stages")
    names = stages if isinstance(stages, list) else []
    return [INDEX_FILE, WEIGHT_HASHES, *(f"{name}/*" for name in names if isinstance(name, str))]


def _text_encoder_fingerprint(stage_folder: Path) -> str:
    """sha256 over a stage's saved tokenizer and text encoder files: equal for byte-identical encoders."""
    digest = hashlib.sha256()
    for sub in ("tokenizer", "text_encoder"):
        for path in sorted((stage_folder / sub).glob("*")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def load_cascade(name_or_path: str | os.PathLike = DEMO_MODEL, **kwargs) -> CascadePipeline:
    """A saved cascade, or a saved keyframes pipeline as a one-stage cascade, from a folder (default: the demo
    cascade); ``kwargs`` go to ``from_pretrained``. ``ValueError`` when it is neither."""
    if os.path.isdir(name_or_path):
        folder = Path(name_or_path)
        if (folder / INDEX_FILE).is_file():
            return CascadePipeline.from_pretrained(folder, **kwargs)
        if (folder / MODEL_INDEX).is_file():
            return CascadePipeline(keyframes=KeyframesPipeline.from_pretrained(folder, **kwargs))
    raise ValueError(f"`name_or_path` {str(name_or_path)!r} is not a saved cascade or pipeline folder")
