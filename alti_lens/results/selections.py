"""Pure selections over result tensors: top sources, dropping sources, merging spans and words.

Functions of tensors and token strings only (torch, no rendering); the result classes expose them
as methods (`top_sources`, `without`, `merge`, ...). Index checks raise `InputIndexError` (also
an `IndexError`) naming the argument, the valid range and the fix.
"""

import torch
from jaxtyping import Float, Int
from torch import Tensor

from alti_lens.errors import InputError, InputIndexError

# How tokenizers mark the start of a word (plain space, GPT-2's `Ġ`, SentencePiece's `▁`); the
# same marks decide how `alti_lens.render.text` joins tokens.
SPACE_MARKS = (" ", "Ġ", "▁")


def check_index(value: int, size: int, name: str, there: str) -> int:
    """`value` as an index into `size` items (negative counts from the end), or an error that
    says which argument came, what there is (`there`, formatted with `size`) and the fix."""
    if not -size <= value < size:
        valid = f"0..{size - 1} (or -{size}..-1 from the end)" if size else "nothing"
        raise InputIndexError(
            f"{name}={value} is out of range: {there.format(size)}; expected {valid}. "
            f"Fix: pass a {name} within that range."
        )
    return value % size


def last_real(mask: Int[Tensor, "batch pos"], batch: int, position: int, name: str) -> int:
    """The position index of `position` in sequence `batch`: as given when >= 0, else counted
    from the last real (unpadded) token; out-of-range values raise `InputIndexError`."""
    check_index(batch, mask.shape[0], "batch", "this result holds {} sequences")
    real = mask[batch].nonzero().flatten()
    if position >= 0:
        return check_index(position, mask.shape[1], name, "the sequences have {} positions")
    return int(
        real[check_index(position, len(real), name, f"sequence {batch} has {{}} real tokens")]
    )


def top(
    values: Float[Tensor, " pos"],
    tokens: list[str],
    k: int,
    real: Tensor | None = None,
) -> list[tuple[int, str, float]]:
    """The `k` largest entries as (position, token, value), largest first; with `real` (a 1/0
    mask over the positions) among the real ones only, so padding is never listed."""
    if k < 0:
        raise InputError(f"k={k}: expected how many entries to list (k >= 0). Fix: pass k=5.")
    if real is not None:
        keep = real.bool().nonzero().flatten()
        best = torch.topk(values[keep], min(k, len(keep)))
        return [
            (int(keep[i]), tokens[int(keep[i])], float(v))
            for v, i in zip(best.values, best.indices, strict=True)
        ]
    k = min(k, values.numel())
    best = torch.topk(values, k)
    return [
        (int(i), tokens[int(i)], float(v)) for v, i in zip(best.values, best.indices, strict=True)
    ]


def renormalise_without(
    matrices: Float[Tensor, "*any query_pos key_pos"], drop: Tensor
) -> Float[Tensor, "*any query_pos key_pos"]:
    """Zero the source columns where `drop` is True and renormalise each row to sum to 1 (rows
    left with nothing stay 0)."""
    kept = matrices * (~drop).to(matrices.dtype)
    totals = kept.sum(dim=-1, keepdim=True)
    return torch.where(totals > 0, kept / torch.where(totals > 0, totals, 1), kept)


def _special(token: str) -> bool:
    token = token.strip()
    return (token.startswith("<") and token.endswith(">")) or (
        token.startswith("[") and token.endswith("]")
    )


def word_spans(tokens: list[str]) -> list[tuple[int, int]]:
    """Word spans `(start, stop)` from token strings: WordPiece `##` pieces and, for tokenizers
    that mark word starts with a space (GPT-2 `Ġ`, SentencePiece `▁`), unmarked pieces continue
    the previous word; special tokens are words of their own."""
    marked = any(t.startswith(SPACE_MARKS) for t in tokens)
    spans: list[list[int]] = []
    for i, t in enumerate(tokens):
        continues = (
            i > 0
            and not _special(t)
            and not _special(tokens[i - 1])
            and (t.startswith("##") or (marked and t != "" and not t.startswith(SPACE_MARKS)))
        )
        if continues:
            spans[-1][1] = i + 1
        else:
            spans.append([i, i + 1])
    return [(a, b) for a, b in spans]


def complete_spans(spans: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """Validate `spans` over `n` positions and add every uncovered position as its own span."""
    covered = torch.zeros(n, dtype=torch.bool)
    for a, b in spans:
        if not (0 <= a < b <= n):
            raise InputError(
                f"span ({a}, {b}) is not within 0..{n}: expected (start, stop) with "
                f"0 <= start < stop <= {n} (the sequence's real tokens). Fix: correct that span."
            )
        if covered[a:b].any():
            raise InputError(
                f"span ({a}, {b}) overlaps another span: each position may belong to one span "
                "only. Fix: merge the overlapping spans into one, or drop one of them."
            )
        covered[a:b] = True
    out = list(spans) + [(i, i + 1) for i in range(n) if not covered[i]]
    return sorted(out)


def merge(
    matrices: Float[Tensor, "*any query_pos key_pos"], spans: list[tuple[int, int]]
) -> Float[Tensor, "*any span span"]:
    """Sum over the source columns of each span and average over its query rows, so merged rows
    still sum to 1 (ALTI+ paper's word-level protocol)."""
    columns = torch.stack([matrices[..., a:b].sum(-1) for a, b in spans], dim=-1)
    return torch.stack([columns[..., a:b, :].mean(-2) for a, b in spans], dim=-2)


def masked_mean(values: Float[Tensor, "batch pos"], mask: Tensor) -> Float[Tensor, " batch"]:
    """The mean of each row over its `mask`ed entries (NaN for a row with none)."""
    counts = mask.sum(-1)
    total = (values * mask).sum(-1)
    return torch.where(
        counts > 0, total / counts.clamp_min(1), torch.full_like(total, float("nan"))
    )
