"""The route of an information-flow graph (`FlowGraph.routes`, spec §8) drawn with matplotlib.

Rows are the residual stream's states bottom up (the node attribute `depth`: embeddings at 0,
after layer `l`'s attention at `2l+1`, after the layer at `2l+2`, the output at `2L`), columns the
token positions. Each edge of the route is one artist (a `PathPatch` whose gid is
`"{source}|{target}|{key}"`), coloured by its kind, with width and opacity growing with its weight;
the sink (the prediction the route explains) is ringed. The function takes the networkx graph and
plain strings, so render never needs the result classes.
"""

from typing import Any

from .plot import _pyplot

# One colour per kind of edge (the kinds of `alti_lens.results.routes`).
KIND_COLOURS = {
    "attention head": "#3182bd",
    "residual": "#8c8c8c",
    "mlp": "#e6550d",
    "neuron": "#756bb1",
}
SINK_COLOUR = "#c51b8a"

# Sideways bulge (in columns) of edges that would otherwise lie on the straight residual edge of
# their position: the MLP to the right, its neurons fanned out to the left, a head's attention to
# its own position to the left; the heads joining the same two states fan out.
MLP_BULGE, NEURON_BULGE, SELF_BULGE = 0.32, (-0.14, -0.42), -0.22
HEAD_FAN = 0.08  # between the edges of several heads joining the same two states


def edge_width(weight: float) -> float:
    """The line width (points) of an edge of weight `weight` (a share in [0, 1])."""
    return 0.4 + 3.6 * min(max(weight, 0.0), 1.0)


def edge_alpha(weight: float) -> float:
    """The opacity of an edge of weight `weight`: faint edges stay visible."""
    return 0.25 + 0.75 * min(max(weight, 0.0), 1.0)


def show_token(token: str) -> str:
    """A token as a label: line breaks and tabs made visible, blanks named."""
    text = token.replace("\n", "\u21b5").replace("\t", "\u21e5").replace("\r", "\u240d")
    if text == "":
        return "\u2205"
    return text if text.strip() else text.replace(" ", "\u2423")


def row_labels(n_layers: int, steps: list[str]) -> dict[int, str]:
    """The label of every row (depth) a model's route can use."""
    labels = {0: "embeddings"}
    for layer in range(n_layers):
        step = steps[layer] if layer < len(steps) else "attention+mlp"
        if step == "attention+mlp":
            labels[2 * layer + 1] = f"L{layer} +attn"
            labels[2 * layer + 2] = f"L{layer} +mlp"
        else:
            labels[2 * layer + 2] = f"L{layer} +{'attn+mlp' if step == 'parallel' else 'attn'}"
    labels[2 * n_layers] += " (output)"
    return labels


def _bulges(graph: Any) -> dict[tuple[str, str, str], float]:
    """The sideways bulge of each edge (0: straight)."""
    bulges: dict[tuple[str, str, str], float] = {}
    neurons: dict[tuple[str, str], list[str]] = {}
    heads: dict[tuple[str, str], list[str]] = {}
    for source, target, key, kind in graph.edges(keys=True, data="kind"):
        if kind in ("mlp", "residual"):
            bulges[source, target, key] = MLP_BULGE if kind == "mlp" else 0.0
        else:
            (neurons if kind == "neuron" else heads).setdefault((source, target), []).append(key)
    lo, hi = NEURON_BULGE
    for (source, target), keys in neurons.items():
        for i, key in enumerate(keys):
            bulges[source, target, key] = lo + (hi - lo) * (i + 1) / (len(keys) + 1)
    for (source, target), keys in heads.items():
        # several heads between two states fan out around the line (or the self-loop's bulge)
        same = graph.nodes[source]["position"] == graph.nodes[target]["position"]
        base = SELF_BULGE if same else 0.0
        for i, key in enumerate(keys):
            bulges[source, target, key] = base + HEAD_FAN * (i - (len(keys) - 1) / 2)
    return bulges


