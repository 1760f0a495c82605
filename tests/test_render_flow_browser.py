"""The FlowGraph section of the HTML report run in a real headless Chromium: the page draws, as
SVG, the same route as `FlowGraph.routes` for every token, threshold and sequence; hovering shows
an edge's values; the controls and the URL change the route.

Launched and skipped as tests/test_render_report_browser.py (chromium on PATH, or
ALTI_LENS_REQUIRE_BROWSER=1 to fail instead of skipping).
"""

import html
import json
import re
from pathlib import Path

import pytest
from conftest import bridge
from test_render_flow import EXPECTED, TEXTS, hand_made
from test_render_report_browser import _chromium, _dom

import alti_lens


@pytest.fixture(scope="module")
def flow():
    """The GPT-2 bridge's flow graph on two texts (the second padded)."""
    return alti_lens.flow_graph(bridge("gpt2-preLN"), TEXTS)


def _page(tmp_path: Path, page: str, script: str = "", name: str = "flow.html") -> Path:
    path = tmp_path / name
    path.write_text(page.replace("</body>", script + "</body>"), encoding="utf-8")
    return path


def _json_attr(dom: str, name: str):
    return json.loads(html.unescape(re.search(rf'{name}="([^"]*)"', dom)[1]))


def _drawn(dom: str) -> set[tuple[str, str, str]]:
    """The (source, target, key) of every edge of the first section's SVG."""
    tags = re.findall(r'<path class="edge"[^>]*>', dom)
    found = [
        (re.search(r'data-source="([^"]*)"', t)[1], re.search(r'data-target="([^"]*)"', t)[1],
         re.search(r'data-key="([^"]*)"', t)[1])
        for t in tags
    ]  # fmt: skip
    assert len(found) == len(set(found))
    return set(found)


def test_browser_draws_the_route(tmp_path) -> None:
    graph = hand_made()
    dom = _dom(tmp_path, _page(tmp_path, graph.to_html()))
    assert 'data-sections="1"' in dom and 'data-kind="flow"' in dom
    assert _drawn(dom) == EXPECTED  # the hand-made route, edge for edge
    route = graph.routes(-1, 0.04)
    assert len(re.findall(r'<circle class="node', dom)) == route.number_of_nodes()
    assert len(re.findall(r'<circle class="node sink"', dom)) == 1
    assert re.search(r'id="s0"[^>]*data-position="2"[^>]*data-threshold="0.04"', dom)
    # the summary: a head's edges' shares add up (layer 0: head 1 0.1 + 0.6, head 0 0.1 + 0.04)
    top = re.findall(r'<li data-value="([^"]*)"><span class="bar[^"]*"[^>]*></span><code>'
                     r"([^<]*)</code>", dom)  # fmt: skip
    assert top[:3] == [("0.7", "L0 head 1"), ("0.5", "L1 head 0"), ("0.5", "MLP 0")]
    assert dict((name, float(v)) for v, name in top)["L0 head 0"] == pytest.approx(0.14)


# Draws the route of every token of every sequence at every threshold through the page's own
# controls, noting the edges drawn (and their weights) in the body's data-routes attribute.
EXPLORE = """<script>
(function () {
  var sec = document.getElementById("s0"), out = {};
  var seqSelect = sec.querySelector(".controls select:not(.position)");
  var posSelect = sec.querySelector("select.position");
  var range = sec.querySelector(".controls input[type=range]");
  for (var b = 0; b < seqSelect.options.length; b++) {
    seqSelect.value = String(b); seqSelect.dispatchEvent(new Event("change"));
    for (var q = 0; q < posSelect.options.length; q++) {
      posSelect.value = String(q); posSelect.dispatchEvent(new Event("change"));
      for (var t = 0; t <= parseInt(range.max, 10); t++) {
        range.value = String(t); range.dispatchEvent(new Event("input"));
        out[[b, sec.getAttribute("data-position"), sec.getAttribute("data-threshold")].join("|")] =
          Array.prototype.map.call(sec.querySelectorAll("path.edge"), function (p) {
            return [p.getAttribute("data-source"), p.getAttribute("data-target"),
                    p.getAttribute("data-key"), parseFloat(p.getAttribute("data-weight"))];
          });
      }
    }
  }
  document.body.setAttribute("data-routes", JSON.stringify(out));
})();
</script>"""


