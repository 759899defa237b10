"""Saved stages and cascades load through diffusers, through our own classes, and from a Hub repo id in the
Hugging Face cache offline; safetensors only unless asked; one clear error for a repo that is not cached."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import diffusers.pipelines.pipeline_utils
import diffusers.utils.dynamic_modules_utils
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from huggingface_hub import snapshot_download
from huggingface_hub.errors import OfflineModeIsEnabled
from safetensors.torch import load_file

from cascade.pipelines import CascadePipeline, InterpolationPipeline, KeyframesPipeline
from cascade.pipelines.hub_loading import ModelNotCachedError
from cascade.testing.tiny_models import tiny_cascade_stages

from hub_cache import COMMIT, cache_repo

REPO = "cascade-test/tiny-keyframes"
SETTINGS = {
    "keyframes": {"num_frames": 2},
    "interpolation": {"interpolation_factor": 2},
    "spatiotemporal_sr": {},
    "spatial_sr": {},
}
STAGES = list(SETTINGS)


@pytest.fixture(scope="module")
def stages():
    return tiny_cascade_stages()


@pytest.fixture
def offline_cache(monkeypatch, tmp_path):
    """An empty Hugging Face cache, with downloads off as under ``HF_HUB_OFFLINE=1``."""
    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def frames(pipe, name: str) -> np.ndarray:
    """The stage's frames for a fixed prompt, input video and seed: ``(1, F, H, W, 3)``."""
    pipe.set_progress_bar_config(disable=True)
    video = (
        {} if name == "keyframes" else {"video": np.random.default_rng(0).random((1, 2, 8, 8, 3), np.float32)}
    )
    return pipe(
        "a red circle",
        **video,
        **SETTINGS[name],
        num_inference_steps=1,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).frames


def test_save_writes_the_code_files_model_index_names(stages, tmp_path):
    stages["keyframes"].save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == ["keyframes_pipeline", "KeyframesPipeline"]
    assert index["unet"] == ["cascade.models.video_unet", "VideoUNet"]
    assert (
        tmp_path / "keyframes_pipeline.py"
    ).read_text() == "from cascade.pipelines import KeyframesPipeline\n"
    code = (tmp_path / "unet" / "cascade.models.video_unet.py").read_text()
    assert code == "from cascade.models.video_unet import VideoUNet\n"
    assert not list(tmp_path.rglob(".*partial*"))
    stages["spatial_sr"].save_pretrained(tmp_path / "spatial")  # a diffusers UNet: no component code
    assert sorted(p.name for p in (tmp_path / "spatial").rglob("*.py")) == ["spatial_sr_pipeline.py"]


def test_a_saved_cascade_names_its_code_file_and_each_stage_s(stages, tmp_path):
    CascadePipeline(keyframes=stages["keyframes"], spatial_sr=stages["spatial_sr"]).save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == ["cascade_pipeline", "CascadePipeline"]
    assert index["keyframes"] == ["cascade.pipelines.keyframes", "KeyframesPipeline"]
    assert index["interpolation"] == [None, None]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.py")) == [
        "cascade_pipeline.py",
        "keyframes/cascade.pipelines.keyframes.py",  # diffusers' download of a Hub repo checks for these
        "keyframes/keyframes_pipeline.py",
        "keyframes/unet/cascade.models.video_unet.py",
        "spatial_sr/cascade.pipelines.spatial_sr.py",
        "spatial_sr/spatial_sr_pipeline.py",
    ]
    assert (tmp_path / "cascade_pipeline.py").read_text() == "from cascade.pipelines import CascadePipeline\n"
    code = (tmp_path / "keyframes" / "cascade.pipelines.keyframes.py").read_text()
    assert code == "from cascade.pipelines.keyframes import KeyframesPipeline\n"


@pytest.mark.parametrize("name", STAGES)
def test_saved_stage_loads_with_its_class_and_with_diffusers_to_the_same_frames(stages, name, tmp_path):
    stage = stages[name]
    stage.save_pretrained(tmp_path)
    reference = frames(stage, name)
    for loaded in (
        type(stage).from_pretrained(tmp_path),  # no trust_remote_code needed for our own code files
        DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True),
    ):
        assert type(loaded) is type(stage)
        assert np.array_equal(frames(loaded, name), reference)


@pytest.mark.parametrize("tree_listing", [False, True], ids=["snapshot", "snapshot+tree-listing"])
def test_a_cached_repo_id_loads_offline_to_the_same_frames(stages, offline_cache, tmp_path, tree_listing):
    stages["keyframes"].save_pretrained(tmp_path / "saved")
    cache_repo(tmp_path / "saved", offline_cache, REPO, tree_listing=tree_listing)
    reference = frames(stages["keyframes"], "keyframes")
    loaded = KeyframesPipeline.from_pretrained(REPO)
    assert loaded.config._name_or_path == REPO
    assert np.array_equal(frames(loaded, "keyframes"), reference)
    for loaded in diffusers_loads_offline(REPO, tree_listing):
        assert type(loaded) is KeyframesPipeline
        assert np.array_equal(frames(loaded, "keyframes"), reference)


