"""Prompts to the text embeddings every UNet of the cascade attends to (CLIP's last hidden states, as
Stable Diffusion reads them: Rombach et al. 2022, arXiv:2112.10752).

A prompt that the text encoder cannot read whole is encoded anyway, with a :class:`PromptWarning` naming
what it misses, as diffusers warns about truncation:

- the words its tokenizer does not know: words mapped (in part) to the unknown token, and, for a tokenizer
  with a vocabulary of words or subwords, words spelled out partly letter by letter (the demo's word-level
  tokenizer, ``cascade.training.text_model.word_tokenizer``, falls back to single letters for any word it
  was not built with; a character-level tokenizer, which spells every word, warns of nothing);
- the part cut off at the tokenizer's ``model_max_length``.

Python shows a warning once per distinct message and place, so stages that encode the same prompt with
equal vocabularies warn once; ``warnings.simplefilter("always", PromptWarning)`` shows every one.
"""

import re
import warnings

import torch

WORD = re.compile(r"[^\W\d_]+")  # a run of letters: what a CLIP-style pre-tokenizer keeps as one word
END_OF_WORD = "</w>"  # CLIP's BPE marks a word's last piece with it
SHOWN_WORDS = 20  # at most this many unknown words are named, then a count
SHOWN_CHARACTERS = 200  # at most this much of a prompt or of its cut-off part is quoted, then a count
SHOWN_WORD_CHARACTERS = 40  # and this much of an unknown word


class PromptWarning(UserWarning):
    """A prompt the text encoder reads only in part: unknown words, or text cut off at its length."""


def encode_text(
    tokenizer,
    text_encoder,
    prompts: list[str],
    device: torch.device | str,
    warn: bool = True,
    clip_skip: int | None = None,
) -> torch.Tensor:
    """The last hidden states ``(B, L, D)`` of ``text_encoder`` for ``prompts``, each padded (and cut) to the
    tokenizer's ``model_max_length``; with ``clip_skip`` the hidden states that many layers before the last,
    through the encoder's final layer norm (as diffusers' Stable Diffusion pipelines read them). Gradients flow
    when they are enabled (training a text encoder).
    With ``warn``, each distinct prompt the tokenizer cannot read whole gets a :class:`PromptWarning`
    (:func:`prompt_problems`)."""
    if warn:
        for prompt in dict.fromkeys(prompts):
            for problem in prompt_problems(tokenizer, prompt):
                warnings.warn(problem, PromptWarning, stacklevel=2)
    tokens = tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    if clip_skip is None:
        return text_encoder(tokens.input_ids.to(device))[0]
    hidden_states = text_encoder(tokens.input_ids.to(device), output_hidden_states=True).hidden_states
    # transformers 5's CLIPTextModel holds the final layer norm itself; 4's in its text_model
    final_layer_norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
    return final_layer_norm(hidden_states[-(clip_skip + 1)])


def prompt_problems(tokenizer, prompt: str) -> list[str]:
    """Messages for what ``tokenizer`` loses of ``prompt``: its unknown words (:func:`unknown_words`) and the
    part cut off at ``model_max_length`` (:func:`cut_off_text`); empty when it reads the prompt whole."""
    if not isinstance(prompt, str) or not prompt:
        return []
    problems = []
    unknown = unknown_words(tokenizer, prompt)
    if unknown:
        named = ", ".join(_shortened(word, SHOWN_WORD_CHARACTERS) for word in unknown[:SHOWN_WORDS])
        more = f" and {len(unknown) - SHOWN_WORDS} more" if len(unknown) > SHOWN_WORDS else ""
        problems.append(
            f"The text encoder's vocabulary does not know {len(unknown)} word(s) of the prompt "
            f"{_shortened(prompt)}: {named}{more}. They are spelled out letter by letter or read as the unknown "
            "token, so the model is unlikely to follow them; use words it was trained on."
        )
    cut = cut_off_text(tokenizer, prompt)
    if cut is not None:
        problems.append(
            "The following part of the prompt was truncated because the text encoder can only handle sequences "
            f"up to {tokenizer.model_max_length} tokens: {_shortened(cut)}"
        )
    return problems


def unknown_words(tokenizer, prompt: str) -> list[str]:
    """The words (runs of letters) of ``prompt``, each once and as written, that ``tokenizer`` does not know:
    a word with a piece mapped to the unknown token, or, for a tokenizer whose vocabulary holds pieces longer
    than a letter, a word of several pieces of which one is a single letter (a word-level vocabulary's
    fallback; a subword vocabulary splits a word it knows into longer pieces)."""
    first_spelling = {}
    for word in WORD.findall(prompt):
        first_spelling.setdefault(word.lower(), word)
    words = list(first_spelling.values())
    if not words:
        return []
    unknown, subword_vocabulary = [], None
    for word, ids in zip(
        words, tokenizer(words, add_special_tokens=False, verbose=False).input_ids, strict=True
    ):
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
            unknown.append(word)
            continue
        pieces = tokenizer.convert_ids_to_tokens(ids)
        if len(pieces) < 2 or not any(len(_piece_text(piece)) == 1 for piece in pieces):
            continue
        if subword_vocabulary is None:  # looked up once, and only when needed
            subword_vocabulary = _has_long_pieces(tokenizer)
        if subword_vocabulary:
            unknown.append(word)
    return unknown


def cut_off_text(tokenizer, prompt: str) -> str | None:
    """The text of the tokens of ``prompt`` beyond the tokenizer's ``model_max_length`` (its special tokens
    counted), or ``None`` when the prompt fits."""
    ids = tokenizer(prompt, add_special_tokens=False, verbose=False).input_ids
    room = tokenizer.model_max_length - tokenizer.num_special_tokens_to_add()
    if len(ids) <= room:
        return None
    return tokenizer.decode(ids[room:]).strip()


def _piece_text(piece: str) -> str:
    return piece.removesuffix(END_OF_WORD)


def _has_long_pieces(tokenizer) -> bool:
    """Whether ``tokenizer``'s vocabulary holds a (non-special) piece longer than one character."""
    special = set(tokenizer.all_special_tokens)
    return any(len(_piece_text(token)) > 1 for token in tokenizer.get_vocab() if token not in special)


def _shortened(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """``text`` quoted, cut to ``limit`` characters with a count of the rest."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text) - limit} more characters)"
