"""The contribution measure of one layer (spec §3).

ALTI (`"l1"`) scores source `j` of row `i` by its proximity to the output:

    d_ij = ||y_i − T_i(x_j)||_1,   c_ij = max(0, ||y_i||_1 − d_ij),   C_ij = c_ij / Σ_k c_ik

`"l2"` is the same with the L2 norm, `"norm"` is Kobayashi's `||T_i(x_j)||_2`, `"attention"` the
head-mean attention (no residual), and `"attention_rollout"` Abnar & Zuidema's `0.5·Ā + 0.5·I`.

`T` is `n × n × d_model` per layer. It is formed for a chunk of query rows at a time (heads summed
inside one batched matrix product, so the per-head `[H, n, n, d]` tensor never exists) and reduced
to distances at once; peak memory is set by the chunk, not by `n²·d`. Sources with zero attention
in every head (causal or padding masks, sliding windows) are exact zeros, and key columns outside a
chunk's attended range are never formed (`core.support`). The fused kernels (`core.kernels`) do
the same without writing `T`; `kernels.dispatch.choose` picks one per layer.
"""

import warnings

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from alti_lens._types import MEASURES, VECTOR_MEASURES
from alti_lens._types import Measure as Measure
from alti_lens.errors import InputError, KernelUnavailableError

from .decompose import AttentionTerms
from .kernels import dispatch, fused
from .kernels import triton as triton_kernel
from .support import key_range, row_ranges, support

# Query rows per chunk on a CPU. Each source j costs one small (rows × H) @ (H × d_model) product:
# too few rows and those products are inefficient, too many and the chunk of T (K × rows × d_model)
# falls out of cache. Measured on a 2-core CPU (GPT-2-small shape, one causal layer): at 512
# tokens 16–64 rows were within 10% of the best (0.28 s); at 2,048 tokens 4.1 s at 32 rows against
# 6.5 s at 3 rows and 9.5 s at 2.
_CPU_MIN_ROWS = 32
# Upper bound on the chunk of T, in bytes, on a CPU and as a share of free memory on a GPU.
_CPU_CHUNK_BYTES = 1 << 30
_GPU_MEMORY_FRACTION = 0.25


