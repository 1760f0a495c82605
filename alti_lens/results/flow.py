"""`FlowGraph`: the information-flow graph of one `flow_graph` call (spec §8), its routes and its
summaries.

All tensors live on the CPU, detached, in the computation dtype. The graph's nodes are the
residual stream's states, `(stage, layer, position)`; its edges the parts each state is a sum of
(attention heads per source, the residual, the MLP, its neurons), weighted so that a node's
incoming weights sum to 1. `routes` prunes it top-down from one prediction (Ferrando & Voita 2024).
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jaxtyping import Float, Int
from torch import Tensor

from alti_lens.errors import InputError
from alti_lens.render import tables

from . import routes as _routes
from .base import ResultBase, check_sizes, size
from .selections import check_index

if TYPE_CHECKING:
    import networkx as nx
    import pandas as pd


@dataclass(frozen=True, repr=False)
class FlowGraph(ResultBase):
    """Edge weights of the information-flow graph of every sequence (spec §8).

    - `attention[b, l, h, i, j]`: head `h`'s part from source `j` in row `i`'s state after layer
      `l`'s attention (parallel blocks: after the whole block);
    - `attention_residual[b, l, i]`: the residual's part in that state;
    - `mlp[b, l, i]`, `mlp_residual[b, l, i]`: the MLP's and the residual's parts of the state
      after the MLP (parallel blocks: `mlp` is the MLP's part in the one step, `mlp_residual`
      NaN; attention-only models: both NaN);
    - `neurons[b, l, i, k]` (with `neurons=True`): neuron `k`'s share of the MLP's part.

    Each state's parts sum to 1; padded positions are exact zeros (NaN where NaN above).
    """

    attention: Float[Tensor, "batch layer head_index query_pos key_pos"]
    attention_residual: Float[Tensor, "batch layer pos"]
    mlp: Float[Tensor, "batch layer pos"]
    mlp_residual: Float[Tensor, "batch layer pos"]
    tokens: Int[Tensor, "batch pos"]
    str_tokens: list[list[str]]
    attention_mask: Int[Tensor, "batch pos"]
    reconstruction_error: Float[Tensor, "batch layer"]
    metadata: dict[str, Any] = field(default_factory=dict)
    neurons: Float[Tensor, "batch layer pos d_mlp"] | None = None

    def __post_init__(self) -> None:
        A, n = self.attention, self.neurons
        per_position = (self.attention_residual, self.mlp, self.mlp_residual)
        check_sizes("FlowGraph", "sequences", {
            "attention": A.shape[0], "attention_residual": per_position[0].shape[0],
            "mlp": per_position[1].shape[0], "mlp_residual": per_position[2].shape[0],
            "tokens": self.tokens.shape[0], "str_tokens": len(self.str_tokens),
            "attention_mask": self.attention_mask.shape[0],
            "reconstruction_error": self.reconstruction_error.shape[0], "neurons": size(n, 0),
        })  # fmt: skip
        check_sizes("FlowGraph", "layers", {
            "attention": A.shape[1], "attention_residual": per_position[0].shape[1],
            "mlp": per_position[1].shape[1], "mlp_residual": per_position[2].shape[1],
            "reconstruction_error": self.reconstruction_error.shape[1], "neurons": size(n, 1),
        })  # fmt: skip
        check_sizes("FlowGraph", "positions", {
            "attention rows": A.shape[3], "attention columns": A.shape[4],
            "attention_residual": per_position[0].shape[2], "mlp": per_position[1].shape[2],
            "mlp_residual": per_position[2].shape[2], "tokens": self.tokens.shape[1],
            "attention_mask": self.attention_mask.shape[1], "neurons": size(n, 2),
        })  # fmt: skip

    def __repr__(self) -> str:
        batch, layers, heads, n, _ = self.attention.shape
        neurons = "" if self.neurons is None else f", d_mlp={self.neurons.shape[-1]}"
        return (
            f"FlowGraph(batch={batch}, layers={layers}, heads={heads}, pos={n}{neurons}, "
            f"model={self.metadata.get('model_name')!r}, "
            f"max reconstruction error {float(self.reconstruction_error.nan_to_num().max()):.2g})"
        )

    @property
    def n_layers(self) -> int:
        """The number of layers."""
        return self.attention.shape[1]

    @property
    def n_heads(self) -> int:
        """The number of attention heads per layer."""
        return self.attention.shape[2]

    @property
    def steps(self) -> list[str]:
        """Each layer's steps: `"attention+mlp"`, `"parallel"` or `"attention"` (no MLP)."""
        return list(self.metadata.get("steps", ["attention+mlp"] * self.n_layers))

    def position(self, position: int, batch_index: int = 0) -> int:
        """`position` (negative: from the sequence's last real token) as an index into the
        padded sequence; an `InputIndexError` naming the valid range otherwise."""
        batch_index = check_index(
            batch_index, self.tokens.shape[0], "batch_index", "the graph has {} sequences"
        )
        real = self.attention_mask[batch_index].nonzero().flatten()
        if not isinstance(position, int) or isinstance(position, bool):
            raise InputError(
                f"position must be an int (a real token's index, negative from the last); got "
                f"{type(position).__name__}. Fix: position=-1 for the last token."
            )
        position = check_index(position, len(real), "position", "the sequence has {} tokens")
        return int(real[position])

    def routes(
        self, position: int = -1, threshold: float = 0.04, batch_index: int = 0
    ) -> "nx.MultiDiGraph":
        """The route that carried the state of `position` after the last layer (the sink): from
        it, every incoming edge with weight `≥ threshold` is kept and the nodes it comes from
        are followed, down to the embeddings (Ferrando & Voita 2024, spec §8).

        Returns a `networkx.MultiDiGraph` (a `DiGraph`): one edge per head between two states
        (key `"L{l}H{h}"`), `"residual"`, `"mlp"`, and with neurons `"L{l}N{k}"`. Nodes carry
        `stage`, `layer`, `position`, `token`; edges `kind` ("attention head", "residual", "mlp",
        "neuron"), `layer`, `head` / `neuron`, `weight`. The sink is `g.graph["sink"]`.
        """
        padded = self.position(position, batch_index)
        batch_index %= len(self.tokens)
        return _routes.route(self, padded, _check_threshold(threshold), batch_index)

    def to_networkx(self, batch_index: int = 0, min_weight: float = 0.0) -> "nx.MultiDiGraph":
        """The whole graph of one sequence (every edge with weight `≥ min_weight`; unpruned):
        nodes and edges as in `routes`. Large: `layers · heads · n²` edges at `min_weight=0`."""
        batch_index = check_index(
            batch_index, self.tokens.shape[0], "batch_index", "the graph has {} sequences"
        )
        return _routes.full_graph(self, batch_index, _check_threshold(min_weight, "min_weight"))

    def to_dataframe(
        self, position: int = -1, threshold: float = 0.04, batch_index: int = 0
    ) -> "pd.DataFrame":
        """The route's edges (`routes`) as a tidy table: one row per edge with its source and
        target node, stage, layer, positions, tokens, kind, head or neuron, and weight."""
        rows = _routes.edge_rows(self.routes(position, threshold, batch_index))
        table = tables.table(_routes.EDGE_COLUMNS, rows)
        for column in ("head", "neuron"):  # integers where present
            table[column] = table[column].astype("Int64")
        return table

    def importance(
        self, position: int = -1, threshold: float = 0.04
    ) -> dict[str, Float[Tensor, "..."]]:
        """Which components matter over the batch (the paper's "which heads matter generally"):
        for each sequence the route of `position`, then per component the sum of its edges'
        weights in the route (0 if absent), averaged over the sequences. Returns `"heads"`
        `[layer, head]`, `"mlp"` `[layer]` and `"frequency_heads"` / `"frequency_mlp"`: the share
        of routes the component appears in."""
        return _routes.importance(self, position, threshold)

    def plot(
        self,
        position: int = -1,
        threshold: float = 0.04,
        batch_index: int = 0,
        *,
        ax: Any = None,
    ) -> Any:
        """The route drawn with matplotlib: layers as rows, tokens as columns, edges coloured
        by kind, width by weight. Returns the axes."""
        from alti_lens.render import flow as flow_view

        graph = self.routes(position, threshold, batch_index)
        return flow_view.plot_route(graph, self.str_tokens[batch_index], self.n_layers, ax=ax)


def _check_threshold(value: float, name: str = "threshold") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InputError(
            f"{name} must be a number in [0, 1] (an edge weight: a share of its node); got "
            f"{value!r}. Fix: e.g. {name}=0.04, the paper's default."
        )
    return float(value)
