"""YAML recipes and ``cascade train`` / ``cascade assemble``: 2D pretraining with a text encoder of its own,
inflation into every video stage, export, a cascade that loads and generates, and two processes."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cascade import CascadePipeline
from cascade.cli import main
from cascade.models import VideoUNet
from cascade.training import load_recipe, run_recipe, word_tokenizer
from cascade.training.recipe import build_text_model

TINY_UNET = dict(
    sample_size=8,
    in_channels=3,
    out_channels=3,
    block_out_channels=[16, 32],
    layers_per_block=1,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
    attention_head_dim=8,
    cross_attention_dim=16,
    norm_num_groups=8,
)
TEXT = {
    "vocabulary": "shapes",
    "max_length": 8,
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
}
TRAINING = {"max_steps": 2, "batch_size": 2, "learning_rate": 1e-3, "checkpoint_every": 1, "use_ema": True}


def write(folder, name, recipe) -> str:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def shapes(frames, size, **extra):
    return {"kind": "shapes", "length": 8, "num_frames": frames, "height": size, "width": size, **extra}


@pytest.fixture(scope="module")
def recipes(tmp_path_factory):
    """The demo's six recipes at toy size, in a working folder (paths in recipes are relative to it)."""
    folder = tmp_path_factory.mktemp("recipes")
    sr_unet = {**TINY_UNET, "in_channels": 6, "num_class_embeds": 1000, "sample_size": 16}
    sr = {"upscale_factor": 2, "max_noise_level": 50}
    base = "runs/t2i/model"
    return folder, [
        write(
            folder,
            "t2i",
            {
                "stage": "text_to_image",
                "output_dir": "runs/t2i",
                "data": shapes(2, 8),
                "model": {"unet": TINY_UNET, "text_encoder": TEXT},
                "training": {**TRAINING, "train_text_encoder": True},
            },
        ),
        write(
            folder,
            "keyframes",
            {
                "stage": "keyframes",
                "output_dir": "runs/keyframes",
                "data": shapes(3, 8),
                "model": {"base": base},
                "training": TRAINING,
            },
        ),
        write(
            folder,
            "interpolation",
            {
                "stage": "interpolation",
                "output_dir": "runs/interpolation",
                "data": shapes(5, 8),
                "model": {"base": base},
                "training": {**TRAINING, "interpolation_factor": 2},
            },
        ),
        write(
            folder,
            "sr2d",
            {
                "stage": "spatial_sr",
                "output_dir": "runs/sr2d",
                "data": shapes(1, 16),
                "model": {"unet": sr_unet, "text_encoder_from": base},
                "training": {**TRAINING, **sr},
            },
        ),
        write(
            folder,
            "stsr",
            {
                "stage": "spatiotemporal_sr",
                "output_dir": "runs/stsr",
                "data": shapes(5, 16, window=3),
                "model": {"base": "runs/sr2d/model"},
                "training": {**TRAINING, **sr},
            },
        ),
    ]


@pytest.fixture(scope="module")
def trained(recipes):
    folder, paths = recipes
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["train", *paths]) == 0
    finally:
        os.chdir(cwd)
    return folder


def test_recipes_train_and_export_every_stage(trained):
    runs = trained / "runs"
    assert sorted(path.name for path in (runs / "t2i" / "model").iterdir()) == [
        "scheduler",
        "text_encoder",
        "tokenizer",
        "unet",
    ]
    for name in ("keyframes", "interpolation", "stsr"):
        assert (runs / name / "model" / "model_index.json").is_file()
        assert (
            json.loads((runs / name / "model" / "unet" / "config.json").read_text())["_class_name"]
            == "VideoUNet"
        )
        checkpoint = runs / name / "checkpoints" / "checkpoint-2" / "training_state.json"
        assert json.loads(checkpoint.read_text())["step"] == 2
    interpolation = VideoUNet.from_pretrained(runs / "interpolation" / "model" / "unet")
    assert interpolation.conditioning_channels == 4  # known frames and their mask
    # The text encoder trained in the 2D stage is the one every later stage carries, unchanged.
    t2i = (runs / "t2i" / "model" / "text_encoder" / "model.safetensors").read_bytes()
    assert (runs / "keyframes" / "model" / "text_encoder" / "model.safetensors").read_bytes() == t2i


