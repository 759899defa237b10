"""Custom ``timesteps`` and ``sigmas`` on every stage call (diffusers' ``retrieve_timesteps`` convention)."""

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from test_keyframes_pipeline import make_pipeline  # noqa: F401 (conftest's pixel_pipe builds with it)

PROMPT = "a red circle moving left"


def generate(pipe, **kwargs):
    kwargs = {"num_frames": 3, "output_type": "latent", **kwargs}
    return pipe(PROMPT, generator=torch.Generator().manual_seed(0), **kwargs).frames


@pytest.mark.parametrize(
    "scheduler_class, name", [(DPMSolverMultistepScheduler, "timesteps"), (EulerDiscreteScheduler, "sigmas")]
)
def test_the_schedulers_own_schedule_given_by_hand_gives_the_same_video(pixel_pipe, scheduler_class, name):
    pixel_pipe.scheduler = scheduler_class.from_config(pixel_pipe.scheduler.config)
    pixel_pipe.scheduler.set_timesteps(4)
    schedule = (
        pixel_pipe.scheduler.timesteps if name == "timesteps" else pixel_pipe.scheduler.sigmas
    ).tolist()
    steps = []
    by_hand = generate(
        pixel_pipe,
        num_inference_steps=25,  # ignored: the schedule's length counts
        callback_on_step_end=lambda p, i, t, tensors: steps.append(float(t)) or {},
        **{name: [int(v) for v in schedule] if name == "timesteps" else schedule},
    )
    # sigmas are mapped back to timesteps by interpolation in log sigma: equal to float32 rounding
    reference = generate(pixel_pipe, num_inference_steps=4)
    tolerance = 0 if name == "timesteps" else 1e-4 * reference.abs().max().item()
    torch.testing.assert_close(by_hand, reference, rtol=0, atol=tolerance)
    assert len(steps) == 4


def test_another_schedule_changes_the_video_and_runs_its_timesteps(pixel_pipe):
    pixel_pipe.scheduler = DPMSolverMultistepScheduler.from_config(pixel_pipe.scheduler.config)
    seen = []
    video = generate(
        pixel_pipe,
        timesteps=[999, 700, 300, 50],
        callback_on_step_end=lambda p, i, t, x: seen.append(int(t)) or {},
    )
    assert seen == [999, 700, 300, 50]
    assert (video - generate(pixel_pipe, num_inference_steps=4)).abs().max() > 1e-4


@pytest.mark.parametrize(
    "scheduler_class, overrides, message",
    [
        (DPMSolverMultistepScheduler, {"timesteps": [999, 500], "sigmas": [3.0, 1.0]}, "not both"),
        (
            DPMSolverMultistepScheduler,
            {"timesteps": [500, 999]},
            "`timesteps` must be a non-empty strictly decreasing",
        ),
        (DPMSolverMultistepScheduler, {"timesteps": [1000, 5]}, r"ints in \[0, 1000\)"),
        (DPMSolverMultistepScheduler, {"timesteps": [900.5, 5]}, "`timesteps`"),
        (DPMSolverMultistepScheduler, {"timesteps": []}, "non-empty"),
        (DPMSolverMultistepScheduler, {"timesteps": "999,500"}, "`timesteps`"),
        (EulerDiscreteScheduler, {"sigmas": [3.0, -1.0]}, r"`sigmas` must .* numbers >= 0"),
        (DDIMScheduler, {"timesteps": [999, 500]}, "DDIMScheduler takes no custom timesteps"),
        (
            UniPCMultistepScheduler,
            {"sigmas": [3.0, 1.0]},
            "UniPCMultistepScheduler refused them: .*use_flow_sigmas",
        ),
        (
            DPMSolverMultistepScheduler,
            {"sigmas": [3.0, 1.0]},
            "DPMSolverMultistepScheduler takes no custom sigmas",
        ),
    ],
)
def test_a_bad_schedule_is_refused_before_any_model_runs(pixel_pipe, scheduler_class, overrides, message):
    pixel_pipe.scheduler = scheduler_class.from_config(pixel_pipe.scheduler.config)

    def fail(*args, **kwargs):
        raise AssertionError("a model ran before the input was checked")

    handles = [m.register_forward_pre_hook(fail) for m in (pixel_pipe.unet, pixel_pipe.text_encoder)]
    try:
        with pytest.raises(ValueError, match=message):
            generate(pixel_pipe, **overrides)
    finally:
        for handle in handles:
            handle.remove()
