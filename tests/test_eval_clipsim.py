"""CLIPSIM with a tiny random CLIPModel and a CLIPTokenizer built offline from a byte-level vocabulary, held
to CLIPModel's own forward and to torchmetrics' CLIPScore on the same model and CLIPImageProcessor."""

import json

import numpy as np
import pytest
import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

import cascade.eval.clip_similarity as clipsim_module
from cascade.eval import clip_preprocess, clipsim, default_image_processor


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
    model = CLIPModel(config).eval()
    with torch.no_grad():  # this random model's cosines are negative (clipped to 0): make them positive
        model.visual_projection.weight.neg_()
    return model, tokenizer


CAPTIONS = ["a red ball rolls", "waves on a beach at sunset"]


def _reference_clipsim(model, tokenizer, videos: np.ndarray) -> np.ndarray:
    """Per-video CLIPSIM from CLIPModel.forward's logits (logit_scale * cosine) on ``CLIPImageProcessor``'s
    pixels of uint8 ``videos``."""
    frames = list(videos.reshape(-1, *videos.shape[2:]))  # B*F arrays (H, W, 3)
    clip_processing = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pixels = clip_processing(images=frames, return_tensors="pt")["pixel_values"]
    tokens = tokenizer(CAPTIONS, padding=True, return_tensors="pt")
    with torch.no_grad():
        output = model(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=pixels
        )
        cosine = (output.logits_per_image / model.logit_scale.exp()).numpy()  # (B*F, B)
    batch, count = videos.shape[:2]
    own = cosine.reshape(batch, count, batch)[np.arange(batch), :, np.arange(batch)]  # (B, F)
    return np.maximum(own, 0.0).mean(axis=1)


