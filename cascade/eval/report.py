"""The files ``cascade eval`` writes next to the videos: ``report.json``, ``report.md`` and
``contact_sheet.png``, each through a temporary file renamed into place.

The report is a dict ``{"settings": {...}, "summary": {metric: value}, "skipped": {metric: reason},
"videos": [{"index", "prompt", "video", ..., metric: value}]}``, and with ``cascade eval --shapes-stages``
``"stage_fidelity": {"clips", "clips_seed", "stages": {stage: ...}}`` (see
:func:`cascade.eval.stage_fidelity.stage_fidelity`), written to ``report.md`` as a table per stage.
JSON has no infinity or NaN, so those floats (PSNR of identical frames is ``inf``) are written as the
strings ``"inf"``, ``"-inf"``, ``"nan"``, which ``float()`` reads back.
"""

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cascade.utils.atomic import write_atomically

CONTACT_FRAMES = 8
THUMBNAIL_HEIGHT = 96
LABEL_HEIGHT = 14
LABEL_CHARACTERS = 100


def _json_safe(value):
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return str(float(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "n/a"
    return str(value).replace("|", "\\|")


def _markdown(report: dict, sheet_name: str) -> str:
    lines = ["# cascade eval report", "", "## Settings", ""]
    lines += [f"- {key}: `{value}`" for key, value in report["settings"].items()]
    lines += ["", "## Summary", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in report["summary"].items()]
    if report["skipped"]:
        lines += ["", "## Skipped metrics", ""]
        lines += [f"- {name}: {reason}" for name, reason in report["skipped"].items()]
    if "stage_fidelity" in report:
        lines += _stage_fidelity_markdown(report["stage_fidelity"])
    columns = list(dict.fromkeys(key for row in report["videos"] for key in row))
    lines += ["", "## Videos", "", f"![contact sheet]({sheet_name})", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(key)) for key in columns) + " |" for row in report["videos"]]
    return "\n".join(lines) + "\n"


def _stage_fidelity_markdown(fidelity: dict) -> list[str]:
    """One table per stage: PSNR of the stage and of its baseline per clip and on average, in dB."""
    lines = ["", "## Stage fidelity (shapes world)", ""]
    lines += [
        f"Each conditioning stage on {fidelity['clips']} shapes-world clip(s) (ShapesWorld seed "
        f"{fidelity['clips_seed']}), given the rendered input; PSNR against the render in dB, difference = "
        "stage - baseline."
    ]
    for name, stage in fidelity["stages"].items():
        given, output = stage["input"], stage["output"]
        lines += [
            "",
            f"### {name}: {given['frames']} frames of {given['size']}x{given['size']} -> "
            f"{output['frames']} frames of {output['size']}x{output['size']}",
            "",
            f"| clip | caption | {name} PSNR | {stage['baseline']} PSNR | difference (dB) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for clip in stage["clips"]:
            values = (clip["psnr"], clip["baseline_psnr"], clip["difference_db"])
            lines += [
                f"| {clip['index']} | {_cell(clip['caption'])} | " + " | ".join(map(_cell, values)) + " |"
            ]
        values = (stage["psnr"], stage["baseline_psnr"], stage["difference_db"])
        lines += ["| mean | | " + " | ".join(map(_cell, values)) + " |"]
    return lines


def _strip(frames: np.ndarray, count: int) -> Image.Image:
    """``count`` evenly spaced frames of uint8 ``frames`` ``(F, H, W, 3)`` side by side, scaled to
    :data:`THUMBNAIL_HEIGHT` (nearest neighbour when enlarging, so tiny frames stay crisp)."""
    picks = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    height, width = frames.shape[1:3]
    size = (max(1, round(width * THUMBNAIL_HEIGHT / height)), THUMBNAIL_HEIGHT)
    resample = Image.NEAREST if height < THUMBNAIL_HEIGHT else Image.LANCZOS
    thumbs = [Image.fromarray(frames[k]).resize(size, resample) for k in picks]
    strip = Image.new("RGB", (size[0] * len(thumbs), size[1]))
    for position, thumb in enumerate(thumbs):
        strip.paste(thumb, (position * size[0], 0))
    return strip


def contact_sheet(
    videos: list[tuple[str, np.ndarray]], frames_per_video: int = CONTACT_FRAMES
) -> Image.Image:
    """One labelled strip of up to ``frames_per_video`` frames per ``(label, uint8 (F, H, W, 3))``."""
    strips = [_strip(frames, frames_per_video) for _, frames in videos]
    row_height = LABEL_HEIGHT + THUMBNAIL_HEIGHT
    sheet = Image.new("RGB", (max(strip.width for strip in strips), row_height * len(strips)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, ((label, _), strip) in enumerate(zip(videos, strips, strict=True)):
        draw.text((2, row * row_height + 1), label[:LABEL_CHARACTERS], fill="black")
        sheet.paste(strip, (0, row * row_height + LABEL_HEIGHT))
    return sheet


def write_report(folder: Path, report: dict, videos: list[tuple[str, np.ndarray]]) -> list[Path]:
    """Writes ``report.json``, ``report.md`` and ``contact_sheet.png`` (from ``videos``, see
    :func:`contact_sheet`) to ``folder``; returns their paths."""
    paths = [folder / "report.json", folder / "report.md", folder / "contact_sheet.png"]
    text = json.dumps(_json_safe(report), indent=2, allow_nan=False) + "\n"
    write_atomically(paths[0], lambda path: path.write_text(text, encoding="utf-8"))
    markdown = _markdown(report, paths[2].name)
    write_atomically(paths[1], lambda path: path.write_text(markdown, encoding="utf-8"))
    sheet = contact_sheet(videos)
    write_atomically(paths[2], lambda path: sheet.save(path, format="PNG"))
    return paths
