"""Result containers: tensors, token strings and metadata of one `alti` call.

All tensors live on the CPU, detached, in the computation dtype (float32, or float64).
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from . import storage, views
from ._types import Rows
from .errors import InputError

R = TypeVar("R", bound="_Stored")


class _Stored:
    """`save(path)` / `load(path)`: one safetensors file with JSON metadata, no pickle;
    `to_html()` / `save_html(path)`: a self-contained interactive report (`alti_lens.report`)."""

    def save(self, path: str | Path) -> Path:
        return storage.save(self, path)

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        return storage.load(cls, path)

    def to_html(self, *, title: str | None = None, **options: Any) -> str:
        """An interactive HTML report of this result: one offline page (inline script and
        style, data as JSON). Options as `alti_lens.report.build_report` (`batch`, ...)."""
        from . import report

        return report.to_html(self, title=title, **options)

    def save_html(self, path: str | Path, *, title: str | None = None, **options: Any) -> Path:
        """Write `to_html()` to `path` (parent folders created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_html(title=title, **options), encoding="utf-8")
        return path


def _no_heads() -> InputError:
    return InputError(
        "this AltiResult has no per-head data (head_contributions is None). "
        "Fix: compute it with alti(model, inputs, per_head=True)."
    )


def _last_real(mask: Tensor, batch: int, position: int) -> int:
    real = mask[batch].nonzero().flatten()
    return int(real[position]) if position < 0 else position


