"""``cascade eval``: generate a video per prompt (or read existing ones), score them, write a report.

    cascade eval --prompts FILE (--model DIR|REPO_ID | --videos DIR) -o OUTDIR [--metrics NAME ...]
                 [--num-frames N] [--steps N] [--seed N] [--reference-videos DIR] [--shapes-stages N] ...

Generated videos go to ``OUTDIR/videos/`` under names that encode what decides them
(:func:`~cascade.eval.video_files.video_name`), so a rerun generates only the missing ones. They are saved
and scored losslessly (``.npz``, uint8 frames): scores of re-encoded mp4 frames would measure the codec as
well as the model. ``--format mp4`` adds an mp4 beside each for viewing, which is never scored. Under
``accelerate launch`` the videos still to generate are split across the processes; after
``wait_for_everyone`` the main process reads them all, computes the metrics and writes
``OUTDIR/report.json``, ``OUTDIR/report.md`` and ``OUTDIR/contact_sheet.png``. With
``--shapes-stages N`` the report also scores each conditioning stage of the model on ``N`` shapes-world
clips against a classical baseline (:mod:`cascade.eval.stage_fidelity`).

User errors raise ``ValueError``: ``cascade`` prints them as one line and exits with status 2.
"""

import argparse
import os
from pathlib import Path

from cascade.eval.prompts import CAPTION_COLUMNS, VIDEO_COLUMNS, PromptItem
from cascade.eval.suite import METRICS
from cascade.eval.video_files import WRITE_FORMATS
from cascade.pipelines.stages import CONDITIONING_STAGES

from . import add_command
from .generation import MODEL_HELP, add_generation_flags, check_generation_flags

FVD_PROTOCOLS = ("original", "stylegan-v")


def add_parsers(commands) -> None:
    description = (
        "Generate one video per prompt with a saved cascade (--model), or read videos already generated "
        "(--videos), compute the metrics that apply, and write OUTDIR/report.json, OUTDIR/report.md and "
        "OUTDIR/contact_sheet.png. Generated videos are kept in OUTDIR/videos/ and a rerun only generates the "
        "missing ones. Under `accelerate launch` the prompts are split across the processes. Nothing is "
        "downloaded: CLIPSIM and FVD/KVD need local checkpoints."
    )
    parser = add_command(
        commands, "eval", run, "generate videos for a prompt file and score them", description
    )
    parser.add_argument(
        "--prompts",
        required=True,
        metavar="FILE",
        type=Path,
        help="prompt file: one prompt a line, or a CSV with a caption column and optionally a reference "
        f"video column (the MSR-VTT layout; columns detected: {', '.join(CAPTION_COLUMNS)} / "
        f"{', '.join(VIDEO_COLUMNS)})",
    )
    parser.add_argument("--model", metavar="DIR|REPO_ID", help=f"{MODEL_HELP}, to generate with")
    parser.add_argument(
        "--videos",
        type=Path,
        metavar="DIR",
        help="folder of videos already generated, paired with prompt i by a name starting with the "
        "5-digit index (00000.mp4, 00000-x.npz, ...) or else, when it holds one video per prompt, in "
        "name order",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="OUTDIR",
        help="output folder (created if missing)",
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        metavar="METRIC",
        help=f"metrics to compute, from {', '.join(METRICS)} (default: every one that applies; the report "
        "says why the others were skipped)",
    )
    add_generation_flags(
        parser, "--num-frames", steps=25, seed_help="video i is generated with seed SEED + i (default 0)"
    )
    parser.add_argument(
        "--format",
        default="npz",
        metavar="FORMAT",
        help=f"file formats of generated videos: {' or '.join(WRITE_FORMATS)} (default npz). The lossless "
        "npz (uint8 frames) is always written and is what is scored; mp4 adds an mp4 beside it for viewing",
    )
    parser.add_argument(
        "--fps", type=int, default=8, metavar="N", help="frames per second of mp4 files (default 8)"
    )
    parser.add_argument(
        "--reference-videos",
        type=Path,
        metavar="DIR",
        help="folder of reference (real) videos for PSNR/SSIM/FVD/KVD: with a CSV, the video column's "
        "paths are relative to it (default: the CSV's folder); with a text file, paired with the prompts "
        "as --videos is",
    )
    parser.add_argument(
        "--caption-column", metavar="NAME", help="CSV column holding the prompts (default: detected)"
    )
    parser.add_argument(
        "--video-column",
        metavar="NAME",
        help="CSV column holding reference video paths or ids (default: detected)",
    )
    parser.add_argument(
        "--clip-model",
        type=Path,
        metavar="DIR",
        help="local CLIP checkpoint folder (CLIPModel and its CLIPProcessor, whose CLIPImageProcessor "
        "preprocesses the frames; with a tokenizer only, CLIP's own preprocessing), enables clipsim",
    )
    parser.add_argument(
        "--i3d", type=Path, metavar="PATH", help="local I3D TorchScript file, enables fvd and kvd"
    )
    parser.add_argument(
        "--fvd-protocol",
        default="original",
        metavar="NAME",
        help=f"FVD/KVD protocol: {' or '.join(FVD_PROTOCOLS)} (default original)",
    )
    parser.add_argument(
        "--shapes-stages",
        type=int,
        metavar="N",
        help="with --model, also score each conditioning stage (interpolation, super-resolution) on N "
        "shapes-world clips drawn with a fixed seed, against linear frame blending / bicubic upsampling: "
        "the stage gets the rendered keyframes or low-resolution frames and its output is compared with "
        "the render (PSNR, dB). Uses --num-frames keyframes, --steps, --guidance and --seed.",
    )


