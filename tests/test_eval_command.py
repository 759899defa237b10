"""``cascade eval``: generation and resuming, scoring existing videos, reports, accelerate, one-line errors."""

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel, CLIPProcessor

from cascade.cli import main
from cascade.data import ShapesWorld, make_caption, render_clip
from cascade.data.media_io import read_video
from cascade.eval import default_image_processor, psnr
from cascade.eval.report import LABEL_HEIGHT, THUMBNAIL_HEIGHT
from cascade.eval.stage_fidelity import CLIPS_SEED
from cascade.testing.tiny_models import tiny_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.(script|load)` is deprecated:DeprecationWarning")

PROMPTS = ["a red circle moving right", "a blue square moving up", "a green triangle moving left"]
# Keyframes only, 3 frames of 8x8, one step: a video in well under a second. Saved as npz by default.
GENERATE = ["--stages", "keyframes", "--num-frames", "3", "--steps", "1"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny"
    assert main(["init-tiny", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS[:2]) + "\n\n" + PROMPTS[2] + "\n")  # the blank line is ignored
    return path


@pytest.fixture(scope="module")
def generated(tiny_model, prompt_file, tmp_path_factory):
    """An in-process run of ``cascade eval --model``: its output folder."""
    output = tmp_path_factory.mktemp("run") / "out"
    argv = ["eval", "--prompts", str(prompt_file), "--model", str(tiny_model), "-o", str(output), *GENERATE]
    assert main(argv) == 0
    return output


def _npz(path):
    with np.load(path) as data:
        return data["frames"]


def test_generates_one_video_per_prompt_and_reports(generated):
    videos = sorted((generated / "videos").iterdir())
    assert [p.name[:6] for p in videos] == ["00000-", "00001-", "00002-"]
    assert all(_npz(p).shape == (3, 8, 8, 3) and _npz(p).dtype == np.uint8 for p in videos)
    report = json.loads((generated / "report.json").read_text())
    assert [row["prompt"] for row in report["videos"]] == PROMPTS
    assert [row["seed"] for row in report["videos"]] == [0, 1, 2]
    assert [row["video"] for row in report["videos"]] == [f"videos/{p.name}" for p in videos]
    # No references, CLIP or I3D given: those metrics are skipped, saying what they need.
    assert report["settings"]["metrics"] == ["temporal_flickering", "motion_magnitude", "shapes"]
    assert "--clip-model" in report["skipped"]["clipsim"] and "--i3d" in report["skipped"]["fvd"]
    assert "reference videos" in report["skipped"]["psnr"]
    summary = report["summary"]
    assert summary["temporal_flickering"] == pytest.approx(1 - summary["motion_magnitude"])
    for key in ("shapes_color", "shapes_shape", "shapes_direction", "shapes_ceiling_color"):
        assert 0.0 <= summary[key] <= 1.0
    assert report["videos"][0]["shapes_seen_color"] in (None, "red", "green", "blue", "yellow", "magenta")
    markdown = (generated / "report.md").read_text()
    assert "| temporal_flickering |" in markdown and "a green triangle moving left" in markdown
    with Image.open(generated / "contact_sheet.png") as sheet:
        # One strip per video: a label band, then 3 frames scaled to the thumbnail height.
        assert sheet.size == (3 * THUMBNAIL_HEIGHT, 3 * (LABEL_HEIGHT + THUMBNAIL_HEIGHT))
    assert not [p for p in generated.rglob(".*")]  # no partial files left


def test_rerun_generates_only_missing_videos(generated, tiny_model, prompt_file, tmp_path, capsys):
    generated = shutil.copytree(generated, tmp_path / "out")  # copies the modification times too
    videos = sorted((generated / "videos").iterdir())
    before = {p: p.stat().st_mtime_ns for p in videos}
    report = json.loads((generated / "report.json").read_text())
    videos[1].unlink()
    argv = [
        "eval",
        "--prompts",
        str(prompt_file),
        "--model",
        str(tiny_model),
        "-o",
        str(generated),
        *GENERATE,
    ]
    assert main(argv) == 0
    assert "generated 1 video(s), reused 2" in capsys.readouterr().out
    assert sorted((generated / "videos").iterdir()) == videos
    assert {p: p.stat().st_mtime_ns for p in (videos[0], videos[2])} == {
        p: before[p] for p in (videos[0], videos[2])
    }
    assert json.loads((generated / "report.json").read_text())["summary"] == report["summary"]
    # A new setting makes new videos, replacing those of the old one.
    assert main([*argv, "--seed", "5"]) == 0
    assert "generated 3 video(s), reused 0" in capsys.readouterr().out
    assert len(list((generated / "videos").iterdir())) == 3
    assert not set((generated / "videos").iterdir()) & set(videos)


def test_mp4_is_written_for_viewing_and_the_lossless_npz_is_scored(
    generated, tiny_model, prompt_file, tmp_path
):
    """``--format mp4`` adds an mp4 beside each npz; the scores are those of the npz run (the mp4's codec
    changes the frames), and ``--videos`` on that folder pairs each prompt with its npz."""
    output = shutil.copytree(generated, tmp_path / "out")
    argv = ["eval", "--prompts", str(prompt_file), "--model", str(tiny_model), "-o", str(output)]
    assert main([*argv, *GENERATE, "--format", "mp4"]) == 0
    scored = sorted((generated / "videos").glob("*.npz"))
    views = sorted((output / "videos").glob("*.mp4"))
    assert [p.stem for p in views] == [p.stem for p in scored]
    assert sorted(p.name for p in (output / "videos").glob("*.npz")) == [p.name for p in scored]
    assert not np.array_equal(read_video(views[0]), _npz(scored[0]))  # the codec changes the frames
    report = json.loads((output / "report.json").read_text())
    assert [row["video"] for row in report["videos"]] == [f"videos/{p.name}" for p in scored]
    assert report["summary"] == json.loads((generated / "report.json").read_text())["summary"]
    assert report["settings"]["viewing_copies"] == "mp4"
    rescored = tmp_path / "rescored"
    assert (
        main(["eval", "--prompts", str(prompt_file), "--videos", str(output / "videos"), "-o", str(rescored)])
        == 0
    )
    rows = json.loads((rescored / "report.json").read_text())["videos"]
    assert [Path(row["video"]).name for row in rows] == [p.name for p in scored]


def _tiny_clip(folder):
    tokenizer = tiny_tokenizer()
    special = dict(eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    text = dict(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, image_size=16, patch_size=8)
    config = CLIPConfig(
        text_config=dict(**text, num_attention_heads=2, max_position_embeddings=16, **special),
        vision_config=dict(**vision, num_attention_heads=2),
        projection_dim=8,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=default_image_processor(16), tokenizer=tokenizer).save_pretrained(folder)


class TinyI3D(torch.nn.Module):
    """Stand-in with the interface of StyleGAN-V's I3D TorchScript port: 3 features per clip."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 3)

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ):
        return self.fc(x.mean(dim=(2, 3, 4)))


@pytest.fixture(scope="module")
def shapes_set(tmp_path_factory):
    """Rendered shapes-world clips (10 frames of 32x32) as references and, renamed, as "generated" videos,
    with an MSR-VTT-like CSV (``video_id, sentence``)."""
    root = tmp_path_factory.mktemp("shapes")
    (root / "refs").mkdir()
    (root / "gen").mkdir()
    world = ShapesWorld(seed=3)
    with (root / "prompts.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_id", "sentence"])
        for index in range(3):
            params = world[index]
            frames = (render_clip(params, 10, 32, 32) * 255).round().astype(np.uint8)  # (10, 32, 32, 3)
            np.savez(root / "refs" / f"video{index}.npz", frames=frames)
            np.savez(root / "gen" / f"clip_{index}.npz", frames=frames)  # paired in name order
            writer.writerow([f"video{index}", make_caption(params.color, params.shape, params.direction)])
    _tiny_clip(root / "clip")
    torch.manual_seed(0)
    torch.jit.script(TinyI3D()).save(str(root / "i3d.pt"))
    return root


def test_scores_existing_videos_against_references(shapes_set, tmp_path, capsys):
    root, output = shapes_set, tmp_path / "report"
    argv = ["eval", "--prompts", str(root / "prompts.csv"), "--videos", str(root / "gen"), "-o", str(output)]
    extra = ["--reference-videos", str(root / "refs"), "--clip-model", str(root / "clip")]
    assert main([*argv, *extra, "--i3d", str(root / "i3d.pt")]) == 0
    assert capsys.readouterr().out.count("wrote ") == 3
    report = json.loads((output / "report.json").read_text())
    assert report["skipped"] == {}
    summary = report["summary"]
    # The videos are the references and the renderer's clips of their captions.
    assert summary["psnr"] == "inf" and summary["ssim"] == pytest.approx(1.0)
    assert summary["fvd"] == pytest.approx(0.0, abs=1e-6) and np.isfinite(summary["kvd"])
    assert 0.0 <= summary["clipsim"] <= 1.0
    for attribute in ("color", "shape", "direction"):
        assert summary[f"shapes_{attribute}"] == 1.0 and summary[f"shapes_ceiling_{attribute}"] == 1.0
    assert [row["reference"].endswith(f"video{i}.npz") for i, row in enumerate(report["videos"])] == [
        True
    ] * 3
    assert report["videos"][0]["video"] == str(root / "gen" / "clip_0.npz")
    assert not (output / "videos").exists()
    # Only the requested metrics.
    assert main([*argv, *extra[:2], "--metrics", "psnr", "motion_magnitude"]) == 0
    assert list(json.loads((output / "report.json").read_text())["summary"]) == ["motion_magnitude", "psnr"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing prompts", "does not exist or is not a file"),
        ("empty prompts", "holds no prompts"),
        ("model and videos", "give exactly one of --model DIR"),
        ("neither", "give exactly one of --model DIR"),
        ("unknown metric", "unknown metric(s) sharpness; choose from clipsim, fvd"),
        ("unavailable metric", "metric psnr needs reference videos"),
        ("too few frames", "metric temporal_flickering needs clips of at least 2 frames, got 1"),
        ("frame counts differ", "has 4 frames of 16x16, the video 5 frames of 16x16"),
        ("shapes stages without model", "--shapes-stages scores the stages of a model: give --model DIR"),
        ("no shapes clips", "--shapes-stages must be a positive int, got 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case, message):
    (tmp_path / "gen").mkdir()
    (tmp_path / "refs").mkdir()
    frames = 1 if case == "too few frames" else 5
    np.savez(tmp_path / "gen" / "00000.npz", frames=np.zeros((frames, 16, 16, 3), np.uint8))
    np.savez(tmp_path / "refs" / "00000.npz", frames=np.zeros((4, 16, 16, 3), np.uint8))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n\n" if case == "empty prompts" else "a prompt\n")
    source = ["--videos", str(tmp_path / "gen")]
    argv = ["eval", "--prompts", str(prompts), *source, "-o", str(tmp_path / "out")]
    changes = {
        "missing prompts": ["--prompts", str(tmp_path / "missing.txt")],
        "model and videos": ["--model", str(tmp_path)],
        "unknown metric": ["--metrics", "psnr", "sharpness"],
        "unavailable metric": ["--metrics", "psnr"],
        "too few frames": ["--metrics", "temporal_flickering"],
        "frame counts differ": ["--reference-videos", str(tmp_path / "refs")],
        "shapes stages without model": ["--shapes-stages", "1"],
        "no shapes clips": ["--shapes-stages", "0"],
    }
    argv += changes.get(case, [])
    if case == "neither":
        argv = [item for item in argv if item not in source]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error
    assert not (tmp_path / "out" / "report.json").exists()


def test_shapes_stages_scores_each_conditioning_stage(tiny_model, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPTS[0] + "\n")
    output = tmp_path / "out"
    argv = ["eval", "--prompts", str(prompts), "--model", str(tiny_model), "-o", str(output)]
    argv += ["--num-frames", "2", "--steps", "1", "--format", "npz", "--metrics", "motion_magnitude"]
    assert main([*argv, "--shapes-stages", "1"]) == 0
    report = json.loads((output / "report.json").read_text())
    assert report["settings"]["shapes_stages"] == 1
    fidelity = report["stage_fidelity"]
    assert fidelity["clips"] == 1 and fidelity["clips_seed"] == CLIPS_SEED
    assert list(fidelity["stages"]) == ["interpolation", "spatiotemporal_sr", "spatial_sr"]
    caption = ShapesWorld(CLIPS_SEED)[0].caption
    for name, stage in fidelity["stages"].items():
        assert stage["baseline"] == (
            "linear frame blending" if name == "interpolation" else "bicubic upsampling"
        )
        assert stage["difference_db"] == pytest.approx(stage["psnr"] - stage["baseline_psnr"])
        assert [clip["caption"] for clip in stage["clips"]] == [caption]
    # The keyframes of the full-rate render (5 frames of 8x8) blended: recomputed here.
    truth = render_clip(ShapesWorld(CLIPS_SEED)[0], 5, 8, 8)
    blend = np.stack([(1 - j / 4) * truth[0] + j / 4 * truth[4] for j in range(1, 4)])
    expected = psnr(blend[None], truth[None, 1:4]).mean
    assert fidelity["stages"]["interpolation"]["baseline_psnr"] == pytest.approx(expected)
    markdown = (output / "report.md").read_text()
    assert "## Stage fidelity (shapes world)" in markdown
    assert "### spatial_sr: 5 frames of 32x32 -> 5 frames of 128x128" in markdown
    assert (
        "| clip | caption | interpolation PSNR | linear frame blending PSNR | difference (dB) |" in markdown
    )
    print(markdown[markdown.index("## Stage fidelity") :], file=sys.stderr)  # the table, for -s runs
    # Only the selected stages; a selection without a conditioning stage is refused before any work.
    assert main([*argv, "--shapes-stages", "1", "--stages", "keyframes", "spatial_sr"]) == 0
    stages = json.loads((output / "report.json").read_text())["stage_fidelity"]["stages"]
    assert list(stages) == ["spatial_sr"] and stages["spatial_sr"]["input"] == {"frames": 2, "size": 8}
    capsys.readouterr()
    assert main([*argv, "--shapes-stages", "1", "--stages", "keyframes"]) == 2
    assert "--shapes-stages needs a conditioning stage" in capsys.readouterr().err


def test_eval_has_complete_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: cascade eval" in text
    for flag in ("--prompts", "--model", "--videos", "--output", "--metrics", "--num-frames", "--steps"):
        assert flag in text
    for flag in (
        "--seed",
        "--reference-videos",
        "--clip-model",
        "--i3d",
        "--format",
        "--stages",
        "--shapes-stages",
    ):
        assert flag in text


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="needs the accelerate command")
def test_accelerate_splits_prompts_across_processes(generated, tiny_model, prompt_file, tmp_path):
    output = tmp_path / "out"
    # `--cpu` alone starts a single process; `--multi_gpu` starts 2 through torchrun, which run on the
    # CPU (gloo) when no GPU is visible.
    launch = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    with socket.socket() as probe:  # a free port for the processes to meet on, not torchrun's fixed 29500
        probe.bind(("127.0.0.1", 0))
        launch += ["--main_process_port", str(probe.getsockname()[1])]
    command = [shutil.which("accelerate"), "launch", *launch, "-m", "cascade.cli", "eval"]
    command += ["--prompts", str(prompt_file), "--model", str(tiny_model), "-o", str(output), *GENERATE]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    # a failing rank's own traceback comes before torchrun's summary of it: show both
    assert result.returncode == 0, result.stderr[:6000] + "\n...\n" + result.stderr[-1500:]
    assert result.stdout.count("wrote ") == 3  # one report, from the main process
    assert "generated 3 video(s), reused 0" in result.stdout
    assert "0/2" in result.stderr  # the main process's share: 2 of the 3 prompts
    report = json.loads((output / "report.json").read_text())
    assert [row["prompt"] for row in report["videos"]] == PROMPTS
    # Same names and frames as the single-process run: seeds follow the prompt, not the process.
    ours = sorted(p.name for p in (output / "videos").iterdir())
    assert ours == sorted(p.name for p in (generated / "videos").iterdir())
    for name in ours:
        difference = _npz(output / "videos" / name).astype(int) - _npz(generated / "videos" / name)
        assert np.abs(difference).max() <= 1


def test_a_retrained_model_in_the_same_folder_is_generated_again(tiny_model, prompt_file, tmp_path, capsys):
    model = shutil.copytree(tiny_model, tmp_path / "model")
    argv = [
        "eval",
        "--prompts",
        str(prompt_file),
        "--model",
        str(model),
        "-o",
        str(tmp_path / "out"),
        *GENERATE,
    ]
    assert main(argv) == 0
    assert "generated 3 video(s), reused 0" in capsys.readouterr().out
    weights = next(model.glob("keyframes/unet/*.safetensors"))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # as if training wrote it again
    assert main(argv) == 0
    assert "generated 3 video(s), reused 0" in capsys.readouterr().out
