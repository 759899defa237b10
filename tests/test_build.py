"""``cascade build``: tiny SD 1.5-style and x4-upscaler-style checkpoints saved in tmp folders stand for the
real ones, read from local folders and from a Hugging Face cache laid out on disk (offline); the built folders
load and generate; hashes are checked; a failed build leaves nothing behind; uploads fail cleanly."""

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, PNDMScheduler, UNet2DConditionModel
from huggingface_hub import HfApi, ModelCard, constants

from cascade.cli import main
from cascade.hub import build as build_module
from cascade.hub.build import build, check_push_target, push_to_hub, with_class_embedding
from cascade.hub.manifest import read_manifest
from cascade.pipelines import (
    InterpolationPipeline,
    KeyframesPipeline,
    SpatialSRPipeline,
    SpatioTemporalSRPipeline,
)
from cascade.testing.tiny_models import (
    tiny_keyframes_components,
    tiny_text_encoder,
    tiny_tokenizer,
    tiny_unet2d,
    tiny_vae,
)

from hub_cache import cache_repo

REVISION = "0123456789abcdef0123456789abcdef01234567"
SD15_REPO = "tiny-org/sd15"


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    """Tiny 2D checkpoints laid out as the real ones: ``sd15`` (unet, text_encoder, tokenizer, vae,
    scheduler), ``x4`` (the same with a 7-channel, class-conditioned UNet and a low_res_scheduler), and a
    saved keyframes pipeline standing for the shipped demo."""
    root = tmp_path_factory.mktemp("bases")
    for name, kind, schedulers in (
        ("sd15", "sd15", {"scheduler": PNDMScheduler(skip_prk_steps=True)}),  # as SD 1.5
        ("x4", "x4_upscaler", {"scheduler": DDIMScheduler(), "low_res_scheduler": DDPMScheduler()}),
    ):
        tiny_unet2d(kind, sample_size=8).save_pretrained(root / name / "unet")
        tiny_text_encoder().save_pretrained(root / name / "text_encoder")
        tiny_tokenizer().save_pretrained(root / name / "tokenizer")
        tiny_vae().save_pretrained(root / name / "vae")
        for folder, scheduler in schedulers.items():
            scheduler.save_pretrained(root / name / folder)
    KeyframesPipeline(**tiny_keyframes_components()).save_pretrained(root / "demo")
    return {"sd15": root / "sd15", "x4": root / "x4", "demo": root / "demo"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(folder: Path, hashes: bool = True) -> list[dict]:
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    return [
        {"path": p.relative_to(folder).as_posix(), **({"sha256": _sha256(p)} if hashes else {})}
        for p in paths
    ]


def _local(folder: Path, inflation: dict, **extra) -> dict:
    return {
        "kind": "local",
        "path": str(folder),
        "subfolder": "unet",
        "license": "creativeml-openrail-m",
        "files": _files(folder),
        "inflation": inflation,
        **extra,
    }


def _hub(folder: Path, inflation: dict) -> dict:
    entry = {**_local(folder, inflation), "kind": "hub", "repo_id": SD15_REPO, "revision": REVISION}
    del entry["path"]
    return entry


def _write_manifest(folder: Path, stages: dict) -> Path:
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "stages": stages}, sort_keys=False))
    return path


def _generate(folder: Path):
    pipe = KeyframesPipeline.from_pretrained(folder)
    frames = pipe(
        "a red circle", num_frames=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0)
    )
    return pipe, frames.frames


