"""Per-source decomposition of one attention sub-block: `y_i = Σ_j T_i(x_j) + bias_i` (spec §2).

With `a_i(j) = Σ_h A^h_ij · v^h_j W_O^h` (Kobayashi's per-source vectors; `v` carries the value bias
and the pre-norm's affine, so those are attributed in proportion to attention):

- pre-norm, attention-only (§2.1): `T_i(x_j) = a_i(j) + δ_ij x_j`,        bias `b_O`
- parallel attention + MLP (§2.3): as pre-norm, with the virtual `y_i = x_i + attn_out_i`
- post-norm (§2.2):                `T_i(x_j) = L_i(a_i(j) + δ_ij x_j)`,  bias `L_i(b_O) + β`
- sandwich norm (§2.3):            `T_i(x_j) = P_i(a_i(j)) + δ_ij x_j`,  bias `P_i(b_O) + β`
- an RMSNorm before `W_O` (BitNet): as pre-norm with `a_i(j) / s_i` (its `γ` folded into `W_O`)

where `L_i`/`P_i` are the norm linearised at row `i`: `γ ⊙ centre(u) / s_i` (LayerNorm) or
`γ ⊙ u / s_i` (RMSNorm), with the real scale `s_i` read from the model. Because the norm is linear
once `s_i` is frozen, every block kind reduces to one form, `AttentionTerms`:

    T_i(x_j) = row_scale_i · Σ_h A^h_ij · values[j, h] + δ_ij · residual_j

with `values[j, h] = γ ⊙ centre(v^h_j W_O^h)` (affine parts as applicable) and `row_scale_i = 1/s_i`
(1 without a norm). This module is pure: it knows no model classes, only tensors.
"""

from dataclasses import dataclass

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from alti_lens.errors import UnsupportedModelError

from .handover import BlockKind, BlockTensors


@dataclass(frozen=True)
class AttentionTerms:
    """One sequence's sub-block in the common form `T_i(x_j) = r_i Σ_h A^h_ij V[j,h] + δ_ij R_j`."""

    pattern: Float[Tensor, "head_index query_pos key_pos"]
    row_scale: Float[Tensor, " query_pos"] | None
    values: Float[Tensor, "key_pos head_index d_model"]
    residual: Float[Tensor, "query_pos d_model"]
    bias: Float[Tensor, "query_pos d_model"]
    output: Float[Tensor, "query_pos d_model"]
    # False: the residual is source `j = i` (self-attention). True: it is one extra source after the
    # key columns (cross-attention), so a row has `key_pos + 1` sources.
    residual_column: bool = False


def _centre(u: Float[Tensor, "*rest d_model"]) -> Float[Tensor, "*rest d_model"]:
    return u - u.mean(dim=-1, keepdim=True)


def affine(
    u: Float[Tensor, "*rest d_model"], weight: Float[Tensor, " d_model"] | None, centred: bool
) -> Float[Tensor, "*rest d_model"]:
    """The linear part of the norm without the 1/s_i row scale: `γ ⊙ centre(u)` or `γ ⊙ u`."""
    if centred:
        u = _centre(u)
    return u if weight is None else u * weight


def _select(positions: Int[Tensor, " pos"], n: int) -> Int[Tensor, " pos"] | slice:
    # Unpadded sequences take every position: slicing avoids copying the pattern.
    return slice(None) if len(positions) == n else positions


def _check_heads(
    v: Float[Tensor, "key_pos kv_head d_head"], W_O: Float[Tensor, "head_index d_head d_model"]
) -> None:
    """The value vectors fit `W_O`: whole query-head groups per kv head, the same head width
    (the value width, which multi-head latent attention sets apart from the query/key width)."""
    n_heads, n_kv = W_O.shape[0], v.shape[1]
    if n_heads % n_kv:
        raise UnsupportedModelError(
            f"grouped-query attention needs a whole number of query heads per key/value head; "
            f"got {n_heads} query heads (W_O) and {n_kv} key/value heads (hook_v). alti_lens "
            "supports models whose query heads split evenly into key/value groups (TL's "
            "repeat_interleave); check the model's n_heads and n_key_value_heads."
        )
    if v.shape[-1] != W_O.shape[1]:
        raise UnsupportedModelError(
            f"the value vectors (hook_v) are {v.shape[-1]} wide but W_O's heads read "
            f"{W_O.shape[1]}: the model's attention does not write `z_h W_O^h` with the hooked "
            "values, so alti_lens cannot decompose it. Supported: standard, grouped-query and "
            "multi-head latent attention (spec §2.3.1)."
        )


