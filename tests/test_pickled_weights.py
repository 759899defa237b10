"""The opt-in to pickled weights, ``use_safetensors=False``, loads what our own ``save_pretrained`` writes with
``safe_serialization=False``: every component, though transformers 5 still writes the text encoder as
safetensors. Without the opt-in such a folder is refused (safetensors only is the default)."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cascade.pipelines import CascadePipeline
from cascade.testing.tiny_models import tiny_cascade_stages

SETTINGS = {"keyframes": {"num_frames": 2}, "interpolation": {"interpolation_factor": 2}}


@pytest.fixture(scope="module")
def stages():
    return tiny_cascade_stages(latent=True)  # every stage with a VAE: each kind of component is saved


def frames(pipe, name: str) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    video = (
        {} if name == "keyframes" else {"video": np.random.default_rng(0).random((1, 2, 8, 8, 3), np.float32)}
    )
    generator = torch.Generator().manual_seed(0)
    return pipe(
        "a red circle", **video, **SETTINGS.get(name, {}), num_inference_steps=1, generator=generator
    ).frames


@pytest.mark.parametrize("name", ["keyframes", "interpolation", "spatiotemporal_sr", "spatial_sr"])
def test_a_stage_saved_with_pickled_weights_loads_only_with_the_opt_in(stages, name, tmp_path):
    pipe = stages[name]
    pipe.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "unet" / "diffusion_pytorch_model.bin").is_file()
    assert (tmp_path / "vae" / "diffusion_pytorch_model.bin").is_file()
    assert (tmp_path / "text_encoder" / "model.safetensors").is_file()  # transformers 5 writes nothing else
    with pytest.raises(
        OSError, match=r"has pickled weights .*unet/diffusion_pytorch_model.bin.* `use_safetensors"
    ):
        type(pipe).from_pretrained(tmp_path)
    loaded = type(pipe).from_pretrained(tmp_path, use_safetensors=False)
    assert np.array_equal(frames(loaded, name), frames(pipe, name))


def test_a_cascade_passes_the_opt_in_to_each_stage(stages, tmp_path):
    cascade = CascadePipeline(keyframes=stages["keyframes"], interpolation=stages["interpolation"])
    cascade.save_pretrained(tmp_path)
    for stage in ("keyframes", "interpolation"):  # as a stage saved with safe_serialization=False holds it
        weights = tmp_path / stage / "unet" / "diffusion_pytorch_model.safetensors"
        torch.save(load_file(weights), weights.with_suffix(".bin"))
        weights.unlink()
    with pytest.raises(OSError, match="has pickled weights"):
        CascadePipeline.from_pretrained(tmp_path, verify_weights=False)
    loaded = CascadePipeline.from_pretrained(tmp_path, use_safetensors=False, verify_weights=False)
    loaded.set_progress_bar_config(disable=True)
    cascade.set_progress_bar_config(disable=True)
    settings = {name: {**SETTINGS[name], "num_inference_steps": 1} for name in SETTINGS}
    reference = cascade("a red circle", stage_kwargs=settings, seed=0).frames
    assert np.array_equal(loaded("a red circle", stage_kwargs=settings, seed=0).frames, reference)
