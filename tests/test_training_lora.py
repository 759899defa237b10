"""LoRA training (Hu et al. 2021): only the adapters train, the base stays bit for bit, the LoRA saved in
diffusers' format loads with ``load_lora_weights`` and gives the trained model's output, resume is exact, and
bad settings are refused before training."""

from pathlib import Path

import pytest
import torch
import yaml
from diffusers import DDPMScheduler
from safetensors.torch import load_file
from torch import nn

from cascade import KeyframesPipeline
from cascade.data import ShapesDataset
from cascade.testing.tiny_models import TEXT_DIM, tiny_keyframes_components
from cascade.training import (
    StageTrainer,
    TrainingConfig,
    latest_checkpoint,
    load_recipe,
    run_recipe,
    save_lora,
)
from cascade.training.lora import DEFAULT_TARGET_MODULES

peft = pytest.importorskip("peft")
LORA = {"rank": 2, "alpha": 4}


def make_trainer(output_dir, unet=None, **overrides) -> StageTrainer:
    settings = dict(output_dir=str(output_dir), max_steps=3, batch_size=2, learning_rate=1e-2)
    settings.update(caption_dropout=0.5, checkpoint_every=0, lora=LORA)
    components = tiny_keyframes_components(seed=0)
    return StageTrainer(
        TrainingConfig(**{**settings, **overrides}),
        unet=components["unet"] if unet is None else unet,
        text_encoder=components["text_encoder"],
        tokenizer=components["tokenizer"],
        noise_scheduler=DDPMScheduler(num_train_timesteps=1000),
        dataset=ShapesDataset(6, num_frames=3, height=8, width=8, seed=1),
    )


def state(model) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The base UNet's weights, and a trainer that trained a rank-2 LoRA on it for 3 steps."""
    unet = tiny_keyframes_components(seed=0)["unet"]
    base = state(unet)
    trainer = make_trainer(tmp_path_factory.mktemp("lora_run"), unet=unet)
    assert trainer.train() == 3
    return base, trainer


def test_only_the_lora_trains_and_the_base_weights_stay_bit_identical(trained):
    base, trainer = trained
    after = state(trainer.accelerator.unwrap_model(trainer.unet))
    lora = {name: value for name, value in after.items() if ".lora_" in name}
    kept = {name.replace(".base_layer.", "."): value for name, value in after.items() if name not in lora}
    assert kept.keys() == base.keys()
    assert all(torch.equal(kept[name], base[name]) for name in base)
    assert not any(name.startswith(("temporal_convs.", "temporal_attns.")) for name in lora)
    lora_b = [value for name, value in lora.items() if ".lora_B." in name]
    assert lora_b and all(value.abs().max() > 0 for value in lora_b)  # B starts at zero: every B trained


def test_trainable_parameters_are_exactly_the_lora(trained):
    _, trainer = trained
    spatial = tiny_keyframes_components(seed=0)["unet"].unet
    projections = [
        module
        for name, module in spatial.named_modules()
        if name.endswith(tuple(f".{target}" for target in DEFAULT_TARGET_MODULES))
    ]
    assert projections and all(isinstance(module, nn.Linear) for module in projections)
    expected = sum(LORA["rank"] * (m.in_features + m.out_features) for m in projections)
    unet = trainer.accelerator.unwrap_model(trainer.unet)
    trainable = [p for p in unet.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == expected
    assert sum(p.numel() for p in trainer.parameters) == expected
    optimized = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in optimized} == {id(p) for p in trainable}
    assert not any(p.requires_grad for p in trainer.text_encoder.parameters())


@torch.no_grad()
def test_saved_lora_loads_with_load_lora_weights_and_gives_the_trained_output(trained, tmp_path):
    _, trainer = trained
    unet, _ = trainer.trained_models()
    save_lora(tmp_path, unet, trainer.lora_config)
    saved = load_file(tmp_path / "pytorch_lora_weights.safetensors")
    assert saved and all(name.startswith("unet.") for name in saved)

    pipe = KeyframesPipeline(**tiny_keyframes_components(seed=0))  # the same base
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 3, 3, 8, 8, generator=generator)  # (B, C, F, H, W)
    text = torch.randn(2, 5, TEXT_DIM, generator=generator)  # (B, L, D)
    before = pipe.unet(sample, 500, text).sample
    pipe.load_lora_weights(tmp_path)
    loaded = pipe.unet(sample, 500, text).sample
    expected = unet(sample, 500, text).sample
    torch.testing.assert_close(loaded, expected, atol=1e-5, rtol=1e-5)
    assert (loaded - before).abs().max() > 1e-3  # the trained LoRA does change the output


