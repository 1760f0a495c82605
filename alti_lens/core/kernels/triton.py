"""The fused distance kernel for CUDA (Triton): `||y_i − T_i(x_j)||` without writing `T`.

One program takes a block of query rows `I` and a block of key columns `J`. For each key `j` of
the block and each slice `D` of `d_model`, the vectors `T_{i∈I, j, D}` are one small matrix
product `A[j, I, :] (|I| × H) @ V[j, :, D] (H × |D|)` with inner size `H` (tensor-core `tl.dot`),
reduced at once to the distance, so the `n × n × d_model` tensor never exists in memory. The
product runs at fp32 accuracy: `input_precision="tf32x3"` (three TF32 products) on float32, IEEE on
float64, because `||y||_1 − ||y − T||_1` is a difference of large, similar numbers and plain TF32
(10-bit mantissa) is too coarse. `ALTI_LENS_TRITON_PRECISION=ieee` forces IEEE fp32 products
(read by `dispatch.triton_precision`).

Triton is optional: without it (or without a CUDA device) the chunked PyTorch path is used
(`dispatch.choose`, `dispatch.triton_applies`). The kernel runs on CPU tensors under Triton's
interpreter (`TRITON_INTERPRET=1`), which is how it is tested where no GPU is present (slow: for
tests only).
"""

from contextlib import nullcontext
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .dispatch import triton_interpreting, triton_precision

_cache: dict[bool, Any] = {}


def _source() -> Any:
    """The kernel, decorated on first use: Triton reads `TRITON_INTERPRET` when it decorates."""
    import triton  # pyright: ignore[reportMissingImports]
    import triton.language as tl  # pyright: ignore[reportMissingImports]

    def alti_distance_kernel(
        A,  # [key, query, head] (contiguous): the block A[j, I, :] is a row-major |I| × H tile
        V,  # [key, head, d_model]
        R,  # [query, d_model]: the residual, added where j == i (self-attention)
        Y,  # [query, d_model]: the block output y
        KMIN,  # [query] first key formed for each row
        KMAX,  # [query] one past the last key formed for each row
        OUT,  # [query, key]: the distances
        nq,
        nk,
        H,
        d,
        offset,  # row i's residual is added to key i + offset
        P: tl.constexpr,  # 1: L1 to y, 2: L2 to y, 0: L2 norm of T itself
        DIAG: tl.constexpr,  # add R on the diagonal (self-attention)
        PRECISION: tl.constexpr,
        BI: tl.constexpr,
        BJ: tl.constexpr,
        BH: tl.constexpr,
        BD: tl.constexpr,
    ):
        pid_i = tl.program_id(0)
        pid_j = tl.program_id(1)
        i0 = pid_i * BI
        rows = i0 + tl.arange(0, BI)
        row_ok = rows < nq
        heads = tl.arange(0, BH)
        head_ok = heads < H
        cols = tl.arange(0, BD)
        # Keys this row block needs (causal and padding masks leave whole blocks out).
        lo = tl.min(tl.load(KMIN + rows, mask=row_ok, other=nk), axis=0)
        hi = tl.max(tl.load(KMAX + rows, mask=row_ok, other=0), axis=0)
        j_start = tl.maximum(pid_j * BJ, lo)
        j_stop = tl.minimum(tl.minimum(pid_j * BJ + BJ, nk), hi)
        for j in range(j_start, j_stop):
            jj = j + tl.zeros([], dtype=tl.int64)  # offsets of long sequences overflow int32
            a = tl.load(
                A + jj * nq * H + rows[:, None] * H + heads[None, :],
                mask=row_ok[:, None] & head_ok[None, :],
                other=0.0,
            )
            acc = tl.zeros([BI], dtype=tl.float32 if PRECISION != "ieee64" else tl.float64)
            for d0 in range(0, d, BD):
                dims = d0 + cols
                dim_ok = dims < d
                v = tl.load(
                    V + jj * H * d + heads[:, None] * d + dims[None, :],
                    mask=head_ok[:, None] & dim_ok[None, :],
                    other=0.0,
                )
                if PRECISION == "ieee64":
                    t = tl.dot(a, v, input_precision="ieee")
                else:
                    t = tl.dot(a, v, input_precision=PRECISION)
                block_ok = row_ok[:, None] & dim_ok[None, :]
                if DIAG:  # noqa: SIM102 - compile-time branch around a run-time one
                    if (j >= i0 + offset) & (j < i0 + offset + BI):
                        r = tl.load(R + rows[:, None] * d + dims[None, :], mask=block_ok, other=0.0)
                        t += tl.where((rows + offset == j)[:, None], r, 0.0)
                if P == 0:
                    acc += tl.sum(t * t, axis=1)
                else:
                    y = tl.load(Y + rows[:, None] * d + dims[None, :], mask=block_ok, other=0.0)
                    e = y - t
                    if P == 1:
                        acc += tl.sum(tl.abs(e), axis=1)
                    else:
                        acc += tl.sum(e * e, axis=1)
            if P != 1:
                acc = tl.sqrt(acc)
            kmin = tl.load(KMIN + rows, mask=row_ok, other=0)
            kmax = tl.load(KMAX + rows, mask=row_ok, other=0)
            keep = row_ok & (j >= kmin) & (j < kmax)
            tl.store(OUT + rows.to(tl.int64) * nk + jj, acc, mask=keep)

    return triton.jit(alti_distance_kernel)


def _kernel() -> Any:
    key = triton_interpreting()
    if key not in _cache:
        _cache[key] = _source()
    return _cache[key]


def distances(
    pattern: Float[Tensor, "head_index query_pos key_pos"],
    values: Float[Tensor, "key_pos head_index d_model"],
    residual: Float[Tensor, "query_pos d_model"],
    output: Float[Tensor, "query_pos d_model"],
    key_start: Int[Tensor, " query_pos"],
    key_stop: Int[Tensor, " query_pos"],
    p: int,
    diagonal: bool,
    offset: int = 0,
    block_rows: int = 64,
    block_keys: int = 32,
    block_dims: int = 64,
) -> Float[Tensor, "query_pos key_pos"]:
    """`||y_i − T_ij||_p` (p = 1, 2) or `||T_ij||_2` (p = 0) for keys `key_start ≤ j < key_stop`
    (0 elsewhere); the same contract as `fused.distances`, without the sums."""
    import triton  # pyright: ignore[reportMissingImports]

    H, nq, nk = pattern.shape
    d = values.shape[-1]
    # [key, query, head]: for a fixed key the |I| × H tile is contiguous (coalesced loads).
    A = pattern.permute(2, 1, 0).contiguous()
    out = torch.zeros(nq, nk, dtype=pattern.dtype, device=pattern.device)
    if nq == 0 or nk == 0:
        return out
    grid = (triton.cdiv(nq, block_rows), triton.cdiv(nk, block_keys))
    # Triton launches on the current CUDA device: a layer of a model split over GPUs lives on
    # another one, so launch where its tensors are (a no-op on the CPU, under the interpreter)
    with torch.cuda.device(pattern.device) if pattern.is_cuda else nullcontext():
        _kernel()[grid](
            A, values.contiguous(), residual.contiguous(), output.contiguous(),
            key_start.to(torch.int64).contiguous(), key_stop.to(torch.int64).contiguous(), out,
            nq, nk, H, d, offset,
            P=p, DIAG=diagonal, PRECISION=triton_precision(pattern.dtype),
            BI=block_rows, BJ=block_keys, BH=max(16, triton.next_power_of_2(H)), BD=block_dims,
        )  # fmt: skip
    return out