def diffusers_loads_offline(repo_id: str, tree_listing: bool) -> list:
    """What ``DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`` loads offline from the cached
    ``repo_id``: given the repo id, or, when the cache holds the repo's file listing, the snapshot folder."""
    if not tree_listing:
        return [DiffusionPipeline.from_pretrained(repo_id, trust_remote_code=True)]
    # A diffusers 0.42 limitation: with the listing, DiffusionPipeline.download loads the pipeline's code file
    # through get_cached_module_file (diffusers/utils/dynamic_modules_utils.py), which asks the Hub for the
    # commit (model_info) without checking for offline mode. Fails here once diffusers fixes that.
    with pytest.raises(OfflineModeIsEnabled):
        DiffusionPipeline.from_pretrained(repo_id, trust_remote_code=True)
    snapshot = snapshot_download(repo_id, local_files_only=True)  # the workaround the README gives
    return [DiffusionPipeline.from_pretrained(snapshot, trust_remote_code=True)]


def answer_as_the_hub(monkeypatch, snapshot: Path, leave_out: str | None = None) -> None:
    """Makes diffusers' ``model_info`` answer as the Hub would for a repo holding the files of ``snapshot``
    (less ``leave_out``)."""
    files = [
        types.SimpleNamespace(rfilename=p.relative_to(snapshot).as_posix())
        for p in snapshot.rglob("*.*")
        if p.relative_to(snapshot).as_posix() != leave_out
    ]
    info = types.SimpleNamespace(sha=COMMIT, siblings=files)
    monkeypatch.setattr(diffusers.pipelines.pipeline_utils, "model_info", lambda *args, **kwargs: info)
    monkeypatch.setattr(diffusers.utils.dynamic_modules_utils, "model_info", lambda *args, **kwargs: info)


def test_diffusers_accepts_a_folder_pushed_to_the_hub(stages, offline_cache, tmp_path, monkeypatch):
    # diffusers' download checks the repo's file list: a component class outside diffusers needs its code file.
    stages["keyframes"].save_pretrained(tmp_path / "saved")
    answer_as_the_hub(monkeypatch, cache_repo(tmp_path / "saved", offline_cache, REPO))
    loaded = DiffusionPipeline.from_pretrained(REPO, trust_remote_code=True)
    assert type(loaded) is KeyframesPipeline
    assert np.array_equal(frames(loaded, "keyframes"), frames(stages["keyframes"], "keyframes"))


def test_diffusers_accepts_a_cascade_pushed_to_the_hub_given_each_stage_s_code_file(
    stages, offline_cache, tmp_path, monkeypatch
):
    cascade = CascadePipeline(keyframes=stages["keyframes"], interpolation=stages["interpolation"])
    cascade.set_progress_bar_config(disable=True)
    cascade.save_pretrained(tmp_path / "saved")
    snapshot = cache_repo(tmp_path / "saved", offline_cache, "cascade-test/tiny-cascade")
    answer_as_the_hub(monkeypatch, snapshot)
    loaded = DiffusionPipeline.from_pretrained("cascade-test/tiny-cascade", trust_remote_code=True)
    loaded.set_progress_bar_config(disable=True)
    settings = {name: {**SETTINGS[name], "num_inference_steps": 1} for name in cascade.stages}
    reference = cascade("a red circle", stage_kwargs=settings, seed=0).frames
    assert np.array_equal(loaded("a red circle", stage_kwargs=settings, seed=0).frames, reference)
    stage_code = "interpolation/cascade.pipelines.interpolation.py"
    answer_as_the_hub(monkeypatch, snapshot, leave_out=stage_code)
    with pytest.raises(ValueError, match=f"{stage_code} as defined in `model_index.json` does not exist"):
        DiffusionPipeline.from_pretrained("cascade-test/tiny-cascade", trust_remote_code=True)


def in_a_fresh_process(tmp_path: Path, repo_id: str, generate: str) -> tuple[list[str], np.ndarray]:
    """Loads ``repo_id`` with ``DiffusionPipeline.from_pretrained`` in a new process that has not imported
    ``cascade``, offline, from the Hugging Face cache ``tmp_path / "hub"``, then runs ``out = <generate>``
    with the pipeline as ``pipe``. Returns the loaded class's module and name, and ``out``."""
    script = f"""
import sys
import numpy as np
import torch
from diffusers import DiffusionPipeline
assert "cascade" not in sys.modules
pipe = DiffusionPipeline.from_pretrained({repo_id!r}, trust_remote_code=True)
pipe.set_progress_bar_config(disable=True)
print(type(pipe).__module__, type(pipe).__name__)
out = {generate}
np.save(sys.argv[1], out)
"""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "home"),
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "frames.npy")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split(), np.load(tmp_path / "frames.npy")


