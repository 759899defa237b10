"""The demo cascade shipped in weights/demo: complete, small, safetensors only, and it generates with the
sampling settings saved with it."""

from pathlib import Path

import yaml

from cascade import CascadePipeline
from cascade.pipelines.cascade import DEMO_MODEL

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "weights" / "demo"


def test_the_default_model_is_the_shipped_demo_cascade():
    assert DEMO_MODEL == DEMO
    files = [path for path in DEMO.rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) < 40 * 2**20
    weights = [path for path in files if path.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt")]
    assert weights and all(path.suffix == ".safetensors" for path in weights)


def test_the_demo_loads_with_its_sampling_settings_and_generates():
    cascade = CascadePipeline.from_pretrained(DEMO)
    assert list(cascade.stages) == ["keyframes", "interpolation", "spatiotemporal_sr", "spatial_sr"]
    assert cascade.stage_defaults == yaml.safe_load((REPO / "configs" / "demo" / "sampling.yaml").read_text())
    # Text encoders of its own: the keyframes stage trained its copy further; the other stages share one.
    assert len(cascade.text_encoders) == 2
    cascade.set_progress_bar_config(disable=True)
    fast = {name: {"num_inference_steps": 1} for name in cascade.stages}
    fast["keyframes"]["num_frames"] = 2
    frames = cascade("a red circle moving right", stage_kwargs=fast, seed=0).frames
    assert frames.shape == (1, 5, 64, 64, 3)  # 2 keyframes of 16x16, x4 in time, x4 in space
