"""Views of results: top sources, dropping tokens, merging spans and words, tables, HTML.

Pure functions over result tensors and token strings; the result classes expose them as methods.
"""

import html
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

_SPACE_MARKS = (" ", "Ġ", "▁")


def top(values: Float[Tensor, " pos"], tokens: list[str], k: int) -> list[tuple[int, str, float]]:
    """The `k` largest entries as (position, token, value), largest first."""
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
    marked = any(t.startswith(_SPACE_MARKS) for t in tokens)
    spans: list[list[int]] = []
    for i, t in enumerate(tokens):
        continues = (
            i > 0
            and not _special(t)
            and not _special(tokens[i - 1])
            and (t.startswith("##") or (marked and t != "" and not t.startswith(_SPACE_MARKS)))
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
            raise ValueError(f"span ({a}, {b}) is not within 0..{n}")
        if covered[a:b].any():
            raise ValueError(f"span ({a}, {b}) overlaps another span")
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


def coloured_tokens(tokens: list[str], values: Tensor, title: str = "") -> str:
    """Tokens as HTML spans shaded by value (largest = darkest), value in the tooltip."""
    peak = float(values.max()) if values.numel() and float(values.max()) > 0 else 1.0
    parts = []
    for token, value in zip(tokens, values.tolist(), strict=True):
        alpha = max(0.0, value) / peak
        parts.append(
            f'<span title="{value:.4f}" style="background: rgba(230, 85, 13, {alpha:.3f}); '
            f'padding: 1px 2px; margin: 1px; border-radius: 3px">{html.escape(token)}</span>'
        )
    head = f"<div><b>{html.escape(title)}</b></div>" if title else ""
    return f'{head}<div style="line-height: 2; font-family: monospace">{"".join(parts)}</div>'


def dataframe(columns: dict[str, list[Any]]) -> Any:
    try:
        import pandas as pd
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "to_dataframe() needs pandas: pip install pandas (or alti-lens[pandas])"
        ) from err
    return pd.DataFrame(columns)
