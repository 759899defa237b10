"""swap_spatial_weights (issue 17, item 4): a fine-tuned 2D model's weights go under trained temporal layers:
the result is the fine-tuned model inflated with the video model's temporal layers, the conditioning channels of
``conv_in`` kept, and a UNet of another layout refused before any weight changes. At the SD 1.5 config (random
weights) in the slow run."""

import gc

import pytest
import torch
from diffusers import UNet2DConditionModel

from cascade.models import inflate, swap_spatial_weights
from cascade.testing.reference_configs import SD15_UNET
from cascade.testing.tiny_models import tiny_unet2d


def trained_video_unet(base: UNet2DConditionModel, extra_in_channels: int = 0, seed: int = 1):
    """``base`` inflated, its temporal layers and conv_in's extra channels moved off the identity as training
    would move them."""
    video = inflate(base, temporal_cross_attention=True, extra_in_channels=extra_in_channels)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in video.temporal_parameters():
            parameter += 0.05 * torch.randn(parameter.shape, generator=generator)
        if extra_in_channels:
            video.unet.conv_in.weight[:, -extra_in_channels:] += 0.1
    return video.eval()


def state(module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


@pytest.mark.parametrize("extra", [0, 2])
@torch.no_grad()
def test_swapped_model_is_the_fine_tune_inflated_with_the_trained_temporal_layers(extra):
    base, fine_tuned = tiny_unet2d(seed=0), tiny_unet2d(seed=5)
    video = trained_video_unet(base, extra)
    temporal, conv_in = state(video.temporal_convs), video.unet.conv_in.weight.clone()
    temporal_attention = state(video.temporal_attns)
    assert swap_spatial_weights(video, fine_tuned) is video

    expected = inflate(fine_tuned, temporal_cross_attention=True, extra_in_channels=extra).eval()
    expected.temporal_convs.load_state_dict(temporal)
    expected.temporal_attns.load_state_dict(temporal_attention)
    if extra:  # inflation gives the fine-tune's conv_in and zeros for the extra channels
        expected.unet.conv_in.weight[:, -extra:] = conv_in[:, -extra:]
    for name, value in state(expected).items():
        assert torch.equal(video.state_dict()[name], value), name
    sample = torch.randn(
        2, 4 + extra, 3, 16, 16, generator=torch.Generator().manual_seed(0)
    )  # (B, C, F, h, w)
    text = torch.randn(2, 5, fine_tuned.config.cross_attention_dim)  # (B, L, D)
    torch.testing.assert_close(video(sample, 300, text).sample, expected(sample, 300, text).sample)
    assert torch.equal(video.unet.conv_in.weight[:, 4:], conv_in[:, 4:])  # the conditioning channels stay


def test_a_state_dict_swaps_like_the_model():
    fine_tuned = tiny_unet2d(seed=5)
    from_model = swap_spatial_weights(trained_video_unet(tiny_unet2d(seed=0)), fine_tuned)
    from_state = swap_spatial_weights(trained_video_unet(tiny_unet2d(seed=0)), fine_tuned.state_dict())
    assert all(
        torch.equal(a, b) for a, b in zip(state(from_model).values(), state(from_state).values(), strict=True)
    )


@pytest.mark.parametrize(
    "other,message",
    [
        (
            lambda: tiny_unet2d(cross_attention_dim=24),
            r"of another shape than the 2D UNet's, first '.*attn2\.to_k",
        ),
        (lambda: tiny_unet2d(layers_per_block=1), r"missing \(first .*\), 0 unexpected|unexpected"),
        (lambda: {"conv_in.weight": torch.zeros(1)}, "does not have the 2D UNet's weights"),
        (lambda: "unet.safetensors", "`spatial` must be a UNet2DConditionModel or its state dict, got str"),
    ],
)
def test_another_layout_is_refused_before_any_weight_changes(other, message):
    video = trained_video_unet(tiny_unet2d(seed=0))
    before = state(video)
    with pytest.raises(ValueError, match=message):
        swap_spatial_weights(video, other())
    assert all(torch.equal(value, video.state_dict()[name]) for name, value in before.items())


def test_a_2d_unet_as_video_unet_is_refused():
    with pytest.raises(ValueError, match="`video_unet` must be a VideoUNet, got UNet2DConditionModel"):
        swap_spatial_weights(tiny_unet2d(), tiny_unet2d())


@pytest.mark.slow
@torch.no_grad()
def test_swap_at_the_sd15_config():
    """Random SD 1.5-size weights: every 2D weight is the fine-tune's, every temporal weight stays."""
    torch.manual_seed(0)
    video = inflate(UNet2DConditionModel(**SD15_UNET))
    temporal = state(video.temporal_convs) | {f"a.{k}": v for k, v in state(video.temporal_attns).items()}
    gc.collect()
    torch.manual_seed(1)
    fine_tuned = UNet2DConditionModel(**SD15_UNET)
    swap_spatial_weights(video, fine_tuned)
    spatial = video.unet.state_dict()
    assert all(torch.equal(spatial[name], value) for name, value in fine_tuned.state_dict().items())
    after = state(video.temporal_convs) | {f"a.{k}": v for k, v in state(video.temporal_attns).items()}
    assert after.keys() == temporal.keys() and all(torch.equal(after[k], temporal[k]) for k in temporal)
