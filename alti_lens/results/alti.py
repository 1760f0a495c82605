"""`AltiResult`: the per-layer ALTI contributions and rollout of one `alti` call.

All tensors live on the CPU, detached, in the computation dtype (float32, or float64). Pictures,
text and tables are drawn by `alti_lens.render`; the methods here select the numbers and hand them
over.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from alti_lens._types import Rows
from alti_lens.errors import InputError, InputIndexError
from alti_lens.render import circuitsvis, tables, text
from alti_lens.render import html as html_view
from alti_lens.render import plot as plotting

from . import selections
from .base import ResultBase, check_sizes, size
from .selections import check_index, last_real


def _no_heads() -> InputError:
    return InputError(
        "this AltiResult has no per-head data (head_contributions is None). "
        "Fix: compute it with alti(model, inputs, per_head=True)."
    )


@dataclass(frozen=True, repr=False)
class AltiResult(ResultBase):
    """Per-layer ALTI contributions `C^l` and their rollout `R^l = C^l ··· C^1` (spec §3–4).

    Row `i` of a matrix is query (output) position `i`, column `j` source position `j`; every real
    row sums to 1. Padded positions are exact zeros in every matrix.
    """

    contributions: Float[Tensor, "batch layer query_pos key_pos"]
    # rollout_pos: query_pos, or 1 with alti(rows="last") (`rollout_rows` says which)
    rollout: Float[Tensor, "batch layer rollout_pos key_pos"]
    tokens: Int[Tensor, "batch pos"]
    str_tokens: list[list[str]]
    attention_mask: Int[Tensor, "batch pos"]
    reconstruction_error: Float[Tensor, "batch layer"]
    metadata: dict[str, Any] = field(default_factory=dict)
    # With `per_head=True` (an extension): each row split over (head, source) parts and the
    # residual; per row, the heads' entries and the residual sum to 1.
    head_contributions: Float[Tensor, "batch layer head query_pos key_pos"] | None = None
    residual_contribution: Float[Tensor, "batch layer query_pos"] | None = None
    # With `alti(rows="last")`: the one query position `t_b` of each sequence whose rollout row
    # `rollout[b, :, 0]` holds (its last real token); None when `rollout` has every row.
    rollout_rows: Int[Tensor, " batch"] | None = None

    def __post_init__(self) -> None:
        C, R, heads, residual = (
            self.contributions, self.rollout, self.head_contributions, self.residual_contribution
        )  # fmt: skip
        check_sizes("AltiResult", "sequences", {
            "contributions": C.shape[0], "rollout": R.shape[0], "tokens": self.tokens.shape[0],
            "attention_mask": self.attention_mask.shape[0], "str_tokens": len(self.str_tokens),
            "reconstruction_error": self.reconstruction_error.shape[0],
            "head_contributions": size(heads, 0), "residual_contribution": size(residual, 0),
            "rollout_rows": size(self.rollout_rows, 0),
        })  # fmt: skip
        check_sizes("AltiResult", "layers", {
            "contributions": C.shape[1], "rollout": R.shape[1],
            "reconstruction_error": self.reconstruction_error.shape[1],
            "head_contributions": size(heads, 1), "residual_contribution": size(residual, 1),
        })  # fmt: skip
        check_sizes("AltiResult", "positions", {
            "contributions": C.shape[-1], "contributions rows": C.shape[2],
            "rollout": R.shape[-1], "tokens": self.tokens.shape[1],
            "attention_mask": self.attention_mask.shape[1],
            "rollout rows": R.shape[2] if self.rollout_rows is None else None,
            "head_contributions": size(heads, -1), "residual_contribution": size(residual, 2),
        })  # fmt: skip

    @property
    def n_layers(self) -> int:
        """The number of layers (the `layer` axis of `contributions` and `rollout`)."""
        return self.contributions.shape[1]

    def _layer(self, layer: int) -> int:
        return check_index(layer, self.n_layers, "layer", "this result has {} layers")

    def _batch(self, batch: int) -> int:
        return check_index(batch, len(self), "batch", "this result holds {} sequences")

    def _rollout_row(self, batch: int, row: int, fix: str) -> int:
        """The index in `rollout` of query position `row` (with `rows="last"`, 0 for the one
        computed row; any other position is an error naming `fix`)."""
        if self.rollout_rows is None:
            return row
        computed = int(self.rollout_rows[batch])
        if row != computed:
            raise InputError(
                f'this result was computed with rows="last": its rollout holds position '
                f'{computed} only, not {row}. Fix: {fix}, or alti(..., rows="all")'
            )
        return 0

    @property
    def rows(self) -> Rows:
        """`"all"` (every rollout row) or `"last"` (one per sequence: `rollout_rows`)."""
        return "all" if self.rollout_rows is None else "last"

    def __len__(self) -> int:
        return self.contributions.shape[0]

    def __repr__(self) -> str:
        batch, layers, pos, _ = self.contributions.shape
        return (
            f"AltiResult(batch={batch}, layers={layers}, pos={pos}, "
            f"measure={self.metadata.get('measure')!r}, model={self.metadata.get('model_name')!r}, "
            f"max_reconstruction_error={float(self.reconstruction_error.max()):.2e})"
        )

    def top_sources(
        self,
        position: int = -1,
        k: int = 5,
        *,
        batch: int = 0,
        layer: int = -1,
        rollout: bool = True,
    ) -> list[tuple[int, str, float]]:
        """The `k` sources contributing most to `position` (negative: from the last real token)
        after `layer`, as (position, token, value); from the rollout, or the layer's own `C`."""
        row = last_real(self.attention_mask, batch, position, "position")
        layer = self._layer(layer)
        matrix = self.rollout if rollout else self.contributions
        if rollout:
            row = self._rollout_row(batch, row, "top_sources(-1), rollout=False")
        real = self.attention_mask[batch]
        return selections.top(matrix[batch, layer, row], self.str_tokens[batch], k, real)

    def without(
        self, positions: list[int] | None = None, *, tokens: list[str] | None = None
    ) -> "AltiResult":
        """A view with the given source positions (or every position holding one of `tokens`,
        e.g. `["<|endoftext|>"]` for BOS) removed and each row renormalised to sum to 1."""
        drop = torch.zeros_like(self.attention_mask, dtype=torch.bool)
        if positions is not None:
            drop[:, positions] = True
        for b, row in enumerate(self.str_tokens):
            for j, token in enumerate(row):
                if tokens is not None and token in tokens:
                    drop[b, j] = True
        mask = drop[:, None, None, :]
        return dataclasses.replace(
            self,
            contributions=selections.renormalise_without(self.contributions, mask),
            rollout=selections.renormalise_without(self.rollout, mask),
            metadata={**self.metadata, "without": drop.nonzero().tolist()},
        )

    def merge(
        self, spans: list[tuple[int, int]] | None = None, *, batch: int = 0
    ) -> tuple[list[str], Tensor, Tensor]:
        """Word- or span-level matrices of one sequence: sources summed, query rows averaged.

        `spans` are `(start, stop)` position ranges (uncovered positions stay single); None
        merges subword tokens into words. Returns (labels, contributions, rollout), each matrix
        `[layer, span, span]`.
        """
        n = int(self.attention_mask[self._batch(batch)].sum())
        tokens = self.str_tokens[batch][:n]
        if spans is None:
            spans = selections.word_spans(tokens)
        spans = selections.complete_spans(spans, n)
        labels = ["".join(tokens[a:b]) for a, b in spans]
        C = self.contributions[batch, :, :n, :n]
        R = self.rollout[batch, :, :n, :n]
        return labels, selections.merge(C, spans), selections.merge(R, spans)

    def layer(self, layer: int) -> tuple[Tensor, Tensor]:
        """`(C^l, R^l)` of every sequence, `[batch, pos, pos]` each."""
        layer = self._layer(layer)
        return self.contributions[:, layer], self.rollout[:, layer]

    def head(self, layer: int, head: int) -> Float[Tensor, "batch query_pos key_pos"]:
        """One head's part of `C^l` (needs `alti(..., per_head=True)`): `[batch, pos, pos]`.

        Per row, the heads' parts and `residual_contribution[:, layer]` sum to 1."""
        if self.head_contributions is None:
            raise _no_heads()
        n_heads = self.head_contributions.shape[2]
        if not -n_heads <= head < n_heads:
            raise InputIndexError(
                f"head={head} is out of range: this model has {n_heads} heads. "
                f"Fix: pass a head in 0..{n_heads - 1} (or -{n_heads}..-1 from the end)."
            )
        return self.head_contributions[:, self._layer(layer), head]

    def coloured_text(
        self,
        position: int = -1,
        *,
        layer: int = -1,
        batch: int = 0,
        rollout: bool = True,
        head: int | None = None,
        html: bool = False,
        colour: bool | None = None,
    ) -> str:
        """The tokens of one sequence shaded by one query row: how much each source contributes
        to `position` (negative: from the last real token) after `layer` (the rollout, the
        layer's own `C`, or with `head` that head's part). `html=False` gives terminal text,
        ANSI-coloured when `colour` (None: when stdout is a colour terminal), else plain
        `token[value]` (3 significant digits; the query token starred)."""
        row = last_real(self.attention_mask, batch, position, "position")
        layer = self._layer(layer)
        real = self.attention_mask[batch].nonzero().flatten()
        if head is not None:
            values = self.head(layer, head)[batch, row, real]
        elif rollout:
            row_index = self._rollout_row(batch, row, "coloured_text(-1), rollout=False")
            values = self.rollout[batch, layer, row_index, real]
        else:
            values = (self.rollout if rollout else self.contributions)[batch, layer, row, real]
        tokens = [self.str_tokens[batch][j] for j in real.tolist()]
        return text.coloured_row(
            tokens, values, html=html, colour=colour,
            mark=real.tolist().index(row) if row in real.tolist() else None,
        )  # fmt: skip

    def to_dataframe(self) -> Any:
        """A tidy table (pandas): one row per (sequence, layer, query, source) real pair;
        `rollout` is NaN in the rows `alti(..., rows="last")` did not compute."""
        last = None if self.rollout_rows is None else self.rollout_rows.tolist()

        def rows() -> Any:
            for b in range(len(self)):
                real, toks = self.attention_mask[b].nonzero().flatten().tolist(), self.str_tokens[b]
                for layer in range(self.n_layers):
                    C, R = self.contributions[b, layer].tolist(), self.rollout[b, layer].tolist()
                    for i in real:
                        r = (
                            R[i]
                            if last is None
                            else R[0]
                            if i == last[b]
                            else [float("nan")] * len(C)
                        )
                        yield from ((b, layer, i, j, toks[i], toks[j], C[i][j], r[j]) for j in real)

        names = ("batch", "layer", "query_pos", "key_pos", "query_token", "key_token")
        return tables.table((*names, "contribution", "rollout"), rows())

    def plot(
        self, layer: int = -1, *, batch: int = 0, rollout: bool = True, head: int | None = None
    ) -> Any:
        """Heatmap of one sequence's rollout (or the layer's own `C`, or with `head` that head's
        part of it; needs `per_head=True`) with token labels."""
        n = int(self.attention_mask[self._batch(batch)].sum())
        index = self._layer(layer)
        if head is not None:
            matrix = self.head(layer, head)[batch, :n, :n]
            n_heads = self.head_contributions.shape[2]  # type: ignore[union-attr]  # head() checked
            title = f"ALTI head {head % n_heads} contributions"
        else:
            matrix = (self.rollout if rollout else self.contributions)[batch, layer, :n, :n]
            title = "ALTI " + ("rollout" if rollout else "contributions")
        tokens = self.str_tokens[batch][:n]
        return plotting.heatmap(matrix, tokens, tokens, f"{title}, layer {index}")

    def show_circuitsvis(self, layer: int = -1, *, batch: int = 0) -> Any:
        """The layer's rollout and contributions (and heads, with `per_head=True`) as a
        CircuitsVis `attention_heads` widget (needs `pip install circuitsvis`)."""
        n = int(self.attention_mask[self._batch(batch)].sum())
        layer = self._layer(layer)
        mats, names = (
            [self.rollout[batch, layer], self.contributions[batch, layer]],
            ["rollout", "C"],
        )
        if self.head_contributions is not None:
            mats += list(self.head_contributions[batch, layer])
            names += [f"head {h}" for h in range(self.head_contributions.shape[2])]
        patterns = torch.stack([m[:n, :n] for m in mats]).float()
        return circuitsvis.attention_heads(self.str_tokens[batch][:n], patterns, names)

    def _repr_html_(self) -> str:
        title = f"<b>rollout of the last token after layer {self.n_layers - 1} (sequence 0)</b>"
        body = self.coloured_text(html=True)
        return html_view.card(repr(self), f"<div>{title}</div>{body}")
