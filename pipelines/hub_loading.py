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

A saved stage or cascade records the sha256 of each of its weight files in ``weights_sha256.json`` (beside
``model_index.json``; a cascade's covers its stages' files too), and :func:`local_folder` checks them before
anything loads: a file that differs (bytes flipped inside the tensor data load without any other error) raises
:class:`WeightsChangedError` naming it, unless ``verify_weights=False``. A folder without the file loads
unchecked, as before.
"""

import hashlib
import importlib
import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from huggingface_hub.utils import validate_repo_id

from cascade.utils.atomic import write_atomically
from cascade.utils.checks import check_bool

MODEL_INDEX = "model_index.json"
PIPELINES_MODULE = "cascade.pipelines"  # the public module the pipeline code files import from
PACKAGE = "cascade"  # components whose classes live in this package get a code file
HUB_KWARGS = ("cache_dir", "force_download", "token", "revision")  # passed on to huggingface_hub
PICKLED_WEIGHTS = ["*.bin", "*.ckpt", "*.pt", "*.pth", "*.pkl"]  # not downloaded unless use_safetensors=False
WEIGHT_FILES = ["*.safetensors", *PICKLED_WEIGHTS]  # the files whose sha256 a saved folder records
WEIGHT_HASHES = "weights_sha256.json"  # relative path of each weight file -> its sha256, beside the index
SKIP_VERIFICATION = "pass `verify_weights=False` to `from_pretrained` or `load_cascade` to load it unchecked"


class ModelNotCachedError(OSError):
    """A Hub repo that is not in the Hugging Face cache, while downloads are off or the Hub is out of reach."""


class WeightsChangedError(OSError):
    """A saved folder whose weight files are not the ones it was saved with (see :func:`check_weight_hashes`)."""


class UnrecordedWeightsWarning(UserWarning):
    """Weight files in a saved folder that its ``weights_sha256.json`` does not record: they load unchecked."""


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
        """Writes the code files and the weight files' hashes (:func:`write_weight_hashes`), each atomically,
        then ``model_index.json``: ``save_pretrained`` calls this after saving the components and before
        pushing to the Hub, so a pushed folder loads with ``DiffusionPipeline.from_pretrained(repo,
        trust_remote_code=True)`` and with its hashes."""
        write_code_files(save_directory, json.loads(self.to_json_string()))
        write_weight_hashes(save_directory)
        super().save_config(save_directory, push_to_hub=push_to_hub, **kwargs)


def check_save_directory(save_directory: str | os.PathLike, index_file: str, what: str) -> Path:
    """``save_directory`` resolved, when saving ``what`` there may replace it: a folder that does not exist, is
    empty, or holds a saved ``what`` (its ``index_file``); ``ValueError`` otherwise, since the save puts a
    new folder in its place (and would delete what else it holds)."""
    if not isinstance(save_directory, str | os.PathLike):
        raise ValueError(f"`save_directory` must be a str or path, got {save_directory!r}.")
    target = Path(save_directory).resolve()
    if target.exists() and (
        not target.is_dir() or (any(target.iterdir()) and not (target / index_file).is_file())
    ):
        raise ValueError(
            f"`save_directory` {str(target)!r} exists and is not an empty folder or a saved {what}; "
            "give a new folder."
        )
    return target


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
    return [MODEL_INDEX, WEIGHT_HASHES, *code, *(f"{component}/*" for component in _component_entries(index))]


def local_folder(
    name_or_path: str | os.PathLike, index_name: str, files: Callable[[dict], list[str]], kwargs: dict
) -> Path:
    """``name_or_path`` as a folder on disk: itself when it is a folder, else the snapshot of the Hub repo of
    that id in the Hugging Face cache, downloaded first unless offline (``HF_HUB_OFFLINE=1`` or
    ``local_files_only=True``). Its weight files are then checked against the hashes it was saved with
    (:func:`check_weight_hashes`) unless ``kwargs["verify_weights"]`` is ``False``.

    From a repo, the index file ``index_name`` comes first, then the files matching ``files(index)``, less
    pickled weights unless ``kwargs["use_safetensors"] is False``. The Hub keyword arguments (``cache_dir``,
    ``force_download``, ``token``, ``revision``, ``local_files_only``) and ``verify_weights`` are taken out of
    ``kwargs``.

    ``use_safetensors=False``, the opt-in to pickled weights, becomes ``None`` in ``kwargs`` for the loader that
    follows: each component then loads its safetensors file where it has one, else its pickled weights.
    diffusers and transformers read ``False`` as "pickled weights only", and a folder saved with
    ``safe_serialization=False`` still holds safetensors (transformers 5 saves a text encoder no other way).
    """
    verify = check_bool("verify_weights", kwargs.pop("verify_weights", True))
    folder = _resolve_folder(name_or_path, index_name, files, kwargs)
    if kwargs.get("use_safetensors") is False:
        kwargs["use_safetensors"] = None
    if verify:
        check_weight_hashes(folder)
    return folder


def _resolve_folder(
    name_or_path: str | os.PathLike, index_name: str, files: Callable[[dict], list[str]], kwargs: dict
) -> Path:
    """:func:`local_folder` without the check of the weights."""
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


def weight_files(folder: str | os.PathLike) -> list[str]:
    """The weight files (:data:`WEIGHT_FILES`) under ``folder``, at any depth, relative to it and sorted;
    hidden files and folders (a partial write's, a download's cache) left out."""
    folder = Path(folder)
    found = {
        path.relative_to(folder).as_posix()
        for pattern in WEIGHT_FILES
        for path in folder.rglob(pattern)
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    }
    return sorted(found)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of the file at ``path``, in hex, read in chunks."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def write_weight_hashes(folder: str | os.PathLike) -> dict[str, str]:
    """Writes ``folder/weights_sha256.json`` (atomically): the sha256 of each of its :func:`weight_files`.
    Returns the hashes. The weight files themselves are left as they are."""
    folder = Path(folder)
    hashes = {relative: file_sha256(folder / relative) for relative in weight_files(folder)}
    text = json.dumps(hashes, indent=2, sort_keys=True) + "\n"
    write_atomically(folder / WEIGHT_HASHES, lambda partial: partial.write_text(text))
    return hashes


def check_weight_hashes(folder: str | os.PathLike) -> bool:
    """Checks the weight files of ``folder`` against its ``weights_sha256.json``: each recorded file that is
    there must match its sha256, else :class:`WeightsChangedError` names it. A recorded file that is not
    there is left to the loader (a download leaves pickled weights out unless ``use_safetensors=False``; a
    file it needs, it reports missing); weight files added after saving get a :class:`UnrecordedWeightsWarning`,
    as they load unchecked. Returns whether ``folder`` holds the hashes (``False``: nothing to check, as for a
    folder saved before they were recorded)."""
    folder = Path(folder)
    record = folder / WEIGHT_HASHES
    if not record.is_file():
        return False
    hashes = _read_weight_hashes(record)
    unrecorded = [relative for relative in weight_files(folder) if relative not in hashes]
    if unrecorded:
        warnings.warn(
            f"{str(record)!r} records no sha256 for the weight file(s) {', '.join(map(repr, unrecorded))} of "
            f"{str(folder)!r}, added after saving: they load unchecked. Save the model again to record them.",
            UnrecordedWeightsWarning,
            stacklevel=2,
        )
    for relative, expected in sorted(hashes.items()):
        path = folder / relative
        if not path.is_file():
            continue
        actual = file_sha256(path)
        if actual != expected:
            raise WeightsChangedError(
                f"Weight file {str(path)!r} is not the one saved: its sha256 is {actual}, {str(record)!r} "
                f"records {expected}. The file is damaged or was changed after saving; download or save the "
                f"model again, or {SKIP_VERIFICATION}."
            )
    return True


def _read_weight_hashes(record: Path) -> dict[str, str]:
    """The relative path -> sha256 mapping of a ``weights_sha256.json``, checked."""
    try:
        hashes = json.loads(record.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsChangedError(
            f"{str(record)!r} is not valid JSON ({error}); {SKIP_VERIFICATION}."
        ) from None
    if not isinstance(hashes, dict) or not all(
        isinstance(relative, str)
        and _is_inside(relative)
        and isinstance(digest, str)
        and re.fullmatch(r"[0-9a-f]{64}", digest)
        for relative, digest in hashes.items()
    ):
        raise WeightsChangedError(
            f"{str(record)!r} must map relative file paths inside its folder to sha256 hex digests; "
            f"{SKIP_VERIFICATION}."
        )
    return hashes


def _is_inside(relative: str) -> bool:
    """Whether ``relative`` is a relative path that stays inside its folder."""
    path = Path(relative)
    return bool(relative) and not path.is_absolute() and ".." not in path.parts


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
