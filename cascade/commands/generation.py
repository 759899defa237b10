"""What ``cascade generate``, ``edit``, ``eval`` and ``serve`` share: the flags that drive generation, their
checks, the model ``--model`` names (a folder or a Hub repo id) and the per-stage settings they make. Importing
this module does not import torch."""

import argparse
import os
from pathlib import Path

from cascade.pipelines.stages import STAGE_NAMES

MODEL_HELP = (
    "a saved cascade or keyframes pipeline: a folder, or a Hugging Face Hub repo id (owner/name), downloaded "
    "into the Hugging Face cache, or read from it alone with HF_HUB_OFFLINE=1"
)
DEMO_MODEL_HELP = f"{MODEL_HELP} (default: the demo cascade)"
DTYPE_CHOICES = (
    "auto",
    "float32",
    "bfloat16",
    "float16",
)  # cascade.utils.devices.DTYPE_CHOICES, without torch


def add_precision_flags(parser: argparse.ArgumentParser) -> None:
    """Adds ``--device`` and ``--dtype``: where the model runs and in which floating-point type."""
    parser.add_argument(
        "--device",
        default=None,
        metavar="DEVICE",
        help="where the model runs: cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=DTYPE_CHOICES,
        help="the model's floating-point type (default float32); auto: the fastest the device computes natively, "
        "never an emulated one (bfloat16 on recent GPUs and on CPUs with AMX or AVX512-BF16, else float16 on a "
        "GPU and float32 on a CPU); bfloat16 on a CPU without them works, about 100x slower",
    )


def add_generation_flags(
    parser: argparse.ArgumentParser, frames_flag: str, steps: int | None, seed_help: str
) -> None:
    """Adds ``--stages``, ``frames_flag`` (the number of keyframes), ``--steps`` (default ``steps``;
    ``None``: the model's own settings), ``--guidance`` and ``--seed``."""
    parser.add_argument(
        "--stages",
        nargs="+",
        metavar="STAGE",
        help=f"run only these stages of the model, in cascade order; from {', '.join(STAGE_NAMES)} (default: all)",
    )
    parser.add_argument(frames_flag, type=int, default=8, metavar="N", help="number of keyframes (default 8)")
    default = "the model's own settings, else 25" if steps is None else steps
    parser.add_argument(
        "--steps",
        type=int,
        default=steps,
        metavar="N",
        help=f"denoising steps of every stage (default {default})",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="N", help=seed_help)
    parser.add_argument(
        "--guidance",
        type=float,
        default=None,
        metavar="G",
        help="classifier-free guidance of every stage (default: each stage's)",
    )


def check_generation_flags(stages: list[str] | None, seed: int, **positive: int) -> None:
    """Checks the flags of a run that generates from prompts: each of ``positive`` (flag name with ``_``
    for ``-``, e.g. ``num_frames=8``) must be a positive int, ``seed`` an int >= 0, and ``stages`` (``None``:
    all) known stage names that include ``keyframes``."""
    for name, value in positive.items():
        if value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive int, got {value}")
    if seed < 0:
        raise ValueError(f"--seed must be an int >= 0, got {seed}")
    unknown = [stage for stage in stages or [] if stage not in STAGE_NAMES]
    if unknown:
        raise ValueError(
            f"--stages: unknown stage(s) {' '.join(unknown)}; choose from {', '.join(STAGE_NAMES)}"
        )
    if stages and STAGE_NAMES[0] not in stages:
        raise ValueError(f"generating from a prompt needs the {STAGE_NAMES[0]} stage in --stages")


