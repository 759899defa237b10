"""DreamBooth for the keyframes stage (issue 17, item 3): the subject's images (a shape the world lacks), prior
preservation's loss, and a recipe that trains the keyframes' 2D UNet on images and exports it under the trained
temporal layers; too few images and misplaced settings refused before training."""

import numpy as np
import pytest
import torch
import yaml
from diffusers import DDPMScheduler

from cascade import KeyframesPipeline
from cascade.data import ShapesDataset, SubjectImages, subject_coverage
from cascade.testing.tiny_models import tiny_keyframes_components
from cascade.training import StageTrainer, TrainingConfig, load_recipe, run_recipe
from cascade.training.recipe import spatial_copy


def test_the_cross_covers_five_ninths_of_its_square():
    # A square of side 9 px on the pixel grid: the plus of arms 3 px wide covers 5 of its 9 cells exactly.
    coverage = subject_coverage("cross", 8.0, 8.0, 4.5, 16, 16)
    assert coverage.sum() == pytest.approx(45.0)
    assert coverage[8, 8] == 1 and coverage[8, 4] == 1 and coverage[4, 8] == 1  # centre and arms
    assert coverage[4, 4] == 0 and coverage[12, 12] == 0  # corners of the bounding square


def test_the_star_has_five_points_and_a_solid_middle():
    coverage = subject_coverage("star", 32.0, 32.0, 30.0, 64, 64)
    assert coverage[32, 32] == 1 and coverage[3, 32] > 0  # the middle and the top point
    assert coverage[5, 5] == 0 and coverage[60, 32] == 0  # a corner, and below the middle between two points
    regular_area = 5 * 30.0 * (30.0 * 0.382) * np.sin(np.pi / 5)  # ten triangles from the centre
    assert coverage.sum() == pytest.approx(regular_area, rel=0.01)


def test_subject_images_are_fixed_by_the_seed_and_cycle():
    images = SubjectImages(3, shape="cross", color="magenta", seed=4, length=7)
    again = SubjectImages(3, shape="cross", color="magenta", seed=4)
    assert len(images) == 7
    first = images[0]
    assert first["pixel_values"].shape == (3, 1, 16, 16)
    assert torch.equal(first["pixel_values"], again[0]["pixel_values"])
    assert torch.equal(images[3]["pixel_values"], first["pixel_values"])  # image 3 is image 0 again
    assert not torch.equal(images[1]["pixel_values"], first["pixel_values"])
    assert first["caption"].startswith("a sks moving ") and "{" not in first["caption"]
    assert first["pixel_values"][1].max() == -1  # magenta has no green


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"images": 2}, r"`images` must be an int >= 3 .*got 2"),
        ({"images": 5, "shape": "circle"}, "`shape` must be one of"),
        ({"images": 5, "color": "orange"}, "`color` must be one of"),
        ({"images": 5, "prompt": " "}, "`prompt` must be a non-empty str"),
        ({"images": 5, "length": 4}, "`length` must be"),
    ],
)
def test_bad_subject_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SubjectImages(**kwargs)


def image_trainer(output_dir, prior=True, **overrides):
    components = tiny_keyframes_components(seed=0)
    settings = dict(output_dir=str(output_dir), stage="text_to_image", max_steps=2, batch_size=2)
    settings.update(checkpoint_every=0, learning_rate=1e-3)
    return StageTrainer(
        TrainingConfig(**{**settings, **overrides}),
        unet=spatial_copy(components["unet"], "tiny"),
        text_encoder=components["text_encoder"],
        tokenizer=components["tokenizer"],
        noise_scheduler=DDPMScheduler(num_train_timesteps=1000),
        dataset=SubjectImages(3, height=8, width=8, length=4),
        prior_dataset=ShapesDataset(8, num_frames=1, height=8, width=8, seed=2) if prior else None,
    )


def test_prior_preservation_adds_the_weighted_class_loss(tmp_path):
    trainer = image_trainer(tmp_path, prior_loss_weight=0.25)
    batch = next(trainer._stream())
    assert batch["prior_batch"]["caption"] != batch["caption"]
    torch.manual_seed(0)
    total = trainer.step_loss(batch)
    torch.manual_seed(0)
    subject = trainer.loss(batch)
    prior = trainer.loss(batch["prior_batch"])
    torch.testing.assert_close(total, subject + 0.25 * prior, rtol=0, atol=0)
    assert prior > 0 and subject > 0
    assert trainer.train() == 2


