"""``cascade build``: fetch each stage's pretrained 2D checkpoint, check it, inflate it and write it.

    cascade build STAGE|all [--manifest FILE] -o DIR [--local-dir REPO_ID=FOLDER ...] [--push-to-hub REPO]

For each entry of the weights manifest (:mod:`cascade.hub.manifest`):

1. its files are found: a ``hub`` entry's with ``huggingface_hub.hf_hub_download`` at the pinned commit (a
   file already in the Hugging Face cache is not downloaded again; with ``HF_HUB_OFFLINE=1`` only the cache is
   read), or in the folder ``--local-dir`` gives for its repository; a ``local`` or ``shipped`` entry's in its
   folder;
2. the sha256 of every file the manifest gives a hash for is checked: a mismatch stops the build, naming the
   file;
3. the UNet is inflated (:func:`cascade.inflate` with the entry's options) and the stage pipeline is built
   from it and the checkpoint's other components (a ``shipped`` entry is copied as it is);
4. ``DIR/<entry>`` is written with the pipeline's ``save_pretrained`` and a model card ``README.md``, into
   the hidden sibling ``DIR/.<entry>.partial`` renamed into place when complete, so a failed build leaves
   no half-written folder (with ``all``, the entries built before the failure stay, each complete).

``--push-to-hub REPO`` then uploads the built folder (one entry) with ``HfApi.upload_folder``. User errors
raise ``ValueError`` or ``OSError`` naming the stage and the file; the command line prints them as one line.
"""

import hashlib
import json
import shutil
from pathlib import Path, PurePosixPath

import diffusers
from diffusers import AutoencoderKL, SchedulerMixin, UNet2DConditionModel
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from huggingface_hub.utils import validate_repo_id
from torch import nn
from transformers import CLIPTextModel, CLIPTokenizer

from cascade.hub.manifest import Manifest, ManifestEntry
from cascade.hub.model_card import model_card
from cascade.models.inflation import inflate
from cascade.models.video_unet import VideoUNet
from cascade.pipelines.cascade import INDEX_FILE
from cascade.pipelines.stages import STAGE_NAMES, stage
from cascade.utils.atomic import write_folder_atomically


def read_local_dirs(values: list[str]) -> dict[str, Path]:
    """``--local-dir REPO_ID=FOLDER`` values as ``{repo_id: folder}``."""
    local_dirs = {}
    for value in values:
        repo_id, separator, folder = value.partition("=")
        if not separator or not repo_id or not folder:
            raise ValueError(f"--local-dir must be REPO_ID=FOLDER, got {value!r}")
        local_dirs[repo_id] = Path(folder)
    return local_dirs


def check_push_target(repo_id: str, stage: str) -> None:
    """Checks ``--push-to-hub REPO`` before anything is built: a valid repository id, one entry (not
    ``all``: a Hub repository holds one pipeline), and the Hub reachable (``HF_HUB_OFFLINE`` unset)."""
    try:
        validate_repo_id(repo_id)
    except ValueError as error:
        raise ValueError(
            f"--push-to-hub must be a Hub repository id like 'user/name', got {repo_id!r}"
        ) from error
    if stage == "all":
        raise ValueError(
            "--push-to-hub uploads one entry's folder to one repository; name an entry, not 'all'"
        )
    if constants.is_offline_mode():
        raise ValueError("--push-to-hub needs the Hub, but HF_HUB_OFFLINE is set")


def push_to_hub(folder: Path, repo_id: str, api: HfApi | None = None) -> str:
    """Uploads ``folder`` to the Hub model repository ``repo_id`` (created if missing) with ``api`` (default
    ``HfApi()``: ``HF_ENDPOINT`` and the stored token apply); returns the commit URL. Any failure of the upload
    raises ``OSError`` naming the folder and the repository."""
    api = api or HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=folder, commit_message=f"cascade build: {Path(folder).name}"
        )
    except Exception as error:  # the boundary to a network service: every failure is the upload's
        raise OSError(f"uploading {folder} to {repo_id} on {api.endpoint} failed: {error}") from error
    return str(commit)


