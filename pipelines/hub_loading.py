"""Saved pipelines that load through diffusers, through our own classes, and from a Hub repo id offline.

diffusers (0.42) finds a pipeline class that is not its own only through ``"_class_name": [file, class]`` in
``model_index.json`` with ``<file>.py`` in the folder, and, for a repo on the Hub, a component class that is not
in diffusers or transformers only through ``<component>/<module>.py``; it runs either file only with
``trust_remote_code=True``. So a saved stage or cascade (whose components are its stage pipelines) carries
one-line code files that import the classes from the installed package (``pip install cascade-video``):

    keyframes_pipeline.py                           from cascade.pipelines import KeyframesPipeline
    unet/cascade.models.video_unet.py               from cascade.models.video_unet import VideoUNet
    cascade_pipeline.py                             from cascade.pipelines import CascadePipeline
    keyframes/cascade.pipelines.keyframes.py        from cascade.pipelines.keyframes import KeyframesPipeline

``DiffusionPipeline.from_pretrained(folder_or_repo, trust_remote_code=True)`` then returns our class. Our own
``from_pretrained`` runs them without ``trust_remote_code``, but only when each file diffusers would run is
byte-identical to the line written here: running it is then importing our package, nothing more.

A Hub repo id is resolved to a snapshot in the Hugging Face cache with ``huggingface_hub``; offline
(``HF_HUB_OFFLINE=1`` or ``local_files_only=True``) an uncached repo raises :class:`ModelNotCachedError`.
diffusers itself, offline, cannot load a repo id whose cached file listing (``trees/<commit>.json``, which
``snapshot_download`` writes) holds the pipeline's code file: ``get_cached_module_file``
(``diffusers/utils/dynamic_modules_utils.py``) asks the Hub for the commit with no offline check. Our classes'
``from_pretrained``, or diffusers given the snapshot folder, load it.
"""

import importlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from huggingface_hub.utils import validate_repo_id

from cascade.utils.atomic import write_atomically

MODEL_INDEX = "model_index.json"
PIPELINES_MODULE = "cascade.pipelines"  # the public module the pipeline code files import from
PACKAGE = "cascade"  # components whose classes live in this package get a code file
HUB_KWARGS = ("cache_dir", "force_download", "token", "revision")  # passed on to huggingface_hub
PICKLED_WEIGHTS = ["*.bin", "*.ckpt", "*.pt", "*.pth", "*.pkl"]  # not downloaded unless use_safetensors=False


class ModelNotCachedError(OSError):
    """A Hub repo that is not in the Hugging Face cache, while downloads are off or the Hub is out of reach."""


class CodeFilesMixin:
    """For a ``DiffusionPipeline`` of ours, listed before ``DiffusionPipeline`` among its bases:
    ``model_index.json`` records the ``_class_name`` of :func:`class_name_entry`, and is written after the code
    files it needs (:func:`code_files`)."""

    def to_json_string(self) -> str:
        """The ``model_index.json`` text, with the ``_class_name`` of :func:`class_name_entry`."""
        index = json.loads(super().to_json_string())
        index["_class_name"] = class_name_entry(type(self))
        return json.dumps(index, indent=2, sort_keys=True) + "\n"

    def save_config(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs) -> None:
        """Writes the code files (each atomically), then ``model_index.json``: ``save_pretrained`` calls this
        after saving the components and before pushing to the Hub, so a pushed folder loads with
        ``DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)``."""
        write_code_files(save_directory, json.loads(self.to_json_string()))
        super().save_config(save_directory, push_to_hub=push_to_hub, **kwargs)


def class_name_entry(pipeline_class: type) -> str | list[str]:
    """The ``_class_name`` that ``model_index.json`` records for ``pipeline_class``: ``[<module>_pipeline,
    <class>]`` for a class ``cascade.pipelines`` exports, so that diffusers looks for the code file; the bare
    class name, as diffusers writes it, for any other (a subclass of the caller's own)."""
    if not isinstance(pipeline_class, type):
        raise ValueError(f"`pipeline_class` must be a class, got {pipeline_class!r}.")
    exported = getattr(importlib.import_module(PIPELINES_MODULE), pipeline_class.__name__, None)
    if exported is not pipeline_class:
        return pipeline_class.__name__
    return [f"{pipeline_class.__module__.rpartition('.')[2]}_pipeline", pipeline_class.__name__]


def code_files(index: dict) -> dict[str, str]:
    """Relative path to text of the code files we write for a ``model_index.json`` holding ``index``: the
    pipeline's file when ``_class_name`` is one of ours (see :func:`class_name_entry`), and
    ``<component>/<module>.py`` for each component whose class lives in our package."""
    files = {}
    pipeline_class = _indexed_pipeline_class(index)
    if pipeline_class is not None:
        files[f"{index['_class_name'][0]}.py"] = f"from {PIPELINES_MODULE} import {pipeline_class.__name__}\n"
    for component, (module, class_name) in _component_entries(index).items():
        if module.partition(".")[0] == PACKAGE:
            files[f"{component}/{module}.py"] = f"from {module} import {class_name}\n"
    return files


