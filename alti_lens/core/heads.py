"""Head-level contributions (an extension: the ALTI papers define token-level contributions only).

Row `i` of a self-attention sub-block is split into one part per (head, source) plus the residual:

    y_i = Σ_h Σ_j r_i A^h_ij values[j, h]  +  residual_i  +  bias_i

(the token-level `T_i(x_j)` is `Σ_h` of the parts of source `j`, plus the residual when `j = i`).
Each part is scored with the same proximity measure as ALTI, `max(0, ||y_i|| − ||y_i − part||)`
(or `||part||` for `"norm"`), and the scores of a row are normalised over all heads, sources and
the residual together. Chunked over query rows and one head at a time, so peak memory is that of
the token-level kernel. Pure tensor code.
"""

import warnings

import torch
from jaxtyping import Float
from torch import Tensor

from alti_lens._types import MEASURES, VECTOR_MEASURES
from alti_lens.errors import InputError

from .decompose import AttentionTerms
from .measures import auto_chunk_size, proximity, scores_and_sums
from .support import key_range, support


def head_vectors(
    terms: AttentionTerms, head: int, start: int, stop: int, k0: int, k1: int
) -> Float[Tensor, "row key_pos d_model"]:
    """The parts `r_i A^h_ij values[j, h]` of rows `start:stop` and sources `k0:k1`, one head."""
    weights = terms.pattern[head, start:stop, k0:k1]
    if terms.row_scale is not None:
        weights = weights * terms.row_scale[start:stop, None]
    return weights[:, :, None] * terms.values[k0:k1, head][None]


def _all_heads(
    terms: AttentionTerms, measure: str, chunk_size: int | None
) -> Float[Tensor, "head_index query_pos key_pos"]:
    """Every (head, source) part's score through the token-level measure and its kernels, in
    one call: a one-head sub-block whose sources are the (head, key) pairs (pattern
    `A[h, i, j]` at column `h · n_keys + j`, value `values[j, h]`), and whose residual is a
    zero extra column (scored 0, dropped). Unattended pairs are exact zeros, as at token level."""
    n_heads, n_queries, n_keys = terms.pattern.shape
    flat = terms.pattern.permute(1, 0, 2).reshape(1, n_queries, n_heads * n_keys)
    values = terms.values.permute(1, 0, 2).reshape(n_heads * n_keys, 1, -1)
    pairs = AttentionTerms(
        pattern=flat,
        row_scale=terms.row_scale,
        values=values,
        residual=torch.zeros_like(terms.output),
        bias=terms.bias,
        output=terms.output,
        residual_column=True,
    )
    scores = scores_and_sums(pairs, measure, chunk_size)[0][:, :-1]
    return scores.reshape(n_queries, n_heads, n_keys).permute(1, 0, 2)


def head_source_scores(
    terms: AttentionTerms, measure: str, chunk_size: int | None = None, kernel: bool = True
) -> tuple[Float[Tensor, "head_index query_pos key_pos"], Float[Tensor, " query_pos"]]:
    """Unnormalised scores of every (head, source) part and of the residual, per row. `kernel`:
    each head through the token-level measure's kernels (`scores_and_sums`, one head at a
    time); False: the plain chunked PyTorch path below (the reference the tests compare)."""
    if terms.residual_column:
        raise InputError(
            "head-level contributions are defined for self-attention; got cross-attention terms "
            "(residual_column=True). Measure cross-attention at token level (scores_and_sums)."
        )
    pattern = terms.pattern
    n_heads, n_queries, n_keys = pattern.shape
    if measure in ("attention", "attention_rollout"):
        share = 1.0 if measure == "attention" else 0.5
        residual = torch.full((n_queries,), 1.0 - share, dtype=pattern.dtype, device=pattern.device)
        return pattern * (share / n_heads), residual
    if measure not in VECTOR_MEASURES:
        raise InputError(
            f"measure must be one of {', '.join(MEASURES)}; got {measure!r}. Use 'l1' for ALTI."
        )
    y = terms.output
    p = 1 if measure == "l1" else 2
    y_norm = torch.linalg.vector_norm(y, ord=p, dim=-1)

    def score(vectors: Tensor, rows: slice) -> Tensor:
        return proximity(vectors, y[rows, None], y_norm[rows, None], measure)

    residual = score(terms.residual[:, None].clone(), slice(None))[:, 0]
    if kernel:
        return _all_heads(terms, measure, chunk_size), residual
    heads = torch.zeros(n_heads, n_queries, n_keys, dtype=y.dtype, device=y.device)
    step = chunk_size or auto_chunk_size(n_keys, y.shape[-1], y.device, y.dtype)
    for start in range(0, n_queries, step):
        stop = min(n_queries, start + step)
        # the chunk's keys: attended by some head (the residual is scored apart, no own position)
        keys = key_range(support(pattern[:, start:stop]))
        if keys is None:
            continue
        k0, k1 = keys
        for h in range(n_heads):
            part = head_vectors(terms, h, start, stop, k0, k1)
            attended = pattern[h, start:stop, k0:k1] != 0
            heads[h, start:stop, k0:k1] = score(part, slice(start, stop)) * attended
    return heads, residual


def normalise_step(
    heads: Float[Tensor, "head_index query_pos key_pos"],
    residual: Float[Tensor, " query_pos"],
    mlp: Float[Tensor, " query_pos"] | None = None,
) -> tuple[
    Float[Tensor, "head_index query_pos key_pos"], Float[Tensor, " query_pos"], Tensor | None
]:
    """Normalise each row over all its parts: every (head, source), the residual and (parallel
    blocks, the MLP step with no heads) the MLP. A row whose parts all score 0 goes to the
    residual, and warns (spec §3, §8)."""
    totals = heads.sum(dim=(0, 2)) + residual
    if mlp is not None:
        totals = totals + mlp
    empty = totals == 0
    if bool(empty.any()):
        warnings.warn(
            f"rows {empty.nonzero().flatten().tolist()} have no part closer to the output than "
            "the output's own norm; their weight is put on the residual",
            stacklevel=3,
        )
        residual = torch.where(empty, torch.ones_like(residual), residual)
        totals = torch.where(empty, torch.ones_like(totals), totals)
    shares = None if mlp is None else mlp / totals
    return heads / totals[None, :, None], residual / totals, shares


def normalise_heads(
    heads: Float[Tensor, "head_index query_pos key_pos"], residual: Float[Tensor, " query_pos"]
) -> tuple[Float[Tensor, "head_index query_pos key_pos"], Float[Tensor, " query_pos"]]:
    """Normalise each row over heads, sources and the residual (`normalise_step` without an
    MLP part)."""
    H, r, _ = normalise_step(heads, residual)
    return H, r