def _edge_patch(graph: Any, edge: tuple[str, str, str], bulge: float, attrs: dict) -> Any:
    """One edge as a quadratic Bézier `PathPatch` from its source's (position, depth) to its
    target's, its control point moved sideways by `bulge`."""
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path

    s, t = graph.nodes[edge[0]], graph.nodes[edge[1]]
    x0, y0, x1, y1 = s["position"], s["depth"], t["position"], t["depth"]
    control = ((x0 + x1) / 2 + bulge, (y0 + y1) / 2)
    path = Path([(x0, y0), control, (x1, y1)], [Path.MOVETO, Path.CURVE3, Path.CURVE3])
    weight = float(attrs["weight"])
    return PathPatch(
        path,
        facecolor="none",
        edgecolor=KIND_COLOURS.get(attrs["kind"], "#333333"),
        linewidth=edge_width(weight),
        alpha=edge_alpha(weight),
        capstyle="round",
        zorder=1 + weight,
        gid="|".join(edge),
    )


def _draw_nodes(ax: Any, graph: Any) -> None:
    sink = graph.graph.get("sink")
    xs = [graph.nodes[n]["position"] for n in graph.nodes if n != sink]
    ys = [graph.nodes[n]["depth"] for n in graph.nodes if n != sink]
    ax.scatter(xs, ys, s=14, color="#1d2330", zorder=4, linewidths=0)
    if sink in graph.nodes:
        node = graph.nodes[sink]
        ax.scatter([node["position"]], [node["depth"]], s=150, facecolors="white",
                   edgecolors=SINK_COLOUR, linewidths=2.2, zorder=5, label="sink")  # fmt: skip
        ax.scatter([node["position"]], [node["depth"]], s=22, color=SINK_COLOUR, zorder=6)


def _legend(ax: Any, graph: Any) -> None:
    from matplotlib.lines import Line2D

    kinds = {kind for _, _, kind in graph.edges(data="kind")}
    handles = [
        Line2D([], [], color=colour, linewidth=2.5, label=kind)
        for kind, colour in KIND_COLOURS.items()
        if kind in kinds
    ]
    handles.append(Line2D([], [], marker="o", markersize=9, markerfacecolor="white",
                          markeredgecolor=SINK_COLOUR, markeredgewidth=2, linestyle="",
                          label="sink"))  # fmt: skip
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small",
              frameon=False)  # fmt: skip


def _title(graph: Any, str_tokens: list[str]) -> str:
    sink = graph.graph.get("sink")
    if sink not in graph.nodes:
        return "information-flow route"
    node = graph.nodes[sink]
    token = show_token(str_tokens[node["position"]]) if node["position"] < len(str_tokens) else ""
    threshold = graph.graph.get("threshold")
    shown = "" if threshold is None else f", threshold {threshold:g}"
    return f"route of position {node['position']} \u201c{token}\u201d{shown}"


def _axes(ax: Any, n_positions: int, n_layers: int) -> Any:
    if ax is not None:
        return ax
    plt = _pyplot()
    width = min(24.0, 2.8 + 0.42 * n_positions)
    height = min(18.0, 1.6 + 0.34 * (2 * n_layers + 1))
    _, ax = plt.subplots(figsize=(width, height))
    return ax


def plot_route(graph: Any, str_tokens: list[str], n_layers: int, ax: Any = None) -> Any:
    """Draw a route (`FlowGraph.routes`) on `ax` (a new figure if None); returns the axes.

    Args:
        graph: the route, a networkx `MultiDiGraph` with the node attributes `position` and
            `depth` and the edge attributes `kind` and `weight`.
        str_tokens: the sequence's token strings (the column labels, by position).
        n_layers: the model's number of layers (the rows: `2 * n_layers + 1` states).
        ax: matplotlib axes to draw on.
    """
    ax = _axes(ax, len(str_tokens), n_layers)
    bulges = _bulges(graph)
    for source, target, key, attrs in graph.edges(keys=True, data=True):
        edge = (source, target, key)
        ax.add_patch(_edge_patch(graph, edge, bulges[edge], attrs))
    _draw_nodes(ax, graph)
    labels = row_labels(n_layers, list(graph.graph.get("steps", [])))
    ax.set_yticks(list(labels), list(labels.values()), fontsize="small")
    ax.set_xticks(range(len(str_tokens)), [show_token(t) for t in str_tokens], rotation=90)
    ax.set_xlim(-0.8, len(str_tokens) - 0.2)
    ax.set_ylim(-0.6, 2 * n_layers + 0.6)
    ax.grid(axis="y", color="#eef0f3", linewidth=0.8, zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel("token (position)")
    ax.set_title(_title(graph, str_tokens))
    _legend(ax, graph)
    ax.figure.tight_layout()
    return ax