# sequential blocks (also with neuron edges), parallel ones, attention only (no MLP), an
# encoder (attends both ways)
KINDS = ["gpt2-preLN", "gpt2-preLN+neurons", "neox-parallel", "native-attn-only", "bert-postLN"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_route_the_page_draws_is_the_python_route(tmp_path, kind) -> None:
    """The page recomputes the routes from the embedded edges: for every sequence, token and
    threshold it offers, the same edges as `FlowGraph.routes`, with their weights."""
    name, neurons = kind.removesuffix("+neurons"), kind.endswith("+neurons")
    flow = alti_lens.flow_graph(bridge(name), TEXTS, neurons=neurons)
    dom = _dom(tmp_path, _page(tmp_path, flow.to_html(), EXPLORE))
    routes = _json_attr(dom, "data-routes")
    thresholds = (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5)
    n_real = [int(m.sum()) for m in flow.attention_mask]
    assert len(routes) == sum(n_real) * len(thresholds)
    sizes = set()
    for key, drawn in routes.items():
        b, position, threshold = key.split("|")
        route = flow.routes(int(position), float(threshold), int(b))
        assert {tuple(e[:3]) for e in drawn} == set(route.edges(keys=True)), key
        assert len(drawn) == route.number_of_edges()
        for source, target, k, weight in drawn:
            assert weight == pytest.approx(route.edges[source, target, k]["weight"], rel=1e-3)
        sizes.add(len(drawn))
    assert len(sizes) > 3  # the routes differ: the check compares something
    drawn_neurons = any(re.fullmatch(r"L\d+N\d+", e[2]) for r in routes.values() for e in r)
    assert drawn_neurons == neurons  # neuron edges ("L0N17") are drawn where there are some


# Hovers the heaviest edge and then the sink, noting the tooltip; clicks the first token's label
# and a head of the summary grid, noting the route drawn after each.
POINTER = """<script>
(function () {
  var sec = document.getElementById("s0"), body = document.body;
  function hover(e) {
    var r = e.getBoundingClientRect();
    e.dispatchEvent(new MouseEvent("mouseover", { clientX: r.left + r.width / 2,
      clientY: r.top + r.height / 2, bubbles: true }));
    return sec.querySelector(".flow-wrap .tip");
  }
  var paths = Array.prototype.slice.call(sec.querySelectorAll("path.edge"));
  paths.sort(function (a, b) {
    return b.getAttribute("data-weight") - a.getAttribute("data-weight");
  });
  var tip = hover(paths[0]);
  body.setAttribute("data-edge-tip", tip.textContent);
  body.setAttribute("data-edge-tip-shown", tip.style.display);
  body.setAttribute("data-edge-hovered", paths[0].getAttribute("data-key") + "|" +
    paths[0].getAttribute("data-target"));
  body.setAttribute("data-node-tip", hover(sec.querySelector("circle.sink")).textContent);
  var label = sec.querySelector('text.col[data-q="1"]');
  label.dispatchEvent(new MouseEvent("click", { bubbles: true }));
  body.setAttribute("data-clicked",
    sec.getAttribute("data-position") + "|" + sec.getAttribute("data-edges"));
  var wrap = sec.querySelector(".hm-wrap"), canvas = wrap.querySelector("canvas");
  var g = wrap.getAttribute("data-grid").split(",").map(Number);
  var box = canvas.getBoundingClientRect();
  canvas.dispatchEvent(new MouseEvent("click", { clientX: box.left + g[0] + 0.5 * g[2],
    clientY: box.top + g[1] + 0.5 * g[2], bubbles: true }));
  var dimmed = Array.prototype.filter.call(sec.querySelectorAll("path.edge"), function (p) {
    return p.getAttribute("stroke-opacity") === "0.070";
  });
  body.setAttribute("data-dimmed", String(dimmed.length));
})();
</script>"""


def test_browser_hover_and_click(tmp_path) -> None:
    graph = hand_made()
    dom = _dom(tmp_path, _page(tmp_path, graph.to_html(), POINTER))
    assert 'data-edge-tip-shown="block"' in dom
    assert 'data-edge-hovered="residual|resid_pre.1.0"' in dom  # 0.98, the heaviest
    tip = html.unescape(re.search(r'data-edge-tip="([^"]*)"', dom)[1]).splitlines()
    assert tip == [
        "residual \u00b7 layer 0",
        "weight: 0.98",
        "from: position 0 \u201cthe\u201d, L0 +attn",
        "to: position 0 \u201cthe\u201d, L0 +mlp",
    ]
    node = html.unescape(re.search(r'data-node-tip="([^"]*)"', dom)[1]).splitlines()
    assert node == [
        "position 2 \u201c\u21b5\u201d \u00b7 L1 +mlp (output)",
        "node resid_post.1.2 (sink)",
        "in the route: 2 edges in (shares 1), 0 out",
    ]
    # clicking token 1's label draws its route; clicking head (0, 0) dims every other edge
    route = graph.routes(1, 0.04)
    assert f'data-clicked="1|{route.number_of_edges()}"' in dom
    others = sum(1 for *_, k in route.edges(keys=True) if k != "L0H0")
    assert others < route.number_of_edges()
    assert f'data-dimmed="{others}"' in dom


def test_position_threshold_and_sequence_from_the_url(tmp_path, flow) -> None:
    page = _page(tmp_path, flow.to_html())
    default = _dom(tmp_path, page)
    assert _drawn(default) == set(flow.routes(-1, 0.04, 0).edges(keys=True))
    dom = _dom(tmp_path, page, "#s0-seq=1&s0-pos=2&s0-threshold=0.1")
    assert re.search(
        r'id="s0"[^>]*data-seq="1"[^>]*data-position="2"[^>]*data-threshold="0.1"', dom
    )
    moved = _drawn(dom)
    assert moved == set(flow.routes(2, 0.1, 1).edges(keys=True)) and moved != _drawn(default)


def test_browser_screenshot_shows_the_route(tmp_path, flow) -> None:
    png = tmp_path / "flow.png"
    page = _page(tmp_path, flow.to_html())
    _chromium(tmp_path, page.as_uri(), f"--screenshot={png}", "--window-size=1100,1200")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
    try:
        from PIL import Image
    except ImportError:
        return
    colours = Image.open(png).convert("RGB").getcolors(maxcolors=1 << 20) or []
    # the residual edges' grey and the attention edges' blue are drawn
    greys = sum(
        c for c, (r, g, b) in colours if 120 < r < 160 and abs(r - g) < 6 and abs(g - b) < 6
    )
    blues = sum(c for c, (r, g, b) in colours if b > 150 and r < 120 and 100 < g < 170)
    assert greys > 300 and blues > 200, (greys, blues)