def test_resumed_lora_run_matches_an_uninterrupted_one(tmp_path):
    straight = make_trainer(tmp_path / "straight", use_ema=True, ema_decay=0.9)
    straight.train()
    stopped = make_trainer(tmp_path / "stopped", use_ema=True, ema_decay=0.9, checkpoint_every=1)
    assert stopped.train(stop_after=2) == 2
    assert latest_checkpoint(tmp_path / "stopped").name == "checkpoint-2"
    resumed = make_trainer(tmp_path / "stopped", use_ema=True, ema_decay=0.9, checkpoint_every=1)
    assert resumed.train() == 3
    expected, actual = (state(t.accelerator.unwrap_model(t.unet)) for t in (straight, resumed))
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-6, rtol=0, msg=name)
    for mine, theirs in zip(resumed.ema.shadow_params, straight.ema.shadow_params, strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "lora,message",
    [
        ({"rank": 0}, "`lora.rank` must be an int >= 1, got 0"),
        ({"rank": 2.5}, "`lora.rank` must be an int >= 1"),
        ({"alpha": 4}, "`lora.rank` is required"),
        ({"rank": 4, "alpha": 0}, "`lora.alpha` must be a finite number > 0, got 0"),
        ({"rank": 4, "target_modules": []}, "`lora.target_modules` must be a non-empty list"),
        ({"rank": 4, "target_modules": "to_q"}, "`lora.target_modules` must be a non-empty list"),
        ({"rank": 4, "dropout": 0.1}, r"unknown key\(s\) \['dropout'\]"),
        ([4], "`lora` must be a mapping"),
    ],
)
def test_bad_lora_settings_are_refused_by_the_config(tmp_path, lora, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(output_dir=str(tmp_path), lora=lora)


@pytest.mark.parametrize(
    "targets,message",
    [
        (["to_q", "to_z"], "`lora.target_modules` names 'to_z', which matches no module of the 2D UNet"),
        (["to_k", "temporal_attns"], "names 'temporal_attns', which matches no module of the 2D UNet"),
        (["transformer_blocks"], r"names 'transformer_blocks', which matches \['ModuleList'\] modules"),
    ],
)
def test_unknown_or_unsupported_target_modules_are_refused_before_training(tmp_path, targets, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(tmp_path, lora={"rank": 4, "target_modules": targets})
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "loss.csv").exists()


@pytest.mark.parametrize("field", ["freeze_spatial", "train_text_encoder"])
def test_lora_with_other_trained_weights_is_refused(tmp_path, field):
    with pytest.raises(ValueError, match=f"`{field}` must be False with `lora`"):
        TrainingConfig(output_dir=str(tmp_path), lora={"rank": 4}, **{field: True})


def test_recipe_with_lora_exports_the_lora_alone(tmp_path):
    recipe = {
        "stage": "text_to_image",
        "output_dir": str(tmp_path / "run"),
        "model": {
            "unet": {
                "sample_size": 8,
                "in_channels": 3,
                "out_channels": 3,
                "block_out_channels": [16, 32],
                "layers_per_block": 1,
                "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
                "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
                "attention_head_dim": 8,
                "cross_attention_dim": 16,
                "norm_num_groups": 8,
            },
            "text_encoder": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2},
        },
        "data": {"kind": "shapes", "length": 4, "num_frames": 1, "height": 8, "width": 8},
        "training": {
            "max_steps": 1,
            "batch_size": 2,
            "lora": {"rank": 2, "target_modules": ["to_q", "to_v"]},
        },
    }
    path = tmp_path / "lora.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert load_recipe(path).config().lora == {"rank": 2, "alpha": 2, "target_modules": ["to_q", "to_v"]}
    exported = run_recipe(path)
    assert sorted(p.name for p in exported.iterdir()) == ["pytorch_lora_weights.safetensors"]
    names = load_file(exported / "pytorch_lora_weights.safetensors").keys()
    assert names and all(
        name.startswith("unet.") and (".to_q." in name or ".to_v." in name) for name in names
    )

    recipe["training"]["lora"] = {"rank": 0}
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(ValueError, match="`lora.rank` must be an int >= 1, got 0"):
        load_recipe(path)


def test_the_example_lora_recipe_loads_and_starts_from_the_demo_keyframes():
    repo = Path(__file__).resolve().parent.parent
    recipe = load_recipe(repo / "configs" / "examples" / "keyframes_lora.yaml")
    demo = load_recipe(repo / "configs" / "demo" / "2c_keyframes_whole_world.yaml")
    assert recipe.stage == "keyframes" and recipe.model["base"] == str(demo.model_dir)
    assert recipe.config().lora == {"rank": 4, "alpha": 4, "target_modules": list(DEFAULT_TARGET_MODULES)}
