"""The identity contract at real size: the Stable Diffusion 1.5 and x4-upscaler UNets, random weights."""

import gc

import pytest
import torch
from diffusers import UNet2DConditionModel

from cascade import inflate
from cascade.testing.reference_configs import SD15_UNET, X4_UPSCALER_UNET


def test_sd15_config_builds_the_published_parameter_count():
    """A check of the transcribed config: SD 1.5's UNet has 859,520,964 parameters."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "attentions"),
    [(SD15_UNET, 16), (X4_UPSCALER_UNET, 16)],
    ids=["sd15", "x4_upscaler"],
)
def test_inflated_real_size_unet_equals_2d_unet_frame_by_frame(config, attentions):
    """Random full-size weights give outputs of scale ~1, so the 1e-5 absolute bound is as strict as
    on the tiny models."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**config).eval()
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, config["in_channels"], 2, 16, 16, generator=generator)  # (B, C, F, h, w)
    text = torch.randn(1, 7, config["cross_attention_dim"], generator=generator)  # (B, L, D)
    labels = torch.tensor([20]) if config.get("num_class_embeds") else None  # noise level
    with torch.no_grad():
        expected = torch.stack(
            [unet(sample[:, :, f], 500, text, class_labels=labels).sample for f in range(2)], dim=2
        )  # (B, 4, F, h, w)
        video_unet = inflate(unet).eval()
        del unet
        gc.collect()
        actual = video_unet(sample, 500, text, class_labels=labels).sample
    resnets = sum(1 for m in video_unet.unet.modules() if type(m).__name__ == "ResnetBlock2D")
    assert (len(video_unet.temporal_convs), len(video_unet.temporal_attns)) == (resnets, attentions)
    assert actual.shape == expected.shape == (1, 4, 2, 16, 16)
    assert expected.abs().max() > 0.1
    assert (actual - expected).abs().max() <= 1e-5