def test_build_all_from_local_checkpoints(bases, tmp_path):
    temporal = {"temporal_attention_heads": 4}
    stages = {
        "keyframes": _local(
            bases["sd15"], temporal, base_model="stable-diffusion-v1-5/stable-diffusion-v1-5"
        ),
        "interpolation": _local(bases["sd15"], {**temporal, "extra_in_channels": 5}),
        "spatiotemporal_sr": _local(
            bases["x4"], {**temporal, "num_class_embeds": 1000}, license="openrail++"
        ),
        "spatial_sr": _local(bases["x4"], {"temporal_convolutions": False, "temporal_attention": False}),
        "demo": {
            "kind": "shipped",
            "path": str(bases["demo"]),
            "license": "apache-2.0",
            "description": "A demo.",
        },
    }
    out = tmp_path / "out"
    written = build(read_manifest(_write_manifest(tmp_path, stages)), "all", out)  # every sha256 checked

    assert written == [out / name for name in stages]
    assert sorted(os.listdir(out)) == sorted(stages)  # no hidden partial folders left
    pipe, frames = _generate(out / "keyframes")
    assert frames.shape == (1, 2, 16, 16, 3)
    base = UNet2DConditionModel.from_pretrained(bases["sd15"], subfolder="unet")
    assert all(
        torch.equal(value, pipe.unet.unet.state_dict()[key]) for key, value in base.state_dict().items()
    )
    assert isinstance(pipe.scheduler, PNDMScheduler) and pipe.vae is not None

    interpolation = InterpolationPipeline.from_pretrained(out / "interpolation")
    assert interpolation.unet.conditioning_channels == 5
    spatiotemporal = SpatioTemporalSRPipeline.from_pretrained(out / "spatiotemporal_sr")
    assert spatiotemporal.unet.unet.config.num_class_embeds == 1000 and len(
        spatiotemporal.unet.temporal_convs
    )
    spatial = SpatialSRPipeline.from_pretrained(out / "spatial_sr")
    assert not list(spatial.unet.temporal_layers()) and spatial.config.upscale_factor == 2

    card = ModelCard.load(out / "keyframes" / "README.md")
    assert card.data.base_model == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert (card.data.license, card.data.pipeline_tag, card.data.library_name) == (
        "creativeml-openrail-m",
        "text-to-video",
        "diffusers",
    )
    assert "KeyframesPipeline.from_pretrained" in card.text and "trust_remote_code=True" in card.text
    as_the_card_says = DiffusionPipeline.from_pretrained(out / "keyframes", trust_remote_code=True)
    assert isinstance(as_the_card_says, KeyframesPipeline)
    assert ModelCard.load(out / "spatiotemporal_sr" / "README.md").data.license == "openrail++"
    assert (out / "demo" / "model_index.json").is_file() and "A demo." in (
        out / "demo" / "README.md"
    ).read_text()


def test_build_reads_the_hub_cache_offline(bases, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    cache_repo(bases["sd15"], cache, SD15_REPO, commit=REVISION)
    manifest = _write_manifest(tmp_path, {"keyframes": _hub(bases["sd15"], {"temporal_attention_heads": 4})})
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "cascade.cli",
        "build",
        "keyframes",
        "--manifest",
        str(manifest),
        "-o",
        str(out),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr
    assert f"wrote {out / 'keyframes'}" in result.stdout
    assert _generate(out / "keyframes")[1].shape == (1, 2, 16, 16, 3)
    card = ModelCard.load(out / "keyframes" / "README.md")
    assert card.data.base_model == SD15_REPO and REVISION in card.text


def test_offline_build_names_the_file_missing_from_the_cache(bases, tmp_path, monkeypatch):
    cache, out = tmp_path / "cache", tmp_path / "out"
    cache_repo(bases["sd15"], cache, SD15_REPO, commit=REVISION)
    entry = _hub(bases["sd15"], {})
    entry["files"].append({"path": "unet/diffusion_pytorch_model.fp16.safetensors"})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        OSError,
        match=r"stage 'keyframes': cannot get unet/diffusion_pytorch_model.fp16.safetensors "
        rf"of {SD15_REPO} at {REVISION} \(HF_HUB_OFFLINE is set",
    ):
        build(read_manifest(_write_manifest(tmp_path, {"keyframes": entry})), "keyframes", out)
    assert not out.exists()


