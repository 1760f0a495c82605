"""The graph of a `FlowGraph` as networkx objects: its nodes and edges, the top-down route from one
prediction (Ferrando & Voita 2024, spec §8), the rows of the tidy edge table and importance over a
batch.

Node ids are strings `"{stage}.{layer}.{position}"` (`"resid_mid.3.5"`): the state entering layer
`l` is `resid_pre.l`, after its attention `resid_mid.l` (sequential blocks), and after it
`resid_pre.(l+1)`, or `resid_post.(L−1)` after the last layer. networkx is imported when a graph
is made.
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    import networkx as nx

    from .flow import FlowGraph

HEAD, RESIDUAL, MLP, NEURON = "attention head", "residual", "mlp", "neuron"
STAGES = ("resid_pre", "resid_mid", "resid_post")
Edge = tuple[str, str, str, dict[str, Any]]  # source, target, key, attributes


def node_id(stage: str, layer: int, position: int) -> str:
    """The id of a state node, `"{stage}.{layer}.{position}"`."""
    return f"{stage}.{layer}.{position}"


def parse(node: str) -> tuple[str, int, int]:
    """A node id's stage, layer and position."""
    stage, layer, position = node.split(".")
    return stage, int(layer), int(position)


def after(n_layers: int, layer: int, position: int) -> str:
    """The state after layer `layer` (the next layer's `resid_pre`, or the last `resid_post`)."""
    if layer == n_layers - 1:
        return node_id("resid_post", layer, position)
    return node_id("resid_pre", layer + 1, position)


def depth(stage: str, layer: int) -> int:
    """A node's row in a drawing, bottom up: `resid_pre.l` 2l, `resid_mid.l` 2l+1, the output 2L."""
    return 2 * layer + (1 if stage == "resid_mid" else 2 if stage == "resid_post" else 0)


class _Weights:
    """One sequence's edge weights as plain tensors, with the incoming edges of any node."""

    def __init__(self, graph: "FlowGraph", batch_index: int) -> None:
        self.graph, self.b = graph, batch_index
        self.attention = graph.attention[batch_index]
        self.residual = graph.attention_residual[batch_index]
        self.mlp, self.mlp_residual = graph.mlp[batch_index], graph.mlp_residual[batch_index]
        self.neurons = None if graph.neurons is None else graph.neurons[batch_index]
        self.steps = graph.steps
        self.L = graph.n_layers
        self.real = graph.attention_mask[batch_index].nonzero().flatten().tolist()

    def incoming(self, node: str, threshold: float) -> Iterator[Edge]:
        """The edges into `node` whose weight is `≥ threshold`."""
        stage, layer, i = parse(node)
        if stage == "resid_mid":
            yield from self._attention(layer, i, node, threshold, with_mlp=False)
            return
        step_layer = layer if stage == "resid_post" else layer - 1
        if step_layer < 0:
            return  # the embeddings
        step = self.steps[step_layer]
        if step == "attention+mlp":
            yield from self._mlp(step_layer, i, node, threshold)
        else:
            yield from self._attention(step_layer, i, node, threshold, step == "parallel")

    def _attention(
        self, layer: int, i: int, target: str, threshold: float, with_mlp: bool
    ) -> Iterator[Edge]:
        source = node_id("resid_pre", layer, i)
        # only real sources: padded positions have no nodes (their weight 0 passes threshold 0);
        # float64, as the residual's and the MLP's weights are compared: a float32 tensor would
        # compare with float32(threshold), which is below 0.04 itself
        weights = self.attention[layer, :, i, self.real].double()  # [head, real key]
        for h, r in (weights >= threshold).nonzero().tolist():
            j, w = self.real[r], float(weights[h, r])
            attrs = {"kind": HEAD, "layer": layer, "head": h, "weight": w}
            yield node_id("resid_pre", layer, j), target, f"L{layer}H{h}", attrs
        w = float(self.residual[layer, i])
        if w >= threshold:
            yield source, target, RESIDUAL, {"kind": RESIDUAL, "layer": layer, "weight": w}
        if with_mlp:
            yield from self._mlp_edge(layer, i, source, target, threshold)

    def _mlp(self, layer: int, i: int, target: str, threshold: float) -> Iterator[Edge]:
        source = node_id("resid_mid", layer, i)
        yield from self._mlp_edge(layer, i, source, target, threshold)
        w = float(self.mlp_residual[layer, i])
        if w >= threshold:
            yield source, target, RESIDUAL, {"kind": RESIDUAL, "layer": layer, "weight": w}

    def _mlp_edge(
        self, layer: int, i: int, source: str, target: str, threshold: float
    ) -> Iterator[Edge]:
        w = float(self.mlp[layer, i])
        if not w >= threshold:  # also NaN: no MLP
            return
        yield source, target, MLP, {"kind": MLP, "layer": layer, "weight": w}
        if self.neurons is None:
            return
        shares = self.neurons[layer, i].double()
        for k in (shares >= threshold).nonzero().flatten().tolist():
            attrs = {"kind": NEURON, "layer": layer, "neuron": k, "weight": float(shares[k])}
            attrs["mlp_weight"] = w
            yield source, target, f"L{layer}N{k}", attrs


