"""Views of the information-flow graph (`FlowGraph`, spec §8): the matplotlib drawing of a route
(`alti_lens.render.flow`) and the route's section of the HTML report (its data: what the page
recomputes the routes from). The page run in a real headless Chromium:
tests/test_render_flow_browser.py.
"""

import dataclasses
import json
import math
import re
import warnings

import pytest
import torch
from conftest import EVIL, bridge, report_data

import alti_lens
from alti_lens import MissingDependencyError
from alti_lens.render import flow as flow_view
from alti_lens.render.report.sections import FLOW_THRESHOLDS, floored
from alti_lens.report import build_report
from alti_lens.results import FlowGraph

TEXTS = ["the cat sat on the mat", "a big red dog"]


# ---------------------------------------------------------------- graphs


def hand_made() -> FlowGraph:
    """Two layers, two heads, three positions (the second sequence padded at its end), float64,
    with shares chosen so that the route of the first sequence's last token at threshold 0.04 is
    known by hand (`EXPECTED`): edges exactly at the threshold are kept, just below it not."""
    B, L, H, n = 2, 2, 2, 3
    attention = torch.zeros(B, L, H, n, n, dtype=torch.float64)
    mlp = torch.full((B, L, n), 0.5, dtype=torch.float64)
    mlp_residual = torch.full((B, L, n), 0.5, dtype=torch.float64)
    # layer 1, row 2: head 0 reads position 0 (0.5); head 1 its own position, below threshold
    attention[0, 1, 0, 2, 0], attention[0, 1, 1, 2, 2] = 0.5, 0.03
    mlp[0, 1, 2], mlp_residual[0, 1, 2] = 0.3, 0.7
    # after layer 0 at position 0: the MLP below threshold
    mlp[0, 0, 0], mlp_residual[0, 0, 0] = 0.02, 0.98
    # layer 0, row 0: both heads on their own position
    attention[0, 0, 0, 0, 0] = attention[0, 0, 1, 0, 0] = 0.1
    # layer 0, row 2: head 1 reads position 1; head 0 position 0 exactly at the threshold; head 1
    # its own position just below it
    attention[0, 0, 1, 2, 1], attention[0, 0, 0, 2, 0], attention[0, 0, 1, 2, 2] = 0.6, 0.04, 0.0399
    attention[0, 0, 0, 1, 0] = 0.25  # row 1: not in the route
    attention[1, :, 0, 1, 0] = 0.5  # the second sequence: its last real token reads the first
    residual = 1 - attention.sum(dim=(2, 4))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    residual[1, :, 2] = mlp[1, :, 2] = mlp_residual[1, :, 2] = 0.0  # padding: exact zeros
    attention[1, :, :, :, 2] = 0.0
    return FlowGraph(
        attention=attention,
        attention_residual=residual,
        mlp=mlp,
        mlp_residual=mlp_residual,
        tokens=torch.tensor([[5, 6, 7], [8, 9, 0]]),
        str_tokens=[["the", " cat", "\n"], ["a", "dog", "<pad>"]],
        attention_mask=mask,
        reconstruction_error=torch.zeros(B, L, dtype=torch.float64),
        metadata={"model_name": "hand-made", "measure": "l1", "dtype": "float64"},
    )


# The route of hand_made()'s first sequence, last token, threshold 0.04: (source, target, key).
EXPECTED = {
    ("resid_mid.1.2", "resid_post.1.2", "mlp"),
    ("resid_mid.1.2", "resid_post.1.2", "residual"),
    ("resid_pre.1.0", "resid_mid.1.2", "L1H0"),
    ("resid_pre.1.2", "resid_mid.1.2", "residual"),
    ("resid_mid.0.0", "resid_pre.1.0", "residual"),
    ("resid_pre.0.0", "resid_mid.0.0", "L0H0"),
    ("resid_pre.0.0", "resid_mid.0.0", "L0H1"),
    ("resid_pre.0.0", "resid_mid.0.0", "residual"),
    ("resid_mid.0.2", "resid_pre.1.2", "mlp"),
    ("resid_mid.0.2", "resid_pre.1.2", "residual"),
    ("resid_pre.0.1", "resid_mid.0.2", "L0H1"),
    ("resid_pre.0.0", "resid_mid.0.2", "L0H0"),
    ("resid_pre.0.2", "resid_mid.0.2", "residual"),
}