def _uint8_videos(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(size=shape) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("size", [(32, 32), (40, 48)])
def test_clipsim_matches_clip_forward_cosine_clipped_at_zero(tiny_clip, size):
    model, tokenizer = tiny_clip
    videos = _uint8_videos(0, (2, 3, *size, 3))
    scores = clipsim(videos, CAPTIONS, model, tokenizer, batch_size=4)
    expected = _reference_clipsim(model, tokenizer, videos)
    assert scores.values.shape == (2,)
    np.testing.assert_allclose(scores.values, expected, atol=1e-5)
    assert 0.0 <= scores.mean <= 1.0


def test_float_frames_score_as_their_uint8_rounding(tiny_clip):
    model, tokenizer = tiny_clip
    videos = np.random.default_rng(3).uniform(size=(2, 2, 36, 32, 3))
    rounded = (videos * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(
        clipsim(videos, CAPTIONS, model, tokenizer).values,
        clipsim(rounded, CAPTIONS, model, tokenizer).values,
    )


class ProjectedFeatures(torch.nn.Module):
    """``CLIPModel`` whose ``get_image_features`` / ``get_text_features`` return the projected embeddings as
    tensors, as torchmetrics 1.9 expects (transformers 5 returns an output object holding them)."""

    def __init__(self, model: CLIPModel):
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, pixel_values):
        return self.model.get_image_features(pixel_values=pixel_values).pooler_output

    def get_text_features(self, input_ids, attention_mask):
        return self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output


def test_clipsim_times_100_is_torchmetrics_clipscore(tiny_clip):
    """torchmetrics' CLIPScore (Hessel et al. 2021: ``max(100 cos, 0)`` per image-caption pair, averaged)
    on every frame with its video's caption, with the same model and CLIPProcessor: CLIPSIM's mean is the
    same number on the 0-1 scale. Tolerance 1e-4 on the 0-100 scale (float32 encoders; measured < 1e-5).
    With the model and its negated twin, the frames whose cosines one clips to 0 count in the other."""
    from torchmetrics.multimodal.clip_score import CLIPScore

    model, tokenizer = tiny_clip
    processor = CLIPProcessor(image_processor=default_image_processor(32), tokenizer=tokenizer)
    videos = _uint8_videos(4, (2, 3, 40, 48, 3))
    frames = list(torch.from_numpy(videos).permute(0, 1, 4, 2, 3).flatten(0, 1))  # B*F (3, H, W) uint8
    captions = [caption for caption in CAPTIONS for _ in range(3)]
    ours = []
    for clip_model in (model, _negated(model)):
        metric = CLIPScore(model_name_or_path=lambda m=clip_model: (ProjectedFeatures(m), processor))
        metric.update(frames, captions)
        ours.append(clipsim(videos, CAPTIONS, clip_model, processor).mean)
        assert float(metric.compute()) == pytest.approx(100 * ours[-1], abs=1e-4)
    assert sum(ours) > 0.01


def test_clipsim_clips_negative_cosines(tiny_clip):
    model, tokenizer = tiny_clip
    videos = _uint8_videos(1, (2, 2, 32, 32, 3))
    frames = torch.from_numpy(videos).flatten(0, 1).float() / 255
    with torch.no_grad():
        image = model.get_image_features(pixel_values=clip_preprocess(frames, default_image_processor(32)))
        tokens = tokenizer(CAPTIONS, padding=True, return_tensors="pt")
        text = model.get_text_features(**tokens)
    image = getattr(image, "pooler_output", image)
    text = getattr(text, "pooler_output", text)
    cosine = torch.nn.functional.cosine_similarity(image.view(2, 2, -1), text[:, None], dim=-1)  # (B, F)
    np.testing.assert_allclose(
        _absolute_clipsim(model, tokenizer, videos), cosine.abs().mean(dim=1).numpy(), atol=1e-5
    )


def _negated(model: CLIPModel) -> CLIPModel:
    """``model`` with its image projection negated: every image-text cosine changes sign."""
    negated = CLIPModel(model.config).eval()
    negated.load_state_dict(model.state_dict())
    with torch.no_grad():
        negated.visual_projection.weight.neg_()
    return negated


def _absolute_clipsim(model, processor, videos: np.ndarray) -> np.ndarray:
    """Per-video mean ``|cos|``: CLIPSIM of ``model`` plus that of ``model`` with every cosine negated
    (``max(c, 0) + max(-c, 0) = |c|``), nonzero whatever the random model's cosines' signs."""
    negated = _negated(model)
    return (
        clipsim(videos, CAPTIONS, model, processor).values
        + clipsim(videos, CAPTIONS, negated, processor).values
    )


def test_clipsim_uses_the_processors_image_processor_and_loads_the_default_by_name(tiny_clip, monkeypatch):
    model, tokenizer = tiny_clip
    videos = _uint8_videos(2, (2, 2, 40, 48, 3))
    processor = CLIPProcessor(image_processor=default_image_processor(32), tokenizer=tokenizer)
    # A processor that resizes to 32x32 without cropping (squashing the frames) scores otherwise than CLIP's.
    squash = CLIPImageProcessor(size={"height": 32, "width": 32}, do_center_crop=False)
    squashed = CLIPProcessor(image_processor=squash, tokenizer=tokenizer)
    difference = _absolute_clipsim(model, squashed, videos) - _absolute_clipsim(model, processor, videos)
    assert np.abs(difference).max() > 1e-3
    loaded = []
    monkeypatch.setattr(
        clipsim_module, "_load_default", lambda name: loaded.append(name) or (model, processor)
    )
    by_name = clipsim(videos, CAPTIONS)
    assert loaded == ["openai/clip-vit-base-patch32"]
    with_processor = clipsim(videos, CAPTIONS, model, processor)
    np.testing.assert_array_equal(by_name.values, with_processor.values)
    np.testing.assert_array_equal(clipsim(videos, CAPTIONS, model, tokenizer).values, with_processor.values)


def test_clip_preprocess_rejects_bad_input():
    with pytest.raises(
        ValueError, match=r"frames must be a \(N, H, W, 3\) tensor in \[0, 1\]; got \(2, 8, 8\)"
    ):
        clip_preprocess(torch.zeros(2, 8, 8), default_image_processor(8))
    with pytest.raises(
        ValueError, match="image_processor must be a transformers CLIPImageProcessor; got int"
    ):
        clip_preprocess(torch.zeros(2, 8, 8, 3), 8)
    with pytest.raises(ValueError, match="size"):
        default_image_processor(0)


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