def build(
    manifest: Manifest, stage: str, output: str | Path, local_dirs: dict[str, Path] | None = None
) -> list[Path]:
    """Builds the entry ``stage`` of ``manifest`` (every entry for ``"all"``) into ``output/<entry>`` and
    returns the folders written. ``local_dirs`` maps Hub repository ids of ``hub`` entries to folders holding
    their files, read instead of the Hub. Existing output folders are an error: nothing is overwritten."""
    if not isinstance(manifest, Manifest):
        raise ValueError(
            f"`manifest` must be a Manifest (from read_manifest), got {type(manifest).__name__}."
        )
    entries = manifest.select(stage)
    local_dirs = dict(local_dirs or {})
    hub_repos = sorted({entry.repo_id for entry in manifest.entries.values() if entry.kind == "hub"})
    for repo_id, folder in local_dirs.items():
        if repo_id not in hub_repos:
            raise ValueError(
                f"--local-dir names {repo_id!r}, which no hub entry uses; they use {', '.join(hub_repos)}"
            )
        if not Path(folder).is_dir():
            raise ValueError(f"--local-dir folder {str(folder)!r} for {repo_id} is not a folder")
    output = Path(output)
    targets = [output / entry.name for entry in entries]
    for target in targets:
        if target.exists():
            raise ValueError(f"{str(target)!r} already exists; remove it or give another -o")
    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for entry, target in zip(entries, targets, strict=True):
            root = checkpoint_root(entry, local_dirs.get(entry.repo_id))
            verify_sha256(entry, root)
            _write_entry(entry, root, target)
            written.append(target)
    finally:
        if created and not any(output.iterdir()):
            output.rmdir()
    return written


def checkpoint_root(entry: ManifestEntry, local_dir: Path | None = None) -> Path:
    """The folder holding ``entry``'s files: ``local_dir`` if given, the entry's own folder (``local`` and
    ``shipped``), or the Hugging Face cache's snapshot of the pinned commit, filled by ``hf_hub_download``."""
    if entry.kind == "hub" and local_dir is None:
        return _download(entry)
    root = Path(local_dir or entry.path)
    if not root.is_dir():
        raise ValueError(f"stage {entry.name!r}: the checkpoint folder {str(root)!r} does not exist")
    missing = [item.path for item in entry.files if not (root / item.path).is_file()]
    if missing:
        raise ValueError(f"stage {entry.name!r}: {str(root)!r} lacks {', '.join(missing)}")
    if entry.kind == "shipped" and not any(
        (root / name).is_file() for name in (INDEX_FILE, "model_index.json")
    ):
        raise ValueError(
            f"stage {entry.name!r}: {str(root)!r} is not a saved cascade or pipeline (no {INDEX_FILE} or "
            "model_index.json)"
        )
    return root


def _download(entry: ManifestEntry) -> Path:
    root = None
    for item in entry.files:
        try:
            local = Path(hf_hub_download(entry.repo_id, item.path, revision=entry.revision))
        except (OSError, EntryNotFoundError) as error:
            offline = (
                " (HF_HUB_OFFLINE is set: only the local cache is read)"
                if constants.is_offline_mode()
                else ""
            )
            raise OSError(
                f"stage {entry.name!r}: cannot get {item.path} of {entry.repo_id} at {entry.revision}{offline}: "
                + " ".join(str(error).split())
            ) from error
        root = local.parents[len(PurePosixPath(item.path).parts) - 1]
    return root


def verify_sha256(entry: ManifestEntry, root: Path) -> None:
    """Checks the sha256 of each of ``entry``'s files that has one in the manifest; raises ``ValueError``
    naming the stage and the first file that differs."""
    for item in entry.files:
        if item.sha256 is None:
            continue
        digest = hashlib.sha256()
        with open(root / item.path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 24), b""):
                digest.update(block)
        if digest.hexdigest() != item.sha256:
            raise ValueError(
                f"stage {entry.name!r}: sha256 mismatch for {item.path} ({root / item.path}): the manifest "
                f"says {item.sha256}, the file has {digest.hexdigest()}; build stopped"
            )


def _write_entry(entry: ManifestEntry, root: Path, target: Path) -> None:
    """Writes ``target`` atomically: the stage's pipeline (or the shipped folder) and a model card."""

    def write(partial: Path) -> None:
        if entry.kind == "shipped":
            shutil.copytree(root, partial, dirs_exist_ok=True)
        else:
            stage_pipeline(entry, root).save_pretrained(partial)
        card = model_card(entry, saved_cascade=(partial / INDEX_FILE).is_file())
        (partial / "README.md").write_text(card)

    write_folder_atomically(target, write)


