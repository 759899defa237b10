"""The shipped silhouette ControlNet (issue 17, item 2): its recorded hash matches its file, it fits the demo
keyframes stage, and on a diagonal path no caption names the generated shape follows the silhouettes, in the
prompted colour, where the prompt alone does not."""

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import ControlNetModel

from cascade import KeyframesPipeline
from cascade.data import analyze_video
from cascade.data.shapes_render import pixel_coverage
from cascade.pipelines.hub_loading import check_weight_hashes

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
FRAMES, SIZE = 8, 16


def diagonal_silhouettes() -> tuple[np.ndarray, np.ndarray]:
    """A circle of 0.35 of the frame going from the top left to the bottom right: its silhouettes
    ``(F, H, W)`` and centres ``(F, 2)``."""
    centres = np.linspace([0.25, 0.25], [0.72, 0.7], FRAMES)  # (F, 2)
    half = 0.35 * SIZE / 2
    coverage = [pixel_coverage("circle", x * SIZE, y * SIZE, half, SIZE, SIZE) for x, y in centres]
    return np.stack(coverage), centres


def test_the_shipped_controlnet_is_recorded_and_fits_the_demo_keyframes():
    folder = WEIGHTS / "demo_controlnet"
    recorded = json.loads((folder / "weights_sha256.json").read_text())
    assert list(recorded) == ["diffusion_pytorch_model.safetensors"]
    assert check_weight_hashes(folder) is True  # raises on a changed file
    net = ControlNetModel.from_pretrained(folder, use_safetensors=True)
    pipe = KeyframesPipeline.from_pretrained(WEIGHTS / "demo" / "keyframes", controlnet=net)
    assert pipe.controlnet is net


@torch.no_grad()
def test_the_shape_follows_a_diagonal_silhouette_in_the_prompted_colour():
    net = ControlNetModel.from_pretrained(WEIGHTS / "demo_controlnet", use_safetensors=True)
    pipe = KeyframesPipeline.from_pretrained(WEIGHTS / "demo" / "keyframes", controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    coverage, centres = diagonal_silhouettes()
    control = np.repeat(coverage[None, ..., None], 3, axis=-1)  # (1, F, H, W, 3)
    settings = {"num_frames": FRAMES, "num_inference_steps": 15, "guidance_scale": 4.0}
    prompts = ["a green circle moving right", "a magenta circle moving down"]
    controlled = pipe(prompts, control_video=control, generator=torch.Generator().manual_seed(0), **settings)
    plain = KeyframesPipeline(**{**pipe.components, "controlnet": None})
    plain.set_progress_bar_config(disable=True)
    free = plain(prompts, generator=torch.Generator().manual_seed(0), **settings)
    for prompt, video, unguided in zip(prompts, controlled.frames, free.frames, strict=True):
        analysis = analyze_video(video)
        assert analysis.color == prompt.split()[1]
        distance = np.linalg.norm(analysis.centroids - centres, axis=-1).mean()
        assert distance < 0.05, (prompt, distance)  # within 0.8 pixel of the silhouettes' centres on average
        assert np.linalg.norm(analyze_video(unguided).centroids - centres, axis=-1).mean() > 2 * distance
