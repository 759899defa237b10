"""The weights manifest: the repository's file is valid and pinned; every schema violation names its stage
and field."""

import copy
import inspect
from pathlib import Path

import pytest
import yaml

from cascade.hub.manifest import INFLATION_OPTIONS, ManifestError, read_manifest

REPO_MANIFEST = Path(__file__).resolve().parent.parent / "weights_manifest.yaml"

ENTRY = {
    "kind": "local",
    "path": "base",
    "subfolder": "unet",
    "license": "creativeml-openrail-m",
    "files": [
        {"path": "unet/config.json"},
        {"path": "unet/diffusion_pytorch_model.safetensors", "sha256": "a" * 64},
        {"path": "text_encoder/config.json"},
        {"path": "tokenizer/tokenizer.json"},
        {"path": "scheduler/scheduler_config.json"},
    ],
    "inflation": {"extra_in_channels": 0},
}


def _write(tmp_path, data) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _manifest(**changes) -> dict:
    entry = copy.deepcopy(ENTRY)
    for key, value in changes.items():
        if value is None:
            entry.pop(key)
        else:
            entry[key] = value
    return {"version": 1, "stages": {"keyframes": entry}}


def test_repository_manifest_pins_every_stage():
    manifest = read_manifest(REPO_MANIFEST)
    assert list(manifest.entries) == ["keyframes", "interpolation", "spatiotemporal_sr", "spatial_sr", "demo"]
    sd15, x4 = "stable-diffusion-v1-5/stable-diffusion-v1-5", "stabilityai/stable-diffusion-x4-upscaler"
    expected = {"keyframes": sd15, "interpolation": sd15, "spatiotemporal_sr": x4, "spatial_sr": x4}
    for name, repo_id in expected.items():
        entry = manifest.entries[name]
        assert (entry.kind, entry.repo_id, entry.subfolder) == ("hub", repo_id, "unet")
        assert len(entry.revision) == 40 and entry.base_model == repo_id
    known = {item.path: item.sha256 for item in manifest.entries["keyframes"].files}
    assert known["unet/diffusion_pytorch_model.safetensors"].startswith("19da7aaa")
    for name in ("keyframes", "spatial_sr"):  # each base's three LFS weight files are hashed
        weights = [item for item in manifest.entries[name].files if item.path.endswith(".safetensors")]
        assert len(weights) == 3 and all(item.sha256 for item in weights)
    known = {item.path: item.sha256 for item in manifest.entries["spatiotemporal_sr"].files}
    assert known["unet/diffusion_pytorch_model.safetensors"].startswith("b6dc05aa")
    assert manifest.entries["interpolation"].inflation["extra_in_channels"] == 5  # latents + mask
    assert manifest.entries["spatiotemporal_sr"].inflation["num_class_embeds"] == 1000
    assert "low_res_scheduler" in manifest.entries["spatial_sr"].components
    demo = manifest.entries["demo"]
    assert demo.kind == "shipped" and demo.path == REPO_MANIFEST.parent / "weights" / "demo"
    assert [entry.name for entry in manifest.select("all")] == list(manifest.entries)


def test_inflation_options_are_the_video_unet_options():
    from cascade.models import VideoUNet

    parameters = set(inspect.signature(VideoUNet.__init__).parameters) - {"self", "unet_config"}
    assert set(INFLATION_OPTIONS) - {"num_class_embeds"} == parameters


def test_relative_paths_resolve_against_the_manifest(tmp_path):
    manifest = read_manifest(_write(tmp_path, _manifest()))
    assert manifest.entries["keyframes"].path == tmp_path / "base"
    assert manifest.entries["keyframes"].base_model is None


