"""ControlNet training (issue 17, part 2): with a ``controlnet`` the trainer trains it alone, the UNet and
text encoder bit for bit as loaded, its residuals computed as the keyframes pipeline computes them; a recipe
with ``model.controlnet`` exports the ControlNet alone, which a keyframes pipeline takes; silhouettes from the
shapes dataset are the renderer's coverage; bad settings are refused before training."""

import numpy as np
import pytest
import torch
import yaml
from diffusers import ControlNetModel, DDPMScheduler

from cascade import KeyframesPipeline
from cascade.data import ShapeParams, ShapesDataset
from cascade.data.shapes_render import render_clip, render_silhouettes, shape_coverage
from cascade.pipelines.control import video_residuals
from cascade.testing.tiny_models import tiny_keyframes_components
from cascade.training import StageTrainer, TrainingConfig, load_recipe, run_recipe

FRAMES, SIZE = 3, 8


def silhouette_data(length=6, **extra) -> ShapesDataset:
    return ShapesDataset(
        length, num_frames=FRAMES, height=SIZE, width=SIZE, seed=1, control="silhouette", **extra
    )


def new_controlnet(unet, seed=0) -> ControlNetModel:
    torch.manual_seed(seed)
    return ControlNetModel.from_unet(unet.unet, conditioning_embedding_out_channels=(8,))


def make_trainer(output_dir, components=None, dataset=None, controlnet=None, **overrides) -> StageTrainer:
    settings = dict(output_dir=str(output_dir), max_steps=3, batch_size=2, learning_rate=1e-2)
    settings.update(caption_dropout=0.5, checkpoint_every=0)
    components = components or tiny_keyframes_components(seed=0)
    return StageTrainer(
        TrainingConfig(**{**settings, **overrides}),
        unet=components["unet"],
        text_encoder=components["text_encoder"],
        tokenizer=components["tokenizer"],
        noise_scheduler=DDPMScheduler(num_train_timesteps=1000),
        dataset=silhouette_data() if dataset is None else dataset,
        controlnet=new_controlnet(components["unet"]) if controlnet is None else controlnet,
    )


def state(model) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_silhouettes_are_the_renderers_coverage_and_match_the_clip():
    params = ShapeParams("magenta", "triangle", "down", 0.35, 0.4, 0.3, 0.45)
    silhouettes = render_silhouettes(params, 5, 12, 16)  # (F, H, W)
    assert silhouettes.shape == (5, 12, 16) and silhouettes.dtype == np.float32
    np.testing.assert_array_equal(silhouettes[2], shape_coverage(params, 0.5, 12, 16).astype(np.float32))
    np.testing.assert_array_equal(
        render_clip(params, 5, 12, 16), silhouettes[..., None] * np.float32([1, 0, 1])
    )


@pytest.mark.parametrize("window", [None, 2])
def test_dataset_control_values_are_the_items_silhouettes(window):
    dataset = silhouette_data(window=window)
    plain = ShapesDataset(6, num_frames=FRAMES, height=SIZE, width=SIZE, seed=1, window=window)
    for index in range(len(dataset)):
        item = dataset[index]
        control, pixels = item["control_values"], item["pixel_values"]  # (3, F, H, W) each
        assert control.shape == pixels.shape == (3, window or FRAMES, SIZE, SIZE)
        torch.testing.assert_close(pixels, plain[index]["pixel_values"], rtol=0, atol=0)
        # Black background, palette colours with a channel at 1: the brightest channel is the coverage.
        torch.testing.assert_close(control[0], (pixels.amax(dim=0) + 1) / 2, rtol=0, atol=1e-6)
        assert torch.equal(control[0], control[1]) and torch.equal(control[0], control[2])


def test_unknown_control_is_refused():
    with pytest.raises(ValueError, match="`control` must be one of"):
        ShapesDataset(4, control="edges")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    components = tiny_keyframes_components(seed=0)
    unet_before, text_before = state(components["unet"]), state(components["text_encoder"])
    controlnet = new_controlnet(components["unet"])
    controlnet_before = state(controlnet)
    trainer = make_trainer(tmp_path_factory.mktemp("controlnet_run"), components, controlnet=controlnet)
    assert trainer.train() == 3
    return unet_before, text_before, controlnet_before, trainer


def test_only_the_controlnet_trains(trained):
    unet_before, text_before, controlnet_before, trainer = trained
    for before, model in ((unet_before, trainer.unet), (text_before, trainer.text_encoder)):
        after = state(model)
        assert all(torch.equal(after[name], before[name]) for name in before)
    after = state(trainer.accelerator.unwrap_model(trainer.controlnet))
    zero_convs = [
        name for name in after if name.startswith(("controlnet_down_blocks", "controlnet_mid_block"))
    ]
    assert zero_convs and all(controlnet_before[name].abs().max() == 0 for name in zero_convs)
    assert all(after[name].abs().max() > 0 for name in zero_convs)  # every zero convolution learned
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in trainer.accelerator.unwrap_model(trainer.controlnet).parameters()}


