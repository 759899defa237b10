"""Stable Diffusion 1.5 LoRAs (Hu et al. 2021) load into the keyframes pipeline's spatial layers and text encoder."""

import copy

import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers

from cascade import KeyframesPipeline, inflate
from cascade.ops.text import encode_text
from cascade.testing.tiny_models import TEXT_DIM, tiny_text_encoder, tiny_tokenizer, tiny_unet2d

peft = pytest.importorskip("peft")
CPU = torch.device("cpu")
PROMPTS = ["a red square", "two circles"]


def add_random_lora(model, target_modules, seed):
    """Injects a rank-4 LoRA (alpha 8) with random, non-zero ``lora_B`` into ``model``; returns its
    diffusers-format state dict and its config."""
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=target_modules)
    peft.inject_adapter_in_model(config, model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    return convert_state_dict_to_diffusers(peft.utils.get_peft_model_state_dict(model)), config.to_dict()


def keyframes_pipeline():
    """A pipeline around the inflated ``tiny_unet2d("sd15")`` with ``tiny_text_encoder()``, no LoRA."""
    return KeyframesPipeline(
        unet=inflate(tiny_unet2d("sd15", sample_size=8)),
        scheduler=DDIMScheduler(num_train_timesteps=1000),
        text_encoder=tiny_text_encoder(),
        tokenizer=tiny_tokenizer(),
    )


def video_inputs(frames=3):
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, frames, 8, 8, generator=generator)  # (B, C, F, H, W)
    text = torch.randn(2, 5, TEXT_DIM, generator=generator)  # (B, L, D)
    return sample, 400, text


@pytest.fixture(scope="module")
def lora(tmp_path_factory):
    """SD 1.5-format LoRA files (UNet only, and UNet + text encoder) and the 2D models carrying that LoRA."""
    unet, text_encoder = tiny_unet2d("sd15", sample_size=8), tiny_text_encoder()
    unet_lora, unet_config = add_random_lora(unet, ["to_q", "to_k", "to_v", "to_out.0"], seed=1)
    text_lora, text_config = add_random_lora(text_encoder, ["q_proj", "k_proj", "v_proj", "out_proj"], seed=2)
    folders = {"unet": tmp_path_factory.mktemp("unet_lora"), "both": tmp_path_factory.mktemp("lora")}
    for name, folder in folders.items():
        StableDiffusionPipeline.save_lora_weights(
            folder,
            unet_lora_layers=unet_lora,
            unet_lora_adapter_metadata=unet_config,
            text_encoder_lora_layers=text_lora if name == "both" else None,
            text_encoder_lora_adapter_metadata=text_config if name == "both" else None,
        )
    return folders, unet.eval(), text_encoder.eval()


@torch.no_grad()
def test_video_unet_with_lora_equals_2d_unet_with_lora_frame_by_frame_and_temporal_layers_stay(lora):
    folders, unet, _ = lora
    pipe = keyframes_pipeline()
    sample, timestep, text = video_inputs()
    temporal_before = {k: v.clone() for k, v in pipe.unet.state_dict().items() if k.startswith("temporal_")}
    output_before = pipe.unet(sample, timestep, text).sample

    pipe.load_lora_weights(folders["unet"])
    actual = pipe.unet(sample, timestep, text).sample
    expected = torch.stack([unet(sample[:, :, f], timestep, text).sample for f in range(3)], dim=2)
    assert (actual - expected).abs().max() <= 1e-5
    assert (actual - output_before).abs().max() > 1e-3  # the LoRA does act

    tuned = [
        n for n, m in pipe.unet.named_modules() if isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer)
    ]
    assert len(tuned) == 4 * sum(1 for n, _ in unet.named_modules() if n.endswith((".attn1", ".attn2")))
    assert all(name.startswith("unet.") for name in tuned)
    temporal_after = {k: v for k, v in pipe.unet.state_dict().items() if k.startswith("temporal_")}
    assert temporal_after.keys() == temporal_before.keys()
    assert all(torch.equal(temporal_after[k], v) for k, v in temporal_before.items())
    frames = pipe(PROMPTS[0], num_frames=2, num_inference_steps=2, output_type="latent").frames
    assert frames.shape == (1, 4, 2, 8, 8) and torch.isfinite(frames).all()