@pytest.fixture(scope="module")
def flow() -> FlowGraph:
    """The flow graph of the GPT-2 bridge on two texts (the second padded)."""
    return alti_lens.flow_graph(bridge("gpt2-preLN"), TEXTS)


@pytest.fixture(scope="module")
def flow_neurons() -> FlowGraph:
    """The GPT-2 bridge's flow graph with neuron edges."""
    return alti_lens.flow_graph(bridge("gpt2-preLN"), TEXTS[0], neurons=True)


def edges(graph) -> set[tuple[str, str, str]]:
    return {(s, t, k) for s, t, k in graph.edges(keys=True)}


def test_the_hand_made_route_is_the_expected_one() -> None:
    """The fixture's expectations hold for `routes` itself (so the views below are compared
    with a route known independently)."""
    graph = hand_made().routes(-1, 0.04)
    assert edges(graph) == EXPECTED
    assert graph.number_of_nodes() == 9 and graph.graph["sink"] == "resid_post.1.2"


def test_float32_weights_meet_the_threshold_as_float64_ones() -> None:
    """In float32, 0.04 is stored as 0.039999999: below the threshold 0.04 for a head's edge as
    for the residual's (both are compared in float64), so the route, the drawing and the page
    drop that head's edge alike."""
    graph = hand_made()
    single = dataclasses.replace(
        graph, **{name: getattr(graph, name).float() for name in
                  ("attention", "attention_residual", "mlp", "mlp_residual")},
    )  # fmt: skip
    kept = EXPECTED - {("resid_pre.0.0", "resid_mid.0.2", "L0H0")}
    assert edges(single.routes(-1, 0.04)) == kept
    layer0 = section(single)["sequences"][0]["layers"][0]["att"]
    assert layer0[12:16] == [2, 0, 0, 0.03999]  # shown below 0.04, so the page drops it too


# ---------------------------------------------------------------- the matplotlib drawing


def drawn(ax) -> dict[tuple[str, ...], object]:
    """The edge artists of a route drawing, by (source, target, key)."""
    return {tuple(p.get_gid().split("|")): p for p in ax.patches if p.get_gid()}


def test_plot_draws_every_edge_of_the_route_once() -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is an optional dependency")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    graph = hand_made()
    ax = graph.plot(-1, 0.04)
    route = graph.routes(-1, 0.04)
    artists = drawn(ax)
    assert len(ax.patches) == len(artists) == route.number_of_edges() == len(EXPECTED)
    assert set(artists) == EXPECTED
    for (source, target, key), patch in artists.items():
        attrs = route.edges[source, target, key]
        assert to_hex(patch.get_edgecolor()) == flow_view.KIND_COLOURS[attrs["kind"]]
        assert patch.get_linewidth() == pytest.approx(flow_view.edge_width(attrs["weight"]))
        assert patch.get_alpha() == pytest.approx(flow_view.edge_alpha(attrs["weight"]))
        # the edge runs from its source's (position, depth) to its target's
        (x0, y0), *_, (x1, y1) = patch.get_path().vertices
        s, t = route.nodes[source], route.nodes[target]
        assert (x0, y0, x1, y1) == (s["position"], s["depth"], t["position"], t["depth"])
    heaviest = max(artists, key=lambda e: route.edges[e]["weight"])
    assert heaviest == ("resid_mid.0.0", "resid_pre.1.0", "residual")  # 0.98
    assert max(p.get_linewidth() for p in artists.values()) == pytest.approx(
        flow_view.edge_width(0.98)
    )
    # the sink is ringed at the top of its column; the labels are the tokens and the states
    rings = [c for c in ax.collections if c.get_label() == "sink"]
    assert len(rings) == 1 and rings[0].get_offsets().tolist() == [[2.0, 4.0]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["the", " cat", "\u21b5"]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "embeddings", "L0 +attn", "L0 +mlp", "L1 +attn", "L1 +mlp (output)",
    ]  # fmt: skip
    assert ax.get_title() == "route of position 2 \u201c\u21b5\u201d, threshold 0.04"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["attention head", "residual", "mlp", "sink"]
    plt.close("all")


