"""Where a bridged attention's value vectors, output weights and output gate are, when not where
TransformerLens names them.

Gemma 4 (and models like it) need corrections to the plain `attn.hook_v` (and `attention`'s
`output_weights` reads `W_O` of its wider global layers from the output projection):

- a value norm (`v_norm`, an RMSNorm without weight) applied after the value projection: the
  values the attention consumes are `attn.v_norm.hook_out`, not `attn.hook_v` (the projection's
  output, which fires before the norm);
- KV sharing: a consumer layer has no value projection and reuses the values a producer layer of
  the same attention type (sliding / full) stored, so its `v` is the producer's `v_norm` output;
- per-layer head widths (global layers wider than sliding ones): the bridge's `W_O` cannot split
  the weight by the config's `d_head`, so it is read from the output projection itself.

Gated attention output (Laguna, AFMoE): a gate computed from the query row's input scales each
head's mixed values before the output projection, `o_proj(gate(x_i) ⊙ z_i)`. A gate of one scalar
per head and query (Laguna's default `gating=True`: `softplus(g_proj(x_i))`) is linear per source:
`T_i(x_j) = Σ_h gate^h_i A^h_ij v^h_j W_O^h`, so it folds into the pattern (`head_gate`). A gate per
element of the head (AFMoE's `sigmoid(gate_proj(x_i))`, Laguna's per-element gating) makes each
source's vector depend on the query row; alti_lens refuses it (`output_gate`).

Clipped values (`clip_qkv`: OLMo-1, OLMoE, MPT): clamped after `hook_v` fires (`value_clip`).
"""

from typing import Any

import torch
from torch import Tensor

from alti_lens.errors import UnsupportedModelError

from .protocol import HookedModel


def _hook(layer: int, name: str) -> str:
    return f"blocks.{layer}.{name}"


def _hf_attention(model: HookedModel, layer: int) -> Any:
    return getattr(model.blocks[layer].attn, "original_component", None)


def _kv_producer(model: HookedModel, layer: int) -> int:
    """The layer whose keys and values layer `layer` attends with (itself unless KV-shared)."""
    attn = _hf_attention(model, layer)
    if not getattr(attn, "is_kv_shared_layer", False):
        return layer
    kind = getattr(attn, "layer_type", None)
    # Gemma 4: the last earlier layer of the same attention type that stores its keys and values
    for earlier in reversed(range(layer)):
        other = _hf_attention(model, earlier)
        if (
            getattr(other, "store_full_length_kv", False)
            and getattr(other, "layer_type", 0) == kind
        ):
            return earlier
    raise UnsupportedModelError(
        f"layer {layer} reuses another layer's keys and values (KV sharing), but alti_lens finds "
        f"no earlier layer of its attention type ({kind!r}) that stores them. This KV-sharing "
        "layout is not supported. Fix: use a model without KV sharing."
    )


def value_hook(model: HookedModel, layer: int, available: Any) -> str:
    """The hook whose output is the value vectors layer `layer`'s attention consumed."""
    source = _kv_producer(model, layer)
    normed = _hook(source, "attn.v_norm.hook_out")
    if normed in available:
        return normed
    if source != layer:
        raise UnsupportedModelError(
            f"layer {layer} reuses layer {source}'s keys and values, which alti_lens cannot read "
            f"(no {normed!r}). Fix: use a model without KV sharing."
        )
    return _hook(layer, "attn.hook_v")


def output_gate(model: HookedModel, layer: int, available: Any) -> str | None:
    """The hook of layer `layer`'s per-head output gate (its projection's output), None where the
    attention has no gate; raise where the gate is not one scalar per head (not supported)."""
    attn = model.blocks[layer].attn
    if getattr(attn, "gate", None) is None:
        return None
    hf = getattr(attn, "original_component", None)
    name = _hook(layer, "attn.gate.hook_out")
    if getattr(hf, "gate_per_head", False) and hasattr(hf, "g_proj") and name in available:
        return name  # Laguna: softplus(g_proj(x_i)), one scalar per head and query
    raise UnsupportedModelError(
        f"layer {layer}'s attention ({type(hf).__name__}) gates its output element-wise by the "
        "query row, o_proj(gate(x_i) ⊙ z_i) before the output projection (e.g. AFMoE's "
        "sigmoid(gate_proj(x_i))): each source's vector then depends on the query row, which "
        "alti_lens's decomposition (one vector per source and head, spec §2) does not represent; "
        "the contributions would not be exact. Per-head scalar gates (Laguna's gating=True) are "
        "supported. Fix: use a model without an element-wise attention output gate."
    )


def head_gate(gate_out: Tensor, dtype: torch.dtype) -> Tensor:
    """Laguna's per-head gate `[batch, head, query_pos]` from its projection's output `[batch,
    query_pos, head]`: `softplus` in float32 cast to the attention's dtype, as Hugging Face does."""
    gate = torch.nn.functional.softplus(gate_out.float()).to(dtype)
    return gate.transpose(1, 2)


def value_clip(model: HookedModel) -> float | None:
    """`clip_qkv` (OLMo-1, OLMoE, MPT): the model clamps q, k and v to ±clip after projecting them,
    after `hook_v` fires (measured on the bridge: its attention clamps out of place), so the values
    attention consumed are `hook_v` clamped; clamping again is harmless where a hook fires after."""
    config = getattr(getattr(model, "original_model", None), "config", None)
    for cfg in (config, getattr(config, "attn_config", None), model.cfg):
        clip = getattr(cfg, "clip_qkv", None)
        if isinstance(clip, (int, float)) and clip > 0:
            return float(clip)
    return None
