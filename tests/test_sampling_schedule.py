"""The schedule a trained stage is saved with: the training schedule without its pure-noise top, every kept level
exactly as trained; the shipped demo's schedulers are that of the demo's recipes."""

import json

import pytest
import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, HeunDiscreteScheduler

from cascade.pipelines.cascade import DEMO_MODEL
from cascade.training.recipe import SAMPLING_MAX_SIGMA, sampling_levels, sampling_scheduler


def sigmas(scheduler) -> torch.Tensor:
    alphas_cumprod = scheduler.alphas_cumprod.double()
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()


def test_the_capped_cosine_schedule_loses_its_levels_above_sigma_100():
    training = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    levels = sampling_levels(training.alphas_cumprod)
    assert sigmas(training)[levels - 1] <= SAMPLING_MAX_SIGMA < sigmas(training)[levels]
    assert levels == 993  # t=993..999 are at sigma 107 to 20291


def test_a_schedule_without_such_levels_is_saved_whole():
    stable_diffusion = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    scheduler = sampling_scheduler("dpm_solver", stable_diffusion)
    assert scheduler.config.num_train_timesteps == 1000 and scheduler.config.trained_betas is None
    assert torch.equal(scheduler.alphas_cumprod, stable_diffusion.alphas_cumprod)


@pytest.mark.parametrize("name", ["dpm_solver", "ddim"])
def test_the_saved_scheduler_keeps_every_kept_level_exactly_through_a_save(name, tmp_path):
    training = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    sampling_scheduler(name, training).save_config(tmp_path)
    loaded = HeunDiscreteScheduler.from_config(json.loads((tmp_path / "scheduler_config.json").read_text()))
    assert torch.equal(loaded.alphas_cumprod, training.alphas_cumprod[:993])
    assert loaded.config.prediction_type == "v_prediction" and loaded.config.clip_sample is False
    loaded.set_timesteps(15)
    assert loaded.sigmas[0] <= SAMPLING_MAX_SIGMA  # the first step starts at sigma 92, not 20291


@pytest.mark.parametrize("stage", ["keyframes", "interpolation", "spatiotemporal_sr", "spatial_sr"])
def test_the_shipped_demo_samples_on_its_recipes_schedule(stage):
    shipped = json.loads((DEMO_MODEL / stage / "scheduler" / "scheduler_config.json").read_text())
    training = DDPMScheduler(  # the demo recipes' training.noise_scheduler, with the stage's prediction type
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=shipped["prediction_type"],
    )
    expected = json.loads(sampling_scheduler("dpm_solver", training).to_json_string())
    assert {k: v for k, v in shipped.items() if not k.startswith("_")} == {
        k: v for k, v in expected.items() if not k.startswith("_")
    }


@pytest.mark.parametrize(
    "alphas_cumprod, max_sigma, message",
    [
        (torch.ones(2, 3), 100.0, "`alphas_cumprod` must be a non-empty 1-D non-increasing schedule"),
        (torch.tensor([0.5, 0.9]), 100.0, "`alphas_cumprod` must be a non-empty 1-D non-increasing schedule"),
        (torch.tensor([0.9, 0.5]), 0.0, r"`max_sigma` must be > 0, got 0.0"),
        (torch.tensor([0.9, 0.5]), 0.1, r"`max_sigma` \(0.1\) is below the schedule's lowest noise level"),
    ],
)
def test_bad_schedules_are_refused_naming_the_argument(alphas_cumprod, max_sigma, message):
    with pytest.raises(ValueError, match=message):
        sampling_levels(alphas_cumprod, max_sigma)


def test_a_noise_scheduler_without_a_schedule_is_refused():
    with pytest.raises(
        ValueError, match="`noise_scheduler` must be a diffusers scheduler with `alphas_cumprod`"
    ):
        sampling_scheduler("dpm_solver", DPMSolverMultistepScheduler().config)