def auto_chunk_size(n_keys: int, d_model: int, device: torch.device, dtype: torch.dtype) -> int:
    """Query rows per chunk: cache-friendly on a CPU, bounded by free memory on a GPU."""
    per_row = max(1, n_keys * d_model * dtype.itemsize * 2)  # T and its reduction's temporaries
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(1, int(free * _GPU_MEMORY_FRACTION) // per_row)
    return max(1, min(_CPU_MIN_ROWS, _CPU_CHUNK_BYTES // per_row))


def source_scores(
    terms: AttentionTerms,
    measure: str,
    chunk_size: int | None = None,
    kernel: str = "auto",
    query_offset: int = 0,
) -> Float[Tensor, "query_pos source"]:
    """Unnormalised scores `c_ij` of every source of every row; see `scores_and_sums`."""
    return scores_and_sums(terms, measure, chunk_size, kernel, query_offset)[0]


def proximity(
    vectors: Float[Tensor, "*vectors d_model"],
    y: Float[Tensor, "*outputs d_model"],  # broadcastable to the vectors
    y_norm: Float[Tensor, "*outputs"],
    measure: str,
) -> Float[Tensor, "*vectors"]:
    """The one scorer of token and head level: `max(0, ||y||_p − ||y − v||_p)` (l1, l2) or
    `||v||_2` (norm) of each vector `v` against the output `y` it is part of (`y`, `y_norm`
    broadcast to `vectors`). Consumes `vectors` (subtracts in place)."""
    if measure == "norm":
        return torch.linalg.vector_norm(vectors, ord=2, dim=-1)
    p = 1 if measure == "l1" else 2
    dist = torch.linalg.vector_norm(vectors.sub_(y), ord=p, dim=-1)
    return (y_norm - dist).clamp_min_(0)


def scores_and_sums(
    terms: AttentionTerms,
    measure: str,
    chunk_size: int | None = None,
    kernel: str = "auto",
    query_offset: int = 0,
) -> tuple[Float[Tensor, "query_pos source"], Float[Tensor, "query_pos d_model"] | None]:
    """Unnormalised scores `c_ij` of every source of every row (exact zeros where unattended).

    Sources are the key positions, plus the residual as a last column when
    `terms.residual_column` (cross-attention, spec §2.4). `kernel` ("auto", "reference", "fused",
    "triton") picks the distance kernel through `kernels.dispatch.choose`, the one place that
    decides (with `ALTI_LENS_KERNEL`): the chunked PyTorch path below, the C++ kernel on a CPU or
    the Triton kernel on CUDA. The C++ kernel also returns `Σ_j T_i(x_j)` of the very vectors it
    measured (the residual column of cross-attention excluded), else None.

    `query_offset`: the key index of query row 0 in self-attention, when the rows are the last
    keys only (`alti(rows="last")` measures one row at the last layer): row `i`'s residual is
    source `i + query_offset`.
    """
    if measure in ("attention", "attention_rollout"):
        return _attention_scores(terms, measure, query_offset), None
    if measure not in VECTOR_MEASURES:
        raise InputError(
            f"measure must be one of {', '.join(MEASURES)}; got {measure!r}. Use 'l1' for ALTI."
        )
    y = terms.output
    mask = support(terms.pattern, None if terms.residual_column else query_offset)
    start, stop = row_ranges(mask)
    path = dispatch.choose(kernel, y.device, y.dtype, int((stop - start).sum()))
    if path == "reference":
        return _chunked_scores(terms, measure, mask, chunk_size, query_offset), None
    return _kernel_scores(terms, measure, path, mask, (start, stop), query_offset)


def _attention_scores(
    terms: AttentionTerms, measure: str, query_offset: int
) -> Float[Tensor, "query_pos source"]:
    """The head-mean attention (`"attention"`), or `0.5·Ā + 0.5·I` (`"attention_rollout"`)."""
    pattern = terms.pattern
    n_queries, n_keys = pattern.shape[1:]
    mean = pattern.mean(dim=0)
    # The residual's own column: the identity of self-attention, the extra column of cross.
    if terms.residual_column:
        eye = torch.zeros(n_queries, n_keys + 1, dtype=mean.dtype, device=mean.device)
        eye[:, -1] = 1.0
        mean = torch.cat([mean, torch.zeros_like(mean[:, :1])], dim=1)
    else:
        eye = torch.zeros(n_queries, n_keys, dtype=mean.dtype, device=mean.device)
        own = torch.arange(n_queries, device=mean.device)
        eye[own, own + query_offset] = 1.0
    return mean if measure == "attention" else 0.5 * mean + 0.5 * eye


def _chunked_scores(
    terms: AttentionTerms,
    measure: str,
    mask: Bool[Tensor, "query_pos key_pos"],
    chunk_size: int | None,
    query_offset: int,
) -> Float[Tensor, "query_pos source"]:
    """The reference path: `T` for a chunk of query rows at a time, over the chunk's attended
    key range only, scored at once with `proximity`."""
    y = terms.output
    n_queries, n_keys = terms.pattern.shape[1:]
    y_norm = torch.linalg.vector_norm(y, ord=1 if measure == "l1" else 2, dim=-1)
    rows = chunk_size or auto_chunk_size(n_keys, y.shape[-1], y.device, y.dtype)
    extra = 1 if terms.residual_column else 0
    scores = torch.zeros(n_queries, n_keys + extra, dtype=y.dtype, device=y.device)
    for start in range(0, n_queries, rows):
        stop = min(n_queries, start + rows)
        if terms.residual_column:
            own = terms.residual[start:stop].clone()
            scores[start:stop, -1] = proximity(own, y[start:stop], y_norm[start:stop], measure)
        keys = key_range(mask[start:stop])
        if keys is None:
            continue
        k0, k1 = keys
        T = _chunk_vectors(terms, start, stop, k0, k1, query_offset)
        score = proximity(T, y[start:stop], y_norm[start:stop], measure).T
        scores[start:stop, k0:k1] = score * mask[start:stop, k0:k1]
    return scores


def _chunk_vectors(
    terms: AttentionTerms, start: int, stop: int, k0: int, k1: int, query_offset: int
) -> Float[Tensor, "key_pos row d_model"]:
    """`T_i(x_j)` of rows `start:stop` and keys `k0:k1`, key-major."""
    chunk = terms.pattern[:, start:stop, k0:k1]
    if terms.row_scale is not None:
        chunk = chunk * terms.row_scale[start:stop, None]
    # T[j, i] = Σ_h A^h_ij values[j, h]: one (rows × H) @ (H × d_model) product per source j.
    # The permuted chunk is made contiguous (a rows × keys × H copy): torch 2.13's CPU bmm on
    # the strided view measured 100–500× slower (0.57 s against ~5 ms per chunk at 512 tokens).
    T = torch.bmm(chunk.permute(2, 1, 0).contiguous(), terms.values[k0:k1])
    if not terms.residual_column:
        idx = torch.arange(stop - start, device=T.device)
        T[idx + start + query_offset - k0, idx] += terms.residual[start:stop]
    return T


def _kernel_scores(
    terms: AttentionTerms,
    measure: str,
    path: str,
    mask: Bool[Tensor, "query_pos key_pos"],
    ranges: tuple[Int[Tensor, " query_pos"], Int[Tensor, " query_pos"]],
    query_offset: int,
) -> tuple[Float[Tensor, "query_pos source"], Float[Tensor, "query_pos d_model"] | None]:
    """`scores_and_sums` through a fused kernel ("fused": C++, "triton"), over each row's
    attended key range `ranges`."""
    pattern, y = terms.pattern, terms.output
    p = 1 if measure == "l1" else 2
    y_norm = torch.linalg.vector_norm(y, ord=p, dim=-1)
    if terms.row_scale is not None:
        pattern = pattern * terms.row_scale[None, :, None]
    args = (pattern, terms.values, terms.residual, y, *ranges, 0 if measure == "norm" else p)
    sums: Tensor | None = None
    diagonal = not terms.residual_column
    if path == "triton":
        dist = triton_kernel.distances(*args, diagonal=diagonal, offset=query_offset)
    else:
        result = fused.distances(*args, diagonal=diagonal, offset=query_offset)
        if result is None:  # pragma: no cover - dispatch.choose loaded it for these tensors
            raise KernelUnavailableError("the fused kernel was chosen but did not run")
        dist, sums, kernel_norm = result
        if measure != "norm":  # summed in the kernel's order: T_ij == 0 scores exactly 0
            y_norm = kernel_norm
    scores = dist if measure == "norm" else (y_norm[:, None] - dist).clamp_min_(0)
    scores = scores * mask
    if terms.residual_column:
        own = proximity(terms.residual.clone(), y, y_norm, measure)
        scores = torch.cat([scores, own[:, None]], dim=1)
    return scores, sums


def normalise(
    scores: Float[Tensor, "query_pos source"], residual_column: bool = False, query_offset: int = 0
) -> Float[Tensor, "query_pos source"]:
    """Row-normalise; a row whose scores are all 0 puts its mass on its own position (row `i` is
    source `i + query_offset`), or on the residual column in cross-attention (and warns)."""
    totals = scores.sum(dim=-1, keepdim=True)
    empty = totals.squeeze(-1) == 0
    if bool(empty.any()):
        rows = empty.nonzero().flatten().tolist()
        warnings.warn(
            f"rows {rows} have no source closer to the output than the output's own norm; "
            "their contribution is put on their own position (spec §3)",
            stacklevel=3,
        )
        scores = scores.clone()
        own = [-1] * len(rows) if residual_column else [r + query_offset for r in rows]
        scores[rows, own] = 1.0
        totals = scores.sum(dim=-1, keepdim=True)
    return scores / totals


def layer_contributions(
    terms: AttentionTerms, measure: str, chunk_size: int | None = None
) -> Float[Tensor, "query_pos source"]:
    """The row-normalised contribution matrix `C` of one layer and one sequence."""
    return normalise(source_scores(terms, measure, chunk_size), terms.residual_column)
