"""Which sources a query row can have: its support, and the key range that covers it.

Row `i` of an attention sub-block has a source `j` only where some head attends to it,
`∃h: A^h_ij ≠ 0` (causal and padding masks, sliding windows), plus, in self-attention, its own
position `i + query_offset` (the residual, spec §2.1). Every other `T_i(x_j)` is exactly zero
attention, so its contribution is an exact 0 and its vector need not be formed: the measures
form only keys in `[first, last)` of a row (the fused kernels) or of a chunk of rows (the chunked
PyTorch path, the head level). The token level, the head level and the kernels all take these
from here.
"""

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


def support(
    pattern: Float[Tensor, "head_index query_pos key_pos"], query_offset: int | None = None
) -> Bool[Tensor, "query_pos key_pos"]:
    """Keys each query row attends to in any head; with `query_offset` (self-attention), also row
    `i`'s own position `i + query_offset`. None: no own position (cross-attention, where the
    residual is a column of its own, and the head level, which scores it apart)."""
    mask = (pattern != 0).any(dim=0)
    if query_offset is not None:
        rows = torch.arange(mask.shape[0], device=mask.device)
        mask[rows, rows + query_offset] = True
    return mask


def row_ranges(
    mask: Bool[Tensor, "query_pos key_pos"],
) -> tuple[Int[Tensor, " query_pos"], Int[Tensor, " query_pos"]]:
    """Per row, `[first, last)` of its attended keys (int64); `(0, 0)` for a row with none."""
    n_keys = mask.shape[-1]
    attended = mask.any(dim=1)
    first = mask.to(torch.int8).argmax(dim=1)
    last = n_keys - mask.flip(dims=(1,)).to(torch.int8).argmax(dim=1)
    start = torch.where(attended, first, 0).to(torch.int64)
    stop = torch.where(attended, last, 0).to(torch.int64)
    return start, stop


def key_range(mask: Bool[Tensor, "query_pos key_pos"]) -> tuple[int, int] | None:
    """`[first, last)` of the keys any row of `mask` attends to (a chunk's keys to form); None
    where no row attends to any key."""
    cols = mask.any(dim=0).nonzero()
    if len(cols) == 0:
        return None
    return int(cols[0]), int(cols[-1]) + 1
