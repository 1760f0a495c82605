"""Tokens as HTML spans shaded by value, and the notebook view (`_repr_html_`) of a result.

Every token is escaped; values go into the tooltip. The interactive report is `render.report`.
"""

import html

from torch import Tensor

from . import scale


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
    top = scale.peak(numbers, diverging, peak)
    parts = []
    for j, (token, value) in enumerate(zip(tokens, numbers, strict=True)):
        r, g, b = rgb = scale.shade(value, top, diverging)
        extra = "; outline: 2px solid #222" if j == mark else ""
        parts.append(
            f'<span title="{value:.4g}" style="background: rgb({r}, {g}, {b}); '
            f"color: {'#fff' if scale.is_dark(rgb) else '#111'}; padding: 1px 2px; margin: 1px; "
            f'border-radius: 3px{extra}">{html.escape(token)}</span>'
        )
    head = f"<div><b>{html.escape(title)}</b></div>" if title else ""
    return f'{head}<div style="line-height: 2; font-family: monospace">{"".join(parts)}</div>'


def card(summary: str, body: str) -> str:
    """A result in a notebook: its one-line summary (escaped), then an HTML `body`."""
    return f"<div><code>{html.escape(summary)}</code>{body}</div>"