def stage_pipeline(entry: ManifestEntry, root: Path):
    """The pipeline of the stage ``entry`` (a ``hub`` or ``local`` entry) built from the 2D checkpoint in
    ``root``: its UNet inflated with the entry's options, its text encoder, tokenizer, scheduler(s) and VAE."""
    if entry.kind == "shipped" or entry.name not in STAGE_NAMES:
        raise ValueError(
            f"`entry` must be a hub or local entry of a cascade stage, got {entry.kind} {entry.name!r}."
        )
    options = dict(entry.inflation)
    unet = UNet2DConditionModel.from_pretrained(root, subfolder=entry.subfolder)
    unet = with_class_embedding(unet, options.pop("num_class_embeds", None), entry.name)
    components = {
        "unet": inflate(unet, **options),
        "scheduler": _scheduler(root, "scheduler"),
        "text_encoder": CLIPTextModel.from_pretrained(root / "text_encoder"),
        "tokenizer": CLIPTokenizer.from_pretrained(root / "tokenizer"),
        "vae": AutoencoderKL.from_pretrained(root, subfolder="vae") if "vae" in entry.components else None,
    }
    if stage(entry.name).conditioning == "low_res":
        components["low_res_scheduler"] = _scheduler(root, "low_res_scheduler")
    pipeline = stage(entry.name).pipeline_class(**components)
    _check_conditioning(entry, pipeline)
    return pipeline


def with_class_embedding(
    unet: UNet2DConditionModel, num_class_embeds: int | None, stage: str
) -> UNet2DConditionModel:
    """``unet`` with a class embedding of ``num_class_embeds`` labels: ``unet`` itself if it has that one,
    else a copy with a zero-initialised one, whose output is the same until it is trained (the embedding is
    added to the timestep embedding). ``None`` returns ``unet``."""
    if num_class_embeds is None:
        return unet
    config = unet.config
    if unet.class_embedding is not None:
        if config.class_embed_type is None and config.num_class_embeds == num_class_embeds:
            return unet
        raise ValueError(
            f"stage {stage!r}, field 'inflation.num_class_embeds': {num_class_embeds} given, but the base UNet "
            f"already has a class embedding (num_class_embeds={config.num_class_embeds}, "
            f"class_embed_type={config.class_embed_type})"
        )
    widened = UNet2DConditionModel.from_config(
        {
            **{key: value for key, value in config.items() if not key.startswith("_")},
            "num_class_embeds": num_class_embeds,
        }
    )
    widened.load_state_dict(unet.state_dict(), strict=False)  # all but class_embedding.weight
    nn.init.zeros_(widened.class_embedding.weight)
    return widened.to(device=unet.device, dtype=unet.dtype).eval()


def _scheduler(root: Path, folder: str) -> SchedulerMixin:
    """The diffusers scheduler saved in ``root/folder``, of the class its config names."""
    config = json.loads((root / folder / "scheduler_config.json").read_text())
    scheduler_class = getattr(diffusers, str(config.get("_class_name")), None)
    if not (isinstance(scheduler_class, type) and issubclass(scheduler_class, SchedulerMixin)):
        raise ValueError(
            f"{root / folder / 'scheduler_config.json'} names {config.get('_class_name')!r}, not a diffusers scheduler"
        )
    return scheduler_class.from_pretrained(root, subfolder=folder)


def _check_conditioning(entry: ManifestEntry, pipeline) -> None:
    """Checks that the inflated UNet reads the conditioning channels and class labels its stage feeds it:
    none for keyframes, the known frames and their mask for interpolation, the low-resolution RGB frames and
    the noise level for super-resolution."""
    unet: VideoUNet = pipeline.unet
    channels = pipeline.vae.config.latent_channels if pipeline.vae is not None else 3
    expected = stage(entry.name).conditioning_channels(channels)
    base = unet.conditioning_channels - unet.config.extra_in_channels  # read by the 2D UNet already
    if unet.conditioning_channels != expected:
        raise ValueError(
            f"stage {entry.name!r}, field 'inflation.extra_in_channels': the {entry.name} stage feeds the UNet "
            f"{expected} conditioning channels and the base UNet reads {base} beyond its noisy sample: "
            + (
                f"extra_in_channels must be {expected - base}"
                if expected >= base
                else "it cannot serve this stage"
            )
            + f", got extra_in_channels={unet.config.extra_in_channels}"
        )
    if stage(entry.name).conditioning == "low_res" and unet.unet.class_embedding is None:
        raise ValueError(
            f"stage {entry.name!r}, field 'inflation.num_class_embeds': a super-resolution stage gives the noise "
            "level to the UNet as a class label, and the base UNet has no class embedding; set num_class_embeds "
            "(e.g. 1000) to add one"
        )
