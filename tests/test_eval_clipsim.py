"""CLIPSIM with a tiny random CLIPModel and a CLIPTokenizer built offline from a byte-level vocabulary."""

import json

import numpy as np
import pytest
import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

import cascade.eval.clip_similarity as clipsim_module
from cascade.eval import clip_preprocess, clipsim
from cascade.eval.clip_similarity import CLIP_MEAN, CLIP_STD


def _byte_characters() -> list[str]:
    # GPT-2 / CLIP byte-to-unicode table: every byte maps to one printable character.
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    extra = [b for b in range(256) if b not in printable]
    return [chr(c) for c in printable] + [chr(256 + i) for i in range(len(extra))]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    characters = _byte_characters()
    tokens = characters + [c + "</w>" for c in characters] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    special = dict(
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=32,
            **special,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    torch.manual_seed(0)
    return CLIPModel(config).eval(), tokenizer


CAPTIONS = ["a red ball rolls", "waves on a beach at sunset"]


def _reference_clipsim(model, tokenizer, videos: np.ndarray) -> np.ndarray:
    """Per-video CLIPSIM from CLIPModel.forward's logits (logit_scale * cosine), frames already 32x32."""
    frames = torch.from_numpy(videos).float().flatten(0, 1).permute(0, 3, 1, 2)  # (B*F, 3, 32, 32)
    pixels = (frames - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    tokens = tokenizer(CAPTIONS, padding=True, return_tensors="pt")
    with torch.no_grad():
        output = model(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=pixels
        )
        cosine = (output.logits_per_image / model.logit_scale.exp()).numpy()  # (B*F, B)
    batch, count = videos.shape[:2]
    own = cosine.reshape(batch, count, batch)[np.arange(batch), :, np.arange(batch)]  # (B, F)
    return np.maximum(own, 0.0).mean(axis=1)


def test_clipsim_matches_clip_forward_cosine_clipped_at_zero(tiny_clip):
    model, tokenizer = tiny_clip
    videos = np.random.default_rng(0).uniform(size=(2, 3, 32, 32, 3))
    scores = clipsim(videos, CAPTIONS, model, tokenizer, batch_size=4)
    expected = _reference_clipsim(model, tokenizer, videos)
    assert scores.values.shape == (2,)
    np.testing.assert_allclose(scores.values, expected, atol=1e-5)
    assert 0.0 <= scores.mean <= 1.0


def test_clipsim_clips_negative_cosines(tiny_clip):
    model, tokenizer = tiny_clip
    videos = np.random.default_rng(1).uniform(size=(2, 2, 32, 32, 3))
    negated = CLIPModel(model.config).eval()
    negated.load_state_dict(model.state_dict())
    with torch.no_grad():
        negated.visual_projection.weight.neg_()  # every cosine changes sign
    total = (
        clipsim(videos, CAPTIONS, model, tokenizer).values
        + clipsim(videos, CAPTIONS, negated, tokenizer).values
    )
    frames = torch.from_numpy(videos).float().flatten(0, 1)
    with torch.no_grad():
        image = model.get_image_features(pixel_values=clip_preprocess(frames, 32))
        tokens = tokenizer(CAPTIONS, padding=True, return_tensors="pt")
        text = model.get_text_features(**tokens)
    image = getattr(image, "pooler_output", image)
    text = getattr(text, "pooler_output", text)
    cosine = torch.nn.functional.cosine_similarity(image.view(2, 2, -1), text[:, None], dim=-1)  # (B, F)
    np.testing.assert_allclose(total, cosine.abs().mean(dim=1).numpy(), atol=1e-5)  # max(c,0)+max(-c,0) = |c|


def test_clip_preprocess_resizes_shorter_side_and_center_crops():
    frames = torch.zeros(1, 40, 64, 3)
    frames[:, :, 12:52] = 1.0  # white centre 40 columns wide: exactly the crop after resizing 40 -> 32
    pixels = clip_preprocess(frames, 32)
    assert pixels.shape == (1, 3, 32, 32)
    white = (1.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(
        pixels[0, :, 4:28, 4:28], white.view(3, 1, 1).expand(3, 24, 24), atol=2e-3, rtol=0
    )


def test_clipsim_accepts_a_processor_and_loads_the_default_by_name(tiny_clip, monkeypatch):
    model, tokenizer = tiny_clip
    videos = (np.random.default_rng(2).uniform(size=(2, 2, 40, 48, 3)) * 255).astype(np.uint8)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer)
    with_processor = clipsim(videos, CAPTIONS, model, processor)
    loaded = []
    monkeypatch.setattr(
        clipsim_module, "_load_default", lambda name: loaded.append(name) or (model, tokenizer)
    )
    by_name = clipsim(videos, CAPTIONS)
    assert loaded == ["openai/clip-vit-base-patch32"]
    np.testing.assert_allclose(by_name.values, with_processor.values, rtol=1e-6)


@pytest.mark.parametrize(
    ("captions", "match"),
    [
        ("a red ball", "captions must be a list of 2 strings"),
        (["only one"], "captions must hold 2 non-empty strings, one per video; got 1 items"),
        (["fine", "  "], "captions must hold 2 non-empty strings"),
    ],
)
def test_clipsim_rejects_bad_captions(tiny_clip, captions, match):
    model, tokenizer = tiny_clip
    with pytest.raises(ValueError, match=match):
        clipsim(np.zeros((2, 1, 32, 32, 3)), captions, model, tokenizer)


def test_clipsim_needs_model_and_processor_together(tiny_clip):
    model, _ = tiny_clip
    with pytest.raises(ValueError, match="model and processor must be given together"):
        clipsim(np.zeros((2, 1, 32, 32, 3)), CAPTIONS, model)
