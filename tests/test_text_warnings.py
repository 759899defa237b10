"""Prompt warnings (issue 20): the words a text encoder's vocabulary does not know, and the part of a prompt
cut off at its length, are named in a PromptWarning; a prompt read whole warns of nothing."""

import warnings
from pathlib import Path

import pytest
import torch
from transformers import CLIPTextModel, CLIPTokenizer

from cascade.ops.text import PromptWarning, cut_off_text, encode_text, prompt_problems, unknown_words
from cascade.testing.tiny_models import tiny_text_encoder, tiny_tokenizer
from cascade.training.text_model import word_tokenizer

DEMO = Path(__file__).resolve().parent.parent / "weights" / "demo"
LONG_PROMPT = ("a red circle moving right " * 500)[:12000]


@pytest.fixture(scope="module")
def demo_tokenizer() -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(DEMO / "keyframes" / "tokenizer")


def prompt_warnings(tokenizer, text_encoder, prompts: list[str]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encode_text(tokenizer, text_encoder, prompts, "cpu")
    assert all(issubclass(w.category, PromptWarning) for w in caught), [str(w.message) for w in caught]
    return [str(w.message) for w in caught]


def test_a_word_level_vocabulary_names_the_words_it_spells_out_letter_by_letter():
    tokenizer = word_tokenizer(["a", "red", "circle"], max_length=8)
    assert unknown_words(tokenizer, "a red circle") == []
    # each unknown word once, as first written, in order; digits and punctuation are not words
    assert unknown_words(tokenizer, "a Purple circle, purple hexagon 42!") == ["Purple", "hexagon"]


def test_a_word_mapped_to_the_unknown_token_is_named():
    tokenizer = word_tokenizer(["a", "red", "cafe"], max_length=16)
    assert tokenizer("é", add_special_tokens=False).input_ids[0] == tokenizer.unk_token_id
    assert unknown_words(tokenizer, "a red café") == ["café"]


def test_a_character_level_vocabulary_knows_no_words_and_warns_only_of_length():
    tokenizer = tiny_tokenizer(max_length=16)  # one byte a token: every word is spelled out
    assert unknown_words(tokenizer, "a purple hexagon") == []
    # a token a letter (spaces split words, they are no tokens), and start and end: 14 letters fit
    assert cut_off_text(tokenizer, "a purple hexagon") is None
    assert cut_off_text(tokenizer, "a purple hexagon dancing") == "dancing"


def test_encode_text_warns_once_per_distinct_prompt_and_not_when_asked_not_to():
    tokenizer = word_tokenizer(["a", "red", "circle"], max_length=16)
    encoder = tiny_text_encoder(vocab_size=len(tokenizer))
    caught = prompt_warnings(tokenizer, encoder, ["a purple circle", "a purple circle", "a red circle"])
    assert len(caught) == 1 and "'purple'" in caught[0] and "'a purple circle'" in caught[0]
    assert prompt_warnings(tokenizer, encoder, ["a red circle", ""]) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embeddings = encode_text(tokenizer, encoder, ["a purple circle"], "cpu", warn=False)
    assert embeddings.shape[:2] == (1, 16)


def test_the_demo_names_unknown_words(demo_tokenizer):
    problems = prompt_problems(demo_tokenizer, "a purple hexagon dancing")
    unknown = [p for p in problems if "does not know" in p]
    assert len(unknown) == 1
    assert "3 word(s)" in unknown[0] and all(f"'{w}'" in unknown[0] for w in ("purple", "hexagon", "dancing"))
    assert "'a'" not in unknown[0].split(":")[-1]


def test_the_demo_warns_of_a_12000_character_prompt_cut_off(demo_tokenizer):
    problems = prompt_problems(demo_tokenizer, LONG_PROMPT)
    assert len(problems) == 1  # every word known: only the truncation
    assert problems[0].startswith(
        "The following part of the prompt was truncated because the text encoder can only handle sequences "
        "up to 8 tokens: 'red circle moving right a red"  # "a" and the first 5 words are kept
    )
    assert "more characters)" in problems[0] and len(problems[0]) < 400


def test_the_demo_reads_a_prompt_of_its_words_without_a_warning(demo_tokenizer):
    assert prompt_problems(demo_tokenizer, "a red circle moving right") == []


def test_the_demo_stages_warn_through_encode_prompt_once_for_the_same_message():
    from cascade import InterpolationPipeline, KeyframesPipeline

    keyframes = KeyframesPipeline.from_pretrained(DEMO / "keyframes")
    interpolation = InterpolationPipeline.from_pretrained(DEMO / "interpolation")
    assert isinstance(keyframes.text_encoder, CLIPTextModel)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own: once per message and place
        for pipeline in (keyframes, interpolation):  # two text encoders, two vocabularies
            embeddings, negative = pipeline.encode_prompt("a purple hexagon dancing", torch.device("cpu"))
            assert embeddings.shape == negative.shape
    messages = [str(w.message) for w in caught if issubclass(w.category, PromptWarning)]
    assert len(messages) == 2 and all(w.filename.endswith("stage_base.py") for w in caught)
    assert "'purple', 'hexagon', 'dancing'" in messages[0] and "truncated" in messages[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keyframes.encode_prompt("a red circle moving right", torch.device("cpu"))