def decompose_block(
    block: BlockTensors,
    index: int,
    positions: Int[Tensor, " query_pos"],
    dtype: torch.dtype,
    key_positions: Int[Tensor, " key_pos"] | None = None,
) -> AttentionTerms:
    """Bring sequence `index` of `block`, restricted to its real positions, into common form.

    `positions` are the real query positions; `key_positions` the real key positions when they
    differ (cross-attention: source positions), else the same.
    """
    rows = _select(positions, block.pattern.shape[-2])
    keys = rows if key_positions is None else _select(key_positions, block.pattern.shape[-1])
    pattern = block.pattern[index][:, rows][:, :, keys].to(dtype)
    if block.head_gate is not None:  # a query row's per-head output gate scales its whole row
        pattern = pattern * block.head_gate[index][:, rows, None].to(dtype)
    v = block.v[index, keys].to(dtype)
    x = block.resid_pre[index, rows].to(dtype)
    y = block.output[index, rows].to(dtype)
    cross = block.cross
    W_O = block.W_O.to(dtype)
    _check_heads(v, W_O)
    # Grouped-query attention: query head h reads kv head h // (H / H_kv) (TL's repeat_interleave).
    # (Multi-head latent attention has one value per head: H_kv = H.)
    v = v.repeat_interleave(W_O.shape[0] // v.shape[1], dim=1)
    # Per-head source vectors v^h_j W_O^h: n·H·d_head·d multiply-adds, never [H, n, n, d].
    values = einops.einsum(
        v, W_O, "key_pos head d_head, head d_head d_model -> key_pos head d_model"
    )
    b_O = torch.zeros_like(y[0]) if block.b_O is None else block.b_O.to(dtype)

    if block.kind in (BlockKind.PRE_NORM, BlockKind.PARALLEL, BlockKind.ATTN_ONLY):
        bias = einops.repeat(b_O, "d_model -> pos d_model", pos=y.shape[0])
        sub = block.attn_sub_norm  # BitNet: the heads' output is divided by s_i before W_O
        row_scale = None if sub is None else 1.0 / sub[index, rows].to(dtype)
        return AttentionTerms(pattern, row_scale, values, x, bias, y, cross)

    norm = block.norm
    if norm is None:
        # the read-out's contract (core.handover), not user input: a bug in alti_lens if hit
        raise ValueError(f"a {block.kind.value} block needs its norm's tensors")
    weight = None if norm.weight is None else norm.weight.to(dtype)
    inv_scale = 1.0 / norm.scale[index, rows].to(dtype)
    bias = einops.einsum(
        inv_scale, affine(b_O, weight, norm.centred), "pos, d_model -> pos d_model"
    )
    if norm.bias is not None:
        bias = bias + norm.bias.to(dtype)
    values = affine(values, weight, norm.centred)
    if block.kind is BlockKind.POST_NORM:
        # The residual x_i passes through the same norm as the attention output.
        residual = affine(x, weight, norm.centred) * inv_scale[:, None]
    elif block.kind is BlockKind.SANDWICH:
        residual = x
    else:  # pragma: no cover - exhaustive over BlockKind
        raise ValueError(f"unknown block kind {block.kind}")
    return AttentionTerms(pattern, inv_scale, values, residual, bias, y, cross)


def reconstruct(terms: AttentionTerms) -> Float[Tensor, "pos d_model"]:
    """`Σ_j T_i(x_j) + bias_i`: the sum of the decomposition, to compare with the real output.

    Summing over sources before forming `T` turns the n×n×d sum into one matrix product per head
    (measured at 2,048 tokens, GPT-2-small shape: 0.39 s per layer, against 0.68 s for one einsum
    over heads and sources together).
    """
    pattern = terms.pattern
    if terms.row_scale is not None:
        pattern = pattern * terms.row_scale[None, :, None]
    per_head = torch.bmm(pattern, einops.rearrange(terms.values, "key head d -> head key d"))
    return per_head.sum(dim=0) + terms.residual + terms.bias
