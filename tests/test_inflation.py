"""The identity contract and the mechanics of inflated video UNets."""

import copy
import json

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from diffusers.models.transformers.transformer_2d import Transformer2DModel

from cascade import TemporalAttention, TemporalConvolution, VideoUNet, inflate
from cascade.testing.tiny_models import TEXT_DIM, tiny_unet2d


def frame_by_frame(unet, sample, timestep, text, class_labels=None):
    """The 2D UNet applied to each frame of ``sample`` (B, C, F, H, W) on its own."""
    frames = [
        unet(sample[:, :, f], timestep, text, class_labels=class_labels).sample
        for f in range(sample.shape[2])
    ]
    return torch.stack(frames, dim=2)  # (B, C, F, H, W)


def video_inputs(unet, frames, size=16, extra=0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(2, unet.config.in_channels, frames, size, size, generator=generator)
    conditioning = torch.randn(2, extra, frames, size, size, generator=generator)
    text = torch.randn(2, 5, TEXT_DIM, generator=generator)
    labels = torch.tensor([20, 300]) if unet.config.num_class_embeds else None
    return sample, conditioning, text, labels


def perturb_temporal_layers(video_unet, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in video_unet.temporal_parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


@pytest.mark.parametrize("cross", [False, True], ids=["self", "text"])
@pytest.mark.parametrize("kind", ["sd15", "sd2", "x4_upscaler"])
@pytest.mark.parametrize("frames", [1, 2, 7])
def test_inflated_unet_equals_2d_unet_frame_by_frame(kind, frames, cross):
    unet = tiny_unet2d(kind)
    video_unet = inflate(unet, extra_in_channels=3, temporal_cross_attention=cross).eval()
    sample, conditioning, text, labels = video_inputs(unet, frames, extra=3)
    with torch.no_grad():
        expected = frame_by_frame(unet, sample, 500, text, labels)
        actual = video_unet(torch.cat([sample, conditioning], dim=1), 500, text, class_labels=labels).sample
    assert actual.shape == expected.shape == (2, unet.config.out_channels, frames, 16, 16)
    assert (actual - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("frames", [1, 2, 7, 64])
def test_any_frame_count_runs(frames):
    unet = tiny_unet2d("sd15")
    video_unet = inflate(unet).eval()
    perturb_temporal_layers(video_unet)
    sample, _, text, _ = video_inputs(unet, frames, size=8)
    with torch.no_grad():
        output = video_unet(sample, torch.tensor([10, 900]), text).sample
    assert output.shape == sample.shape
    assert torch.isfinite(output).all()


def test_one_frame_video_is_an_image_even_after_training_changed_temporal_attention():
    """Self-attention over one frame returns its value projection; with temporal convolutions off and
    perturbed attention the result is still per-frame, so F = 1 must stay finite and well shaped."""
    unet = tiny_unet2d("sd15")
    video_unet = inflate(unet).eval()
    sample, _, text, _ = video_inputs(unet, 1)
    with torch.no_grad():
        assert (
            video_unet(sample, 3, text).sample - frame_by_frame(unet, sample, 3, text)
        ).abs().max() <= 1e-5


def test_temporal_layers_follow_every_spatial_block_and_act_on_the_output():
    unet = tiny_unet2d("sd15")
    video_unet = inflate(unet).eval()
    resnets = [m for m in unet.modules() if type(m).__name__ == "ResnetBlock2D"]
    attentions = [m for m in unet.modules() if isinstance(m, Transformer2DModel)]
    assert len(video_unet.temporal_convs) == len(resnets)
    assert len(video_unet.temporal_attns) == len(attentions)
    assert all(isinstance(m, TemporalConvolution) for m in video_unet.temporal_convs.values())
    assert all(isinstance(m, TemporalAttention) for m in video_unet.temporal_attns.values())

    sample, _, text, _ = video_inputs(unet, 4)
    with torch.no_grad():
        before = video_unet(sample, 50, text).sample
        perturb_temporal_layers(video_unet)
        after = video_unet(sample, 50, text).sample
        # Frames now interact: changing one frame changes the others' outputs.
        changed = sample.clone()
        changed[:, :, 0] += 1.0
        after_changed = video_unet(changed, 50, text).sample
    assert (after - before).abs().max() > 1e-3
    assert (after_changed[:, :, 1:] - after[:, :, 1:]).abs().max() > 1e-4


@pytest.mark.parametrize(
    ("options", "convs", "attentions"),
    [({"temporal_convolutions": False}, 0, 6), ({"temporal_attention": False}, 12, 0)],
)
def test_temporal_layer_kinds_can_be_switched_off(options, convs, attentions):
    video_unet = inflate(tiny_unet2d("sd15"), **options)
    assert (len(video_unet.temporal_convs), len(video_unet.temporal_attns)) == (convs, attentions)


def test_inflation_keeps_every_2d_weight_and_zero_initialises_extra_channels():
    unet = tiny_unet2d("x4_upscaler")
    video_unet = inflate(unet, extra_in_channels=2)
    original, inflated = unet.state_dict(), video_unet.unet.state_dict()
    assert original.keys() == inflated.keys()
    for key, value in original.items():
        if key == "conv_in.weight":
            assert torch.equal(inflated[key][:, :7], value)
            assert torch.count_nonzero(inflated[key][:, 7:]) == 0
        else:
            assert torch.equal(inflated[key], value), key
    assert video_unet.unet.config.in_channels == 9
    # 4 noisy channels; 3 low-resolution RGB + 2 extra conditioning channels.
    assert (video_unet.in_channels, video_unet.conditioning_channels) == (4, 5)


def test_save_and_load_round_trip_bit_exactly(tmp_path):
    unet = tiny_unet2d("sd2")
    video_unet = inflate(unet, extra_in_channels=1, temporal_cross_attention=True)
    perturb_temporal_layers(video_unet)
    video_unet.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = VideoUNet.from_pretrained(tmp_path)

    def public_config(model):
        return {k: v for k, v in json.loads(model.to_json_string()).items() if not k.startswith("_")}

    assert public_config(loaded) == public_config(video_unet)
    original, reloaded = video_unet.state_dict(), loaded.state_dict()
    assert original.keys() == reloaded.keys()
    assert all(torch.equal(original[k], reloaded[k]) for k in original)
    sample, conditioning, text, _ = video_inputs(unet, 3, extra=1)
    with torch.no_grad():
        inputs = (torch.cat([sample, conditioning], 1), 7, text)
        assert torch.equal(video_unet.eval()(*inputs).sample, loaded.eval()(*inputs).sample)


def test_attention_processors_reach_spatial_and_temporal_attention():
    video_unet = inflate(tiny_unet2d("sd15")).eval()
    perturb_temporal_layers(video_unet)
    processors = video_unet.attn_processors
    temporal = [name for name in processors if name.startswith("temporal_attns.")]
    spatial = [name for name in processors if name.startswith("unet.")]
    assert len(temporal) == 2 * len(video_unet.temporal_attns)  # two self-attentions per motion module
    assert spatial
    sample, _, text, _ = video_inputs(video_unet.unet, 3)
    with torch.no_grad():
        reference = video_unet(sample, 5, text).sample
        video_unet.set_attn_processor(AttnProcessor())
        assert all(type(p) is AttnProcessor for p in video_unet.attn_processors.values())
        classic = video_unet(sample, 5, text).sample
    assert all(type(p) is AttnProcessor2_0 for p in processors.values())
    assert (classic - reference).abs().max() <= 1e-5


def test_xformers_request_reaches_the_model_and_fails_clearly_without_cuda():
    video_unet = inflate(tiny_unet2d("sd15"))
    if torch.cuda.is_available():
        pytest.skip("this checks the CPU-only failure")
    with pytest.raises((ValueError, ModuleNotFoundError), match="(?i)xformers|cuda|gpu"):
        video_unet.enable_xformers_memory_efficient_attention()


@pytest.mark.parametrize("cross", [False, True], ids=["self", "text"])
def test_gradient_checkpointing_recomputes_temporal_layers_with_equal_gradients(cross):
    unet = tiny_unet2d("sd15")
    sample, _, text, _ = video_inputs(unet, 3, size=8)

    def gradients(checkpointing):
        torch.manual_seed(0)
        video_unet = inflate(unet, temporal_cross_attention=cross).train()
        perturb_temporal_layers(video_unet)
        calls = {"n": 0}
        layer = video_unet.temporal_attns["mid_block_attentions_0"]
        original = layer._temporal_forward

        def counting(*args):
            calls["n"] += 1
            return original(*args)

        layer._temporal_forward = counting
        if checkpointing:
            video_unet.enable_gradient_checkpointing()
        video_unet(sample, 10, text).sample.square().mean().backward()
        return {n: p.grad for n, p in video_unet.named_parameters()}, calls["n"]

    plain, plain_calls = gradients(False)
    checkpointed, checkpointed_calls = gradients(True)
    assert (plain_calls, checkpointed_calls) == (1, 2)
    for name, grad in plain.items():
        assert torch.allclose(grad, checkpointed[name], atol=1e-6), name


def test_temporal_cross_attention_carries_the_text_where_spatial_attention_does_not():
    # With the spatial cross-attention silenced, the text can reach the output only through the temporal
    # layers: it does with temporal_cross_attention, and does not without.
    unet = tiny_unet2d("sd15")
    sample, _, text, _ = video_inputs(unet, 4, size=8)
    other_text = text.flip(0)
    changes = {}
    for cross in (False, True):
        video_unet = inflate(unet, temporal_cross_attention=cross).eval()
        perturb_temporal_layers(video_unet)
        with torch.no_grad():
            for name, module in video_unet.unet.named_modules():
                if name.endswith("attn2") and module.is_cross_attention:
                    module.to_out[0].weight.zero_()
                    module.to_out[0].bias.zero_()
            changes[cross] = (
                (video_unet(sample, 10, text).sample - video_unet(sample, 10, other_text).sample).abs().max()
            )
    assert changes[False] == 0
    assert changes[True] > 1e-3
    trainable_text = text.clone().requires_grad_(True)
    video_unet(
        sample, 10, trainable_text * 2
    ).sample.sum().backward()  # non-leaf text, as a trained encoder's
    copied = copy.deepcopy(video_unet)  # keeps no reference to a call's text (EMA exports deep-copy)
    with torch.no_grad():
        assert torch.equal(copied(sample, 10, text).sample, video_unet(sample, 10, text).sample)
    layer = TemporalAttention(32, 4, 16, cross_attention_dim=TEXT_DIM)
    with pytest.raises(ValueError, match="attends to the text: pass `text`"):
        layer(torch.randn(4, 32, 2, 2), 2)
    with pytest.raises(ValueError, match="`cross_attention_dim` must be None or a positive int"):
        TemporalAttention(32, 4, 16, cross_attention_dim=0)


def test_freezing_spatial_layers_trains_only_temporal_ones():
    unet = tiny_unet2d("sd15")
    video_unet = inflate(unet, extra_in_channels=2).train()
    video_unet.freeze_spatial_layers()
    trainable = {n for n, p in video_unet.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("temporal_convs.", "temporal_attns.")) for n in trainable)
    assert trainable == {n for n, p in video_unet.named_parameters() if not n.startswith("unet.")}

    optimizer = torch.optim.SGD([p for p in video_unet.parameters() if p.requires_grad], lr=0.1)
    spatial_before = {k: v.clone() for k, v in video_unet.unet.state_dict().items()}
    sample, conditioning, text, _ = video_inputs(unet, 2, size=8, extra=2)
    video_unet(torch.cat([sample, conditioning], 1), 10, text).sample.square().mean().backward()
    optimizer.step()
    assert all(torch.equal(v, spatial_before[k]) for k, v in video_unet.unet.state_dict().items())
    assert not all(
        torch.equal(a, b)
        for a, b in zip(video_unet.temporal_parameters(), inflate(unet).temporal_parameters(), strict=True)
    )

    video_unet.freeze_spatial_layers(train_conv_in=True)
    assert video_unet.unet.conv_in.weight.requires_grad


def test_per_frame_timesteps_and_class_labels_match_per_frame_2d_calls():
    unet = tiny_unet2d("x4_upscaler")
    video_unet = inflate(unet).eval()
    sample, _, text, _ = video_inputs(unet, 3)
    timesteps = torch.tensor([[1, 500, 999], [20, 30, 40]])
    labels = torch.tensor([[0, 100, 350], [5, 6, 7]])
    with torch.no_grad():
        actual = video_unet(sample, timesteps, text, class_labels=labels).sample
        expected = torch.stack(
            [
                unet(sample[:, :, f], timesteps[:, f], text, class_labels=labels[:, f]).sample
                for f in range(3)
            ],
            2,
        )
    assert (actual - expected).abs().max() <= 1e-5


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"extra_in_channels": -1}, "extra_in_channels"),
        ({"temporal_attention_heads": 7}, "num_attention_heads"),
        ({"frames": 8}, "Unknown inflation option"),
        ({"temporal_attention": "yes"}, "temporal_attention"),
        ({"temporal_cross_attention": 1}, "temporal_cross_attention"),
        (
            {"temporal_cross_attention": True, "temporal_attention_placement": "animatediff"},
            "needs temporal_attention_placement='attentions'",
        ),
    ],
)
def test_bad_inflation_options_are_rejected(options, match):
    with pytest.raises(ValueError, match=match):
        inflate(tiny_unet2d("sd15"), **options)


