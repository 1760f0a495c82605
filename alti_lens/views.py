"""Views of results: top sources, dropping tokens, merging spans and words, tables, HTML.

Pure functions over result tensors and token strings; the result classes expose them as methods.
"""

import html
import os
import sys
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


# Sequential scale: white to dark orange; diverging: blue (negative) through white to red.
_LOW, _HIGH = (255, 245, 235), (217, 72, 1)
_NEGATIVE, _POSITIVE = (33, 102, 172), (178, 24, 43)


def shade(value: float, peak: float, diverging: bool = False) -> tuple[int, int, int]:
    """The background colour of `value` on a scale whose extreme is `peak` (> 0)."""
    t = max(-1.0, min(1.0, value / peak)) if peak > 0 else 0.0
    if diverging:
        low, high = (255, 255, 255), _POSITIVE if t >= 0 else _NEGATIVE
        t = abs(t)
    else:
        low, high = _LOW, _HIGH
        t = max(0.0, t)
    r, g, b = (round(a + (b - a) * t) for a, b in zip(low, high, strict=True))
    return r, g, b


def _peak(values: list[float], diverging: bool, peak: float | None = None) -> float:
    if peak is None:
        peak = max((abs(v) if diverging else v for v in values), default=0.0)
    return peak if peak > 0 else 1.0


def coloured_tokens(
    tokens: list[str],
    values: Tensor,
    title: str = "",
    *,
    mark: int | None = None,
    diverging: bool = False,
    peak: float | None = None,
) -> str:
    """Tokens as HTML spans shaded by value (largest = darkest; `diverging`: negative values
    blue, positive red), value in the tooltip; the token at `mark` is outlined."""
    numbers = values.tolist()
    peak = _peak(numbers, diverging, peak)
    parts = []
    for j, (token, value) in enumerate(zip(tokens, numbers, strict=True)):
        r, g, b = shade(value, peak, diverging)
        dark = (r * 299 + g * 587 + b * 114) / 1000 < 140
        extra = "; outline: 2px solid #222" if j == mark else ""
        parts.append(
            f'<span title="{value:.4g}" style="background: rgb({r}, {g}, {b}); '
            f"color: {'#fff' if dark else '#111'}; padding: 1px 2px; margin: 1px; "
            f'border-radius: 3px{extra}">{html.escape(token)}</span>'
        )
    head = f"<div><b>{html.escape(title)}</b></div>" if title else ""
    return f'{head}<div style="line-height: 2; font-family: monospace">{"".join(parts)}</div>'


def printable(token: str) -> str:
    """A token safe to write to a terminal: control characters (ESC, newlines, ...) escaped."""
    out = []
    for ch in token:
        code = ord(ch)
        if ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif code < 32 or 127 <= code < 160:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    return "".join(out)


def terminal_supports_colour(stream: Any = None) -> bool:
    """ANSI colours for `stream` (default stdout): a TTY that is not `TERM=dumb`, unless
    `NO_COLOR` is set; `FORCE_COLOR` forces them on (the conventions of those variables)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


def terminal_tokens(
    tokens: list[str],
    values: Tensor,
    *,
    colour: bool | None = None,
    mark: int | None = None,
    diverging: bool = False,
    peak: float | None = None,
) -> str:
    """Tokens for a terminal: ANSI 24-bit background colours by value (`colour=None`: when
    stdout supports them), else plain `token[value]`; the token at `mark` is underlined (plain:
    prefixed with `*`). Coloured tokens are joined by spaces unless they carry their own word
    marks; plain ones always are."""
    if colour is None:
        colour = terminal_supports_colour()
    numbers = values.tolist()
    peak = _peak(numbers, diverging, peak)
    joiner = "" if any(t.startswith(_SPACE_MARKS) for t in tokens) else " "
    parts = []
    for j, (token, value) in enumerate(zip(tokens, numbers, strict=True)):
        text = printable(token)
        if not colour:
            parts.append(f"{'*' if j == mark else ''}{text}[{value:.3g}]")
            continue
        r, g, b = shade(value, peak, diverging)
        fg = "255;255;255" if (r * 299 + g * 587 + b * 114) / 1000 < 140 else "0;0;0"
        style = f"48;2;{r};{g};{b};38;2;{fg}" + (";1;4" if j == mark else "")
        parts.append(f"\x1b[{style}m{text}\x1b[0m")
    return (joiner if colour else " ").join(parts)


def coloured_row(
    tokens: list[str],
    values: Tensor,
    *,
    html: bool,
    colour: bool | None,
    mark: int | None,
    diverging: bool = False,
    peak: float | None = None,
    title: str = "",
) -> str:
    """One row of values over tokens, as HTML or terminal text (see `terminal_tokens`); the
    colour scale's extreme is `peak` (None: the row's own largest value)."""
    if html:
        return coloured_tokens(tokens, values, title, mark=mark, diverging=diverging, peak=peak)
    return terminal_tokens(tokens, values, colour=colour, mark=mark, diverging=diverging, peak=peak)


def coloured_segments(
    segments: list[tuple[str, list[str], Tensor, int | None]],
    *,
    html: bool,
    colour: bool | None,
) -> str:
    """Several named runs of tokens (ALTI+: source, then target prefix) on one shared colour
    scale, each `(name, tokens, values, mark)`; terminal runs are joined by ` | `."""
    peak = max((float(v.max()) for _, _, v, _ in segments if v.numel()), default=0.0)
    parts = [
        coloured_row(tokens, values, html=html, colour=colour, mark=mark,
                     peak=peak if peak > 0 else 1.0, title=name if html else "")
        for name, tokens, values, mark in segments
    ]  # fmt: skip
    return "".join(parts) if html else " | ".join(parts)


def circuitsvis_patterns(
    tokens: list[str], patterns: Float[Tensor, "head_index query_pos key_pos"], names: list[str]
) -> Any:
    """CircuitsVis's attention-heads widget over contribution matrices (one per "head")."""
    try:
        from circuitsvis.attention import attention_heads  # pyright: ignore[reportMissingImports]
    except ImportError as err:
        raise ImportError(
            "show_circuitsvis() needs CircuitsVis: pip install circuitsvis "
            "(or use to_html() / save_html(), which need nothing extra)."
        ) from err
    return attention_heads(attention=patterns, tokens=tokens, attention_head_names=names)


def table(names: tuple[str, ...], rows: Any) -> Any:
    """A pandas DataFrame with columns `names` from an iterable of row tuples."""
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for row in rows:
        for name, value in zip(names, row, strict=True):
            columns[name].append(value)
    return dataframe(columns)


def dataframe(columns: dict[str, list[Any]]) -> Any:
    try:
        import pandas as pd
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "to_dataframe() needs pandas: pip install pandas (or alti-lens[pandas])"
        ) from err
    return pd.DataFrame(columns)
