"""A ControlNet's residuals in VideoUNet.forward (issue 17, part 1): per-frame residuals of a 2D ControlNet,
given as video tensors, reach the 2D UNet as diffusers' UNet2DConditionModel takes them."""

import pytest
import torch
from diffusers import ControlNetModel

from cascade import inflate
from cascade.ops.frames import fold_frames, unfold_frames
from cascade.testing.tiny_models import TEXT_DIM, tiny_unet2d

BATCH, FRAMES = 2, 3


@pytest.fixture(scope="module")
def models():
    unet = tiny_unet2d("sd15", sample_size=8).eval()
    return unet, inflate(unet).eval(), ControlNetModel.from_unet(unet).eval()


def inputs():
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(BATCH, 4, FRAMES, 8, 8, generator=generator)  # (B, C, F, h, w)
    text = torch.randn(BATCH, 5, TEXT_DIM, generator=generator)  # (B, L, D)
    control = torch.rand(BATCH, 3, FRAMES, 64, 64, generator=generator)  # (B, 3, F, H, W): 8x the latents
    return sample, text, control


@torch.no_grad()
def test_per_frame_residuals_give_what_the_2d_unet_gives_on_each_frame(models):
    unet, video_unet, controlnet = models
    sample, text, control = inputs()
    frames_text = text.repeat_interleave(FRAMES, dim=0)  # (B*F, L, D)
    down, mid = controlnet(
        fold_frames(sample), 10, frames_text, controlnet_cond=fold_frames(control), return_dict=False
    )  # each (B*F, C_i, h_i, w_i)
    down = [
        residual * 5 for residual in down
    ]  # a ControlNet made from the UNet starts at zero: make it count
    mid = mid * 5 + 1
    expected = unet(
        fold_frames(sample),
        10,
        frames_text,
        down_block_additional_residuals=down,
        mid_block_additional_residual=mid,
    ).sample  # (B*F, C, h, w)
    # identity temporal layers: the video UNet is the 2D UNet on each frame
    actual = video_unet(
        sample,
        10,
        text,
        down_block_additional_residuals=tuple(unfold_frames(residual, BATCH) for residual in down),
        mid_block_additional_residual=unfold_frames(mid, BATCH),
    ).sample  # (B, C, F, h, w)
    torch.testing.assert_close(actual, unfold_frames(expected, BATCH), atol=1e-5, rtol=1e-5)
    plain = video_unet(sample, 10, text).sample
    assert (actual - plain).abs().max() > 1e-2


@torch.no_grad()
def test_zero_residuals_leave_the_output_as_without_them(models):
    _, video_unet, controlnet = models
    sample, text, control = inputs()
    down, mid = controlnet(
        fold_frames(sample),
        10,
        text.repeat_interleave(FRAMES, dim=0),
        controlnet_cond=fold_frames(control),
        return_dict=False,
    )
    zeros = tuple(torch.zeros_like(unfold_frames(residual, BATCH)) for residual in down)
    output = video_unet(
        sample,
        10,
        text,
        down_block_additional_residuals=zeros,
        mid_block_additional_residual=torch.zeros_like(unfold_frames(mid, BATCH)),
    ).sample
    assert torch.equal(output, video_unet(sample, 10, text).sample)


@pytest.mark.parametrize(
    "name, value",
    [
        ("mid_block_additional_residual", torch.zeros(BATCH * FRAMES, 8, 2, 2)),  # frames folded: not a video
        ("mid_block_additional_residual", torch.zeros(BATCH, 8, FRAMES + 1, 2, 2)),
        ("down_block_additional_residuals", (torch.zeros(BATCH + 1, 8, FRAMES, 8, 8),)),
    ],
)
def test_residuals_that_are_not_videos_of_the_sample_are_refused_by_name(models, name, value):
    _, video_unet, _ = models
    sample, text, _ = inputs()
    with pytest.raises(
        ValueError, match=rf"`{name}` must be video tensors \(B={BATCH}, C, F={FRAMES}, H, W\)"
    ):
        video_unet(sample, 10, text, **{name: value})