def test_parallel_edges_do_not_hide_each_other() -> None:
    """The MLP and the residual join the same two states, as do two heads: each is drawn on its
    own curve."""
    pytest.importorskip("matplotlib", reason="matplotlib is an optional dependency")
    import matplotlib.pyplot as plt

    artists = drawn(hand_made().plot())
    middle = {e: tuple(p.get_path().vertices[1]) for e, p in artists.items()}
    assert len({middle[e] for e in EXPECTED if e[1] == "resid_mid.0.0"}) == 3
    assert len({middle[e] for e in EXPECTED if e[1] == "resid_post.1.2"}) == 2
    plt.close("all")


def test_plot_of_a_model_with_neurons(tmp_path, flow, flow_neurons) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is an optional dependency")
    import matplotlib.pyplot as plt

    for graph, position in ((flow, 1), (flow_neurons, -1)):
        route = graph.routes(position, 0.04, 0)
        ax = graph.plot(position, 0.04)
        assert set(drawn(ax)) == edges(route)
        assert len(ax.patches) == route.number_of_edges()
    kinds = {k for _, _, k in route.edges(data="kind")}
    assert "neuron" in kinds  # the neurons' edges are drawn too
    # on given axes, for another sequence; the columns are all its positions (padding included)
    fig, axes = plt.subplots(1, 2)
    ax = flow.plot(-1, 0.1, batch_index=1, ax=axes[1])
    assert ax is axes[1] and set(drawn(ax)) == edges(flow.routes(-1, 0.1, 1))
    assert [t.get_text() for t in ax.get_xticklabels()] == flow.str_tokens[1]
    assert ax.get_title().startswith("route of position 4 \u201cdog\u201d")
    fig.savefig(tmp_path / "route.png")
    assert (tmp_path / "route.png").stat().st_size > 5_000
    plt.close("all")


@pytest.mark.parametrize("kind", ["neox-parallel", "native-attn-only", "bert-postLN"])
def test_plot_of_other_block_kinds(kind) -> None:
    """Parallel blocks and attention-only layers have no state between attention and MLP: no
    such row, and every edge spans a whole layer."""
    pytest.importorskip("matplotlib", reason="matplotlib is an optional dependency")
    import matplotlib.pyplot as plt

    graph = alti_lens.flow_graph(bridge(kind), TEXTS)
    route = graph.routes(-1, 0.02, 1)
    ax = graph.plot(-1, 0.02, 1)
    assert set(drawn(ax)) == edges(route) and len(ax.patches) == route.number_of_edges()
    rows = [t.get_text() for t in ax.get_yticklabels()]
    if kind == "bert-postLN":
        assert rows == ["embeddings", "L0 +attn", "L0 +mlp", "L1 +attn", "L1 +mlp (output)"]
    else:
        step = "attn+mlp" if kind == "neox-parallel" else "attn"
        assert rows == ["embeddings", f"L0 +{step}", f"L1 +{step} (output)"]
        assert {route.nodes[v]["depth"] for v in route} <= {0, 2, 4}
    plt.close("all")


def test_row_labels_follow_the_steps() -> None:
    labels = flow_view.row_labels(3, ["attention+mlp", "parallel", "attention"])
    assert labels == {
        0: "embeddings", 1: "L0 +attn", 2: "L0 +mlp", 4: "L1 +attn+mlp",
        6: "L2 +attn (output)",
    }  # fmt: skip


