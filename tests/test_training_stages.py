"""Training every stage: the conditioning each stage's UNet sees, 2D pretraining with the text encoder,
latent space, joint image-video batches, exact resume with noise augmentation, and the word tokenizer."""

import math

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch.utils.data import Dataset

from cascade.data import VOCABULARY, ShapesDataset
from cascade.models import inflate
from cascade.testing.tiny_models import tiny_text_encoder, tiny_tokenizer, tiny_unet2d, tiny_vae
from cascade.training import (
    StageTrainer,
    TrainingConfig,
    retokenize_text_encoder,
    small_text_encoder,
    word_tokenizer,
)
from cascade.training.stage_inputs import interpolation_conditioning, stage_inputs
from cascade.training.trainer import timestep_weights


def config(tmp_path, stage, **overrides) -> TrainingConfig:
    settings = dict(output_dir=str(tmp_path), stage=stage, max_steps=2, batch_size=2, learning_rate=1e-3)
    settings.update(checkpoint_every=0, caption_dropout=0.5)
    return TrainingConfig(**{**settings, **overrides})


def unet_for(stage: str, latent: bool = False):
    channels = 4 if latent else 3
    if stage in ("spatiotemporal_sr", "spatial_sr"):
        unet = tiny_unet2d("x4_upscaler", sample_size=8, in_channels=channels + 3, out_channels=channels)
    else:
        unet = tiny_unet2d("sd15", sample_size=8, in_channels=channels, out_channels=channels)
    if stage in ("text_to_image", "spatial_sr"):
        return unet
    return inflate(unet, extra_in_channels=channels + 1 if stage == "interpolation" else 0)


def trainer_for(tmp_path, stage, latent=False, frames=5, size=8, image_dataset=None, **overrides):
    if stage in ("spatiotemporal_sr", "spatial_sr"):
        overrides.setdefault("upscale_factor", 2)
    return StageTrainer(
        config(tmp_path, stage, **overrides),
        unet_for(stage, latent),
        tiny_text_encoder(),
        tiny_tokenizer(),
        DDPMScheduler(num_train_timesteps=1000),
        ShapesDataset(8, num_frames=frames, height=size, width=size, seed=1),
        vae=tiny_vae() if latent else None,
        image_dataset=image_dataset,
    )


def unet_weights(trainer) -> dict[str, torch.Tensor]:
    unet = trainer.accelerator.unwrap_model(trainer.unet)
    return {name: value.detach().clone() for name, value in unet.state_dict().items()}


STAGE_CASES = [
    ("text_to_image", False, 1, 8),
    ("keyframes", False, 3, 8),
    ("keyframes", True, 3, 16),
    ("interpolation", False, 5, 8),
    ("interpolation", True, 5, 16),
    ("spatiotemporal_sr", False, 3, 16),
    ("spatiotemporal_sr", True, 3, 16),
    ("spatial_sr", False, 2, 16),
]


@pytest.mark.parametrize("stage,latent,frames,size", STAGE_CASES)
def test_every_stage_trains_in_pixel_and_latent_space(tmp_path, stage, latent, frames, size):
    overrides = {"interpolation_factor": 2} if stage == "interpolation" else {}
    trainer = trainer_for(tmp_path, stage, latent, frames, size, **overrides)
    before = unet_weights(trainer)
    assert trainer.train() == 2
    after = unet_weights(trainer)
    assert any(not torch.equal(before[name], after[name]) for name in before)
    lines = trainer.loss_log.read_text().splitlines()[1:]
    assert len(lines) == 2 and all(math.isfinite(float(line.split(",")[1])) for line in lines)


def test_interpolation_conditioning_places_known_frames_and_keeps_the_ends(tmp_path):
    torch.manual_seed(0)
    sample = torch.randn(64, 3, 9, 4, 4)  # (B, C, F, h, w)
    conditioning = interpolation_conditioning(
        sample, config(tmp_path, "interpolation", interpolation_factor=4)
    )
    known, mask = conditioning[:, :3], conditioning[:, 3:]
    assert torch.equal(mask[0, 0, :, 0, 0], torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0, 1]))
    assert torch.equal(known, sample * mask)
    hidden = config(tmp_path, "interpolation", interpolation_factor=4, known_frame_dropout=0.5)
    masks = interpolation_conditioning(sample, hidden)[:, 3, :, 0, 0]  # (B, F)
    assert masks[:, [0, 8]].eq(1).all()  # the ends are always known
    assert 0 < masks[:, 4].sum() < 64  # the middle known frame is hidden in some clips only
    with pytest.raises(ValueError, match="m \\* interpolation_factor \\+ 1"):
        interpolation_conditioning(
            sample[:, :, :8], config(tmp_path, "interpolation", interpolation_factor=4)
        )


