import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from cascade.data import PALETTE, ShapesDataset, parse_caption
from cascade.testing.tiny_models import tiny_keyframes_components
from cascade.training import StageTrainer, TrainingConfig, training_target
from cascade.training.stable_target import ReferenceClips, posterior_weights, stable_training_target

SHAPE = (3, 2, 4, 4)  # (C, F, H, W)


def scheduler(prediction_type: str) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type
    )


def reference_x0(noisy, candidates, allowed, alphas_cumprod) -> np.ndarray:
    """The posterior-weighted clean sample, computed directly with numpy (float64)."""
    x = noisy.double().numpy().reshape(len(noisy), -1)  # (B, D)
    c = candidates.double().numpy().reshape(len(candidates), -1)  # (N, D)
    a = alphas_cumprod.double().numpy()
    out = []
    for row in range(len(x)):
        log_density = -((x[row] - np.sqrt(a[row]) * c) ** 2).sum(1) / (2 * (1 - a[row]))  # (N,)
        log_density[~allowed[row].numpy()] = -np.inf
        weights = np.exp(log_density - log_density.max())
        out.append((weights / weights.sum()) @ c)
    return np.stack(out)  # (B, D)


def test_posterior_weights_match_gaussian_likelihoods():
    generator = torch.Generator().manual_seed(0)
    noisy = torch.randn(3, *SHAPE, generator=generator)
    candidates = torch.randn(5, *SHAPE, generator=generator)
    allowed = torch.tensor([[1, 1, 0, 0, 1], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    alphas_cumprod = torch.tensor([0.02, 0.3, 0.9])
    weights = posterior_weights(noisy, candidates, allowed, alphas_cumprod)
    assert torch.allclose(weights.sum(1), torch.ones(3, dtype=torch.float64))
    assert torch.equal(weights[~allowed], torch.zeros(int((~allowed).sum()), dtype=torch.float64))
    expected = reference_x0(noisy, candidates, allowed, alphas_cumprod)
    got = (weights @ candidates.flatten(1).double()).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_stable_target_is_the_posterior_mean_of_each_reference_set(prediction_type):
    sched = scheduler(prediction_type)
    generator = torch.Generator().manual_seed(1)
    sample = torch.randn(3, *SHAPE, generator=generator)
    noise = torch.randn(3, *SHAPE, generator=generator)
    references = torch.randn(3, 4, *SHAPE, generator=generator)
    timesteps = torch.tensor([700, 999, 400])
    unconditional = torch.tensor([False, True, False])
    target = stable_training_target(sched, sample, noise, timesteps, references, unconditional)
    noisy = sched.add_noise(sample, noise, timesteps)
    candidates = torch.cat([sample[:, None], references], dim=1).flatten(0, 1)  # (15, C, F, H, W)
    groups = torch.arange(3).repeat_interleave(5)
    allowed = (groups[None] == torch.arange(3)[:, None]) | unconditional[:, None]
    a = sched.alphas_cumprod[timesteps].double().numpy()[:, None]  # (B, 1)
    x0 = reference_x0(noisy, candidates, allowed, sched.alphas_cumprod[timesteps])  # (B, D)
    x_t = noisy.double().flatten(1).numpy()
    eps = (x_t - np.sqrt(a) * x0) / np.sqrt(1 - a)  # the noise that gives x_t from x0
    expected = eps if prediction_type == "epsilon" else np.sqrt(a) * eps - np.sqrt(1 - a) * x0
    np.testing.assert_allclose(target.flatten(1).numpy(), expected, atol=1e-5)
    # The noisiest level weighs every candidate about equally: the target is the mean of all 15.
    assert np.abs(x0[1] - candidates.flatten(1).double().mean(0).numpy()).max() < 1e-3
    assert np.abs(x0[1] - sample[1].flatten().numpy()).max() > 0.5


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_stable_target_is_the_ordinary_target_when_references_equal_the_sample_or_noise_is_low(
    prediction_type,
):
    sched = scheduler(prediction_type)
    generator = torch.Generator().manual_seed(2)
    sample = torch.randn(2, *SHAPE, generator=generator)
    noise = torch.randn(2, *SHAPE, generator=generator)
    timesteps = torch.tensor([999, 500])
    conditional = torch.tensor([False, False])
    ordinary = training_target(sched, sample, noise, timesteps)
    copies = sample[:, None].repeat(1, 3, 1, 1, 1, 1)
    same = stable_training_target(sched, sample, noise, timesteps, copies, conditional)
    torch.testing.assert_close(same, ordinary, rtol=0, atol=1e-5)
    others = torch.randn(2, 3, *SHAPE, generator=generator)
    low = torch.tensor([0, 5])
    low_noise = stable_training_target(sched, sample, noise, low, others, conditional)
    torch.testing.assert_close(low_noise, training_target(sched, sample, noise, low), rtol=0, atol=1e-5)


def test_stable_target_rejects_bad_input():
    sched = scheduler("epsilon")
    sample, noise = torch.zeros(2, *SHAPE), torch.zeros(2, *SHAPE)
    timesteps, conditional = torch.tensor([10, 20]), torch.tensor([False, False])
    with pytest.raises(ValueError, match="`references` must be"):
        stable_training_target(sched, sample, noise, timesteps, torch.zeros(2, 3, 3, 2, 4, 5), conditional)
    with pytest.raises(ValueError, match="`unconditional` must be"):
        stable_training_target(
            sched, sample, noise, timesteps, torch.zeros(2, 3, *SHAPE), torch.tensor([0, 1])
        )
    with pytest.raises(ValueError, match="`allowed` must be"):
        posterior_weights(sample, sample, torch.zeros(2, 2, dtype=torch.bool), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="`alphas_cumprod` must be"):
        posterior_weights(sample, sample, torch.ones(2, 2, dtype=torch.bool), torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="`candidates` must have"):
        posterior_weights(
            sample, torch.zeros(2, 3, 2, 4, 5), torch.ones(2, 2, dtype=torch.bool), torch.ones(2) / 2
        )


def assert_shows(clip: torch.Tensor, caption: str) -> None:
    """``clip`` ``(C, F, H, W)`` in [-1, 1] shows the caption's colour, moving the caption's way."""
    words = parse_caption(caption)
    pixels = (clip.permute(1, 2, 3, 0).reshape(-1, 3) + 1) / 2  # (F*H*W, 3) in [0, 1]
    brightest = pixels[pixels.sum(1).argmax()]  # the colour times its coverage (antialiasing)
    assert torch.allclose(brightest / brightest.max(), torch.tensor(PALETTE[words["color"]]), atol=1e-6)
    mass = (clip > -1).any(0).float()  # (F, H, W)
    x = (mass * torch.arange(float(clip.shape[3]))).sum((1, 2)) / mass.sum((1, 2))
    y = (mass * torch.arange(float(clip.shape[2]))[:, None]).sum((1, 2)) / mass.sum((1, 2))
    moved = {"left": x[0] - x[-1], "right": x[-1] - x[0], "up": y[0] - y[-1], "down": y[-1] - y[0]}
    assert moved[words["direction"]] > 0


def test_same_caption_draws_other_clips_of_the_caption_deterministically():
    dataset = ShapesDataset(20, num_frames=6, height=8, width=8, seed=3, window=4)
    for index in (0, 7):
        clips = dataset.same_caption(index, 5)
        assert clips.shape == (5, 3, 4, 8, 8)
        assert torch.equal(clips, dataset.same_caption(index, 5))
        item = dataset[index]["pixel_values"]
        assert all(not torch.equal(clip, item) for clip in clips)
        # Each clip shows the caption's colour, and the shape moves the caption's way.
        for clip in clips:
            assert_shows(clip, dataset[index]["caption"])
    with pytest.raises(ValueError, match="`count` must be a positive int"):
        dataset.same_caption(0, 0)
    with pytest.raises(IndexError, match="`index` must be in"):
        dataset.same_caption(20, 2)


def test_reference_clips_adds_references_and_needs_same_caption():
    dataset = ShapesDataset(4, num_frames=2, height=8, width=8, seed=1)
    wrapped = ReferenceClips(dataset, 3)
    item = wrapped[2]
    assert len(wrapped) == 4
    assert torch.equal(item["pixel_values"], dataset[2]["pixel_values"])
    assert torch.equal(item["reference_values"], dataset.same_caption(2, 3))
    with pytest.raises(ValueError, match="same_caption"):
        ReferenceClips([{"pixel_values": torch.zeros(3, 2, 8, 8)}], 3)
    with pytest.raises(ValueError, match="`count` must be a positive int, got 0"):
        ReferenceClips(dataset, 0)


def test_caption_clips_are_a_fixed_set_per_caption():
    dataset = ShapesDataset(40, num_frames=4, height=8, width=8, seed=2)
    caption = dataset[0]["caption"]
    clips = dataset.caption_clips(caption, 6)
    assert clips.shape == (6, 3, 4, 8, 8)
    assert torch.equal(clips, dataset.caption_clips(caption, 6))  # the same clips every call
    assert len({tuple(clip.flatten().tolist()) for clip in clips}) == 6  # distinct draws
    assert not torch.equal(
        clips, ShapesDataset(40, num_frames=4, height=8, width=8, seed=5).caption_clips(caption, 6)
    )
    for clip in clips:
        assert_shows(clip, caption)
    other = next(item["caption"] for item in dataset if item["caption"] != caption)
    assert not torch.equal(dataset.caption_clips(other, 6), clips)
    with pytest.raises(ValueError, match="caption"):
        dataset.caption_clips("a purple blob", 2)
    with pytest.raises(ValueError, match="`count` must be a positive int"):
        dataset.caption_clips(caption, 0)


class OnlySameCaption(list):
    """A dataset that draws new references per item but has no fixed set per caption."""

    def same_caption(self, index, count):
        return None


def test_shared_reference_clips_are_the_same_for_every_item_of_a_caption():
    dataset = ShapesDataset(60, num_frames=2, height=8, width=8, seed=1, color="red", shape="circle")
    wrapped = ReferenceClips(dataset, 4, shared=True)
    first = {}
    for index in range(len(dataset)):
        item = wrapped[index]
        assert torch.equal(item["pixel_values"], dataset[index]["pixel_values"])
        references = first.setdefault(item["caption"], item["reference_values"])
        assert torch.equal(item["reference_values"], references)
    assert len(first) == 4  # the four directions of red circles
    for caption, references in first.items():
        assert torch.equal(references, dataset.caption_clips(caption, 4))
    with pytest.raises(ValueError, match="caption_clips"):
        ReferenceClips(OnlySameCaption(), 3, shared=True)
    with pytest.raises(ValueError, match="`shared` must be a bool, got 1"):
        ReferenceClips(dataset, 3, shared=1)


def test_reference_clips_is_a_keyframes_option(tmp_path):
    with pytest.raises(ValueError, match="`reference_clips` must be 0 for the 'interpolation' stage"):
        TrainingConfig(output_dir=str(tmp_path), stage="interpolation", reference_clips=4)
    with pytest.raises(ValueError, match="`reference_clips` must be an int >= 0"):
        TrainingConfig(output_dir=str(tmp_path), reference_clips=-1)
    with pytest.raises(ValueError, match="`shared_references` must be False unless reference_clips > 0"):
        TrainingConfig(output_dir=str(tmp_path), shared_references=True)
    with pytest.raises(ValueError, match="`shared_references` must be a bool"):
        TrainingConfig(output_dir=str(tmp_path), reference_clips=2, shared_references="yes")


class CopiesAsReferences(ShapesDataset):
    """Reference clips identical to the item itself: the stable target must then be the ordinary one."""

    def same_caption(self, index, count):
        return self[index]["pixel_values"][None].repeat(count, 1, 1, 1, 1)


def test_trainer_with_copies_as_references_has_the_ordinary_loss(tmp_path):
    def trainer(dataset, references):
        components = tiny_keyframes_components(seed=0)
        config = TrainingConfig(
            output_dir=str(tmp_path), batch_size=2, caption_dropout=0.0, reference_clips=references
        )
        return StageTrainer(
            config,
            components["unet"],
            components["text_encoder"],
            components["tokenizer"],
            DDPMScheduler(num_train_timesteps=1000),
            dataset,
        )

    same = CopiesAsReferences(4, num_frames=2, height=8, width=8, seed=1)
    ordinary, stable = trainer(same, 0), trainer(same, 3)
    batch = next(ordinary._stream())
    batch_with_references = next(stable._stream())
    assert batch_with_references["reference_values"].shape == (2, 3, 3, 2, 8, 8)
    losses = []
    for run, data in ((ordinary, batch), (stable, batch_with_references)):
        torch.manual_seed(5)
        losses.append(run.loss(data).item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    # With other clips of the caption as references the target, hence the loss, changes.
    other = trainer(ShapesDataset(4, num_frames=2, height=8, width=8, seed=1), 3)
    torch.manual_seed(5)
    assert other.loss(next(other._stream())).item() != pytest.approx(losses[0], rel=1e-4)