def test_a_fresh_process_loads_a_cached_repo_with_diffusers_alone(stages, tmp_path):
    stages["keyframes"].save_pretrained(tmp_path / "saved")
    cache_repo(tmp_path / "saved", tmp_path / "hub", REPO)
    generate = 'pipe("a red circle", num_frames=2, num_inference_steps=1, generator=torch.Generator().manual_seed(0)).frames'
    loaded, out = in_a_fresh_process(tmp_path, REPO, generate)
    assert loaded == ["cascade.pipelines.keyframes", "KeyframesPipeline"]
    # Another process may run with another thread count: float sums in another order, equal to ~1e-7.
    np.testing.assert_allclose(out, frames(stages["keyframes"], "keyframes"), atol=1e-5, rtol=0)


def test_a_fresh_process_loads_a_cached_cascade_repo_with_diffusers_alone(stages, tmp_path):
    cascade = CascadePipeline(keyframes=stages["keyframes"], interpolation=stages["interpolation"])
    cascade.set_progress_bar_config(disable=True)
    cascade.save_pretrained(tmp_path / "saved")
    cache_repo(tmp_path / "saved", tmp_path / "hub", "cascade-test/tiny-cascade")
    settings = {name: {**SETTINGS[name], "num_inference_steps": 1} for name in cascade.stages}
    loaded, out = in_a_fresh_process(
        tmp_path,
        "cascade-test/tiny-cascade",
        f'pipe("a red circle", stage_kwargs={settings!r}, seed=0).frames',
    )
    assert loaded == ["cascade.pipelines.cascade", "CascadePipeline"]
    reference = cascade("a red circle", stage_kwargs=settings, seed=0).frames
    np.testing.assert_allclose(out, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("loader", [KeyframesPipeline, CascadePipeline], ids=lambda c: c.__name__)
@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "local_files_only"])
def test_an_uncached_repo_offline_raises_one_error_naming_it_and_the_fix(loader, how, monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", how == "HF_HUB_OFFLINE")
    kwargs = {"local_files_only": True} if how == "local_files_only" else {}
    with pytest.raises(ModelNotCachedError) as raised:
        loader.from_pretrained("cascade-test/missing", **kwargs)
    message = str(raised.value)
    assert isinstance(raised.value, OSError)
    assert "'cascade-test/missing' is not (fully) in the Hugging Face cache" in message
    assert "Run this once online, or download it with `hf download cascade-test/missing`" in message


def test_a_partly_cached_repo_offline_raises_the_same_error(stages, offline_cache, tmp_path):
    stages["keyframes"].save_pretrained(tmp_path / "saved")
    snapshot = cache_repo(tmp_path / "saved", offline_cache, REPO, tree_listing=True)
    (snapshot / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelNotCachedError, match="hf download cascade-test/tiny-keyframes"):
        KeyframesPipeline.from_pretrained(REPO)


@pytest.mark.parametrize("tree_listing", [False, True], ids=["snapshot", "snapshot+tree-listing"])
def test_a_cascade_loads_from_a_folder_and_a_cached_repo_id_offline(
    stages, offline_cache, tmp_path, tree_listing
):
    defaults = {"keyframes": {"num_frames": 2}, "interpolation": {"interpolation_factor": 2}}
    cascade = CascadePipeline(
        stage_defaults=defaults, keyframes=stages["keyframes"], interpolation=stages["interpolation"]
    )
    cascade.set_progress_bar_config(disable=True)
    cascade.save_pretrained(tmp_path / "saved")
    cache_repo(tmp_path / "saved", offline_cache, "cascade-test/tiny-cascade", tree_listing=tree_listing)
    settings = {name: {"num_inference_steps": 1} for name in cascade.stages}
    reference = cascade("a red circle", stage_kwargs=settings, seed=0).frames
    with_diffusers = [
        DiffusionPipeline.from_pretrained(tmp_path / "saved", trust_remote_code=True),
        *diffusers_loads_offline("cascade-test/tiny-cascade", tree_listing),
    ]
    for loaded, encoders in (
        (CascadePipeline.from_pretrained(tmp_path / "saved"), 1),  # byte-identical text encoders loaded once
        (CascadePipeline.from_pretrained("cascade-test/tiny-cascade"), 1),
        *((pipeline, 2) for pipeline in with_diffusers),  # each stage loads its own
    ):
        assert type(loaded) is CascadePipeline
        assert loaded.stage_defaults == defaults
        assert [type(stage) for stage in loaded.stages.values()] == [KeyframesPipeline, InterpolationPipeline]
        loaded.set_progress_bar_config(disable=True)
        assert len(loaded.text_encoders) == encoders
        assert np.array_equal(loaded("a red circle", stage_kwargs=settings, seed=0).frames, reference)


def test_a_cascade_saved_before_its_model_index_still_loads_with_its_class(stages, tmp_path):
    # as weights/demo was shipped: cascade_index.json and the stage folders only
    cascade = CascadePipeline(keyframes=stages["keyframes"], interpolation=stages["interpolation"])
    cascade.set_progress_bar_config(disable=True)
    cascade.save_pretrained(tmp_path)
    for path in [tmp_path / "model_index.json", tmp_path / "cascade_pipeline.py"]:
        path.unlink()
    for path in tmp_path.glob("*/cascade.pipelines.*.py"):
        path.unlink()
    settings = {name: {**SETTINGS[name], "num_inference_steps": 1} for name in cascade.stages}
    loaded = CascadePipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    reference = cascade("a red circle", stage_kwargs=settings, seed=0).frames
    assert np.array_equal(loaded("a red circle", stage_kwargs=settings, seed=0).frames, reference)


def test_a_stage_class_refuses_a_saved_cascade_naming_the_class_to_use(stages, tmp_path):
    CascadePipeline(keyframes=stages["keyframes"]).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="was saved from CascadePipeline .*; load it with CascadePipeline"):
        KeyframesPipeline.from_pretrained(tmp_path)


