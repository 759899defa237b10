"""A small CLIP text model with a word-level vocabulary, for a model whose text encoder is its own.

The tokenizer is a standard ``CLIPTokenizer`` (saved and loaded in the transformers format) whose BPE
merges spell out each vocabulary word, so every known word is one token; other text falls back to
letters and digits. The encoder is a ``CLIPTextModel`` (Radford et al. 2021, "Learning Transferable
Visual Models From Natural Language Supervision") trained with the 2D text-to-image stage.
"""

import json
import re
import string
import tempfile
from pathlib import Path

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from cascade.utils.checks import check_int

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def word_tokenizer(words: list[str], max_length: int = 8) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` with one token per word of ``words`` (lowercase letters), plus single letters and
    digits for anything else, padding and truncating to ``max_length`` tokens (start and end included)."""
    if not isinstance(words, list | tuple) or not words:
        raise ValueError(f"`words` must be a non-empty list of str, got {words!r}.")
    for word in words:
        if not isinstance(word, str) or not re.fullmatch(r"[a-z]+", word):
            raise ValueError(f"`words` must hold lowercase ascii words, got {word!r}.")
    check_int("max_length", max_length, minimum=3)
    characters = list(string.ascii_lowercase + string.digits)
    tokens = characters + [c + "</w>" for c in characters]
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(words):
        # Merges apply by rank, so an earlier word's merges can split this one differently than its own
        # would ("re" from "red" inside "green"): follow BPE with the merges so far and add, at the lowest
        # rank, a merge of the first two pieces until the word is one token. Earlier words are single
        # tokens already, so new merges cannot change them.
        pieces = _apply_merges(list(word[:-1]) + [word[-1] + "</w>"], merges)
        while len(pieces) > 1:
            merges.append((pieces[0], pieces[1]))
            tokens.append(pieces[0] + pieces[1])  # the BPE model needs every merge's result in the vocabulary
            pieces = _apply_merges(pieces, merges)
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    for special in SPECIAL_TOKENS:
        vocab[special] = len(vocab)
    with tempfile.TemporaryDirectory() as folder:
        vocab_file, merges_file = Path(folder, "vocab.json"), Path(folder, "merges.txt")
        vocab_file.write_text(json.dumps(vocab))
        merges_file.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
        return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=max_length)


def _apply_merges(pieces: list[str], merges: list[tuple[str, str]]) -> list[str]:
    """Byte-pair encoding of one word's ``pieces``: repeatedly joins the adjacent pair whose merge ranks
    first, as the tokenizer does."""
    ranks = {pair: rank for rank, pair in enumerate(merges)}
    while len(pieces) > 1:
        pairs = [
            (ranks.get(pair, len(ranks)), i) for i, pair in enumerate(zip(pieces, pieces[1:], strict=False))
        ]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        pieces = pieces[:i] + [pieces[i] + pieces[i + 1]] + pieces[i + 2 :]
    return pieces


def small_text_encoder(
    tokenizer: CLIPTokenizer,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    intermediate_size: int = 128,
    seed: int = 0,
) -> CLIPTextModel:
    """A randomly initialised ``CLIPTextModel`` for ``tokenizer``'s vocabulary and length."""
    for name, value in (
        ("hidden_size", hidden_size),
        ("num_hidden_layers", num_hidden_layers),
        ("num_attention_heads", num_attention_heads),
        ("intermediate_size", intermediate_size),
    ):
        check_int(name, value, minimum=1)
    if hidden_size % num_attention_heads:
        raise ValueError(
            f"`hidden_size`={hidden_size} must be a multiple of `num_attention_heads`={num_attention_heads}."
        )
    vocab = tokenizer.get_vocab()
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=vocab[SPECIAL_TOKENS[0]],
        eos_token_id=vocab[SPECIAL_TOKENS[1]],
        pad_token_id=vocab[SPECIAL_TOKENS[1]],
    )
    torch.manual_seed(seed)
    return CLIPTextModel(config)


def retokenize_text_encoder(
    text_encoder: CLIPTextModel, old_tokenizer: CLIPTokenizer, new_tokenizer: CLIPTokenizer
) -> CLIPTextModel:
    """Moves ``text_encoder`` from ``old_tokenizer``'s vocabulary to ``new_tokenizer``'s, in place.

    Each token of the new vocabulary gets the input embedding of the same text under the old tokenizer
    (the mean of its pieces' embeddings where the old tokenizer split it), and the special tokens keep
    theirs; so a caption that both tokenizers split into the same pieces encodes to the same hidden
    states. Used to continue training a model whose tokenizer was replaced (e.g. one that now keeps
    each word whole). Both tokenizers must have the same ``model_max_length`` (the position table).
    """
    for name, tokenizer in (("old_tokenizer", old_tokenizer), ("new_tokenizer", new_tokenizer)):
        if not isinstance(tokenizer, CLIPTokenizer):
            raise ValueError(f"`{name}` must be a CLIPTokenizer, got {type(tokenizer).__name__}.")
    if not isinstance(text_encoder, CLIPTextModel):
        raise ValueError(f"`text_encoder` must be a CLIPTextModel, got {type(text_encoder).__name__}.")
    old_vocab = old_tokenizer.get_vocab()
    if text_encoder.config.vocab_size != len(old_vocab):
        raise ValueError(
            f"`old_tokenizer` has {len(old_vocab)} tokens but `text_encoder` embeds "
            f"{text_encoder.config.vocab_size}: it is not the encoder's tokenizer."
        )
    if new_tokenizer.model_max_length != text_encoder.config.max_position_embeddings:
        raise ValueError(
            f"`new_tokenizer.model_max_length`={new_tokenizer.model_max_length} must equal the encoder's "
            f"max_position_embeddings={text_encoder.config.max_position_embeddings}."
        )
    old_table = text_encoder.get_input_embeddings().weight.detach()  # (V_old, D)
    new_vocab = new_tokenizer.get_vocab()
    new_table = old_table.new_empty(len(new_vocab), old_table.shape[1])  # (V_new, D)
    for token, new_id in new_vocab.items():
        if token in SPECIAL_TOKENS:
            pieces = [old_vocab[token]]
        else:  # the old tokenizer's pieces of the same text, as a word (word-final forms)
            pieces = old_tokenizer(token.removesuffix("</w>"), add_special_tokens=False).input_ids
        new_table[new_id] = old_table[pieces].mean(dim=0)
    text_encoder.resize_token_embeddings(len(new_vocab), mean_resizing=False)
    text_encoder.get_input_embeddings().weight.data.copy_(new_table)
    ids = {"bos_token_id": new_vocab[SPECIAL_TOKENS[0]], "eos_token_id": new_vocab[SPECIAL_TOKENS[1]]}
    for key, value in {**ids, "pad_token_id": ids["eos_token_id"]}.items():
        setattr(text_encoder.config, key, value)
    text_encoder.eos_token_id = ids["eos_token_id"]  # the pooled output reads this token
    return text_encoder
