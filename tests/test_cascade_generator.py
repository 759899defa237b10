"""CascadePipeline takes ``generator`` as diffusers' pipelines do (one, or one per prompt), ``seed`` staying a
shorthand, and forwards sequential CPU offload to every stage."""

import numpy as np
import pytest
import torch

from cascade.testing.tiny_models import fast_tiny_cascade


@pytest.fixture(scope="module")
def cascade():
    return fast_tiny_cascade()


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def test_the_same_generator_state_gives_the_same_video(cascade):
    first = cascade("a red circle", generator=seeded(0)).frames
    assert np.array_equal(cascade("a red circle", generator=seeded(0)).frames, first)
    assert not np.array_equal(cascade("a red circle", generator=seeded(1)).frames, first)
    generator = seeded(0)
    cascade("a red circle", generator=generator)  # the stages drew from it: its state has moved on
    assert not np.array_equal(cascade("a red circle", generator=generator).frames, first)


def test_a_list_gives_each_prompt_its_own_generator(cascade):
    both = cascade(["a red circle", "a blue square"], generator=[seeded(0), seeded(1)]).frames
    for index, (prompt, seed) in enumerate([("a red circle", 0), ("a blue square", 1)]):
        alone = cascade(prompt, generator=seeded(seed)).frames[0]
        np.testing.assert_allclose(both[index], alone, atol=1e-5)  # batched text encoding rounds differently
    assert not np.allclose(both[0], cascade("a red circle", generator=seeded(1)).frames[0], atol=1e-3)


def test_a_stage_seed_still_wins_over_the_generator_for_its_stage(cascade):
    settings = {name: {"seed": index} for index, name in enumerate(cascade.stages)}
    first = cascade("a red circle", generator=seeded(0), stage_kwargs=settings).frames
    assert np.array_equal(cascade("a red circle", generator=seeded(1), stage_kwargs=settings).frames, first)
    del settings["spatial_sr"]["seed"]  # the last stage draws from the generator again
    assert not np.array_equal(
        cascade("a red circle", generator=seeded(1), stage_kwargs=settings).frames, first
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seed": 0, "generator": torch.Generator()}, "Give `seed` or `generator`, not both"),
        ({"generator": 0}, "`generator` must be a torch.Generator or a list of them, got 0"),
        ({"generator": [torch.Generator()] * 2}, "`generator` is a list of 2 generators but the batch has 1"),
    ],
)
def test_bad_generator_arguments_are_refused(cascade, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cascade("a red circle", **kwargs)


def test_sequential_cpu_offload_reaches_every_stage():
    cascade = fast_tiny_cascade()
    cascade.enable_sequential_cpu_offload(device="cpu")  # the hooks are the same on an accelerator
    for stage in cascade.stages.values():
        for model in (stage.unet, stage.text_encoder):
            assert hasattr(model, "_hf_hook")
            assert {parameter.device.type for parameter in model.parameters()} == {"meta"}  # loaded per call


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="accelerate 1.16 fails to offload onto the CPU itself"
)
def test_sequential_cpu_offload_keeps_the_video():
    cascade = fast_tiny_cascade().to("cuda")
    reference = cascade("a red circle", seed=0).frames
    cascade.enable_sequential_cpu_offload()
    np.testing.assert_allclose(cascade("a red circle", seed=0).frames, reference, atol=1e-6)