def test_sha256_mismatch_stops_the_build_and_names_the_file(bases, tmp_path, capsys):
    entry = _hub(bases["sd15"], {})
    weights = next(item for item in entry["files"] if item["path"].endswith(".safetensors"))
    weights["sha256"] = "0" * 64
    manifest = _write_manifest(tmp_path, {"keyframes": entry})
    out = tmp_path / "out"
    args = ["build", "keyframes", "--manifest", str(manifest), "-o", str(out)]
    assert main([*args, "--local-dir", f"{SD15_REPO}={bases['sd15']}"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "cascade build: error: stage 'keyframes': sha256 mismatch for" in error
    assert weights["path"] in error and _sha256(bases["sd15"] / weights["path"]) in error
    assert not out.exists()


def test_failed_write_leaves_no_half_written_folder(bases, tmp_path, monkeypatch):
    manifest = read_manifest(_write_manifest(tmp_path, {"keyframes": _local(bases["sd15"], {})}))
    out = tmp_path / "out"
    out.mkdir()

    def fail_after_the_weights_are_written(*args, **kwargs):
        assert (out / ".keyframes.partial" / "unet").is_dir()
        raise RuntimeError("disk full")

    monkeypatch.setattr(build_module, "model_card", fail_after_the_weights_are_written)
    with pytest.raises(RuntimeError, match="disk full"):
        build(manifest, "keyframes", out)
    assert os.listdir(out) == []

    monkeypatch.undo()
    (out / "keyframes").mkdir()
    with pytest.raises(ValueError, match="already exists; remove it or give another -o"):
        build(manifest, "keyframes", out)


def test_conditioning_channels_are_checked_against_the_stage(bases, tmp_path):
    manifest = read_manifest(_write_manifest(tmp_path, {"interpolation": _local(bases["sd15"], {})}))
    with pytest.raises(
        ValueError, match="stage 'interpolation', field 'inflation.extra_in_channels'.*must be 5"
    ):
        build(manifest, "interpolation", tmp_path / "out")
    image_model = tmp_path / "sd15-with-low-res-scheduler"  # an image UNet: no class embedding
    shutil.copytree(bases["sd15"], image_model)
    shutil.copytree(bases["x4"] / "low_res_scheduler", image_model / "low_res_scheduler")
    entry = _local(image_model, {"extra_in_channels": 3})
    manifest = read_manifest(_write_manifest(tmp_path, {"spatiotemporal_sr": entry}))
    with pytest.raises(ValueError, match="field 'inflation.num_class_embeds': a super-resolution stage"):
        build(manifest, "spatiotemporal_sr", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_with_class_embedding_adds_a_zero_initialised_one():
    unet = tiny_unet2d("sd15", sample_size=8)
    widened = with_class_embedding(unet, 1000, "spatial_sr")
    assert widened.config.num_class_embeds == 1000 and unet.class_embedding is None
    sample, text = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 32)
    with torch.no_grad():
        expected = unet(sample, 10, text).sample
        assert torch.equal(widened(sample, 10, text, class_labels=torch.tensor([3, 999])).sample, expected)
    assert with_class_embedding(widened, 1000, "spatial_sr") is widened
    with pytest.raises(ValueError, match="stage 'spatial_sr', field 'inflation.num_class_embeds': 500 given"):
        with_class_embedding(widened, 500, "spatial_sr")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_push_to_hub_arguments_and_upload_failure(bases, tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError, match="--push-to-hub must be a Hub repository id"):
        check_push_target("not a repo", "keyframes")
    with pytest.raises(ValueError, match="name an entry, not 'all'"):
        check_push_target("me/cascade-keyframes", "all")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE is set"):
        check_push_target("me/cascade-keyframes", "keyframes")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    endpoint = f"http://127.0.0.1:{_closed_port()}"  # nothing listens: the real client fails locally
    api = HfApi(endpoint=endpoint, token="hf_test")
    with pytest.raises(
        OSError, match=f"uploading {bases['demo']} to me/cascade-keyframes on {endpoint} failed"
    ):
        push_to_hub(bases["demo"], "me/cascade-keyframes", api)

    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    manifest = _write_manifest(tmp_path, {"keyframes": _local(bases["sd15"], {})})
    out = tmp_path / "out"
    args = ["build", "keyframes", "--manifest", str(manifest), "-o", str(out), "--push-to-hub", "me/kf"]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert f"wrote {out / 'keyframes'}" in captured.out  # the build stands; only the upload failed
    assert captured.err.splitlines()[-1].startswith("cascade build: error: uploading")  # after progress bars


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["keyframe"], "STAGE must be one of keyframes .* or 'all', got 'keyframe'"),
        (["keyframes", "--local-dir", "no-equals-sign"], "--local-dir must be REPO_ID=FOLDER"),
        (["keyframes", "--local-dir", "other/repo=."], "names 'other/repo', which no hub entry uses"),
    ],
)
def test_command_line_errors_are_one_line(bases, tmp_path, capsys, extra, message):
    manifest = _write_manifest(tmp_path, {"keyframes": _hub(bases["sd15"], {})})
    assert main(["build", *extra, "--manifest", str(manifest), "-o", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert re.search(message, error)
    assert not (tmp_path / "out").exists()
