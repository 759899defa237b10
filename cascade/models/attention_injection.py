"""Self-attention injection: an edited video keeps the layout and motion of its source.

A batch holds, for each guidance copy, the videos of a *source* branch (reconstructing the source from its
inverted noise under the source prompt) followed by those of a *target* branch (the same noise, the target
prompt). While injection is on, every self-attention layer (spatial and temporal) computes the target
branch's attention with the source branch's queries and keys: the target keeps where things are and how they
move, while its values, and cross-attention to its own prompt, decide what they look like. This is the
self-attention injection of Plug-and-Play (Tumanyan et al. 2023, arXiv:2211.12572), FateZero (Qi et al.
2023, arXiv:2303.09535) and TokenFlow (Geyer et al. 2023, arXiv:2307.10373, whose ``pnp_attn_t`` sets the
fraction of steps it runs for). Cross-attention layers are left as they are.
"""

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from cascade.utils.checks import check_int


class InjectionState:
    """Whether injection is on for the next UNet call; the denoising loop's callback switches it off."""

    active = True


class SelfAttentionInjection:
    """Attention processor of one self-attention layer (see the module docstring): with ``state.active``, the
    target half of each of the batch's ``groups`` guidance copies attends with the source half's queries and
    keys; otherwise it runs the layer's own ``processor``."""

    def __init__(self, processor, groups: int, state: InjectionState):
        self.processor, self.groups, self.state = processor, groups, state

    def __call__(
        self, attn: Attention, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs
    ):
        if not self.state.active:
            return self.processor(attn, hidden_states, encoder_hidden_states, attention_mask, **kwargs)
        batch, length, _ = hidden_states.shape  # (N, L, C), N = groups * 2 branches * n
        if batch % (2 * self.groups):
            raise ValueError(
                f"attention injection needs a batch of {self.groups} guidance copies of a source and a target "
                f"branch of equal size, got {batch} sequences."
            )

        def heads(projection: torch.Tensor) -> torch.Tensor:  # (N, L, H*D) -> (N, H, L, D)
            return projection.view(batch, length, attn.heads, -1).transpose(1, 2)

        def from_source(tensor: torch.Tensor) -> torch.Tensor:  # both branches take the source branch's
            grouped = tensor.view(self.groups, 2, batch // (2 * self.groups), *tensor.shape[1:])
            return grouped[:, :1].expand_as(grouped).reshape(tensor.shape)

        query = from_source(heads(attn.to_q(hidden_states)))
        key = from_source(heads(attn.to_k(hidden_states)))
        value = heads(attn.to_v(hidden_states))
        if attention_mask is not None:
            mask = attn.prepare_attention_mask(attention_mask, length, batch)
            attention_mask = mask.view(batch, attn.heads, -1, mask.shape[-1])
        output = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)  # (N, H, L, D)
        output = output.transpose(1, 2).reshape(batch, length, -1).to(query.dtype)
        return attn.to_out[1](attn.to_out[0](output))


def _self_attention_layers(model: torch.nn.Module) -> dict[str, Attention]:
    """The self-attention layers of ``model`` by the processor names ``attn_processors`` uses."""
    layers = {}
    for name, module in model.named_modules():
        if isinstance(module, Attention) and not module.is_cross_attention:
            unsupported = [
                feature
                for feature in ("group_norm", "spatial_norm", "norm_q", "norm_k")
                if getattr(module, feature, None) is not None
            ]
            if unsupported or module.residual_connection or module.rescale_output_factor != 1:
                raise ValueError(
                    f"`model` layer {name!r} is a self-attention with {unsupported or 'a residual or rescale'}, "
                    "which attention injection does not reproduce."
                )
            layers[f"{name}.processor"] = module
    return layers


@contextmanager
def self_attention_injection(model: torch.nn.Module, groups: int):
    """Installs :class:`SelfAttentionInjection` on every self-attention layer of ``model`` (a diffusers model
    with ``attn_processors``: a ``VideoUNet`` or ``UNet2DConditionModel``) for the ``with`` block, ``groups``
    guidance copies in each batch (2 with classifier-free guidance, else 1), and yields the
    :class:`InjectionState` that switches it; the model's processors are restored afterwards."""
    check_int("groups", groups, minimum=1)
    original = dict(model.attn_processors)
    layers = _self_attention_layers(model)
    state = InjectionState()
    processors = {
        name: SelfAttentionInjection(processor, groups, state) if name in layers else processor
        for name, processor in original.items()
    }
    model.set_attn_processor(processors)
    try:
        yield state
    finally:
        model.set_attn_processor(original)