def test_pickled_weights_load_only_with_use_safetensors_false(stages, tmp_path):
    stages["keyframes"].save_pretrained(tmp_path)
    for folder, name in (("unet", "diffusion_pytorch_model"), ("text_encoder", "model")):
        safetensors = tmp_path / folder / f"{name}.safetensors"
        pickled = "diffusion_pytorch_model.bin" if folder == "unet" else "pytorch_model.bin"
        torch.save(load_file(safetensors), tmp_path / folder / pickled)
        safetensors.unlink()
    expected = (
        r"has pickled weights and no safetensors file for them \(text_encoder/pytorch_model.bin, "
        r"unet/diffusion_pytorch_model.bin\), .* Pass `use_safetensors=False`"
    )
    for use_safetensors in ({}, {"use_safetensors": None}, {"use_safetensors": True}):
        with pytest.raises(OSError, match=expected):
            KeyframesPipeline.from_pretrained(tmp_path, **use_safetensors)
    loaded = KeyframesPipeline.from_pretrained(tmp_path, use_safetensors=False)
    assert np.array_equal(frames(loaded, "keyframes"), frames(stages["keyframes"], "keyframes"))


@pytest.mark.parametrize("edited", ["keyframes_pipeline.py", "unet/cascade.models.video_unet.py", "None.py"])
def test_edited_or_added_code_files_need_trust_remote_code(stages, tmp_path, edited):
    # diffusers runs "None.py" as the pipeline's code when there is one (it looks for f"{custom_pipeline}.py")
    stages["keyframes"].save_pretrained(tmp_path)
    with open(tmp_path / edited, "a") as file:
        file.write("print('not ours')\n")
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        KeyframesPipeline.from_pretrained(tmp_path)


def test_a_folder_saved_before_the_code_files_still_loads(stages, tmp_path):
    stages["keyframes"].save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    (tmp_path / "model_index.json").write_text(json.dumps({**index, "_class_name": "KeyframesPipeline"}))
    for path in tmp_path.rglob("*.py"):
        path.unlink()
    loaded = KeyframesPipeline.from_pretrained(tmp_path)
    assert np.array_equal(frames(loaded, "keyframes"), frames(stages["keyframes"], "keyframes"))


def test_a_folder_of_another_class_is_refused_naming_it(stages, tmp_path):
    stages["keyframes"].save_pretrained(tmp_path)
    with pytest.raises(
        ValueError, match="was saved from KeyframesPipeline .*, not InterpolationPipeline; load it"
    ):
        InterpolationPipeline.from_pretrained(tmp_path)

    class MyKeyframes(KeyframesPipeline):
        pass

    with pytest.raises(ValueError, match=r"KeyframesPipeline.from_pretrained, then `MyKeyframes.from_pipe\("):
        MyKeyframes.from_pretrained(tmp_path)


def test_a_path_that_is_neither_a_folder_nor_a_repo_id_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is neither a folder nor a Hub repo id"):
        KeyframesPipeline.from_pretrained(tmp_path / "missing" / "model")