def test_blend_filled_interpolation_conditioning_bridges_hidden_known_frames(tmp_path):
    sample = torch.randn(2, 3, 9, 4, 4)  # (B, C, F, h, w)
    every_inner_hidden = config(
        tmp_path, "interpolation", interpolation_factor=4, known_frame_dropout=1.0, interpolation_fill="blend"
    )
    conditioning = interpolation_conditioning(sample, every_inner_hidden)
    assert torch.equal(conditioning[0, 3, :, 0, 0], torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0, 1]))
    weights = torch.arange(9.0).reshape(1, 1, 9, 1, 1) / 8  # (1, 1, F, 1, 1): from the first to the last
    expected = sample[:, :, :1] * (1 - weights) + sample[:, :, -1:] * weights
    torch.testing.assert_close(conditioning[:, :3], expected)
    with pytest.raises(ValueError, match="`interpolation_fill` must be one of"):
        config(tmp_path, "interpolation", interpolation_fill="copy")


def test_super_resolution_conditioning_is_the_noised_area_downsample(tmp_path):
    torch.manual_seed(0)
    videos = torch.rand(3, 3, 2, 16, 16) * 2 - 1  # (B, 3, F, H, W)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    settings = config(tmp_path, "spatiotemporal_sr", upscale_factor=4, max_noise_level=0)
    inputs = stage_inputs(settings, videos, None, scheduler)
    assert torch.equal(inputs.class_labels, torch.zeros(3, dtype=torch.long))
    flat = videos.transpose(1, 2).reshape(6, 3, 16, 16)
    low = F.avg_pool2d(flat, 4)  # (6, 3, 4, 4): an independent area downsample
    reference = F.interpolate(low, size=(16, 16), mode="bilinear", align_corners=False)
    reference = reference.reshape(3, 2, 3, 16, 16).transpose(1, 2)
    alpha = scheduler.alphas_cumprod[0]
    noise_bound = 6 * float((1 - alpha).sqrt())  # level 0 adds noise of std sqrt(1 - alpha_0) ~ 0.01
    assert (inputs.conditioning - alpha.sqrt() * reference).abs().max() < noise_bound
    assert torch.equal(inputs.sample, videos)
    levels = stage_inputs(
        config(tmp_path, "spatial_sr", upscale_factor=4, max_noise_level=7), videos, None, scheduler
    )
    assert levels.class_labels.max() <= 7


class CountingDataset(Dataset):
    """Wraps a dataset and records the indices read."""

    def __init__(self, dataset):
        self.dataset, self.read = dataset, []

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.read.append(index)
        return self.dataset[index]


def test_joint_training_takes_every_kth_batch_from_the_images(tmp_path):
    images = CountingDataset(ShapesDataset(8, num_frames=1, height=8, width=8, seed=2))
    trainer = trainer_for(tmp_path, "keyframes", frames=3, image_dataset=images, image_every=3, max_steps=6)
    videos = CountingDataset(trainer.dataset)
    trainer.dataset = videos
    trainer.train()
    assert len(images.read) == 2 * 2  # micro-batches 3 and 6 of 6, two items each
    assert len(videos.read) == 4 * 2
    with pytest.raises(ValueError, match="image_dataset"):
        trainer_for(tmp_path / "other", "keyframes", frames=3, image_every=2)


def test_resume_with_noise_augmentation_and_images_matches_an_uninterrupted_run(tmp_path):
    def run(folder, stop_after=None):
        images = ShapesDataset(8, num_frames=1, height=16, width=16, seed=2)
        trainer = trainer_for(
            folder, "spatiotemporal_sr", frames=3, size=16, image_dataset=images, image_every=2, max_steps=5
        )
        trainer.config.use_ema = False
        trainer.train(stop_after=stop_after)
        return trainer

    whole = unet_weights(run(tmp_path / "whole"))
    run(tmp_path / "split", stop_after=3)
    resumed = unet_weights(run(tmp_path / "split"))
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], atol=1e-6, rtol=0)


