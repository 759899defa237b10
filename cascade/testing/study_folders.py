"""Two folders of shapes-world videos and their prompt file, laid out as ``cascade rate`` reads them: for tests
of the rating server and to try it without a model. Model A's video of a prompt is the renderer's clip of it;
model B's shows the same colour and shape moving the opposite way (a judge of the text prefers A)."""

from pathlib import Path

import numpy as np

from cascade.data import ShapesWorld, make_caption, render_clip, sample_params
from cascade.data.media_io import write_video
from cascade.utils.atomic import write_atomically
from cascade.utils.checks import check_int

OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def write_study_folders(
    folder, count: int, frames: int = 8, size: int = 16, seed: int = 0
) -> tuple[Path, Path, Path]:
    """Writes ``folder/a/{i:05d}.mp4``, ``folder/b/{i:05d}.mp4`` and ``folder/prompts.txt`` for the captions of
    ``ShapesWorld(seed)[0 .. count - 1]``, each video ``frames`` frames of ``size`` x ``size``; returns the
    two folders and the prompt file."""
    count = check_int("count", count, minimum=1)
    folder = Path(folder)
    a_dir, b_dir = folder / "a", folder / "b"
    a_dir.mkdir(parents=True)
    b_dir.mkdir()
    world, prompts = ShapesWorld(seed), []
    for index in range(count):
        params = world[index]
        prompts.append(make_caption(params.color, params.shape, params.direction))
        wrong = sample_params(
            np.random.default_rng((seed, index)), params.color, params.shape, OPPOSITE[params.direction]
        )
        for target, clip in ((a_dir, params), (b_dir, wrong)):
            video = render_clip(clip, frames, size, size)  # (F, H, W, 3) in [0, 1]
            write_video((video * 255).round().astype(np.uint8), target / f"{index:05d}.mp4", fps=8)
    prompts_file = folder / "prompts.txt"
    write_atomically(prompts_file, lambda partial: partial.write_text("\n".join(prompts) + "\n"))
    return a_dir, b_dir, prompts_file
