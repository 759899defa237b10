"""AnimateDiff (Guo et al. 2023) motion modules loaded into an inflated UNet match diffusers' UNetMotionModel."""

import pytest
import torch
from diffusers import MotionAdapter, UNetMotionModel
from diffusers.models.embeddings import SinusoidalPositionalEmbedding

from cascade import FramePositions, inflate
from cascade.models.motion_adapter import load_motion_adapter
from cascade.testing.tiny_models import TEXT_DIM, tiny_unet2d


def tiny_adapter(seed=0, **overrides):
    """A random MotionAdapter for ``tiny_unet2d("sd15")``; every weight (norms and biases too) perturbed."""
    torch.manual_seed(seed)
    options = dict(block_out_channels=(32, 64), motion_layers_per_block=2, motion_norm_num_groups=32)
    adapter = MotionAdapter(**{**options, **overrides}).eval()
    with torch.no_grad():
        for parameter in adapter.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return adapter


def inputs(frames, size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(2, 4, frames, size, size, generator=generator)  # (B, C, F, H, W)
    text = torch.randn(2, 5, TEXT_DIM, generator=generator)  # (B, L, D)
    return sample, text


def motion_unet(unet, adapter, frames):
    """diffusers' reference: UNetMotionModel takes (B, C, F, H, W) and text repeated per frame (B*F, L, D)."""
    model = UNetMotionModel.from_unet2d(unet, adapter).eval()
    return lambda sample, t, text: model(sample, t, text.repeat_interleave(frames, dim=0)).sample


def animatediff_video_unet(unet, adapter):
    video_unet = inflate(unet, temporal_convolutions=False, temporal_attention_placement="animatediff")
    return load_motion_adapter(video_unet, adapter).eval()


def test_frame_positions_equal_diffusers_sinusoidal_table():
    table = SinusoidalPositionalEmbedding(64, max_seq_length=32).pe  # (1, 32, 64)
    assert torch.allclose(FramePositions(64)(torch.zeros(1, 32, 64)), table, atol=1e-6, rtol=0)


def test_animatediff_placement_follows_every_resnet_of_attention_free_blocks_and_stays_identity():
    unet = tiny_unet2d("sd15")
    video_unet = inflate(unet, temporal_attention_placement="animatediff").eval()
    assert sorted(video_unet.temporal_attns) == sorted(
        ["down_blocks_0_attentions_0", "down_blocks_0_attentions_1"]
        + ["down_blocks_1_resnets_0", "down_blocks_1_resnets_1", "mid_block_attentions_0"]
        + [f"up_blocks_0_resnets_{j}" for j in range(3)]
        + [f"up_blocks_1_attentions_{j}" for j in range(3)]
    )
    assert sorted(inflate(unet).temporal_attns) == sorted(
        name for name in video_unet.temporal_attns if "attentions" in name
    )
    sample, text = inputs(3)
    with torch.no_grad():
        expected = torch.stack([unet(sample[:, :, f], 7, text).sample for f in range(3)], dim=2)
        assert (video_unet(sample, 7, text).sample - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("use_motion_mid_block", [True, False])
def test_loaded_adapter_matches_unet_motion_model(use_motion_mid_block):
    unet = tiny_unet2d("sd15")
    adapter = tiny_adapter(use_motion_mid_block=use_motion_mid_block)
    video_unet = animatediff_video_unet(unet, adapter)
    sample, text = inputs(8)
    with torch.no_grad():
        expected = motion_unet(unet, adapter, 8)(sample, 300, text)
        actual = video_unet(sample, 300, text).sample
    assert actual.shape == expected.shape == (2, 4, 8, 8, 8)
    assert (actual - expected).abs().max() <= 1e-4
    # The motion modules do act: without them the output differs.
    with torch.no_grad():
        plain = inflate(unet, temporal_convolutions=False).eval()(sample, 300, text).sample
    assert (plain - expected).abs().max() > 1e-2


def test_more_frames_than_the_adapter_table_runs_and_extends_it_sinusoidally():
    """F = 40 > 32: diffusers' table ends there; ours computes positions, equal to a longer table's."""
    unet = tiny_unet2d("sd15")
    adapter = tiny_adapter()
    video_unet = animatediff_video_unet(unet, adapter)
    sample, text = inputs(40, size=8)
    with torch.no_grad():
        actual = video_unet(sample, 300, text).sample
        assert actual.shape == sample.shape and torch.isfinite(actual).all()
        with pytest.raises(RuntimeError):
            motion_unet(unet, adapter, 40)(sample, 300, text)
        longer = MotionAdapter.from_config(adapter.config, motion_max_seq_length=64)
        longer.load_state_dict(
            {k: v for k, v in adapter.state_dict().items() if not k.endswith("pe")}, strict=False
        )
        expected = motion_unet(unet, longer, 40)(sample, 300, text)
    assert (actual - expected).abs().max() <= 1e-4


def test_adapter_weights_land_only_in_temporal_attention():
    unet = tiny_unet2d("sd15")
    adapter = tiny_adapter()
    video_unet = animatediff_video_unet(unet, adapter)
    assert all(torch.equal(v, unet.state_dict()[k]) for k, v in video_unet.unet.state_dict().items())
    loaded = video_unet.temporal_attns["up_blocks_0_resnets_2"].state_dict()
    source = adapter.up_blocks[0].motion_modules[2].state_dict()
    assert loaded.keys() == {k for k in source if not k.endswith("pos_embed.pe")}
    assert all(torch.equal(loaded[k], source[k]) for k in loaded)


@pytest.mark.parametrize(
    ("inflation", "adapter_options", "match"),
    [
        ({}, {}, r"no temporal attention `down_blocks_1_resnets_0`.*placement='animatediff'"),
        (
            {"temporal_attention": False, "temporal_attention_placement": "animatediff"},
            {},
            "temporal_attention=True",
        ),
        (
            {"temporal_attention_placement": "animatediff"},
            {"block_out_channels": (32, 32)},
            "block_out_channels",
        ),
        ({"temporal_attention_placement": "animatediff"}, {"motion_layers_per_block": 1}, "1 motion modules"),
        ({"temporal_attention_placement": "animatediff", "temporal_attention_heads": 4}, {}, "heads=8"),
        (
            {"temporal_attention_placement": "animatediff"},
            {"motion_transformer_layers_per_block": 2},
            "temporal_attention_layers=2",
        ),
        ({"temporal_attention_placement": "animatediff"}, {"conv_in_channels": 9}, "PIA"),
    ],
)
def test_mismatched_adapters_are_rejected_before_any_weight_is_copied(inflation, adapter_options, match):
    video_unet = inflate(tiny_unet2d("sd15"), temporal_convolutions=False, **inflation)
    before = {k: v.clone() for k, v in video_unet.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        load_motion_adapter(video_unet, tiny_adapter(**adapter_options))
    assert all(torch.equal(v, before[k]) for k, v in video_unet.state_dict().items())


def test_bad_arguments_are_rejected():
    unet = tiny_unet2d("sd15")
    with pytest.raises(
        ValueError, match="`temporal_attention_placement` must be 'attentions' or 'animatediff'"
    ):
        inflate(unet, temporal_attention_placement="resnets")
    video_unet = inflate(unet, temporal_attention_placement="animatediff")
    with pytest.raises(ValueError, match="`adapter` must be a diffusers MotionAdapter, got dict"):
        load_motion_adapter(video_unet, {})
    with pytest.raises(ValueError, match="`video_unet` must be a cascade VideoUNet"):
        load_motion_adapter(unet, tiny_adapter())
    adapter = tiny_adapter()
    adapter.mid_block.motion_modules[0].transformer_blocks[0].pos_embed.pe.mul_(2)
    with pytest.raises(ValueError, match=r"position table `mid_block.motion_modules.0.*pos_embed.pe`"):
        load_motion_adapter(video_unet, adapter)
