"""Which metrics ``cascade eval`` can compute for a run, and computing them over its videos.

A metric applies when what it needs is at hand: CLIPSIM a local CLIP checkpoint, FVD/KVD a local I3D
TorchScript file and reference videos (KVD at least two pairs), PSNR/SSIM reference videos, shapes-world
fidelity prompts that all parse as shapes-world captions. Temporal flickering and motion magnitude
always apply. Some needs show only in the videos (frames per clip, frame size); :func:`video_problems`
checks those.

Per-video metrics are reported per video and averaged; FVD and KVD are set-level. Nothing is downloaded.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cascade.eval.shapes_fidelity import ATTRIBUTES, shapes_ceiling, shapes_fidelity

METRICS = ("clipsim", "fvd", "kvd", "psnr", "ssim", "temporal_flickering", "motion_magnitude", "shapes")
REFERENCE_METRICS = ("fvd", "kvd", "psnr", "ssim")
MIN_FRAMES = {"fvd": 10, "kvd": 10, "temporal_flickering": 2, "motion_magnitude": 2}
MIN_SIZE = {"ssim": 11}


@dataclass(frozen=True)
class SuiteInputs:
    """What the metrics may use besides the videos.

    Attributes:
        prompts: one prompt per video.
        references: one reference video ``(F, H, W, 3)`` uint8 per video, or ``None``.
        clip_model: folder of a CLIP checkpoint (``CLIPModel`` + tokenizer), or ``None``.
        i3d: path of an I3D TorchScript file, or ``None``.
        fvd_protocol: ``"original"`` or ``"stylegan-v"`` (see :func:`cascade.eval.i3d_features`).
        shapes_targets: ``parse_caption`` of every prompt, or ``None``.
        seeds: seed of each video (renders the shapes-world ceiling clips).
        device: where CLIP and I3D run.
    """

    prompts: list[str]
    references: list[np.ndarray] | None
    clip_model: Path | None
    i3d: Path | None
    fvd_protocol: str
    shapes_targets: list[dict[str, str]] | None
    seeds: list[int]
    device: str


def static_problems(count: int, has_references: bool, clip_model, i3d, shapes_targets) -> dict[str, str]:
    """``{metric: why it cannot be computed}`` for what the flags and prompts lack."""
    problems = {}
    if clip_model is None:
        problems["clipsim"] = "needs --clip-model DIR, a local CLIP checkpoint"
    for name in ("fvd", "kvd"):
        if i3d is None:
            problems[name] = "needs --i3d PATH, a local I3D TorchScript file"
    for name in REFERENCE_METRICS:
        if not has_references and name not in problems:
            problems[name] = "needs reference videos (--reference-videos, or a video column in a CSV)"
    if "kvd" not in problems and count < 2:
        problems["kvd"] = f"needs at least 2 videos, got {count}"
    if shapes_targets is None:
        problems["shapes"] = "needs prompts that all read 'a <color> <shape> moving <direction>'"
    return problems


def video_problems(metrics: list[str], videos: list[np.ndarray]) -> dict[str, str]:
    """``{metric: why it cannot be computed}`` for clips too short or frames too small."""
    frames = min(len(video) for video in videos)
    size = min(min(video.shape[1:3]) for video in videos)
    problems = {}
    for name in metrics:
        if frames < MIN_FRAMES.get(name, 1):
            problems[name] = f"needs clips of at least {MIN_FRAMES[name]} frames, got {frames}"
        elif size < MIN_SIZE.get(name, 1):
            problems[name] = f"needs frames of at least {MIN_SIZE[name]}x{MIN_SIZE[name]}, got {size} pixels"
    return problems


def select_metrics(requested: list[str] | None, problems: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The metrics to compute and ``{metric: reason}`` for those skipped.

    ``requested=None`` means every metric that applies (the others are skipped with their reason); a
    requested metric that cannot be computed raises ``ValueError`` with the reason.
    """
    if requested is None:
        return [m for m in METRICS if m not in problems], {m: r for m, r in problems.items()}
    for name in requested:
        if name in problems:
            raise ValueError(f"metric {name} {problems[name]}")
    return list(dict.fromkeys(requested)), {}