@dataclass(frozen=True, repr=False)
class AltiResult(_Stored):
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

    @property
    def n_layers(self) -> int:
        return self.contributions.shape[1]

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
        row = _last_real(self.attention_mask, batch, position)
        matrix = self.rollout if rollout else self.contributions
        if rollout:
            row = self._rollout_row(batch, row, "top_sources(-1), rollout=False")
        return views.top(matrix[batch, layer, row], self.str_tokens[batch], k)

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
            contributions=views.renormalise_without(self.contributions, mask),
            rollout=views.renormalise_without(self.rollout, mask),
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
        n = int(self.attention_mask[batch].sum())
        tokens = self.str_tokens[batch][:n]
        spans = views.complete_spans(views.word_spans(tokens) if spans is None else spans, n)
        labels = ["".join(tokens[a:b]) for a, b in spans]
        C = self.contributions[batch, :, :n, :n]
        R = self.rollout[batch, :, :n, :n]
        return labels, views.merge(C, spans), views.merge(R, spans)

    def layer(self, layer: int) -> tuple[Tensor, Tensor]:
        """`(C^l, R^l)` of every sequence, `[batch, pos, pos]` each."""
        return self.contributions[:, layer], self.rollout[:, layer]

    def head(self, layer: int, head: int) -> Float[Tensor, "batch query_pos key_pos"]:
        """One head's part of `C^l` (needs `alti(..., per_head=True)`): `[batch, pos, pos]`.

        Per row, the heads' parts and `residual_contribution[:, layer]` sum to 1."""
        if self.head_contributions is None:
            raise _no_heads()
        n_heads = self.head_contributions.shape[2]
        if not -n_heads <= head < n_heads:
            raise InputError(f"head={head} is out of range: this model has {n_heads} heads.")
        return self.head_contributions[:, layer, head]

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
        row = _last_real(self.attention_mask, batch, position)
        real = self.attention_mask[batch].nonzero().flatten()
        if head is not None:
            values = self.head(layer, head)[batch, row, real]
        elif rollout:
            row_index = self._rollout_row(batch, row, "coloured_text(-1), rollout=False")
            values = self.rollout[batch, layer, row_index, real]
        else:
            values = (self.rollout if rollout else self.contributions)[batch, layer, row, real]
        tokens = [self.str_tokens[batch][j] for j in real.tolist()]
        return views.coloured_row(
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
        return views.table((*names, "contribution", "rollout"), rows())

    def plot(
        self, layer: int = -1, *, batch: int = 0, rollout: bool = True, head: int | None = None
    ) -> Any:
        """Heatmap of one sequence's rollout (or the layer's own `C`, or with `head` that head's
        part of it; needs `per_head=True`) with token labels."""
        from . import viz

        n = int(self.attention_mask[batch].sum())
        index = layer % self.n_layers
        if head is not None:
            matrix = self.head(layer, head)[batch, :n, :n]
            n_heads = self.head_contributions.shape[2]  # type: ignore[union-attr]  # head() checked
            title = f"ALTI head {head % n_heads} contributions"
        else:
            matrix = (self.rollout if rollout else self.contributions)[batch, layer, :n, :n]
            title = "ALTI " + ("rollout" if rollout else "contributions")
        tokens = self.str_tokens[batch][:n]
        return viz.heatmap(matrix, tokens, tokens, f"{title}, layer {index}")

    def show_circuitsvis(self, layer: int = -1, *, batch: int = 0) -> Any:
        """The layer's rollout and contributions (and heads, with `per_head=True`) as a
        CircuitsVis `attention_heads` widget (needs `pip install circuitsvis`)."""
        n = int(self.attention_mask[batch].sum())
        mats, names = (
            [self.rollout[batch, layer], self.contributions[batch, layer]],
            ["rollout", "C"],
        )
        if self.head_contributions is not None:
            mats += list(self.head_contributions[batch, layer])
            names += [f"head {h}" for h in range(self.head_contributions.shape[2])]
        patterns = torch.stack([m[:n, :n] for m in mats]).float()
        return views.circuitsvis_patterns(self.str_tokens[batch][:n], patterns, names)

    def _repr_html_(self) -> str:
        title = f"<b>rollout of the last token after layer {self.n_layers - 1} (sequence 0)</b>"
        body = self.coloured_text(html=True)
        return f"<div><code>{views.html.escape(repr(self))}</code><div>{title}</div>{body}</div>"


@dataclass(frozen=True, repr=False)
class AltiPlusResult(_Stored):
    """ALTI+ for an encoder-decoder model (spec §2.4, §4): source and target-prefix contributions.

    Decoder row `t` is the prediction made at decoder input position `t` (teacher forcing: the
    decoder input is the target shifted right, starting with the decoder start token).
    `rollout[b, l, t]` has the `S` source columns first, then the `T` target-prefix columns, and
    every real row sums to 1; `source_contribution[b, t]` is the sum of its source columns after the
    last decoder layer. Padded positions are exact zeros everywhere.
    """

    encoder_contributions: Float[Tensor, "batch enc_layer src_pos src_pos"]
    encoder_rollout: Float[Tensor, "batch enc_layer src_pos src_pos"]
    decoder_contributions: Float[Tensor, "batch dec_layer tgt_pos tgt_pos"]
    cross_contributions: Float[Tensor, "batch dec_layer tgt_pos src_plus_one"]
    rollout: Float[Tensor, "batch dec_layer tgt_pos src_tgt"]
    source_contribution: Float[Tensor, "batch tgt_pos"]
    source_tokens: Int[Tensor, "batch src_pos"]
    target_tokens: Int[Tensor, "batch tgt_pos"]  # the decoder input
    source_str_tokens: list[list[str]]
    target_str_tokens: list[list[str]]
    source_attention_mask: Int[Tensor, "batch src_pos"]
    target_attention_mask: Int[Tensor, "batch tgt_pos"]
    # Every sub-block's exactness-check error; names in metadata["sub_blocks"].
    reconstruction_error: Float[Tensor, "batch sub_block"]
    # The token each decoder row predicts, where known (text targets; -1 where unknown).
    target_labels: Int[Tensor, "batch tgt_pos"] | None = None
    # Source positions holding special tokens (EOS, language tags, ...), for the statistics.
    source_special_mask: Bool[Tensor, "batch src_pos"] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.rollout.shape[0]

    def __repr__(self) -> str:
        batch, layers, tgt, _ = self.rollout.shape
        src = self.source_tokens.shape[1]
        return (
            f"AltiPlusResult(batch={batch}, enc_layers={self.encoder_contributions.shape[1]}, "
            f"dec_layers={layers}, src_pos={src}, tgt_pos={tgt}, "
            f"measure={self.metadata.get('measure')!r}, model={self.metadata.get('model_name')!r}, "
            f"max_reconstruction_error={float(self.reconstruction_error.max()):.2e})"
        )

    def source_contribution_without(
        self, excluded: Bool[Tensor, "batch src_pos"]
    ) -> Float[Tensor, "batch tgt_pos"]:
        """Source contribution per step, leaving out the `excluded` source columns."""
        n_source = self.source_tokens.shape[1]
        keep = (~excluded.bool()).to(self.rollout.dtype)
        return (self.rollout[:, -1, :, :n_source] * keep[:, None, :]).sum(-1)

    def sentence_statistics(
        self, thresholds: tuple[float, ...] = (0.3, 0.4, 0.5)
    ) -> dict[str, Tensor]:
        """Sentence-level statistics of the source contribution, one value per sequence.

        As used for hallucination detection (Dale et al. 2022; stopes): the mean over decoder
        steps (`mean`; `mean_skip_first` without the first step), the minimum, and the share of
        steps whose source contribution is above each threshold — each also `_no_special`, with
        the source columns of special tokens (EOS, language tags) left out.
        """
        mask = self.target_attention_mask.bool()
        variants = {"": self.source_contribution}
        if self.source_special_mask is not None:
            variants["_no_special"] = self.source_contribution_without(self.source_special_mask)
        stats: dict[str, Tensor] = {}
        first = mask.clone()
        first[:, 0] = False
        for suffix, sc in variants.items():
            stats[f"mean{suffix}"] = _masked_mean(sc, mask)
            stats[f"mean_skip_first{suffix}"] = _masked_mean(sc, first)
            stats[f"min{suffix}"] = sc.masked_fill(~mask, float("inf")).amin(-1)
            for t in thresholds:
                stats[f"share_above_{t:g}{suffix}"] = _masked_mean((sc > t).to(sc.dtype), mask)
        return stats

    def sentence_statistics_frame(self, thresholds: tuple[float, ...] = (0.3, 0.4, 0.5)) -> Any:
        """`sentence_statistics` as a pandas DataFrame, one row per sequence (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "sentence_statistics_frame() needs pandas: pip install pandas "
                "(sentence_statistics() returns the same numbers as tensors)."
            ) from err
        stats = self.sentence_statistics(thresholds)
        return pd.DataFrame({k: v.tolist() for k, v in stats.items()})

    def top_sources(
        self, step: int = -1, k: int = 5, *, batch: int = 0, layer: int = -1
    ) -> list[tuple[int, str, float]]:
        """The `k` largest columns of the extended rollout at decoder `step`, as (column, token,
        value): source columns first (`src:` tokens), then target-prefix columns (`tgt:`)."""
        row = _last_real(self.target_attention_mask, batch, step)
        labels = [f"src:{t}" for t in self.source_str_tokens[batch]]
        labels += [f"tgt:{t}" for t in self.target_str_tokens[batch]]
        return views.top(self.rollout[batch, layer, row], labels, k)

    def plot(self, *, batch: int = 0) -> Any:
        """Source vs target-prefix contribution per decoder step (as in the ALTI+ paper)."""
        from . import viz

        t = int(self.target_attention_mask[batch].sum())
        return viz.source_target_bars(
            self.source_contribution[batch, :t],
            self.target_str_tokens[batch][:t],
            "ALTI+ source contribution per decoder step",
        )

    def coloured_text(
        self,
        step: int = -1,
        *,
        layer: int = -1,
        batch: int = 0,
        html: bool = False,
        colour: bool | None = None,
    ) -> str:
        """The source and target-prefix tokens shaded by the extended rollout of decoder `step`
        (negative: from the last real step) after `layer`, one shared scale; terminal text or
        HTML as `AltiResult.coloured_text`."""
        row = _last_real(self.target_attention_mask, batch, step)
        src = self.source_attention_mask[batch].nonzero().flatten().tolist()
        tgt = self.target_attention_mask[batch].nonzero().flatten().tolist()
        values = self.rollout[batch, layer, row]
        S = self.source_tokens.shape[1]
        segments = [
            ("source", [self.source_str_tokens[batch][j] for j in src], values[src], None),
            ("target prefix", [self.target_str_tokens[batch][j] for j in tgt],
             values[[S + j for j in tgt]], tgt.index(row)),
        ]  # fmt: skip
        return views.coloured_segments(segments, html=html, colour=colour)

    def plot_rollout(self, layer: int = -1, *, batch: int = 0) -> Any:
        """Heatmap of the extended rollout `[tgt, src + tgt]` of one sequence."""
        from . import viz

        s_real = self.source_attention_mask[batch].bool()
        t = int(self.target_attention_mask[batch].sum())
        S = self.source_tokens.shape[1]
        cols = [j for j in range(S) if s_real[j]] + [S + j for j in range(t)]
        matrix = self.rollout[batch, layer, :t][:, cols]
        labels = [f"src:{self.source_str_tokens[batch][j]}" for j in range(S) if s_real[j]]
        labels += [f"tgt:{tok}" for tok in self.target_str_tokens[batch][:t]]
        rows = self.target_str_tokens[batch][:t]
        return viz.heatmap(matrix, rows, labels, "ALTI+ extended rollout", ylabel="decoder input")

    def to_dataframe(self) -> Any:
        """A tidy table (pandas): one row per (sequence, decoder step), its source contribution."""
        rows = (
            (b, t, self.target_str_tokens[b][t], float(self.source_contribution[b, t]))
            for b in range(len(self))
            for t in self.target_attention_mask[b].nonzero().flatten().tolist()
        )
        return views.table(("batch", "step", "token", "source_contribution"), rows)

    def _repr_html_(self) -> str:
        t = int(self.target_attention_mask[0].sum())
        body = views.coloured_tokens(
            self.target_str_tokens[0][:t],
            self.source_contribution[0, :t],
            "source contribution per decoder step (sequence 0)",
        )
        return f"<div><code>{views.html.escape(repr(self))}</code>{body}</div>"


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    counts = mask.sum(-1)
    total = (values * mask).sum(-1)
    return torch.where(
        counts > 0, total / counts.clamp_min(1), torch.full_like(total, float("nan"))
    )


@dataclass(frozen=True, repr=False)
class AltiLogitResult(_Stored):
    """ALTI-Logit: a prediction's logit (or logit difference) decomposed over input tokens (§5).

    `scores.sum(-1) + Σ components == logit` to float precision (checked on every call). Models
    that soft-cap their logits (Gemma-2: `cap · tanh(raw / cap)`) are decomposed before the cap:
    then the parts add up to `metadata["pre_soft_cap_logit"]`, while `logit` is the model's output.
    """

    scores: Float[Tensor, "batch pos"]
    components: dict[str, Tensor]  # each [batch]: embedding, attention_biases, mlps, ...
    logit: Float[Tensor, " batch"]  # the model's own logit (or target − foil difference)
    # Extension: per layer and head, the logit contribution (logit units) routed through that
    # head, over input tokens; summed over layers and heads it is `scores`.
    head_scores: Float[Tensor, "batch layer head pos"]
    # The components per layer (attention biases, MLP outputs), each [batch, layer].
    layer_components: dict[str, Tensor]
    tokens: Int[Tensor, "batch pos"]
    str_tokens: list[list[str]]
    attention_mask: Int[Tensor, "batch pos"]
    position: Int[Tensor, " batch"]  # the explained output position of each sequence
    target: Int[Tensor, " batch"]
    foil: Int[Tensor, " batch"] | None
    logit_error: Float[Tensor, " batch"]  # |scores.sum + components − logit|
    alti: "AltiResult"  # the ALTI contributions and rollout the scores were rolled through
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.scores.shape[0]

    def __repr__(self) -> str:
        batch, pos = self.scores.shape
        return (
            f"AltiLogitResult(batch={batch}, pos={pos}, layers={self.head_scores.shape[1]}, "
            f"contrastive={self.foil is not None}, model={self.metadata.get('model_name')!r}, "
            f"max_logit_error={float(self.logit_error.max()):.2e})"
        )

    def top_sources(self, k: int = 5, *, batch: int = 0) -> list[tuple[int, str, float]]:
        """The `k` input tokens with the largest scores, as (position, token, score)."""
        return views.top(self.scores[batch], self.str_tokens[batch], k)

    def head(self, layer: int, head: int) -> Float[Tensor, "batch pos"]:
        """The logit contribution (logit units) routed through one head, over input tokens:
        `[batch, pos]`."""
        n_heads = self.head_scores.shape[2]
        if not -n_heads <= head < n_heads:
            raise InputError(f"head={head} is out of range: this model has {n_heads} heads.")
        return self.head_scores[:, layer, head]

    def top_heads(self, k: int = 5, *, batch: int = 0) -> list[tuple[int, int, float]]:
        """The `k` heads routing the most logit (summed over tokens), as
        (layer, head, logit contribution in logit units)."""
        totals = self.head_scores[batch].sum(-1)
        n_heads = totals.shape[1]
        best = views.top(totals.flatten(), [""] * totals.numel(), k)
        return [(i // n_heads, i % n_heads, v) for i, _, v in best]

    def coloured_text(
        self,
        *,
        batch: int = 0,
        layer: int | None = None,
        head: int | None = None,
        html: bool = False,
        colour: bool | None = None,
    ) -> str:
        """The input tokens shaded by score (red up, blue down; the explained position marked),
        or by one head's share with `layer` and `head`; terminal text or HTML as
        `AltiResult.coloured_text`."""
        if (layer is None) != (head is None):
            raise InputError("pass both layer and head (one head's share), or neither.")
        values = self.scores if layer is None or head is None else self.head(layer, head)
        real = self.attention_mask[batch].nonzero().flatten().tolist()
        position = int(self.position[batch])
        return views.coloured_row(
            [self.str_tokens[batch][j] for j in real], values[batch, real], html=html,
            colour=colour, mark=real.index(position) if position in real else None,
            diverging=True,
        )  # fmt: skip

    def to_dataframe(self) -> Any:
        """A tidy table (pandas): one row per (sequence, real input position) with its score."""
        rows = (
            (b, j, self.str_tokens[b][j], float(self.scores[b, j]))
            for b in range(len(self))
            for j in self.attention_mask[b].nonzero().flatten().tolist()
        )
        return views.table(("batch", "pos", "token", "score"), rows)

    def _repr_html_(self) -> str:
        n = int(self.attention_mask[0].sum())
        body = views.coloured_tokens(
            self.str_tokens[0][:n], self.scores[0, :n], "ALTI-Logit scores (sequence 0)"
        )
        return f"<div><code>{views.html.escape(repr(self))}</code>{body}</div>"