def test_keyframes_are_inflated_from_the_2d_base(trained):
    """The keyframes stage starts from the exported 2D UNet: with the temporal layers at init (untrained
    here: recipes inflate, then train), its spatial weights before training equal the base's."""
    recipe = load_recipe(trained / "keyframes.yaml", max_steps=1)
    from diffusers import UNet2DConditionModel

    from cascade.training.recipe import build_unet

    cwd = os.getcwd()
    os.chdir(trained)
    try:
        unet = build_unet(recipe, 3)
        base = UNet2DConditionModel.from_pretrained("runs/t2i/model/unet")
    finally:
        os.chdir(cwd)
    assert isinstance(unet, VideoUNet)
    for name, value in base.state_dict().items():
        assert torch.equal(unet.unet.state_dict()[name], value)


def test_assembled_cascade_loads_and_generates(trained, tmp_path):
    runs = trained / "runs"
    output = tmp_path / "cascade"
    argv = ["assemble", str(output), "--keyframes", str(runs / "keyframes" / "model")]
    argv += [
        "--interpolation",
        str(runs / "interpolation" / "model"),
        "--spatiotemporal-sr",
        str(runs / "stsr" / "model"),
    ]
    assert main(argv) == 0
    cascade = CascadePipeline.from_pretrained(output)
    assert list(cascade.stages) == ["keyframes", "interpolation", "spatiotemporal_sr"]
    settings = {name: {"num_inference_steps": 2} for name in cascade.stages}
    settings["keyframes"]["num_frames"] = 3
    frames = cascade("a red circle moving left", stage_kwargs=settings, output_type="np").frames
    assert np.asarray(frames).shape == (1, 9, 16, 16, 3)  # 3 keyframes x4 -> 9 frames, 8x8 -> 16x16
    assert main(argv) == 2  # the folder exists now


def test_a_recipe_tokenizer_moves_the_base_encoder_to_a_new_vocabulary(trained, tmp_path):
    words = ["moving", "circle", "red", "left", "a"]  # same words, other order: other ids
    recipe = {
        "stage": "keyframes",
        "output_dir": str(tmp_path / "runs"),
        "data": shapes(3, 8),
        "model": {
            "base": str(trained / "runs/t2i/model"),
            "tokenizer": {"vocabulary": words, "max_length": 8},
        },
    }
    text_encoder, tokenizer = build_text_model(load_recipe(write(tmp_path, "retokenized", recipe)))
    assert tokenizer.get_vocab() == word_tokenizer(words, 8).get_vocab()
    assert text_encoder.config.vocab_size == len(tokenizer)
    base_encoder, base_tokenizer = build_text_model(
        load_recipe(write(tmp_path, "base", {**recipe, "model": {"base": recipe["model"]["base"]}}))
    )
    caption = ["a red circle moving left"]
    with torch.no_grad():
        expected = base_encoder(base_tokenizer(caption, padding="max_length", return_tensors="pt").input_ids)[
            0
        ]
        actual = text_encoder(tokenizer(caption, padding="max_length", return_tensors="pt").input_ids)[0]
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_bad_recipes_are_refused_naming_the_key(tmp_path, capsys):
    good = {"stage": "keyframes", "output_dir": "runs", "data": shapes(3, 8), "model": {"base": "x"}}
    cases = [
        ({**good, "extra": 1}, "unknown key\\(s\\) \\['extra'\\] in the recipe"),
        ({**good, "model": {"base": "x", "unet": {}}}, "exactly one of `unet`"),
        ({**good, "model": {"base": "x", "vea": "y"}}, "unknown key\\(s\\) \\['vea'\\] in model"),
        ({**good, "stage": "upscale"}, "`stage` must be one of"),
        ({**good, "training": {"max_stepz": 3}}, "unknown `training` key\\(s\\) \\['max_stepz'\\]"),
        ({**good, "training": {"max_steps": 0}}, "`max_steps` must be an int >= 1"),
        ({**good, "data": {"kind": "webvid"}}, "`data.kind` must be one of"),
        (
            {**good, "model": {"base": "x", "tokenizer": {"words": []}}},
            "unknown key\\(s\\) \\['words'\\] in model.tokenizer",
        ),
        (
            {**good, "model": {"unet": {}, "text_encoder": {}, "tokenizer": {}}},
            "`model.tokenizer` replaces a loaded encoder's",
        ),
        ({key: value for key, value in good.items() if key != "data"}, "missing \\['data'\\]"),
    ]
    for recipe, message in cases:
        with pytest.raises(ValueError, match=message):
            load_recipe(write(tmp_path, "bad", recipe))
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "not a file" in capsys.readouterr().err