def test_bad_model_inputs_are_rejected():
    unet = tiny_unet2d("sd15")
    video_unet = inflate(unet)
    sample, _, text, _ = video_inputs(unet, 2)
    with pytest.raises(ValueError, match="`unet` must be a diffusers UNet2DConditionModel, got Linear"):
        inflate(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"`sample` must be a tensor of shape \(B, C, F, H, W\)"):
        video_unet(sample[:, :, 0], 1, text)
    with pytest.raises(ValueError, match="`sample` must have 4 channels"):
        video_unet(sample[:, :3], 1, text)
    with pytest.raises(ValueError, match="`encoder_hidden_states` must have batch size 2"):
        video_unet(sample, 1, text[:1])
    with pytest.raises(ValueError, match="`encoder_hidden_states` must be a tensor of shape"):
        video_unet(sample, 1, text[0])


def test_alternating_frame_counts_each_run_as_on_a_fresh_model():
    """The frame count is the call's (held by the VideoUNet for it), not left over from an earlier call."""
    unet = tiny_unet2d("sd15")
    video_unet = inflate(unet).eval()
    perturb_temporal_layers(video_unet)
    fresh = copy.deepcopy(video_unet)
    short, _, text, _ = video_inputs(unet, 2, size=8, seed=1)
    long, _, _, _ = video_inputs(unet, 5, size=8, seed=2)
    with torch.no_grad():
        expected = {2: fresh(short, 10, text).sample, 5: copy.deepcopy(video_unet)(long, 10, text).sample}
        for frames, sample in [(5, long), (2, short), (5, long), (2, short)]:
            assert torch.equal(video_unet(sample, 10, text).sample, expected[frames])


def test_compiles_as_one_graph_and_computes_what_eager_does():
    """``torch.compile(fullgraph=True)`` fails on any graph break; the eager backend traces without codegen."""
    video_unet = inflate(tiny_unet2d("sd15", sample_size=8), temporal_cross_attention=True).eval()
    perturb_temporal_layers(video_unet)
    sample, _, text, _ = video_inputs(video_unet.unet, 3, size=8)
    compiled = torch.compile(video_unet, backend="eager", fullgraph=True)
    with torch.no_grad():
        assert torch.equal(compiled(sample, 10, text).sample, video_unet(sample, 10, text).sample)
