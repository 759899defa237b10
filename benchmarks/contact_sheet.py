"""Contact sheets for the benchmarks: labelled rows of clips as strips of enlarged frames, blocks side by side."""

import numpy as np
from PIL import Image, ImageDraw

SHEET_SCALE = 4


def contact_sheet(examples: list[tuple[str, list[np.ndarray]]], labels: tuple[str, ...], columns: int = 2):
    """Each example ``(title, clips)`` a block, ``columns`` blocks side by side: the title, then one row per
    clip (``labels``, one per clip), each clip ``(F, H, W, 3)`` in [0, 1] as a strip of its frames enlarged
    :data:`SHEET_SCALE` times. Clips of one sheet share ``H`` and ``W``; their frame counts may differ."""
    if not examples or any(len(clips) != len(labels) for _, clips in examples):
        raise ValueError(
            f"`examples` must be a non-empty list of (title, clips) with {len(labels)} clips each."
        )
    label_width, gap, title_height = 110, 8, 28
    height, width = examples[0][1][0].shape[1:3]
    longest = max(clip.shape[0] for _, clips in examples for clip in clips)
    row_height = height * SHEET_SCALE + 2
    block_width = label_width + longest * width * SHEET_SCALE + gap
    block_height = title_height + len(labels) * row_height + gap
    columns = min(columns, len(examples))
    rows = -(-len(examples) // columns)
    sheet = Image.new("RGB", (columns * block_width, rows * block_height), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (title, clips) in enumerate(examples):
        left, block_top = (index % columns) * block_width, (index // columns) * block_height
        draw.text((left + 4, block_top + 2), title, fill="black")
        for row, (label, clip) in enumerate(zip(labels, clips, strict=True)):
            top = block_top + title_height + row * row_height
            draw.text((left + 4, top + height * SHEET_SCALE // 2 - 6), label, fill="black")
            pixels = (np.clip(clip, 0, 1) * 255).round().astype(np.uint8)  # (F, H, W, 3)
            picture = Image.fromarray(np.concatenate(list(pixels), axis=1))  # (H, F * W, 3)
            picture = picture.resize(
                (clip.shape[0] * width * SHEET_SCALE, height * SHEET_SCALE), Image.NEAREST
            )
            sheet.paste(picture, (left + label_width, top))
    return sheet


def stack_vertically(images: list[Image.Image]) -> Image.Image:
    """``images`` one under the other on white, left-aligned."""
    width = max(image.width for image in images)
    stacked = Image.new("RGB", (width, sum(image.height for image in images)), "white")
    top = 0
    for image in images:
        stacked.paste(image, (0, top))
        top += image.height
    return stacked