def test_prior_data_with_joint_image_training_is_refused(tmp_path):
    components = tiny_keyframes_components(seed=0)
    with pytest.raises(ValueError, match="`prior_dataset` .* and `image_dataset` .* do not go together"):
        StageTrainer(
            TrainingConfig(output_dir=str(tmp_path), batch_size=2, image_every=2),
            unet=components["unet"],
            text_encoder=components["text_encoder"],
            tokenizer=components["tokenizer"],
            noise_scheduler=DDPMScheduler(num_train_timesteps=1000),
            dataset=ShapesDataset(4, num_frames=3, height=8, width=8),
            image_dataset=ShapesDataset(4, num_frames=1, height=8, width=8),
            prior_dataset=ShapesDataset(4, num_frames=1, height=8, width=8),
        )


@pytest.fixture(scope="module")
def dreambooth_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dreambooth")
    base = folder / "base"
    KeyframesPipeline(**tiny_keyframes_components(seed=0)).save_pretrained(base)
    recipe = {
        "stage": "text_to_image",
        "output_dir": str(folder / "run"),
        "model": {"base": str(base), "under_temporal_layers": True},
        "data": {"kind": "subject", "images": 3, "height": 8, "width": 8, "length": 4},
        "prior_data": {"kind": "shapes", "length": 8, "num_frames": 1, "height": 8, "width": 8},
        "training": {"max_steps": 2, "batch_size": 2, "learning_rate": 1e-3},
    }
    path = folder / "dreambooth.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return base, recipe, path, run_recipe(path)


def test_the_recipe_exports_the_base_pipeline_with_new_spatial_weights(dreambooth_run):
    base_folder, _, _, exported = dreambooth_run
    base = KeyframesPipeline.from_pretrained(base_folder, use_safetensors=True)
    personalized = KeyframesPipeline.from_pretrained(exported, use_safetensors=True)
    for layers in ("temporal_convs", "temporal_attns"):
        before, after = (
            getattr(base.unet, layers).state_dict(),
            getattr(personalized.unet, layers).state_dict(),
        )
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    spatial_before, spatial_after = base.unet.unet.state_dict(), personalized.unet.unet.state_dict()
    changed = [name for name in spatial_before if not torch.equal(spatial_before[name], spatial_after[name])]
    assert len(changed) > len(spatial_before) // 2  # DreamBooth fine-tunes the whole 2D UNet
    text_before, text_after = base.text_encoder.state_dict(), personalized.text_encoder.state_dict()
    assert all(torch.equal(text_before[k], text_after[k]) for k in text_before)  # the text encoder stays
    personalized.set_progress_bar_config(disable=True)
    video = personalized("a sks moving left", num_frames=3, num_inference_steps=2, output_type="np").frames
    assert video.shape == (1, 3, 8, 8, 3)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"stage": "keyframes"}, "`model.under_temporal_layers` trains a keyframes base's 2D UNet"),
        ({"model": {"unet": {}, "under_temporal_layers": True}}, "needs stage: text_to_image and a `base`"),
        (
            {"model": {"base": "x", "under_temporal_layers": "yes"}},
            "`model.under_temporal_layers` must be a bool",
        ),
        ({"prior_data": {"kind": "pictures"}}, r"`prior_data.kind` must be one of"),
        ({"data": {"kind": "subject", "images": 2}}, r"`images` must be an int >= 3"),
    ],
)
def test_misplaced_dreambooth_settings_are_refused_before_training(dreambooth_run, tmp_path, change, message):
    _, recipe, _, _ = dreambooth_run
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**recipe, **change, "output_dir": str(tmp_path / "run")}))
    with pytest.raises(ValueError, match=message):
        run_recipe(path)
    assert not (tmp_path / "run").exists()


def test_a_2d_base_is_refused_for_under_temporal_layers(dreambooth_run, tmp_path):
    _, recipe, _, _ = dreambooth_run
    base = tmp_path / "base2d"
    components = tiny_keyframes_components(seed=0)
    spatial_copy(components["unet"], "tiny").save_pretrained(base / "unet")
    components["text_encoder"].save_pretrained(base / "text_encoder")
    components["tokenizer"].save_pretrained(base / "tokenizer")
    recipe = {**recipe, "model": {"base": str(base), "under_temporal_layers": True}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**recipe, "output_dir": str(tmp_path / "run")}))
    assert load_recipe(path).model["under_temporal_layers"] is True
    with pytest.raises(
        ValueError, match="needs a base whose unet is a VideoUNet, got a UNet2DConditionModel"
    ):
        run_recipe(path)
