"""The call arguments every stage takes from diffusers' video pipelines (issue 26, part 5): their effect on a
tiny keyframes pipeline, and their refusal before any model runs."""

import pytest
import torch

from cascade import KeyframesPipeline
from cascade.testing.tiny_models import tiny_keyframes_components


def make_pipeline():
    pipe = KeyframesPipeline(**tiny_keyframes_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return make_pipeline()


def generate(pipe, **kwargs):
    kwargs = {"num_frames": 3, "num_inference_steps": 3, "output_type": "pt", **kwargs}
    return pipe("a red circle", generator=torch.Generator().manual_seed(0), **kwargs).frames


def count_unet_calls(pipe) -> list:
    """A list that gains an entry per UNet forward of ``pipe``."""
    calls = []
    pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    return calls


def test_eta_above_zero_under_ddim_changes_the_sample_and_zero_is_the_default(pipe):
    default = generate(pipe)
    torch.testing.assert_close(generate(pipe, eta=0.0), default, rtol=0, atol=0)
    assert (generate(pipe, eta=1.0) - default).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [("eta", 1.5, r"in \[0.0, 1.0\]"), ("eta", -0.1, r"in \[0.0, 1.0\]"), ("eta", "0.5", r"in \[0.0, 1.0\]")],
)
def test_a_bad_argument_is_refused_by_name_before_any_model_runs(name, value, allowed):
    pipe = make_pipeline()
    calls = count_unet_calls(pipe)
    with pytest.raises(ValueError, match=rf"`{name}` must be .*{allowed}.*got {value!r}"):
        generate(pipe, **{name: value})
    assert not calls
