"""Verified weights (issue 20): a saved stage or cascade records the sha256 of each weight file in
weights_sha256.json, loading checks them (bytes flipped inside a tensor's data load without any other error),
verify_weights=False skips the check, and the shipped demo carries hashes that match its files."""

import hashlib
import json
import shutil
import struct
import time
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

import cascade.pipelines.hub_loading as hub_loading
from cascade.pipelines import CascadePipeline, InterpolationPipeline, KeyframesPipeline
from cascade.pipelines.cascade import load_cascade
from cascade.pipelines.hub_loading import (
    WEIGHT_HASHES,
    UnrecordedWeightsWarning,
    WeightsChangedError,
    check_weight_hashes,
    weight_files,
    write_weight_hashes,
)
from cascade.testing.tiny_models import tiny_cascade_stages

from hub_cache import cache_repo

DEMO = Path(__file__).resolve().parent.parent / "weights" / "demo"
UNET = "unet/diffusion_pytorch_model.safetensors"
TEXT_ENCODER = "text_encoder/model.safetensors"


@pytest.fixture(scope="module")
def stages():
    return tiny_cascade_stages()


@pytest.fixture(scope="module")
def saved_stage(stages, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stage") / "keyframes"
    stages["keyframes"].save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def saved_cascade(stages, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cascade") / "model"
    CascadePipeline(keyframes=stages["keyframes"], interpolation=stages["interpolation"]).save_pretrained(
        folder
    )
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flip_tensor_bytes(path: Path) -> None:
    """Inverts 4 bytes in the middle of a safetensors file's tensor data, past its header, so the file still
    parses: only its values change."""
    data = bytearray(path.read_bytes())
    (header_length,) = struct.unpack("<Q", data[:8])
    start = 8 + header_length
    middle = start + (len(data) - start) // 2
    assert middle + 4 <= len(data)
    data[middle : middle + 4] = bytes(b ^ 0xFF for b in data[middle : middle + 4])
    path.write_bytes(bytes(data))


def copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def unet_weights(pipeline) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in pipeline.unet.state_dict().items()}


def test_a_saved_stage_records_its_weight_files_and_loads_checked(stages, saved_stage):
    hashes = json.loads((saved_stage / WEIGHT_HASHES).read_text())
    assert sorted(hashes) == [TEXT_ENCODER, UNET]
    assert all(hashes[relative] == sha256(saved_stage / relative) for relative in hashes)
    assert check_weight_hashes(saved_stage) is True
    loaded = KeyframesPipeline.from_pretrained(saved_stage)
    expected = unet_weights(stages["keyframes"])
    assert all(torch.equal(value, expected[name]) for name, value in unet_weights(loaded).items())


def test_flipped_bytes_in_a_stage_weight_file_are_refused_naming_it(saved_stage, tmp_path):
    folder = copy(saved_stage, tmp_path)
    recorded = json.loads((folder / WEIGHT_HASHES).read_text())[UNET]
    flip_tensor_bytes(folder / UNET)
    with pytest.raises(WeightsChangedError) as error:
        KeyframesPipeline.from_pretrained(folder)
    message = str(error.value)
    assert str(folder / UNET) in message and "is not the one saved" in message
    assert recorded in message and sha256(folder / UNET) in message and "verify_weights=False" in message
    # unchecked, the file loads without any error: only its values are wrong
    loaded = KeyframesPipeline.from_pretrained(folder, verify_weights=False)
    original = KeyframesPipeline.from_pretrained(saved_stage)
    changed = unet_weights(original)
    assert any(not torch.equal(value, changed[name]) for name, value in unet_weights(loaded).items())


def test_a_saved_cascade_records_every_stage_file_and_checks_each_once(saved_cascade, monkeypatch):
    hashes = json.loads((saved_cascade / WEIGHT_HASHES).read_text())
    stage_files = [
        f"{stage}/{relative}" for stage in ("interpolation", "keyframes") for relative in (TEXT_ENCODER, UNET)
    ]
    assert sorted(hashes) == stage_files
    assert all(hashes[relative] == sha256(saved_cascade / relative) for relative in hashes)
    for stage in ("keyframes", "interpolation"):  # each stage folder loads, checked, on its own too
        assert check_weight_hashes(saved_cascade / stage) is True
    hashed = []
    file_sha256 = hub_loading.file_sha256
    monkeypatch.setattr(hub_loading, "file_sha256", lambda path: hashed.append(path) or file_sha256(path))
    loaded = CascadePipeline.from_pretrained(saved_cascade)
    assert list(loaded.stages) == ["keyframes", "interpolation"]
    assert sorted(Path(path).relative_to(saved_cascade).as_posix() for path in hashed) == stage_files


def test_flipped_bytes_in_a_cascade_weight_file_are_refused_naming_it(saved_cascade, tmp_path):
    folder = copy(saved_cascade, tmp_path)
    damaged = folder / "interpolation" / TEXT_ENCODER
    flip_tensor_bytes(damaged)
    for load in (CascadePipeline.from_pretrained, load_cascade):
        with pytest.raises(WeightsChangedError, match="is not the one saved") as error:
            load(folder)
        assert str(damaged) in str(error.value) and str(folder / WEIGHT_HASHES) in str(error.value)
    # a stage of the cascade loaded on its own is checked against its own record
    with pytest.raises(WeightsChangedError, match="is not the one saved"):
        InterpolationPipeline.from_pretrained(folder / "interpolation")
    assert list(load_cascade(folder, verify_weights=False).stages) == ["keyframes", "interpolation"]


def test_a_cascade_without_its_record_checks_each_stage_against_its_own(saved_cascade, tmp_path):
    folder = copy(saved_cascade, tmp_path)
    (folder / WEIGHT_HASHES).unlink()
    flip_tensor_bytes(folder / "keyframes" / UNET)
    with pytest.raises(WeightsChangedError, match="keyframes/unet"):
        CascadePipeline.from_pretrained(folder)


def test_a_folder_saved_without_hashes_loads_as_before(saved_stage, tmp_path):
    folder = copy(saved_stage, tmp_path)
    (folder / WEIGHT_HASHES).unlink()
    flip_tensor_bytes(folder / UNET)  # nothing to check it against
    assert check_weight_hashes(folder) is False
    assert isinstance(KeyframesPipeline.from_pretrained(folder), KeyframesPipeline)


def test_weight_files_added_after_saving_are_named_in_a_warning_and_missing_ones_left_to_the_loader(
    saved_stage, tmp_path
):
    folder = copy(saved_stage, tmp_path)
    shutil.copy(folder / UNET, folder / "unet" / "diffusion_pytorch_model.fp16.safetensors")
    with pytest.warns(UnrecordedWeightsWarning, match=r"records no sha256 .*diffusion_pytorch_model\.fp16"):
        assert check_weight_hashes(folder) is True
    (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").unlink()
    (folder / TEXT_ENCODER).unlink()
    assert check_weight_hashes(folder) is True  # what the loader needs and lacks, it reports itself
    with pytest.raises(OSError, match="model.safetensors"):
        KeyframesPipeline.from_pretrained(folder)


@pytest.mark.parametrize(
    "record",
    ["not json", '["unet/x.safetensors"]', '{"../outside.safetensors": "' + "0" * 64 + '"}', '{"a": "beef"}'],
)
def test_a_malformed_record_is_refused(saved_stage, tmp_path, record):
    folder = copy(saved_stage, tmp_path)
    (folder / WEIGHT_HASHES).write_text(record)
    with pytest.raises(WeightsChangedError, match=WEIGHT_HASHES):
        KeyframesPipeline.from_pretrained(folder)


def test_verify_weights_must_be_a_bool(saved_stage):
    with pytest.raises(ValueError, match="`verify_weights` must be a bool, got 'no'"):
        KeyframesPipeline.from_pretrained(saved_stage, verify_weights="no")


def test_a_hub_download_brings_the_record_and_is_checked(saved_stage, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    snapshot = cache_repo(saved_stage, cache, "cascade-test/verified")
    assert (snapshot / WEIGHT_HASHES).is_file()
    assert isinstance(KeyframesPipeline.from_pretrained("cascade-test/verified"), KeyframesPipeline)
    flip_tensor_bytes((snapshot / UNET).resolve())  # the blob the snapshot links to
    with pytest.raises(WeightsChangedError, match="is not the one saved"):
        KeyframesPipeline.from_pretrained("cascade-test/verified")


def test_write_weight_hashes_leaves_the_weights_as_they_are(saved_stage, tmp_path):
    folder = copy(saved_stage, tmp_path)
    before = {relative: (folder / relative).read_bytes() for relative in weight_files(folder)}
    (folder / WEIGHT_HASHES).unlink()
    assert write_weight_hashes(folder) == {
        relative: hashlib.sha256(data).hexdigest() for relative, data in before.items()
    }
    assert {relative: (folder / relative).read_bytes() for relative in weight_files(folder)} == before
    assert not list(folder.glob(".*partial*"))


def test_the_shipped_demo_carries_hashes_that_match_its_files():
    stages = ["keyframes", "interpolation", "spatiotemporal_sr", "spatial_sr"]
    for folder in [DEMO, *(DEMO / stage for stage in stages)]:
        hashes = json.loads((folder / WEIGHT_HASHES).read_text())
        assert sorted(hashes) == weight_files(folder) and hashes
        started = time.perf_counter()
        assert check_weight_hashes(folder) is True
        print(f"{folder.name}: {len(hashes)} files verified in {time.perf_counter() - started:.3f} s")
    assert len(json.loads((DEMO / WEIGHT_HASHES).read_text())) == 2 * len(stages)