def test_the_loss_is_the_unets_with_the_controlnets_residuals(tmp_path):
    trainer = make_trainer(tmp_path)
    batch = next(trainer._stream())
    torch.manual_seed(3)
    loss = trainer.loss(batch)
    # The same draws, computed by hand: a fresh ControlNet's zero convolutions add nothing, so the loss is the
    # frozen UNet's alone; with them moved, the residuals change it.
    trainer.controlnet = None
    torch.manual_seed(3)
    assert torch.equal(trainer.loss(batch), loss)
    moved = new_controlnet(trainer.unet)
    for name, parameter in moved.named_parameters():
        if name.startswith("controlnet_mid_block"):
            parameter.data.fill_(0.1)
    trainer.controlnet = moved
    torch.manual_seed(3)
    assert not torch.equal(trainer.loss(batch), loss)


@torch.no_grad()
def test_video_residuals_are_the_controlnet_run_frame_by_frame():
    unet = tiny_keyframes_components(seed=0)["unet"]
    controlnet = new_controlnet(unet).eval()
    for parameter in controlnet.parameters():
        parameter.data += 0.01 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 3, FRAMES, SIZE, SIZE, generator=generator)  # (B, C, F, H, W)
    images = torch.rand(2, 3, FRAMES, SIZE, SIZE, generator=generator)  # (B, 3, F, H, W)
    text = torch.randn(2, 5, unet.unet.config.cross_attention_dim, generator=generator)  # (B, L, D)
    timesteps = torch.tensor([10, 900])
    down, mid = video_residuals(controlnet, sample, timesteps, text, images, conditioning_scale=0.5)
    for b in range(2):
        for f in range(FRAMES):
            one_down, one_mid = controlnet(
                sample[b : b + 1, :, f],
                timesteps[b : b + 1],
                text[b : b + 1],
                controlnet_cond=images[b : b + 1, :, f],
                conditioning_scale=0.5,
                return_dict=False,
            )
            torch.testing.assert_close(mid[b : b + 1, :, f], one_mid, atol=1e-5, rtol=1e-5)
            for video, image in zip(down, one_down, strict=True):
                torch.testing.assert_close(video[b : b + 1, :, f], image, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"stage": "interpolation"}, "`controlnet` trains on the 'keyframes' stage"),
        ({"freeze_spatial": True}, "`freeze_spatial` must be False with `controlnet`"),
        ({"train_text_encoder": True}, "`train_text_encoder` must be False with `controlnet`"),
        ({"lora": {"rank": 2}}, "`lora` must be None with `controlnet`"),
    ],
)
def test_controlnet_with_other_training_is_refused(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(tmp_path, **overrides)
    assert not (tmp_path / "checkpoints").exists()


def test_dataset_without_control_or_a_mismatched_controlnet_is_refused(tmp_path):
    plain = ShapesDataset(6, num_frames=FRAMES, height=SIZE, width=SIZE, seed=1)
    with pytest.raises(ValueError, match="`dataset` items must carry 'control_values'"):
        make_trainer(tmp_path, dataset=plain)
    other = tiny_keyframes_components(seed=0, latent=True)["unet"]
    with pytest.raises(ValueError, match="`controlnet` does not match the UNet: its in_channels"):
        make_trainer(tmp_path, controlnet=new_controlnet(other))


def test_recipe_with_controlnet_exports_a_controlnet_the_pipeline_takes(tmp_path):
    base = tmp_path / "base"
    components = tiny_keyframes_components(seed=0)
    KeyframesPipeline(**components).save_pretrained(base)
    recipe = {
        "stage": "keyframes",
        "output_dir": str(tmp_path / "run"),
        "model": {"base": str(base), "controlnet": {"conditioning_embedding_out_channels": [8]}},
        "data": {"kind": "shapes", "length": 4, "num_frames": FRAMES, "height": SIZE, "width": SIZE},
        "training": {"max_steps": 1, "batch_size": 2},
    }
    recipe["data"]["control"] = "silhouette"
    path = tmp_path / "controlnet.yaml"
    path.write_text(yaml.safe_dump(recipe))
    exported = run_recipe(path)
    assert sorted(p.name for p in exported.iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    controlnet = ControlNetModel.from_pretrained(exported, use_safetensors=True)
    pipe = KeyframesPipeline.from_pretrained(base, controlnet=controlnet, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    silhouettes = silhouette_data()[0]["control_values"].permute(1, 2, 3, 0)[None].numpy()  # (1, F, H, W, 3)
    video = pipe(
        "a red circle moving left",
        num_frames=FRAMES,
        height=SIZE,
        width=SIZE,
        num_inference_steps=2,
        control_video=silhouettes,
        output_type="np",
    ).frames
    assert video.shape == (1, FRAMES, SIZE, SIZE, 3)

    recipe["model"]["controlnet"] = {"conditioning_channel": 1}
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(
        ValueError, match="`model.controlnet` has an option ControlNetModel.from_unet does not"
    ):
        run_recipe(path, output_dir=str(tmp_path / "bad"))
    recipe["model"]["kind"] = "x"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['kind'\] in model"):
        load_recipe(path)