def check_references(videos: list[np.ndarray], references: list[np.ndarray], names: list[str]) -> None:
    """Raises ``ValueError`` unless every reference has its video's shape ``(F, H, W, 3)``."""
    for video, reference, name in zip(videos, references, names, strict=True):
        if reference.shape != video.shape:
            raise ValueError(
                f"reference video of {name} has {reference.shape[0]} frames of {reference.shape[2]}x"
                f"{reference.shape[1]}, the video {video.shape[0]} frames of {video.shape[2]}x"
                f"{video.shape[1]}; reference metrics compare them frame by frame, so they must match"
            )


def _load_clip(folder: Path, device: str):
    """The CLIP model of ``folder`` and its ``CLIPProcessor``; a folder without an image processor
    (``preprocessor_config.json``) gives its tokenizer, and CLIPSIM takes CLIP's preprocessing."""
    from transformers import CLIPModel, CLIPProcessor, CLIPTokenizer

    model = CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    load = CLIPProcessor if (folder / "preprocessor_config.json").is_file() else CLIPTokenizer
    return model.to(device), load.from_pretrained(folder, local_files_only=True)


def compute_metrics(metrics: list[str], videos: list[np.ndarray], inputs: SuiteInputs) -> tuple[list, dict]:
    """Per-video rows ``[{metric: value}]`` and the summary ``{metric: value}`` (per-video means, and the
    set-level FVD/KVD) of uint8 ``videos`` ``[(F, H, W, 3)]``."""
    from tqdm.auto import tqdm

    from cascade.eval import (
        clipsim,
        frechet_distance_from_features,
        i3d_features,
        kernel_distance,
        load_torchscript,
        motion_magnitude,
        psnr,
        ssim,
        temporal_flickering,
    )

    clip = _load_clip(inputs.clip_model, inputs.device) if "clipsim" in metrics else None
    detector = load_torchscript(inputs.i3d, device=inputs.device) if {"fvd", "kvd"} & set(metrics) else None
    per_video = {"temporal_flickering": temporal_flickering, "motion_magnitude": motion_magnitude}
    paired = {"psnr": psnr, "ssim": ssim}
    rows, real_features, fake_features, ceilings = [], [], [], []
    for index, video in enumerate(tqdm(videos, desc="evaluating", unit="video")):
        batch = video[None]  # (1, F, H, W, 3)
        row = {name: per_video[name](batch).mean for name in metrics if name in per_video}
        for name in (m for m in metrics if m in paired):
            row[name] = paired[name](batch, inputs.references[index][None]).mean
        if clip is not None:
            row["clipsim"] = clipsim(batch, [inputs.prompts[index]], *clip, device=inputs.device).mean
        if detector is not None:
            options = {"detector": detector, "protocol": inputs.fvd_protocol, "device": inputs.device}
            fake_features.append(i3d_features(batch, **options))  # (1, D)
            real_features.append(i3d_features(inputs.references[index][None], **options))  # (1, D)
        if "shapes" in metrics:
            target = inputs.shapes_targets[index]
            row.update(shapes_fidelity(video.astype(np.float32) / 255.0, target))
            ceilings.append(shapes_ceiling(target, inputs.seeds[index], *video.shape[:3]))
        rows.append(row)
    summary = {
        name: float(np.mean([row[name] for row in rows]))
        for name in rows[0]
        if not name.startswith("shapes_seen_")
    }
    for attribute in ATTRIBUTES if ceilings else ():
        key = f"shapes_{attribute}"
        summary[f"shapes_ceiling_{attribute}"] = float(np.mean([c[key] for c in ceilings]))
    if detector is not None:
        real, fake = np.concatenate(real_features), np.concatenate(fake_features)  # (N, D)
        if "fvd" in metrics:
            summary["fvd"] = frechet_distance_from_features(real, fake)
        if "kvd" in metrics:
            summary["kvd"] = kernel_distance(real, fake)
    return rows, summary