def model_folder(model: str | os.PathLike) -> Path:
    """The folder of ``--model``: ``model`` itself when it is a path on disk or cannot be a Hub repo id, else
    the snapshot of the Hub repo ``model`` in the Hugging Face cache (a saved cascade, else a saved keyframes
    pipeline), downloaded first unless ``HF_HUB_OFFLINE=1``. ``ValueError`` naming the repo when it is not
    cached offline, or cannot be read from the Hub."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from cascade.pipelines.cascade import INDEX_FILE, _saved_stage_files
    from cascade.pipelines.hub_loading import MODEL_INDEX, ModelNotCachedError, local_folder, stage_files

    if os.path.exists(model):
        return Path(model)
    try:
        validate_repo_id(str(model))
    except HFValidationError:
        return Path(model)  # not a repo id: a folder that does not exist, which the loader reports
    errors = []
    for index_name, files in ((INDEX_FILE, _saved_stage_files), (MODEL_INDEX, stage_files)):
        try:
            return local_folder(str(model), index_name, files, {})
        except (ModelNotCachedError, EntryNotFoundError) as error:  # not in the cache, or not in the repo
            errors.append(error)
        except HfHubHTTPError as error:  # no such repo, gated, private, the Hub down
            why = " ".join(str(error).split())
            raise ValueError(
                f"--model {str(model)!r} is not a folder, nor a Hub repo that can be read: {why}"
            ) from None
    not_cached = [error for error in errors if isinstance(error, ModelNotCachedError)]
    if not_cached:
        raise ValueError(f"--model {str(model)!r} is not a folder; {not_cached[0]}")
    raise ValueError(
        f"--model {str(model)!r} is not a folder, and Hub repo {str(model)!r} holds neither {INDEX_FILE} nor "
        f"{MODEL_INDEX}: it is not a saved cascade or pipeline"
    )


def load_generator(
    model: str | os.PathLike | None,
    stages: list[str] | None,
    device: str | None = None,
    dtype: str = "float32",
):
    """The cascade saved at ``model`` (a folder or a Hub repo id, see :func:`model_folder`; the demo cascade
    when ``None``), limited to ``stages`` (``None``: all of them), without loading bars, on ``device``
    (:func:`resolved_device`) in ``dtype`` (a name of :data:`DTYPE_CHOICES`); ``ValueError`` if it cannot be
    found, lacks one of the stages or cannot start from a prompt."""
    import diffusers
    import transformers

    from cascade.pipelines.cascade import DEMO_MODEL, load_cascade
    from cascade.utils.devices import resolve_dtype

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    if model is None and not DEMO_MODEL.is_dir():
        raise ValueError(
            f"the default model is not installed at {str(DEMO_MODEL)!r}; pass --model DIR|REPO_ID"
        )
    folder = DEMO_MODEL if model is None else model_folder(model)
    try:
        cascade = load_cascade(folder)
    except ValueError as error:
        raise ValueError(f"--model: {error}") from None
    cascade = cascade.subset(stages) if stages else cascade
    if cascade.needs_video:
        raise ValueError(f"generating from a prompt needs a model with a {STAGE_NAMES[0]} stage")
    device = resolved_device(device)
    return cascade.to(device=device, dtype=resolve_dtype(dtype, device))


def resolved_device(device: str | None):
    """``--device`` as a torch device: ``None`` is CUDA where it is available, else the CPU. ``ValueError``
    naming the flag for a name torch does not know or a CUDA device this machine does not have."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"--device {device!r} is not a device torch knows ({error})") from None
    if resolved.type == "cuda" and (
        not torch.cuda.is_available() or (resolved.index or 0) >= torch.cuda.device_count()
    ):
        raise ValueError(
            f"--device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s); use cpu"
        )
    return resolved


def stage_settings(
    cascade, steps: int | None, frames: int, guidance: float | None, long_video_method: str = "extend"
) -> dict[str, dict]:
    """``stage_kwargs`` for ``cascade``: ``steps`` denoising steps for every stage, ``frames`` keyframes,
    and ``guidance`` as every stage's guidance scale (``None``: each stage's default: the cascade's
    ``stage_defaults``, else the stage's own). More keyframes than the cascade's default count (the length
    its keyframes stage was trained on) are made in windows of that length by ``long_video_method``
    (:class:`~cascade.pipelines.keyframes.KeyframesPipeline`): ``"extend"``, each window given the last half
    of the one before (reconstruction guidance, :mod:`cascade.pipelines.known_frames`), or
    ``"coarse_to_fine"`` (:mod:`cascade.pipelines.coarse_to_fine`)."""
    settings = {name: {} if steps is None else {"num_inference_steps": steps} for name in cascade.stages}
    if STAGE_NAMES[0] in settings:
        settings[STAGE_NAMES[0]]["num_frames"] = frames
        trained = cascade.stage_defaults.get(STAGE_NAMES[0], {}).get("num_frames")
        if trained is not None and frames > trained:
            settings[STAGE_NAMES[0]].update(window=trained, long_video_method=long_video_method)
    if guidance is not None:
        for stage in settings.values():
            stage["guidance_scale"] = guidance
    return settings


def fitted_frames(cascade, frames, num_frames: int):
    """``frames`` (uint8 ``(F, H, W, 3)``) as ``num_frames`` frames of the size the cascade's keyframes stage
    makes (:func:`cascade.data.video_fit.fit_video`), float32 ``(num_frames, S, S, 3)`` in [0, 1]."""
    from cascade.data.video_fit import fit_video

    keyframes = cascade.stages[STAGE_NAMES[0]]
    size = cascade.stage_defaults.get(STAGE_NAMES[0], {}).get("height") or keyframes.default_size
    return fit_video(frames, num_frames, size, size)
