"""`alti-lens flow`: the information-flow route of one prediction (`flow_graph`, `routes`).

The route is printed as its strongest edges, the heads and MLPs it runs through, and the run's
exactness; `--json` writes every edge of the route. Public API only, like the other commands.
"""

import argparse
import sys
from typing import TYPE_CHECKING, Any

from alti_lens.errors import InputError

from .commands import load_single_stack
from .output import Status, check_outputs, check_position, check_text, write_outputs

if TYPE_CHECKING:
    import networkx as nx

    from alti_lens.results import FlowGraph


def flow(args: argparse.Namespace, status: Status) -> int:
    """`alti-lens flow`: the flow graph of one text and the route of one position."""
    check_text(args.text, "TEXT", 'the text to explain, e.g. alti-lens flow "the cat sat"')
    check_outputs(args)
    if not 0 <= args.threshold <= 1:
        raise InputError(
            f"--threshold {args.threshold} is not an edge weight; expected a number in [0, 1]. "
            "Fix: e.g. --threshold 0.04 (the paper's)."
        )
    from alti_lens import flow_graph

    model, tokens, mask = load_single_stack(args, status, "flow")
    check_position(args.position, int(mask[0].sum()))
    with status.stage("computing the flow graph"):
        graph = flow_graph(
            model, tokens, attention_mask=mask, measure=args.measure, neurons=args.neurons,
            check_bridge=args.check_bridge,
        )  # fmt: skip
    route = graph.routes(args.position, args.threshold)
    data = _summary_json(graph, route, args)
    if args.json != "-":
        sys.stdout.write(_summary_text(graph, route, args) + "\n")
    write_outputs(graph, args, data, {"position": args.position, "threshold": args.threshold})
    return 0


def _edges(route: "nx.MultiDiGraph") -> list[dict[str, Any]]:
    """The route's edges, strongest first."""
    edges = []
    for source, target, key, attrs in route.edges(keys=True, data=True):
        edges.append({
            "source": source, "target": target, "key": key, "kind": attrs["kind"],
            "layer": attrs["layer"], "head": attrs.get("head"), "neuron": attrs.get("neuron"),
            "weight": round(float(attrs["weight"]), 6),
            "source_token": route.nodes[source]["token"],
            "target_token": route.nodes[target]["token"],
        })  # fmt: skip
    return sorted(edges, key=lambda e: -e["weight"])


def _components(route: "nx.MultiDiGraph") -> list[tuple[str, float]]:
    """Each head and MLP on the route with the sum of its edges' weights, largest first."""
    totals: dict[str, float] = {}
    for _, _, key, attrs in route.edges(keys=True, data=True):
        if attrs["kind"] in ("attention head", "mlp"):
            name = key if attrs["kind"] != "mlp" else f"L{attrs['layer']}MLP"
            totals[name] = totals.get(name, 0.0) + float(attrs["weight"])
    return sorted(totals.items(), key=lambda item: -item[1])


def _summary_json(graph: "FlowGraph", route: "nx.MultiDiGraph", args: argparse.Namespace) -> dict:
    n = int(graph.attention_mask[0].sum())
    return {
        "model": args.model,
        "tokens": graph.str_tokens[0][:n],
        "position": args.position % n,
        "threshold": args.threshold,
        "measure": args.measure,
        "sink": route.graph["sink"],
        "nodes": route.number_of_nodes(),
        "edges": _edges(route),
        "components": [{"name": c, "weight": round(w, 6)} for c, w in _components(route)],
        "max_reconstruction_error": float(graph.reconstruction_error.max()),
        "bridge_check": graph.metadata.get("bridge_check"),
    }


def _summary_text(graph: "FlowGraph", route: "nx.MultiDiGraph", args: argparse.Namespace) -> str:
    n = int(graph.attention_mask[0].sum())
    row = args.position % n
    tokens = graph.str_tokens[0]
    lines = [
        f"model {args.model} · {n} tokens · {graph.n_layers} layers · measure {args.measure}",
        f"route of position {row} ({tokens[row]!r}) after the last layer, edges >= "
        f"{args.threshold:g}: {route.number_of_nodes()} nodes, {route.number_of_edges()} edges",
        "components on the route (summed edge weight):",
    ]
    lines += [f"  {name:10s} {weight:.3f}" for name, weight in _components(route)[: args.top]]
    lines.append("strongest edges:")
    for e in _edges(route)[: args.top]:
        lines.append(
            f"  {e['weight']:.3f}  {e['key']:9s} {e['source']} ({e['source_token']!r}) -> "
            f"{e['target']} ({e['target_token']!r})"
        )
    starts = sorted(
        (a["position"], a["token"]) for _, a in route.nodes(data=True)
        if a["stage"] == "resid_pre" and a["layer"] == 0
    )  # fmt: skip
    lines.append(f"input tokens the route starts from: {starts}")
    lines.append(f"max reconstruction error: {float(graph.reconstruction_error.max()):.2g}")
    return "\n".join(lines)