def test_text_to_image_trains_the_text_encoder_only_when_asked(tmp_path):
    for train_text in (True, False):
        trainer = trainer_for(
            tmp_path / str(train_text), "text_to_image", frames=2, train_text_encoder=train_text
        )
        encoder = trainer.accelerator.unwrap_model(trainer.text_encoder)
        before = {name: value.clone() for name, value in encoder.state_dict().items()}
        trainer.train()
        changed = any(not torch.equal(before[name], value) for name, value in encoder.state_dict().items())
        assert changed == train_text


def test_trained_models_carry_the_ema_weights(tmp_path):
    trainer = trainer_for(tmp_path, "keyframes", frames=3, use_ema=True, ema_decay=0.5, max_steps=3)
    trainer.train()
    unet, _ = trainer.trained_models()
    live = unet_weights(trainer)
    exported = unet.state_dict()
    shadow = dict(
        zip(
            [
                n
                for n, p in trainer.accelerator.unwrap_model(trainer.unet).named_parameters()
                if p.requires_grad
            ],
            trainer.ema.shadow_params,
            strict=True,
        )
    )
    for name, value in shadow.items():
        torch.testing.assert_close(exported[name], value)
    assert any(not torch.equal(exported[name], live[name]) for name in shadow)
    assert all(torch.equal(live[name], value) for name, value in unet_weights(trainer).items())


@pytest.mark.parametrize(
    "stage,unet,message",
    [
        ("keyframes", tiny_unet2d("sd15", in_channels=3, out_channels=3), "VideoUNet"),
        ("interpolation", inflate(tiny_unet2d("sd15", in_channels=3, out_channels=3)), "3 \\+ 4 channels"),
        ("spatial_sr", tiny_unet2d("sd15", in_channels=6, out_channels=3), "class embedding"),
    ],
)
def test_a_unet_that_does_not_fit_the_stage_is_refused(tmp_path, stage, unet, message):
    with pytest.raises(ValueError, match=message):
        StageTrainer(
            config(tmp_path, stage),
            unet,
            tiny_text_encoder(),
            tiny_tokenizer(),
            DDPMScheduler(),
            ShapesDataset(8, num_frames=5, height=8, width=8),
        )


@pytest.mark.parametrize(
    "field,value",
    [
        ("stage", "upscaling"),
        ("image_every", -1),
        ("known_frame_dropout", 1.5),
        ("max_noise_level", 1000),
        ("upscale_factor", 0),
        ("train_text_encoder", "yes"),
        ("freeze_spatial", True),
    ],
)
def test_bad_stage_settings_are_refused_naming_the_field(tmp_path, field, value):
    stage = "spatial_sr" if field == "freeze_spatial" else "keyframes"
    with pytest.raises(ValueError, match=f"`{field}` must be"):
        TrainingConfig(output_dir=str(tmp_path), **{"stage": stage, field: value})