@torch.no_grad()
def test_pipeline_lora_management_reaches_the_spatial_unet(lora):
    folders, _, _ = lora
    pipe = keyframes_pipeline()
    sample, timestep, text = video_inputs()
    base = pipe.unet(sample, timestep, text).sample
    pipe.load_lora_weights(folders["unet"], adapter_name="shapes")
    tuned = pipe.unet(sample, timestep, text).sample
    assert pipe.get_list_adapters() == {"unet": ["shapes"]}
    pipe.disable_lora()
    torch.testing.assert_close(pipe.unet(sample, timestep, text).sample, base)
    pipe.enable_lora()
    torch.testing.assert_close(pipe.unet(sample, timestep, text).sample, tuned)
    pipe.set_adapters(["shapes"], adapter_weights=[0.0])
    torch.testing.assert_close(pipe.unet(sample, timestep, text).sample, base)
    pipe.set_adapters(["shapes"], adapter_weights=[1.0])
    pipe.fuse_lora()
    torch.testing.assert_close(pipe.unet(sample, timestep, text).sample, tuned, atol=1e-5, rtol=1e-5)
    pipe.unfuse_lora()
    pipe.unload_lora_weights()
    torch.testing.assert_close(pipe.unet(sample, timestep, text).sample, base)
    assert not any(isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer) for m in pipe.unet.modules())


@torch.no_grad()
def test_pipeline_text_embeddings_equal_the_lora_text_encoders(lora):
    folders, unet, text_encoder = lora
    pipe = keyframes_pipeline()
    without_lora, _ = pipe.encode_prompt(PROMPTS, CPU, do_classifier_free_guidance=False)
    pipe.load_lora_weights(folders["both"], adapter_name="shapes")
    actual, _ = pipe.encode_prompt(PROMPTS, CPU, do_classifier_free_guidance=False)
    expected = encode_text(pipe.tokenizer, text_encoder, PROMPTS, CPU)
    assert (actual - expected).abs().max() <= 1e-5
    assert (actual - without_lora).abs().max() > 1e-3
    sample, timestep, text = video_inputs()
    expected = torch.stack([unet(sample[:, :, f], timestep, text).sample for f in range(3)], dim=2)
    assert (pipe.unet(sample, timestep, text).sample - expected).abs().max() <= 1e-5


@torch.no_grad()
def test_pipeline_lora_management_reaches_the_text_encoder(lora):
    folders, _, _ = lora
    pipe = keyframes_pipeline()

    def embeddings():
        return pipe.encode_prompt(PROMPTS, CPU, do_classifier_free_guidance=False)[0]

    base = embeddings()
    pipe.load_lora_weights(folders["both"], adapter_name="shapes")
    tuned = embeddings()
    assert pipe.get_list_adapters() == {"unet": ["shapes"], "text_encoder": ["shapes"]}
    pipe.disable_lora()
    torch.testing.assert_close(embeddings(), base)
    pipe.enable_lora()
    torch.testing.assert_close(embeddings(), tuned)
    pipe.set_adapters(["shapes"], adapter_weights=[0.0])
    torch.testing.assert_close(embeddings(), base)
    pipe.set_adapters(["shapes"], adapter_weights=[1.0])
    torch.testing.assert_close(embeddings(), tuned)
    pipe.fuse_lora()
    fused = [m for m in pipe.text_encoder.modules() if getattr(m, "merged", False)]
    assert len(fused) == 4 * pipe.text_encoder.config.num_hidden_layers
    torch.testing.assert_close(embeddings(), tuned, atol=1e-5, rtol=1e-5)
    pipe.unfuse_lora()
    pipe.unload_lora_weights()
    torch.testing.assert_close(embeddings(), base)
    assert not any(
        isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer) for m in pipe.text_encoder.modules()
    )


@pytest.mark.parametrize("stage", ["interpolation", "spatiotemporal_sr", "spatial_sr"])
@torch.no_grad()
def test_every_stage_loads_a_lora_into_its_2d_unet(stage, tmp_path):
    from cascade.testing.tiny_models import tiny_cascade_stages

    pipe = tiny_cascade_stages()[stage]
    spatial = pipe.unet.unet if hasattr(pipe.unet, "unet") else pipe.unet  # (2D UNet)
    tuned = copy.deepcopy(spatial)
    layers, config = add_random_lora(tuned, ["to_q", "to_k", "to_v", "to_out.0"], seed=3)
    StableDiffusionPipeline.save_lora_weights(
        tmp_path, unet_lora_layers=layers, unet_lora_adapter_metadata=config
    )
    channels, size = spatial.config.in_channels, spatial.config.sample_size
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, channels, size, size, generator=generator)  # (B, C, H, W)
    text = torch.randn(2, 5, spatial.config.cross_attention_dim, generator=generator)  # (B, L, D)
    labels = {"class_labels": torch.tensor([20, 20])} if spatial.config.num_class_embeds else {}
    before = spatial(sample, 400, text, **labels).sample
    pipe.load_lora_weights(tmp_path)
    after = spatial(sample, 400, text, **labels).sample
    torch.testing.assert_close(after, tuned.eval()(sample, 400, text, **labels).sample, atol=1e-5, rtol=1e-5)
    assert (after - before).abs().max() > 1e-3