def test_stop_after_then_resume_reaches_the_end_and_exports_once(recipes, tmp_path):
    folder, paths = recipes
    first = run_recipe(paths[0], stop_after=1, output_dir=str(tmp_path / "t2i"))
    assert first is None and not (tmp_path / "t2i" / "model").exists()
    assert run_recipe(paths[0], output_dir=str(tmp_path / "t2i")) == tmp_path / "t2i" / "model"
    rows = (tmp_path / "t2i" / "loss.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["step", "1", "2"]


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="needs the accelerate command")
def test_two_processes_train_a_stage_under_accelerate_launch(recipes, tmp_path):
    folder, paths = recipes
    # The config the repository ships for this (see its comments): MULTI_GPU with no GPU visible.
    config = Path(__file__).resolve().parent.parent / "configs" / "accelerate" / "cpu_2proc.yaml"
    launch = ["--config_file", str(config)]
    output = tmp_path / "t2i"
    command = [shutil.which("accelerate"), "launch", *launch, "-m", "cascade.cli", "train", paths[0]]
    command += ["--output-dir", str(output)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((output / "checkpoints" / "checkpoint-2" / "training_state.json").read_text())
    assert state["num_processes"] == 2 and state["micro_batches"] == 2
    assert result.stdout.count("wrote ") == 1  # exported once, by the main process
    assert (output / "model" / "unet" / "diffusion_pytorch_model.safetensors").is_file()


@pytest.mark.parametrize("name", ["ddp_1node_8gpu", "ddp_2nodes_8gpu", "fsdp_1node_8gpu", "cpu_2proc"])
def test_shipped_accelerate_configs_parse(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(
        str(Path(__file__).resolve().parent.parent / "configs" / "accelerate" / f"{name}.yaml")
    )
    expected = {"ddp_1node_8gpu": 8, "ddp_2nodes_8gpu": 16, "fsdp_1node_8gpu": 8, "cpu_2proc": 2}[name]
    assert config.num_processes == expected


REPO = Path(__file__).resolve().parent.parent


def test_the_demo_recipes_are_valid_and_chain_into_each_other():
    recipes = {
        path.stem: load_recipe(path)
        for path in sorted((REPO / "configs" / "demo").glob("*.yaml"))
        if path.stem != "sampling"
    }
    assert [recipe.stage for recipe in recipes.values()] == [
        "text_to_image",
        "keyframes",
        "keyframes",
        "keyframes",
        "interpolation",
        "interpolation",
        "spatial_sr",
        "spatiotemporal_sr",
        "spatial_sr",
    ]
    exported = set()
    for recipe in recipes.values():
        base = recipe.model.get("base") or recipe.model.get("text_encoder_from")
        assert base is None or base in exported  # each recipe starts from one trained before it
        exported.add(str(recipe.model_dir))
    assert (
        "text_encoder" in recipes["1_text_to_image"].model
        and recipes["1_text_to_image"].training["train_text_encoder"]
    )
    script = (REPO / "configs" / "demo" / "reproduce.sh").read_text()
    trained = [line.strip(" \\") for line in script.splitlines() if line.strip().startswith("configs/demo/")]
    assert trained == [f"configs/demo/{name}.yaml" for name in recipes]  # every recipe, in order
    # the last run of each stage
    assert f"--keyframes {recipes['2c_keyframes_whole_world'].model_dir}" in script
    assert f"--interpolation {recipes['3b_interpolation_blend'].model_dir}" in script


def test_the_demo_adapter_recipes_are_valid_and_start_from_the_shipped_demo():
    recipes = {
        path.stem: load_recipe(path) for path in sorted((REPO / "configs" / "demo_adapters").glob("*.yaml"))
    }
    assert sorted(recipes) == ["controlnet_silhouette", "dreambooth_cross"]
    for recipe in recipes.values():
        assert (REPO / recipe.model["base"] / "model_index.json").is_file()  # the shipped keyframes stage
    controlnet = recipes["controlnet_silhouette"]
    assert controlnet.stage == "keyframes" and controlnet.data["control"] == "silhouette"
    dreambooth = recipes["dreambooth_cross"]
    assert dreambooth.model["under_temporal_layers"] and dreambooth.data["kind"] == "subject"
    assert dreambooth.prior_data["kind"] == "shapes" and not dreambooth.training.get("train_text_encoder")
