"""Prompts to the text embeddings every UNet of the cascade attends to (CLIP's last hidden states, as
Stable Diffusion reads them: Rombach et al. 2022, arXiv:2112.10752)."""

import torch


def encode_text(tokenizer, text_encoder, prompts: list[str], device: torch.device | str) -> torch.Tensor:
    """The last hidden states ``(B, L, D)`` of ``text_encoder`` for ``prompts``, each padded (and cut) to the
    tokenizer's ``model_max_length``. Gradients flow when they are enabled (training a text encoder)."""
    tokens = tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    return text_encoder(tokens.input_ids.to(device))[0]