def _new_graph(flow: "FlowGraph", batch_index: int, **attrs: Any) -> "nx.MultiDiGraph":
    import networkx as nx

    graph = nx.MultiDiGraph(batch_index=batch_index, n_layers=flow.n_layers, **attrs)
    graph.graph["steps"] = flow.steps
    return graph


def _add_node(graph: "nx.MultiDiGraph", node: str, tokens: list[str]) -> None:
    if node in graph:
        return
    stage, layer, position = parse(node)
    graph.add_node(
        node,
        stage=stage,
        layer=layer,
        position=position,
        token=tokens[position],
        depth=depth(stage, layer),
    )


def _add_edge(graph: "nx.MultiDiGraph", edge: Edge, tokens: list[str]) -> None:
    source, target, key, attrs = edge
    _add_node(graph, source, tokens)
    _add_node(graph, target, tokens)
    graph.add_edge(source, target, key=key, **attrs)


def route(
    flow: "FlowGraph", position: int, threshold: float, batch_index: int
) -> "nx.MultiDiGraph":
    """The top-down route from the state of padded `position` after the last layer."""
    weights = _Weights(flow, batch_index)
    tokens = flow.str_tokens[batch_index]
    sink = after(flow.n_layers, flow.n_layers - 1, position)
    graph = _new_graph(flow, batch_index, sink=sink, threshold=threshold, position=position)
    _add_node(graph, sink, tokens)
    frontier, seen = [sink], {sink}
    while frontier:
        node = frontier.pop()
        for edge in weights.incoming(node, threshold):
            _add_edge(graph, edge, tokens)
            if edge[0] not in seen:
                seen.add(edge[0])
                frontier.append(edge[0])
    return graph


def full_graph(flow: "FlowGraph", batch_index: int, min_weight: float) -> "nx.MultiDiGraph":
    """Every edge of one sequence with weight `≥ min_weight`."""
    weights = _Weights(flow, batch_index)
    tokens = flow.str_tokens[batch_index]
    graph = _new_graph(flow, batch_index, min_weight=min_weight)
    for layer, step in enumerate(weights.steps):
        for i in weights.real:
            targets = [after(flow.n_layers, layer, i)]
            if step == "attention+mlp":
                targets.insert(0, node_id("resid_mid", layer, i))
            for target in targets:
                _add_node(graph, target, tokens)
                for edge in weights.incoming(target, min_weight):
                    _add_edge(graph, edge, tokens)
    return graph


EDGE_COLUMNS = (
    "source", "target", "key", "kind", "layer", "head", "neuron", "weight", "source_stage",
    "target_stage", "source_position", "target_position", "source_token", "target_token",
)  # fmt: skip


def edge_rows(graph: "nx.MultiDiGraph") -> list[tuple[Any, ...]]:
    """One tuple per edge (columns `EDGE_COLUMNS`), by layer from the top, then target, then
    weight (largest first)."""
    rows = []
    for source, target, key, attrs in graph.edges(keys=True, data=True):
        s, t = graph.nodes[source], graph.nodes[target]
        rows.append((
            source, target, key, attrs["kind"], attrs["layer"], attrs.get("head"),
            attrs.get("neuron"), attrs["weight"], s["stage"], t["stage"], s["position"],
            t["position"], s["token"], t["token"],
        ))  # fmt: skip
    return sorted(rows, key=lambda r: (-r[4], r[1], -r[7]))


def importance(flow: "FlowGraph", position: int, threshold: float) -> dict[str, Tensor]:
    """Per head and per MLP: the sum of its edge weights in each sequence's route (0 where
    absent), averaged over the batch; and the share of routes it appears in."""
    batch = flow.tokens.shape[0]
    heads = torch.zeros(flow.n_layers, flow.n_heads, dtype=torch.float64)
    mlp = torch.zeros(flow.n_layers, dtype=torch.float64)
    seen_heads, seen_mlp = torch.zeros_like(heads), torch.zeros_like(mlp)
    for b in range(batch):
        graph = flow.routes(position, threshold, b)
        here_heads, here_mlp = torch.zeros_like(heads), torch.zeros_like(mlp)
        for _, _, attrs in graph.edges(data=True):
            if attrs["kind"] == HEAD:
                here_heads[attrs["layer"], attrs["head"]] += attrs["weight"]
            elif attrs["kind"] == MLP:
                here_mlp[attrs["layer"]] += attrs["weight"]
        heads += here_heads
        mlp += here_mlp
        seen_heads += here_heads > 0
        seen_mlp += here_mlp > 0
    return {
        "heads": heads / batch,
        "mlp": mlp / batch,
        "frequency_heads": seen_heads / batch,
        "frequency_mlp": seen_mlp / batch,
    }