@pytest.mark.parametrize(
    ("data", "stage", "field", "problem"),
    [
        (_manifest(revison="0" * 40), "keyframes", "revison", "unknown key"),
        (
            _manifest(files=[{"path": "unet/config.json", "sha": "0"}]),
            "keyframes",
            "files[0].sha",
            "unknown key",
        ),
        (_manifest(inflation={"temporal_conv": True}), "keyframes", "inflation.temporal_conv", "unknown key"),
        (_manifest(license=None), "keyframes", "license", "missing"),
        (_manifest(inflation=None), "keyframes", "inflation", "missing"),
        (_manifest(files=[{"sha256": "a" * 64}]), "keyframes", "files[0].path", "missing"),
        (
            _manifest(files=[{"path": "unet/w.safetensors", "sha256": "A" * 64}]),
            "keyframes",
            "files[0].sha256",
            "64 lowercase hex",
        ),
        (
            _manifest(files=[{"path": "unet/w.safetensors", "sha256": "ab12"}]),
            "keyframes",
            "files[0].sha256",
            "64 lowercase hex",
        ),
        (_manifest(kind="git"), "keyframes", "kind", "one of hub, local, shipped"),
        (_manifest(kind=None), "keyframes", "kind", "missing"),
        (_manifest(inflation={"extra_in_channels": -1}), "keyframes", "inflation.extra_in_channels", ">= 0"),
        (_manifest(inflation={"temporal_attention": 1}), "keyframes", "inflation.temporal_attention", "true"),
        (_manifest(subfolder="../unet"), "keyframes", "subfolder", "relative POSIX path"),
        (_manifest(license="MIT License"), "keyframes", "license", "licence id"),
        (
            _manifest(files=[{"path": "unet/config.json"}]),
            "keyframes",
            "files",
            "no file under text_encoder/, tokenizer/, scheduler/",
        ),
    ],
)
def test_schema_errors_name_the_stage_and_field(tmp_path, data, stage, field, problem):
    with pytest.raises(ManifestError, match="manifest") as error:
        read_manifest(_write(tmp_path, data))
    assert f"stage {stage!r}, field {field!r}" in str(error.value)
    assert problem in str(error.value)


def test_hub_entries_pin_a_commit_and_a_repository(tmp_path):
    entry = {**_manifest()["stages"]["keyframes"], "kind": "hub", "repo_id": "org/name", "revision": "main"}
    entry.pop("path")
    with pytest.raises(ManifestError, match="stage 'keyframes', field 'revision': must pin a commit"):
        read_manifest(_write(tmp_path, {"version": 1, "stages": {"keyframes": entry}}))
    entry.update(revision="0" * 40, repo_id="no-namespace")
    with pytest.raises(ManifestError, match="stage 'keyframes', field 'repo_id'"):
        read_manifest(_write(tmp_path, {"version": 1, "stages": {"keyframes": entry}}))


def test_top_level_errors(tmp_path):
    with pytest.raises(ManifestError, match="field 'version': must be 1, got 2"):
        read_manifest(_write(tmp_path, {"version": 2, "stages": {}}))
    with pytest.raises(ManifestError, match="field 'extra': unknown key"):
        read_manifest(_write(tmp_path, {"version": 1, "stages": {}, "extra": 1}))
    with pytest.raises(ManifestError, match="field 'stages': missing"):
        read_manifest(_write(tmp_path, {"version": 1}))
    with pytest.raises(
        ManifestError, match="stage 'upscaler', field 'kind': a local entry inflates a cascade stage"
    ):
        read_manifest(_write(tmp_path, {"version": 1, "stages": {"upscaler": ENTRY}}))
    (tmp_path / "bad.yaml").write_text("version: [1\n")
    with pytest.raises(ManifestError, match="not valid YAML"):
        read_manifest(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="--manifest .* is not a file"):
        read_manifest(tmp_path / "missing.yaml")


def test_select_names_the_allowed_entries(tmp_path):
    manifest = read_manifest(_write(tmp_path, _manifest()))
    with pytest.raises(ValueError, match=r"STAGE must be one of keyframes .* or 'all', got 'keyframe'"):
        manifest.select("keyframe")
