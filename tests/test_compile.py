"""torch.compile of VideoUNet (issue 19, part 2): the forward traces as one graph, with no graph break, for every
kind of stage UNet (keyframes, conditioning channels, a noise-level class label, ControlNet residuals); compiled
with fullgraph=True it gives the eager output (slow: inductor takes about two minutes on 2 cores)."""

import pytest
import torch
from torch._dynamo import explain

from cascade import inflate
from cascade.testing.tiny_models import TEXT_DIM, tiny_unet2d

FRAMES = 4


def keyframes_unet():
    return inflate(tiny_unet2d("sd15", sample_size=8)).eval()


CASES = {
    "keyframes": lambda: (keyframes_unet(), {}),
    "interpolation": lambda: (
        inflate(tiny_unet2d("sd15", sample_size=8), extra_in_channels=5).eval(),
        {"extra_channels": 5},
    ),
    "super_resolution": lambda: (
        inflate(tiny_unet2d("x4_upscaler", sample_size=8, in_channels=7)).eval(),
        {"extra_channels": 3, "class_labels": torch.tensor([20])},
    ),
}


def arguments(unet, extra_channels=0, class_labels=None):
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4 + extra_channels, FRAMES, 8, 8, generator=generator)  # (B, C, F, h, w)
    text = torch.randn(1, 5, TEXT_DIM, generator=generator)  # (B, L, D)
    return (sample, torch.tensor(10), text), {"class_labels": class_labels}


@pytest.mark.parametrize("kind", list(CASES))
def test_the_video_unet_traces_as_one_graph_without_breaks(kind):
    unet, options = CASES[kind]()
    args, kwargs = arguments(unet, **options)
    with torch.no_grad():
        report = explain(unet)(*args, **kwargs)
    assert (report.graph_count, report.graph_break_count) == (1, 0), report.break_reasons


def test_with_controlnet_residuals_it_still_traces_as_one_graph():
    from diffusers import ControlNetModel

    unet = keyframes_unet()
    (sample, timestep, text), _ = arguments(unet)
    with torch.no_grad():
        down, mid = ControlNetModel.from_unet(unet.unet)(
            sample.permute(0, 2, 1, 3, 4).flatten(0, 1),
            timestep,
            text.repeat(FRAMES, 1, 1),
            controlnet_cond=torch.rand(FRAMES, 3, 64, 64),
            return_dict=False,
        )
        as_video = lambda x: x.unflatten(0, (1, FRAMES)).permute(0, 2, 1, 3, 4)  # noqa: E731
        report = explain(unet)(
            sample,
            timestep,
            text,
            down_block_additional_residuals=tuple(as_video(r) for r in down),
            mid_block_additional_residual=as_video(mid),
        )
    assert (report.graph_count, report.graph_break_count) == (1, 0), report.break_reasons


@pytest.mark.slow
def test_compiled_with_fullgraph_it_gives_the_eager_output():
    unet = keyframes_unet()
    args, kwargs = arguments(unet)
    with torch.no_grad():
        compiled = torch.compile(unet, fullgraph=True)(*args, **kwargs).sample
        eager = unet(*args, **kwargs).sample
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