def _process_state():
    """accelerate's ``PartialState``, on the CPU with gloo for a multi-process launch without CUDA
    (:func:`cascade.utils.distributed.processes_on_cpu`)."""
    from accelerate import PartialState

    from cascade.utils.distributed import processes_on_cpu

    return PartialState(cpu=processes_on_cpu())


def _check_args(args: argparse.Namespace) -> None:
    """Raises ``ValueError`` naming the flag for any argument that cannot work."""
    if (args.model is None) == (args.videos is None):
        raise ValueError(
            "give exactly one of --model DIR|REPO_ID (generate the videos) or --videos DIR (score them)"
        )
    unknown = [name for name in args.metrics or [] if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {' '.join(unknown)}; choose from {', '.join(METRICS)}")
    check_generation_flags(args.stages, args.seed, num_frames=args.num_frames, steps=args.steps, fps=args.fps)
    if args.shapes_stages is not None:
        if args.shapes_stages <= 0:
            raise ValueError(f"--shapes-stages must be a positive int, got {args.shapes_stages}")
        if args.model is None:
            raise ValueError("--shapes-stages scores the stages of a model: give --model DIR|REPO_ID")
        if args.stages and not set(CONDITIONING_STAGES) & set(args.stages):
            raise ValueError(
                f"--shapes-stages needs a conditioning stage ({', '.join(CONDITIONING_STAGES)}) in --stages"
            )
    if args.format not in WRITE_FORMATS:
        raise ValueError(f"--format must be one of {', '.join(WRITE_FORMATS)}, got {args.format!r}")
    if args.fvd_protocol not in FVD_PROTOCOLS:
        raise ValueError(
            f"--fvd-protocol must be one of {', '.join(FVD_PROTOCOLS)}, got {args.fvd_protocol!r}"
        )
    if args.clip_model is not None and not args.clip_model.is_dir():
        raise ValueError(f"--clip-model {str(args.clip_model)!r} is not a folder")
    if args.i3d is not None and not args.i3d.is_file():
        raise ValueError(f"--i3d {str(args.i3d)!r} is not a file")
    if args.output.exists() and not args.output.is_dir():
        raise ValueError(f"--output {str(args.output)!r} exists and is not a folder")


def _load_stages(args: argparse.Namespace):
    """The model's cascade, limited to ``--stages``, with its own progress bars off."""
    from .generation import load_generator

    cascade = load_generator(args.model, args.stages)
    cascade.set_progress_bar_config(disable=True)
    return cascade


def _weights_signature(model: Path) -> list:
    """Name, size and modification time of every file of a saved model: a retrained model in the same folder
    changes it, so its videos are generated again."""
    return sorted(
        [str(path.relative_to(model)), path.stat().st_size, path.stat().st_mtime_ns]
        for path in model.rglob("*")
        if path.is_file()
    )


def _generate(args: argparse.Namespace, items: list[PromptItem], state) -> tuple[list[Path], int, object]:
    """Generates the missing videos, split across the processes of ``state`` (accelerate's
    ``PartialState``); returns every video's path, how many were missing and the cascade if this process
    loaded it (else ``None``)."""
    import numpy as np
    from tqdm.auto import tqdm

    from cascade.data.media_io import read_video, write_video
    from cascade.eval.video_files import video_name

    from .generation import model_folder, stage_settings

    model = model_folder(args.model)  # a Hub repo id: its snapshot, whose path names the commit
    folder = args.output / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    common = {
        "model": str(model.resolve()),
        "weights": _weights_signature(model),
        "stages": args.stages,
        "num_frames": args.num_frames,
        "steps": args.steps,
        "guidance": args.guidance,
    }
    names = [video_name(i.index, {**common, "prompt": i.prompt, "seed": args.seed + i.index}) for i in items]
    paths = [folder / f"{name}.npz" for name in names]  # scored: lossless
    views = [path.with_suffix(".mp4") if args.format == "mp4" else None for path in paths]  # for viewing
    todo = [index for index, path in enumerate(paths) if not path.exists()]
    state.wait_for_everyone()  # every process has listed the missing videos before any is written
    cascade = None
    with state.split_between_processes(todo) as mine:
        if mine:
            cascade = _load_stages(args).to(state.device)
            settings = stage_settings(cascade, args.steps, args.num_frames, args.guidance)
        for index in tqdm(mine, desc="generating", unit="video", disable=not state.is_main_process):
            item = items[index]
            frames = cascade(item.prompt, stage_kwargs=settings, seed=args.seed + item.index).frames[0]
            write_video((frames * 255).round().astype(np.uint8), paths[index], args.fps)  # (F, H, W, 3)
    state.wait_for_everyone()
    if state.is_main_process:
        for item, path, view in zip(items, paths, views, strict=True):
            if view is not None and not view.exists():  # for viewing, from the lossless frames
                write_video(read_video(path), view, args.fps)
            for stale in folder.glob(f"{item.index:05d}-*"):
                if stale not in (path, view):
                    stale.unlink()
    return paths, len(todo), cascade


def _video_label(path: Path, folder: Path) -> str:
    return os.path.relpath(path, folder) if path.resolve().is_relative_to(folder.resolve()) else str(path)


def _settings(args: argparse.Namespace, metrics: list[str]) -> dict:
    """The run's settings as written in the report."""
    settings = {"prompts": str(args.prompts), "metrics": metrics}
    if args.model is not None:
        settings.update(
            model=str(args.model),
            stages=args.stages or "all",
            num_frames=args.num_frames,
            steps=args.steps,
            guidance=args.guidance if args.guidance is not None else "each stage's",
            seed=f"{args.seed} + prompt index",
            scored_format="npz (lossless uint8 frames)",
            viewing_copies="mp4" if args.format == "mp4" else "none",
        )
    else:
        settings["videos"] = str(args.videos)
    if args.reference_videos is not None:
        settings["reference_videos"] = str(args.reference_videos)
    if {"fvd", "kvd"} & set(metrics):
        settings.update(i3d=str(args.i3d), fvd_protocol=args.fvd_protocol)
    if "clipsim" in metrics:
        settings["clip_model"] = str(args.clip_model)
    if args.shapes_stages is not None:
        settings["shapes_stages"] = args.shapes_stages
    return settings


def _stage_fidelity(args: argparse.Namespace, cascade) -> dict:
    """``--shapes-stages``: :func:`~cascade.eval.stage_fidelity.stage_fidelity` of the model's conditioning
    stages, with the clips' provenance."""
    from cascade.eval.stage_fidelity import CLIPS_SEED, stage_fidelity

    from .generation import stage_settings

    settings = stage_settings(cascade, args.steps, args.num_frames, args.guidance)
    stages = stage_fidelity(cascade, args.shapes_stages, args.num_frames, args.seed, settings)
    if not stages:
        raise ValueError(
            f"--shapes-stages: the model has no conditioning stage ({', '.join(CONDITIONING_STAGES)}); "
            f"it has {', '.join(cascade.stages)}"
        )
    return {"clips": args.shapes_stages, "clips_seed": CLIPS_SEED, "stages": stages}


def run(args: argparse.Namespace) -> None:
    """Runs ``cascade eval`` with the parsed ``args``; see the module docstring."""
    from cascade.data.media_io import read_video
    from cascade.eval.prompts import read_prompts
    from cascade.eval.report import write_report
    from cascade.eval.shapes_fidelity import parse_shapes_prompts
    from cascade.eval.suite import (
        REFERENCE_METRICS,
        SuiteInputs,
        check_references,
        compute_metrics,
        select_metrics,
        static_problems,
        video_problems,
    )
    from cascade.eval.video_files import match_videos

    _check_args(args)
    items = read_prompts(
        args.prompts,
        caption_column=args.caption_column,
        video_column=args.video_column,
        reference_dir=args.reference_videos,
    )
    prompts = [item.prompt for item in items]
    targets = parse_shapes_prompts(prompts)
    has_references = items[0].reference is not None
    problems = static_problems(len(items), has_references, args.clip_model, args.i3d, targets)
    metrics, skipped = select_metrics(args.metrics, problems)
    state = _process_state()
    cascade = None
    if args.model is not None:
        paths, count, cascade = _generate(args, items, state)
    else:
        paths, count = match_videos(args.videos, len(items), "--videos"), 0
    if not state.is_main_process:
        return
    args.output.mkdir(parents=True, exist_ok=True)
    videos = [read_video(path) for path in paths]  # [(F, H, W, 3)]
    later = video_problems(metrics, videos)
    if later and args.metrics is not None:
        name = next(iter(later))
        raise ValueError(f"metric {name} {later[name]}")
    metrics, skipped = [m for m in metrics if m not in later], {**skipped, **later}
    labels = [_video_label(path, args.output) for path in paths]
    references = None
    if set(REFERENCE_METRICS) & set(metrics):
        references = [read_video(item.reference) for item in items]  # [(F, H, W, 3)]
        check_references(videos, references, labels)
    seeds = [args.seed + item.index for item in items]
    device = str(state.device)
    inputs = SuiteInputs(
        prompts, references, args.clip_model, args.i3d, args.fvd_protocol, targets, seeds, device
    )
    scores, summary = compute_metrics(metrics, videos, inputs)
    rows = []
    for item, label, video, row_scores in zip(items, labels, videos, scores, strict=True):
        row = {"index": item.index, "prompt": item.prompt, "video": label}
        if args.model is not None:
            row["seed"] = args.seed + item.index
        if item.reference is not None:
            row["reference"] = str(item.reference)
        row.update(frames=video.shape[0], height=video.shape[1], width=video.shape[2])
        rows.append({**row, **row_scores})
    report = {"settings": _settings(args, metrics), "summary": summary, "skipped": skipped, "videos": rows}
    if args.shapes_stages is not None:
        report["stage_fidelity"] = _stage_fidelity(args, cascade or _load_stages(args).to(state.device))
    sheet = [(f"{item.index:05d} {item.prompt}", video) for item, video in zip(items, videos, strict=True)]
    for path in write_report(args.output, report, sheet):
        print(f"wrote {path}")
    if args.model is not None:
        print(f"generated {count} video(s), reused {len(items) - count}")
