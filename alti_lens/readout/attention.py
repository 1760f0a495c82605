"""What an attention module writes: `W_O`, `b_O`, `b_V`, and where its value hook keeps positions.

Most attention modules expose TransformerLens' `W_O [H, d_head, d_model]`, `b_O` and `b_V`.
Multi-head latent attention (MLA: DeepSeek-V2/V3, GLM-4-MoE-Lite, GLM-MoE-DSA, Youtu; spec §2.3.1)
does not: its bridge raises `NotImplementedError` for every standard weight, and TransformerLens'
config-level `d_head` is the rotary key width, not the value width. Its output projection is still
a plain concatenate-the-heads linear map (`o_proj`), so `W_O` is that weight cut into heads of
`v_head_dim`; its value vectors are what `hook_v` holds (after `kv_b_proj`), and it has no `b_V`.
Gemma 4's global layers have wider heads than the config's `d_head`: their `W_O` is cut from the
output projection the same way. Granite's residual multiplier scales what the block writes, so it is
folded into `W_O` and `b_O` (`output_projection`).
"""

from typing import Any

from torch import Tensor

from alti_lens.errors import UnsupportedModelError

# The submodules that make a Hugging Face attention module multi-head latent attention.
_MLA_PARTS = ("kv_a_proj_with_mqa", "kv_b_proj", "o_proj")


def latent_attention(attn: Any) -> Any | None:
    """The Hugging Face MLA module a bridge attention component wraps, or None (not MLA)."""
    hf = getattr(attn, "original_component", None)
    if hf is None or not all(hasattr(hf, part) for part in _MLA_PARTS):
        return None
    return hf


def _mla_output_weights(hf: Any) -> tuple[Tensor, Tensor | None]:
    """`o_proj`'s weight `[d_model, H·d_v]` as `W_O [H, d_v, d_model]` (head-major: the
    attention output is `z.reshape(batch, pos, H·d_v)` before `o_proj`) and its bias."""
    o_proj = hf.o_proj
    weight = o_proj.weight.detach()
    d_v = int(getattr(hf, "v_head_dim", 0) or 0)
    if d_v <= 0 or weight.shape[1] % d_v:
        raise UnsupportedModelError(
            f"multi-head latent attention ({type(hf).__name__}): o_proj takes "
            f"{weight.shape[1]} inputs, which is not a whole number of heads of v_head_dim "
            f"{d_v}; alti_lens cannot cut its output projection into heads. Supported: MLA "
            "modules with `v_head_dim` and a concatenate-the-heads o_proj (DeepSeek-V2/V3)."
        )
    W_O = weight.T.reshape(weight.shape[1] // d_v, d_v, weight.shape[0])
    bias = getattr(o_proj, "bias", None)
    return W_O, None if bias is None else bias.detach()


def output_weights(attn: Any) -> tuple[Tensor, Tensor | None]:
    """`W_O [H, d_head, d_model]` and `b_O [d_model]` (None where absent) of an attention module."""
    hf = latent_attention(attn)
    if hf is not None:
        return _mla_output_weights(hf)
    b_O = attn.b_O
    return _per_layer_W_O(attn), None if b_O is None else b_O.detach()


def _per_layer_W_O(attn: Any) -> Tensor:
    """`attn.W_O`; where the layer's head width is not the config's (Gemma 4's global layers are
    wider than its sliding ones, and the bridge then raises `PerLayerGeometryError`), the output
    projection's weight `[d_model, H·d_head]` cut into heads of the layer's own `head_dim`."""
    try:
        return attn.W_O.detach()
    except Exception as error:  # TransformerLens' PerLayerGeometryError, matched by name
        if type(error).__name__ != "PerLayerGeometryError":
            raise
        weight = getattr(getattr(attn, "o", None), "weight", None)
        head_dim = getattr(getattr(attn, "original_component", None), "head_dim", None)
        if weight is None or head_dim is None:
            raise
        return weight.detach().T.reshape(-1, int(head_dim), weight.shape[0])


def value_bias(attn: Any) -> Tensor | None:
    """The value bias `b_V` (None where absent: MLA has none, its value path is `kv_b_proj`)."""
    if latent_attention(attn) is not None:
        return None
    # 3.x GQA keeps the raw kv-head bias in `_b_V`; `b_V` is then a repeat_interleave'd property.
    b = getattr(attn, "_b_V", None)
    if b is None:
        b = getattr(attn, "b_V", None)
    return b


def position_axis(hook_point: Any) -> int:
    """The position axis of a hook's activation: TransformerLens' `HookPoint.pos_dim` where a
    component fires on another layout (MLA's `hook_v` is `[batch, head, pos, d_head]`), else 1."""
    axis = getattr(hook_point, "pos_dim", None)
    return 1 if axis is None else int(axis)


def residual_multiplier(block: Any) -> float:
    """The factor the block multiplies its attention output by before the residual add: Granite's
    `residual_multiplier` (`h = x + m · attn(x)`), which the bridge's `ScaledResidualBlockBridge`
    declares as `residual_contribution_scale`; 1 elsewhere."""
    return float(getattr(block, "residual_contribution_scale", 1.0))


def output_projection(block: Any) -> tuple[Tensor, Tensor | None]:
    """`W_O` and `b_O` as they reach the residual stream: scaled by the residual multiplier, so
    the per-source vectors are `m · A v W_O` and the bias `m · b_O` (spec §2)."""
    W_O, b_O = output_weights(block.attn)
    m = residual_multiplier(block)
    if m != 1.0:
        W_O, b_O = W_O * m, None if b_O is None else b_O * m
    return W_O, b_O