def write_code_files(folder: str | os.PathLike, index: dict) -> None:
    """Writes :func:`code_files` of ``index`` into ``folder``, each atomically."""
    for relative, text in code_files(index).items():
        path = Path(folder, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda partial, text=text: partial.write_text(text))


def saved_pipeline_class(folder: Path) -> type | None:
    """The class of ours that ``folder`` was saved from, when every code file diffusers would run to load it
    is one we write (:func:`code_files`), byte for byte; ``None`` when the folder names no class of ours or
    holds any other code (edited, foreign, or a subclass saved diffusers' way)."""
    index_path = folder / MODEL_INDEX
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    pipeline_class = _indexed_pipeline_class(index)
    if pipeline_class is None:
        return None
    run = [f"{index['_class_name'][0]}.py"] + [
        f"{component}/{module}.py"
        for component, (module, _) in _component_entries(index).items()
        if (folder / component / f"{module}.py").is_file()
    ]
    if (folder / "None.py").is_file():  # diffusers runs "<custom_pipeline>.py" for custom_pipeline=None too
        run.append("None.py")
    ours = code_files(index)
    if any(path not in ours or (folder / path).read_bytes() != ours[path].encode() for path in run):
        return None
    return pipeline_class


def pickled_only_weights(folder: Path) -> list[str]:
    """The pickled weight files of the component folders of ``folder`` that hold no safetensors file,
    relative to ``folder``."""
    return sorted(
        path.relative_to(folder).as_posix()
        for component in folder.iterdir()
        if component.is_dir() and not any(component.glob("*.safetensors"))
        for pattern in PICKLED_WEIGHTS
        for path in component.glob(pattern)
    )


def stage_files(index: dict) -> list[str]:
    """Patterns of the files a stage folder with ``model_index.json`` holding ``index`` loads from."""
    entry = index.get("_class_name")
    code = [f"{entry[0]}.py"] if _string_pair(entry) else []
    return [MODEL_INDEX, *code, *(f"{component}/*" for component in _component_entries(index))]


def local_folder(
    name_or_path: str | os.PathLike, index_name: str, files: Callable[[dict], list[str]], kwargs: dict
) -> Path:
    """``name_or_path`` as a folder on disk: itself when it is a folder, else the snapshot of the Hub repo of
    that id in the Hugging Face cache, downloaded first unless offline (``HF_HUB_OFFLINE=1`` or
    ``local_files_only=True``).

    From a repo, the index file ``index_name`` comes first, then the files matching ``files(index)``, less
    pickled weights unless ``kwargs["use_safetensors"] is False``. The Hub keyword arguments (``cache_dir``,
    ``force_download``, ``token``, ``revision``, ``local_files_only``) are taken out of ``kwargs``.
    """
    hub = {name: kwargs.pop(name) for name in HUB_KWARGS if name in kwargs}
    hub["local_files_only"] = bool(kwargs.pop("local_files_only", False)) or constants.HF_HUB_OFFLINE
    if os.path.isdir(name_or_path):
        return Path(name_or_path)
    repo_id = str(name_or_path)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(
            f"`pretrained_model_name_or_path` {repo_id!r} is neither a folder nor a Hub repo id "
            f"('name' or 'org/name'): {error}"
        ) from None
    try:
        index = json.loads(Path(hf_hub_download(repo_id, index_name, **hub)).read_text())
        ignore = PICKLED_WEIGHTS if kwargs.get("use_safetensors") is not False else None
        return Path(snapshot_download(repo_id, allow_patterns=files(index), ignore_patterns=ignore, **hub))
    except LocalEntryNotFoundError as error:
        why = (
            "downloads are off (HF_HUB_OFFLINE=1 or local_files_only=True)"
            if hub["local_files_only"]
            else "the Hub could not be reached"
        )
        cache = hub.get("cache_dir") or constants.HF_HUB_CACHE
        raise ModelNotCachedError(
            f"Hub repo {repo_id!r} is not (fully) in the Hugging Face cache {str(cache)!r} and {why}. Run this "
            f"once online, or download it with `hf download {repo_id}`, then load it again."
        ) from error


def _indexed_pipeline_class(index: dict) -> type | None:
    """The class of ours that ``index``'s ``_class_name`` names the way :func:`class_name_entry` writes it."""
    entry = index.get("_class_name")
    if not _string_pair(entry):
        return None
    pipeline_class = getattr(importlib.import_module(PIPELINES_MODULE), entry[1], None)
    return (
        pipeline_class
        if isinstance(pipeline_class, type) and class_name_entry(pipeline_class) == entry
        else None
    )


def _component_entries(index: dict) -> dict[str, tuple[str, str]]:
    """Component name to ``(module, class)`` for each component ``index`` records (``None`` ones left out)."""
    return {
        name: (entry[0], entry[1])
        for name, entry in index.items()
        if not name.startswith("_") and _string_pair(entry)
    }


def _string_pair(entry) -> bool:
    """Whether a ``model_index.json`` entry is ``[module or file, class]``."""
    return isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry)
