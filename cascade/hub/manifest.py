"""The weights manifest: which pretrained 2D checkpoint each stage of the cascade inflates, pinned.

A YAML file (``weights_manifest.yaml`` at the repository root, shipped in the wheel too)::

    version: 1
    stages:
      keyframes:                        # a cascade stage, inflated from a Hub checkpoint
        kind: hub
        repo_id: stable-diffusion-v1-5/stable-diffusion-v1-5
        revision: 451f4fe16113bff5a5d2269ed5ad43b0592e9a14   # a commit: 40 hex digits
        subfolder: unet                 # the 2D UNet's folder in the repository
        license: creativeml-openrail-m
        files:                          # every file the stage reads; its sha256 where known
          - {path: unet/config.json}
          - {path: unet/diffusion_pytorch_model.safetensors, sha256: 19da7aaa...}
        inflation: {temporal_convolutions: true, temporal_attention: true, extra_in_channels: 0}
      spatial_sr:
        kind: local                     # the same, read from a folder (relative to the manifest)
        path: checkpoints/x4-upscaler
        ...
      demo:
        kind: shipped                   # a saved cascade (or pipeline), published as it is
        path: weights/demo
        license: apache-2.0

``hub`` and ``local`` entries are named after a cascade stage; their ``files`` must cover the folders the
stage's pipeline loads (the UNet's ``subfolder``, ``text_encoder``, ``tokenizer``, ``scheduler``, and
``low_res_scheduler`` for the super-resolution stages; ``vae`` when present makes a latent stage).
``inflation`` holds the options of :func:`cascade.inflate` (temporal layers, extra input channels) and
``num_class_embeds``: a class embedding the base already has (the x4 upscaler's noise level) is kept,
one it lacks is added zero-initialised.

:func:`read_manifest` validates the file against this schema: an unknown key, a missing field, a value
of the wrong type or a malformed hash raises :class:`ManifestError` naming the stage and the field.
Importing this module does not import torch.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from cascade.pipelines.stages import STAGE_NAMES, SUPER_RESOLUTION_STAGES
from cascade.utils.checks import is_int
from cascade.utils.package_data import shipped_path

DEFAULT_MANIFEST = shipped_path("weights_manifest.yaml")  # the repository's, or the wheel's copy of it
VERSION = 1
KINDS = ("hub", "local", "shipped")
PLACEMENTS = ("attentions", "animatediff")

_REQUIRED = {
    "hub": ("kind", "repo_id", "revision", "subfolder", "license", "files", "inflation"),
    "local": ("kind", "path", "subfolder", "license", "files", "inflation"),
    "shipped": ("kind", "path", "license"),
}
_OPTIONAL = {
    "hub": ("description",),
    "local": ("base_model", "description"),
    "shipped": ("base_model", "description", "files"),
}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
_LICENSE = re.compile(r"[a-z0-9][a-z0-9.+-]*")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


class ManifestError(ValueError):
    """A weights manifest that does not follow the schema; the message names the stage and the field."""


@dataclass(frozen=True)
class ManifestFile:
    """A file of a checkpoint: its path (POSIX, relative to the checkpoint's root) and its sha256 if known."""

    path: str
    sha256: str | None = None


@dataclass(frozen=True)
class ManifestEntry:
    """One entry of the manifest, validated. ``path`` (``local`` and ``shipped``) is absolute; ``inflation``
    maps option names to values (``num_class_embeds`` and the options of :func:`cascade.inflate`)."""

    name: str
    kind: str
    license: str
    files: tuple[ManifestFile, ...] = ()
    repo_id: str | None = None
    revision: str | None = None
    path: Path | None = None
    subfolder: str | None = None
    inflation: dict = field(default_factory=dict)
    base_model: str | None = None
    description: str | None = None

    @property
    def components(self) -> set[str]:
        """The top-level folders of ``files``: the components the checkpoint provides."""
        return {PurePosixPath(item.path).parts[0] for item in self.files if "/" in item.path}


@dataclass(frozen=True)
class Manifest:
    """A validated weights manifest: ``entries`` by name, in file order; ``path`` is the file read."""

    path: Path
    entries: dict[str, ManifestEntry]

    def select(self, name: str) -> list[ManifestEntry]:
        """The entry called ``name``, or every entry for ``"all"``."""
        if name == "all":
            return list(self.entries.values())
        if name not in self.entries:
            raise ValueError(
                f"STAGE must be one of {', '.join(self.entries)} (the entries of {self.path}) or 'all', "
                f"got {name!r}"
            )
        return [self.entries[name]]


INFLATION_OPTIONS = {  # option -> (check, what it must be)
    "temporal_convolutions": (lambda value: isinstance(value, bool), "true or false"),
    "temporal_attention": (lambda value: isinstance(value, bool), "true or false"),
    "extra_in_channels": (lambda value: is_int(value) and value >= 0, "an int >= 0"),
    "temporal_attention_heads": (lambda value: is_int(value) and value >= 1, "an int >= 1"),
    "temporal_attention_layers": (lambda value: is_int(value) and value >= 1, "an int >= 1"),
    "temporal_attention_placement": (lambda value: value in PLACEMENTS, f"one of {', '.join(PLACEMENTS)}"),
    "temporal_cross_attention": (lambda value: isinstance(value, bool), "true or false"),
    "num_class_embeds": (lambda value: is_int(value) and value >= 1, "an int >= 1"),
}


def read_manifest(path: str | Path) -> Manifest:
    """Reads and validates the weights manifest at ``path``; relative ``path`` fields of its entries are
    resolved against the manifest's folder. Raises :class:`ManifestError` (a ``ValueError``) naming the
    stage and the field of the first problem, or ``OSError`` if the file cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--manifest {str(path)!r} is not a file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ManifestError(f"weights manifest {path}: not valid YAML: {error}") from error
    return Manifest(path, _parse(data, path))


def _parse(data, path: Path) -> dict[str, ManifestEntry]:
    def fail(stage: str | None, name: str, problem: str):
        where = f"stage {stage!r}, field {name!r}" if stage else f"field {name!r}"
        raise ManifestError(f"weights manifest {path}: {where}: {problem}")

    if not isinstance(data, dict):
        fail(None, "version", f"the manifest must be a mapping with version and stages, got {data!r}")
    _check_keys(data, ("version", "stages"), (), lambda name, problem: fail(None, name, problem))
    if data["version"] != VERSION:
        fail(None, "version", f"must be {VERSION}, got {data['version']!r}")
    stages = data["stages"]
    if not isinstance(stages, dict):
        fail(None, "stages", f"must be a mapping of stage names to entries, got {stages!r}")
    entries = {}
    for name, entry in stages.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name == "all":
            fail(None, "stages", f"entry names are lowercase words other than 'all', got {name!r}")
        entries[name] = _parse_entry(
            name, entry, path.parent, lambda field_, problem, n=name: fail(n, field_, problem)
        )
    return entries


def _check_keys(mapping: dict, required, optional, fail) -> None:
    for key in mapping:
        if key not in required and key not in optional:
            fail(str(key), f"unknown key; allowed: {', '.join((*required, *optional))}")
    for key in required:
        if key not in mapping:
            fail(key, "missing")


def _parse_entry(name: str, entry, root: Path, fail) -> ManifestEntry:
    if not isinstance(entry, dict):
        fail("kind", f"the entry must be a mapping, got {entry!r}")
    kind = entry.get("kind")
    if "kind" not in entry:
        fail("kind", f"missing; one of {', '.join(KINDS)}")
    if kind not in KINDS:
        fail("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    _check_keys(entry, _REQUIRED[kind], _OPTIONAL[kind], fail)
    if kind != "shipped" and name not in STAGE_NAMES:
        fail(
            "kind",
            f"a {kind} entry inflates a cascade stage and is named after one ({', '.join(STAGE_NAMES)}); "
            f"a saved cascade or pipeline is kind shipped",
        )
    for key in ("license", "description", "base_model", "repo_id", "revision", "subfolder", "path"):
        if key in entry and (not isinstance(entry[key], str) or not entry[key]):
            fail(key, f"must be a non-empty string, got {entry[key]!r}")
    if not _LICENSE.fullmatch(entry["license"]):
        fail("license", f"must be a Hub licence id (lowercase, e.g. apache-2.0), got {entry['license']!r}")
    for key in ("repo_id", "base_model"):
        if key in entry and not _REPO_ID.fullmatch(entry[key]):
            fail(key, f"must be a Hub repository id 'owner/name', got {entry[key]!r}")
    if "revision" in entry and not _COMMIT.fullmatch(entry["revision"]):
        fail("revision", f"must pin a commit: 40 lowercase hex digits, got {entry['revision']!r}")
    if "subfolder" in entry:
        _check_relative(entry["subfolder"], "subfolder", fail)
    files = _parse_files(entry["files"], fail) if "files" in entry else ()
    parsed = ManifestEntry(
        name=name,
        kind=kind,
        license=entry["license"],
        files=files,
        repo_id=entry.get("repo_id"),
        revision=entry.get("revision"),
        path=(root / entry["path"]).resolve() if "path" in entry else None,
        subfolder=entry.get("subfolder"),
        inflation=_parse_inflation(entry["inflation"], fail) if "inflation" in entry else {},
        base_model=entry.get("base_model", entry.get("repo_id")),
        description=entry.get("description"),
    )
    if kind != "shipped":
        needed = [parsed.subfolder, "text_encoder", "tokenizer", "scheduler"]
        needed += ["low_res_scheduler"] if name in SUPER_RESOLUTION_STAGES else []
        missing = [folder for folder in needed if not any(f.path.startswith(f"{folder}/") for f in files)]
        if missing:
            fail(
                "files",
                f"no file under {', '.join(f'{m}/' for m in missing)}; the {name} stage loads "
                f"{', '.join(needed)} (and vae when present)",
            )
    return parsed


def _check_relative(value: str, name: str, fail) -> None:
    parts = PurePosixPath(value).parts
    if value.startswith("/") or "\\" in value or ".." in parts or not parts:
        fail(name, f"must be a relative POSIX path inside the checkpoint, got {value!r}")


def _parse_files(files, fail) -> tuple[ManifestFile, ...]:
    if not isinstance(files, list) or not files:
        fail("files", f"must be a non-empty list of {{path, sha256}} mappings, got {files!r}")
    parsed, seen = [], set()
    for i, item in enumerate(files):
        where = f"files[{i}]"
        if not isinstance(item, dict):
            fail(where, f"must be a mapping with path and optionally sha256, got {item!r}")
        _check_keys(item, ("path",), ("sha256",), lambda key, problem, w=where: fail(f"{w}.{key}", problem))
        path, sha256 = item["path"], item.get("sha256")
        if not isinstance(path, str):
            fail(f"{where}.path", f"must be a string, got {path!r}")
        _check_relative(path, f"{where}.path", fail)
        if path in seen:
            fail(f"{where}.path", f"{path!r} is listed twice")
        if "sha256" in item and (not isinstance(sha256, str) or not _SHA256.fullmatch(sha256)):
            fail(f"{where}.sha256", f"must be 64 lowercase hex digits (omit it when unknown), got {sha256!r}")
        seen.add(path)
        parsed.append(ManifestFile(path, sha256))
    return tuple(parsed)


def _parse_inflation(options, fail) -> dict:
    if not isinstance(options, dict):
        fail("inflation", f"must be a mapping of inflation options ({{}} for the defaults), got {options!r}")
    for key, value in options.items():
        if key not in INFLATION_OPTIONS:
            fail(f"inflation.{key}", f"unknown key; allowed: {', '.join(INFLATION_OPTIONS)}")
        check, allowed = INFLATION_OPTIONS[key]
        if not check(value):
            fail(f"inflation.{key}", f"must be {allowed}, got {value!r}")
    return dict(options)