def test_word_tokenizer_gives_one_token_per_known_word_and_round_trips(tmp_path):
    tokenizer = word_tokenizer(list(VOCABULARY), max_length=8)
    for word in VOCABULARY:  # every word one token, whatever merges other words brought in ("re" of "red")
        assert tokenizer.tokenize(word) == [word + "</w>"]
    caption = "a magenta triangle moving down"
    assert tokenizer.tokenize(caption) == [word + "</w>" for word in caption.split()]
    ids = tokenizer(caption, padding="max_length").input_ids
    assert len(ids) == 8 and len(set(ids[1:6])) == 5
    assert tokenizer.tokenize("a pink zzz") == ["a</w>", "p", "i", "n", "k</w>", "z", "z", "z</w>"]
    tokenizer.save_pretrained(tmp_path)
    from transformers import CLIPTokenizer

    assert CLIPTokenizer.from_pretrained(tmp_path)(caption).input_ids == tokenizer(caption).input_ids
    encoder = small_text_encoder(tokenizer, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    assert encoder(torch.tensor([ids]))[0].shape == (1, 8, 16)
    with pytest.raises(ValueError, match="`words` must hold lowercase ascii words"):
        word_tokenizer(["Red"])
    with pytest.raises(ValueError, match="`hidden_size`=10 must be a multiple"):
        small_text_encoder(tokenizer, hidden_size=10, num_attention_heads=4)


def test_retokenized_encoder_encodes_shared_words_exactly_and_splits_words_into_their_pieces_mean():
    old_words = [word for word in VOCABULARY if word != "green"]  # "green" is letters to the old tokenizer
    old = word_tokenizer(old_words, max_length=8)
    new = word_tokenizer(list(VOCABULARY), max_length=8)
    encoder = small_text_encoder(old, hidden_size=16, num_hidden_layers=1, num_attention_heads=2).eval()
    old_table = encoder.get_input_embeddings().weight.detach().clone()  # (V_old, D)
    captions = ["a red circle moving left", "an yellow square moving down"]
    with torch.no_grad():
        before = encoder(old(captions, padding="max_length", return_tensors="pt").input_ids)
        retokenize_text_encoder(encoder, old, new)
        after = encoder(new(captions, padding="max_length", return_tensors="pt").input_ids)
    assert old.get_vocab()["circle</w>"] != new.get_vocab()["circle</w>"]  # the ids moved
    torch.testing.assert_close(after.last_hidden_state, before.last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(after.pooler_output, before.pooler_output, rtol=0, atol=0)
    pieces = old("green", add_special_tokens=False).input_ids
    assert len(pieces) > 1
    green = encoder.get_input_embeddings().weight[new.get_vocab()["green</w>"]]
    torch.testing.assert_close(green, old_table[pieces].mean(dim=0))
    vocab = new.get_vocab()
    assert encoder.config.vocab_size == len(vocab)
    assert (encoder.config.bos_token_id, encoder.config.eos_token_id) == (
        vocab["<|startoftext|>"],
        vocab["<|endoftext|>"],
    )
    with pytest.raises(ValueError, match="`old_tokenizer` has .* tokens but `text_encoder` embeds"):
        retokenize_text_encoder(encoder, old, new)  # the encoder now has the new vocabulary
    with pytest.raises(ValueError, match="`new_tokenizer.model_max_length`=6 must equal"):
        retokenize_text_encoder(encoder, new, word_tokenizer(list(VOCABULARY), max_length=6))
    with pytest.raises(ValueError, match="`new_tokenizer` must be a CLIPTokenizer"):
        retokenize_text_encoder(encoder, new, "shapes")


def test_high_noise_bias_weights_the_noisiest_portion_of_the_schedule(tmp_path):
    biased = config(tmp_path, "keyframes", high_noise_weight=3.0, high_noise_portion=0.3)
    weights = timestep_weights(1000, biased)
    assert weights[:700].eq(1).all() and weights[700:].eq(3).all()
    trainer = trainer_for(tmp_path, "keyframes", frames=3, high_noise_weight=3.0, high_noise_portion=0.3)
    torch.manual_seed(0)
    drawn = trainer._draw_timesteps(20_000)
    expected = 0.3 * 3 / (0.7 + 0.3 * 3)  # odds 3 on 30% of the levels
    assert abs(drawn.ge(700).float().mean().item() - expected) < 0.015
    assert drawn.min() >= 0 and drawn.max() < 1000
    for field, value in (("high_noise_weight", 0.0), ("high_noise_portion", 1.5)):
        with pytest.raises(ValueError, match=f"`{field}` must be"):
            config(tmp_path, "keyframes", **{field: value})


def test_gradient_checkpointing_reaches_the_same_weights(tmp_path):
    plain = trainer_for(tmp_path / "plain", "keyframes", frames=3)
    plain.train()
    checkpointed = trainer_for(tmp_path / "checkpointed", "keyframes", frames=3, gradient_checkpointing=True)
    assert checkpointed.accelerator.unwrap_model(checkpointed.unet).is_gradient_checkpointing
    checkpointed.train()
    expected = unet_weights(plain)
    for name, value in unet_weights(checkpointed).items():
        torch.testing.assert_close(value, expected[name], atol=1e-5, rtol=1e-4)


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one process-wide state; a run with another precision needs it reset, before and after."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_bf16_mixed_precision_trains_with_finite_losses(tmp_path, fresh_accelerator_state):
    trainer = trainer_for(tmp_path, "interpolation", frames=5, interpolation_factor=2, mixed_precision="bf16")
    assert trainer.accelerator.mixed_precision == "bf16"
    assert trainer.train() == 2
    losses = [float(line.split(",")[1]) for line in trainer.loss_log.read_text().splitlines()[1:]]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
