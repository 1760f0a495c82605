"""Where a bridged attention's value vectors and output weights are, when not where TL names them.

Gemma 4 (and models like it) need three corrections to the plain `attn.hook_v` / `attn.W_O`:

- a value norm (`v_norm`, an RMSNorm without weight) applied after the value projection: the
  values the attention consumes are `attn.v_norm.hook_out`, not `attn.hook_v` (the projection's
  output, which fires before the norm);
- KV sharing: a consumer layer has no value projection and reuses the values a producer layer of
  the same attention type (sliding / full) stored, so its `v` is the producer's `v_norm` output;
- per-layer head widths (global layers wider than sliding ones): the bridge's `W_O` cannot split
  the weight by the config's `d_head`, so it is read from the output projection itself.
"""

from typing import Any

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


def output_weight(block: Any) -> Tensor:
    """`W_O [head, d_head, d_model]`; from the output projection (`o.weight`, `[d_model,
    head·d_head]`) where the layer's head width is not the config's (the bridge then raises)."""
    try:
        return block.attn.W_O.detach()
    except Exception as error:  # TransformerLens' PerLayerGeometryError, matched by name
        if type(error).__name__ != "PerLayerGeometryError":
            raise
        weight = getattr(getattr(block.attn, "o", None), "weight", None)
        head_dim = getattr(getattr(block.attn, "original_component", None), "head_dim", None)
        if weight is None or head_dim is None:
            raise
        return weight.detach().T.reshape(-1, int(head_dim), weight.shape[0])
