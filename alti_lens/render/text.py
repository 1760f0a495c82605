"""Terminal text: tokens shaded with ANSI colours, and the command line's plain-text summaries.

Every function returns a string (no printing here). Colour is ANSI 24-bit and optional: without it
tokens read `token[value]`, so the same text reads the same when piped to a file. Tokens are made
safe for a terminal first (control characters escaped).
"""

import os
import sys
from typing import TYPE_CHECKING, Any

from torch import Tensor

from . import scale
from .html import coloured_tokens

if TYPE_CHECKING:  # render reads results' fields; it never imports them at run time
    from alti_lens.results import AltiLogitResult, AltiPlusResult, AltiResult

# How tokenizers mark the start of a word (as `alti_lens.results.selections.SPACE_MARKS`): tokens
# that carry them are joined without spaces.
SPACE_MARKS = (" ", "Ġ", "▁")


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
    top = scale.peak(numbers, diverging, peak)
    joiner = "" if any(t.startswith(SPACE_MARKS) for t in tokens) else " "
    parts = []
    for j, (token, value) in enumerate(zip(tokens, numbers, strict=True)):
        text = printable(token)
        if not colour:
            parts.append(f"{'*' if j == mark else ''}{text}[{value:.3g}]")
            continue
        r, g, b = rgb = scale.shade(value, top, diverging)
        fg = "255;255;255" if scale.is_dark(rgb) else "0;0;0"
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


# The command line's summaries.

_BAR = "█"


def _bar(value: float, width: int = 20) -> str:
    return _BAR * max(0, min(width, round(value * width)))


def _table(rows: list[tuple[int, str, float]], *, signed: bool = False) -> list[str]:
    """Ranked (position, token, value) rows; shares get a bar, signed scores a sign."""
    width = max((len(repr(token)) for _, token, _ in rows), default=0)
    return [
        f"  {rank:>2}. pos {pos:>4}  {token!r:<{width}}  "
        + (f"{value:+8.3f}" if signed else f"{value:7.4f}  {_bar(value)}")
        for rank, (pos, token, value) in enumerate(rows, start=1)
    ]


def explain_summary(
    result: "AltiResult",
    *,
    model: str,
    position: int,
    layer: int,
    k: int,
    colour: bool | None,
    prediction: tuple[str, float] | None = None,
    logit: "AltiLogitResult | None" = None,
) -> str:
    """What `alti-lens explain` prints: the text shaded by the chosen row, its top sources, and
    (decoder models) the model's prediction with the tokens that pushed it (ALTI-Logit)."""
    n = int(result.attention_mask[0].sum())
    tokens = result.str_tokens[0][:n]
    row = position if position >= 0 else n + position
    n_layers = result.n_layers
    shown_layer = layer if layer >= 0 else n_layers + layer
    lines = [
        f"model {model} · {n} tokens · {n_layers} layers · measure "
        f"{result.metadata.get('measure')} · max reconstruction error "
        f"{float(result.reconstruction_error.max()):.1e}",
        "",
        f"Contributions to position {row} ({tokens[row]!r}) after layer {shown_layer} "
        f"(0-based, of 0–{n_layers - 1}; rollout):",
        "  " + result.coloured_text(row, layer=layer, colour=colour),
        "",
        f"Top sources of position {row} ({tokens[row]!r}):",
        *_table(result.top_sources(row, k, layer=layer)),
    ]
    if prediction is not None:
        token, prob = prediction
        lines += ["", f"Prediction after position {row}: {token!r} (p = {prob:.3f})"]
    if logit is not None:
        scores = logit.scores[0, :n]
        target = prediction[0] if prediction else "?"
        parts = ", ".join(f"{k} {float(v[0]):+.3f}" for k, v in logit.components.items())
        lines += [
            f"ALTI-Logit: the logit of {target!r}, {float(logit.logit[0]):.3f}, is tokens "
            f"{float(scores.sum()):+.3f} plus {parts}. Tokens that raised it most:",
            *_table(logit.top_sources(k), signed=True),
        ]
    return "\n".join(lines)


def translate_summary(
    result: "AltiPlusResult",
    *,
    model: str,
    predicted: list[str],
    step: int | None,
    k: int,
) -> str:
    """What `alti-lens translate` prints: source and target, the source contribution of every
    decoder step, and the top sources of one step. `predicted[t]` is the token row t predicts."""
    s = int(result.source_attention_mask[0].sum())
    t = int(result.target_attention_mask[0].sum())
    source = result.source_str_tokens[0][:s]
    target = result.target_str_tokens[0][:t]
    sc = result.source_contribution[0, :t]
    lines = [
        f"model {model} · source {s} tokens · target {t} steps · "
        f"max reconstruction error {float(result.reconstruction_error.max()):.1e}",
        "",
        "source: " + " ".join(source),
        "target: " + " ".join(predicted),
        "",
        "Source contribution per decoder step (last layer, extended rollout):",
        "  step  input -> predicts        source  target",
    ]
    width = max((len(repr(x)) for x in target), default=0)
    for i in range(t):
        value = float(sc[i])
        lines.append(
            f"  {i:>4}  {target[i]!r:<{width}} -> {predicted[i]!r:<{width}}  {value:6.3f}  "
            f"{max(0.0, 1 - value):6.3f}  {_bar(value, 10)}"
        )
    mean = float(sc.mean()) if t else float("nan")
    lines += ["", f"mean source contribution: {mean:.3f}"]
    if step is not None:
        row = step if step >= 0 else t + step
        lines += [
            "",
            f"Top sources of step {row} (predicting {predicted[row]!r}):",
            *_table(result.top_sources(row, k)),
        ]
    return "\n".join(lines)
