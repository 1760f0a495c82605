"""Self-contained interactive HTML reports of results.

One HTML file holds everything: the style sheet and script next to this module, inlined (the
FlowGraph view's `report_flow.js` and `.css` only in pages that show one), and the numbers as one
JSON document (rounded to 4 significant digits). Nothing is fetched, so a report
opens offline and can be mailed or archived. Token strings reach the page only as JSON data that
the script sets as text, so tokens such as `</script>`, `<s>`, quotes or `&` cannot break it.

    write_report("report.html", [("decoder", alti(model, text)), ("translator", plus)])
"""

import html
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from alti_lens._version import __version__
from alti_lens.errors import InputError

from .sections import section

# About 6 bytes per number: the default keeps a report under ~25 MB.
MAX_VALUES = 4_000_000

# What the pointer does, by kind of section (the page's subtitle).
HINTS = {
    "matrix": "hover a cell for its value, click a row to inspect it",
    "logit": "hover a cell for its value, click a row to inspect it",
    "flow": "hover an edge or a node for its values, click a token to draw its route",
}

__all__ = ["MAX_VALUES", "build_report", "to_html", "write_report"]


def _asset(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def _script_safe_json(data: Any) -> str:
    r"""JSON that can sit inside a <script> element: `<`, `>` and `&` only occur inside JSON
    strings, where their \u escapes mean the same; ensure_ascii escapes U+2028/2029 too."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _default_title(result: Any) -> str:
    name = type(result).__name__.removesuffix("Result").replace("AltiPlus", "ALTI+")
    name = {"Alti": "ALTI", "AltiLogit": "ALTI-Logit", "FlowGraph": "Information-flow routes"}.get(
        name, name
    )
    model = getattr(result, "metadata", {}).get("model_name")
    return f"{name} \u2014 {model}" if model else name


def build_report(
    items: Sequence[Any],
    *,
    title: str = "alti_lens report",
    batch: int | list[int] | None = None,
    max_values: int = MAX_VALUES,
    position: int | None = None,
    threshold: float | None = None,
) -> str:
    """One HTML page with a section per result.

    Args:
        items: results, or `(section title, result)` pairs (`AltiResult`, `AltiPlusResult`,
            `AltiLogitResult`, `FlowGraph`), shown in order.
        title: the page title.
        batch: the sequences to include (an index or a list; None: all of them).
        max_values: the most numbers one section may embed; beyond it only the last layers are
            kept (a `FlowGraph`: only its larger edges), with a warning.
        position: the token whose route a `FlowGraph`'s view opens with (a real token's index,
            negative from the last; default: the last).
        threshold: the edge weight that view opens with (default 0.04, the paper's).

    Returns:
        The page as a string.
    """
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        items = [items]
    if not items:
        raise InputError(
            "build_report needs at least one result; got an empty list. Fix: pass results, or "
            "(title, result) pairs, e.g. build_report([alti(model, text)])."
        )
    sections = []
    for item in items:
        name, result = item if isinstance(item, tuple) else (_default_title(item), item)
        view = {"position": position, "threshold": threshold}
        sections.append(section(result, str(name), batch, max_values, view))
    generator = f"alti_lens {__version__}"
    hints = dict.fromkeys(HINTS.get(s["kind"], HINTS["matrix"]) for s in sections)
    # the FlowGraph view's script and style only where a page shows one
    flow = any(s["kind"] == "flow" for s in sections)
    return Template(_asset("page.html")).substitute(
        title=html.escape(title),
        subtitle=html.escape(" \u00b7 ".join([generator, *hints])),
        generator=html.escape(generator),
        css=_asset("report.css") + (_asset("report_flow.css") if flow else ""),
        js=_asset("report.js").replace("  /*FLOW*/\n", _asset("report_flow.js") if flow else ""),
        data=_script_safe_json({"version": 1, "sections": sections}),
    )


def to_html(result: Any, *, title: str | None = None, **options: Any) -> str:
    """The report of one result (see `build_report` for the options)."""
    name = title or _default_title(result)
    return build_report([(name, result)], title=name, **options)


def write_report(path: str | Path, items: Sequence[Any], **options: Any) -> Path:
    """Write `build_report(items, **options)` to `path` (UTF-8, parent folders created);
    returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_report(items, **options), encoding="utf-8")
    return path