def test_missing_matplotlib_says_how_to_install(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(MissingDependencyError, match=r"matplotlib: pip install matplotlib"):
        hand_made().plot()


# ---------------------------------------------------------------- the report's data


def test_floored_keeps_threshold_decisions_exact() -> None:
    """Shown values never exceed the value, so `shown ≥ t` exactly when `value ≥ t` for every
    threshold the page offers (float32 values included, whose float32(0.04) is below 0.04)."""
    g = torch.Generator().manual_seed(0)
    values = torch.cat([
        torch.rand(20_000, generator=g, dtype=torch.float64) ** 3,
        torch.tensor(FLOW_THRESHOLDS, dtype=torch.float64),
        torch.tensor(FLOW_THRESHOLDS, dtype=torch.float32).double(),
        torch.tensor(FLOW_THRESHOLDS, dtype=torch.float64) - 1e-12,
        torch.tensor([0.0, 1.0, 0.099999999, 0.0099999, 1e-9]),
    ])  # fmt: skip
    shown = torch.tensor(floored(values), dtype=torch.float64)
    assert bool((shown <= values).all())
    assert bool(((values - shown) <= values.abs() * 1e-3).all())  # 4 significant digits
    for t in FLOW_THRESHOLDS:
        assert torch.equal(shown >= t, values >= t), t
    assert floored(torch.tensor([0.04, 0.123456, 0.0])) == [0.03999, 0.1234, 0]  # float32 0.04
    assert max(len(v) for v in re.findall(r"[\d.e-]+", json.dumps(floored(values[:200])))) <= 9


def section(graph: FlowGraph, **options) -> dict:
    return report_data(graph.to_html(**options))["sections"][0]


def test_report_embeds_every_edge_above_the_floor() -> None:
    graph = hand_made()
    sec = section(graph)
    assert sec["kind"] == "flow" and sec["title"] == "Information-flow routes \u2014 hand-made"
    assert (sec["nLayers"], sec["nHeads"], sec["floor"], sec["threshold"]) == (2, 2, 0.01, 0.04)
    assert sec["steps"] == ["attention+mlp"] * 2 and sec["neurons"] is False
    assert sec["thresholds"] == list(FLOW_THRESHOLDS)
    first, second = sec["sequences"]
    assert first["tokens"] == ["the", " cat", "\n"] and first["positions"] == [0, 1, 2]
    assert second["tokens"] == ["a", "dog"] and second["positions"] == [0, 1]  # padding dropped
    layer0 = first["layers"][0]
    att = [tuple(layer0["att"][i : i + 4]) for i in range(0, len(layer0["att"]), 4)]
    assert att == [(0, 0, 0, 0.1), (0, 1, 0, 0.1), (1, 0, 0, 0.25),
                   (2, 0, 0, 0.04), (2, 1, 1, 0.6), (2, 1, 2, 0.0399)]  # fmt: skip
    # 1 - 0.6799 is 0.32009999999999994 in float64: shown as 0.32, never above the value
    assert layer0["res"] == [0.8, 0.75, 0.32]
    assert layer0["mlp"] == [0.02, 0.5, 0.5] and layer0["mlpres"] == [0.98, 0.5, 0.5]
    assert second["layers"][1]["att"] == [1, 0, 0, 0.5]
    assert second["layers"][1]["res"] == [1.0, 0.5]


def test_report_of_a_model_matches_its_tensors(flow, flow_neurons) -> None:
    sec = section(flow)
    n = int(flow.attention_mask[1].sum())
    seq = sec["sequences"][1]
    assert seq["tokens"] == flow.str_tokens[1][:n]
    for layer, data in enumerate(seq["layers"]):
        expected = flow.attention[1, layer, :, :n, :n].permute(1, 0, 2).double()
        shown = torch.zeros_like(expected)
        for q, h, k, w in zip(*[data["att"][i::4] for i in range(4)], strict=True):
            shown[q, h, k] = w
        kept = expected >= 0.01
        torch.testing.assert_close(shown[kept], expected[kept], rtol=1e-3, atol=0)
        assert not bool(shown[~kept].any())
        torch.testing.assert_close(
            torch.tensor(data["mlp"], dtype=torch.float64), flow.mlp[1, layer, :n].double(),
            rtol=1e-3, atol=0,
        )  # fmt: skip
    neu = section(flow_neurons)
    assert neu["neurons"] is True
    data = neu["sequences"][0]["layers"][0]["neu"]
    triples = list(zip(*[data[i::3] for i in range(3)], strict=True))
    assert len(triples) == int((flow_neurons.neurons[0, 0] >= 0.01).sum()) > 0
    q, k, w = triples[0]
    assert w == pytest.approx(float(flow_neurons.neurons[0, 0, q, k]), rel=1e-3)


def test_report_is_self_contained_and_small(flow) -> None:
    page = flow.to_html()
    assert page.startswith("<!DOCTYPE html>")
    for external in ("http:", "https:", "src=", "<link", "@import", "url(", "//cdn"):
        assert external not in page
    assert page.count("<script") == 3
    subtitle = re.search(r"<header>\s*<h1>[^<]*</h1>\s*<p>([^<]*)</p>", page)[1]
    assert subtitle.endswith(
        "hover an edge or a node for its values, click a token to draw its route"
    )
    assert len(page) < 120_000  # the page's script and style are most of it
    # the route's script and style come only with a FlowGraph
    alti = alti_lens.alti(bridge("gpt2-preLN"), TEXTS)
    assert "FlowSection(" in page and "svg.flow" in page
    assert "function FlowSection" not in alti.to_html() and "svg.flow" not in alti.to_html()
    both = build_report([("alti", alti), ("flow", flow)])
    assert [s["kind"] for s in report_data(both)["sections"]] == ["matrix", "flow"]
    assert "click a row to inspect it \u00b7 hover an edge" in both
    one = section(flow, batch=1)
    assert [s["label"] for s in one["sequences"]] == ["1: <bos> a big red dog"]


def test_report_tokens_cannot_break_the_page() -> None:
    graph = hand_made()
    evil = dataclasses.replace(graph, str_tokens=[EVIL[:3], EVIL[3:]])
    page = evil.to_html(title="</script>")
    assert page.count("</script>") == 3 and "<s>" not in page and "<!--" not in page
    assert report_data(page)["sections"][0]["sequences"][0]["tokens"] == EVIL[:3]


def synthetic(layers: int, heads: int, n: int, concentration: float) -> FlowGraph:
    """A causal flow graph of the given size whose rows' shares are drawn from a Dirichlet
    distribution (small `concentration`: peaked, as trained models' attention)."""
    attention = torch.zeros(1, layers, heads, n, n)
    residual = torch.zeros(1, layers, n)
    for i in range(n):
        gamma = torch.distributions.Gamma(concentration, 1.0)
        shares = gamma.sample((layers, heads * (i + 1) + 1))
        shares = shares / shares.sum(-1, keepdim=True)
        attention[0, :, :, i, : i + 1] = shares[:, :-1].reshape(layers, heads, i + 1)
        residual[0, :, i] = shares[:, -1]
    half = torch.full((1, layers, n), 0.5)
    return FlowGraph(
        attention=attention, attention_residual=residual, mlp=half, mlp_residual=half.clone(),
        tokens=torch.zeros(1, n, dtype=torch.long), str_tokens=[[f"t{i}" for i in range(n)]],
        attention_mask=torch.ones(1, n, dtype=torch.long),
        reconstruction_error=torch.zeros(1, layers), metadata={"model_name": "synthetic"},
    )  # fmt: skip


def test_report_size_of_a_gpt2_small_sized_graph() -> None:
    """12 layers, 12 heads, 64 tokens: every row keeps at most 1/floor = 100 edges (its shares
    sum to 1), so the page stays small whatever the attention looks like."""
    torch.manual_seed(0)
    for concentration in (0.05, 1.0):
        graph = synthetic(12, 12, 64, concentration)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            page = graph.to_html()
        layers = report_data(page)["sections"][0]["sequences"][0]["layers"]
        att = sum(len(layer["att"]) for layer in layers) // 4
        assert att <= 12 * 64 * 100
        assert len(page) < 1_000_000, (concentration, len(page))


def test_too_many_edges_raise_the_floor_with_a_warning() -> None:
    torch.manual_seed(0)
    graph = synthetic(2, 4, 24, 0.3)
    full = section(graph)
    kept = sum(len(layer["att"]) for layer in full["sequences"][0]["layers"])
    with pytest.warns(UserWarning, match=r"keeps the edges \u2265 0\.02"):
        sec = section(graph, max_values=kept)  # the 3·L·n per-position numbers do not fit
    assert sec["floor"] == 0.02 and sec["thresholds"][0] == 0.02 and sec["threshold"] == 0.04
    assert all(w >= 0.02 for layer in sec["sequences"][0]["layers"] for w in layer["att"][3::4])
    assert math.isclose(full["floor"], 0.01)
