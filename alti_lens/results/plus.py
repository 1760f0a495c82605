"""`AltiPlusResult`: ALTI+ for an encoder-decoder model, source and target-prefix contributions.

All tensors live on the CPU, detached, in the computation dtype. Pictures, text and tables are
drawn by `alti_lens.render`.
"""

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from alti_lens.render import html as html_view
from alti_lens.render import plot as plotting
from alti_lens.render import tables, text

from . import selections
from .base import ResultBase, check_sizes, size
from .selections import check_index, last_real, masked_mean


@dataclass(frozen=True, repr=False)
class AltiPlusResult(ResultBase):
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

    def __post_init__(self) -> None:
        enc, dec, cross, R = (
            self.encoder_contributions, self.decoder_contributions, self.cross_contributions,
            self.rollout,
        )  # fmt: skip
        src, tgt = self.source_tokens.shape[1], self.target_tokens.shape[1]
        check_sizes("AltiPlusResult", "sequences", {
            "encoder_contributions": enc.shape[0], "encoder_rollout": self.encoder_rollout.shape[0],
            "decoder_contributions": dec.shape[0], "cross_contributions": cross.shape[0],
            "rollout": R.shape[0], "source_contribution": self.source_contribution.shape[0],
            "source_tokens": self.source_tokens.shape[0],
            "target_tokens": self.target_tokens.shape[0],
            "source_str_tokens": len(self.source_str_tokens),
            "target_str_tokens": len(self.target_str_tokens),
            "reconstruction_error": self.reconstruction_error.shape[0],
        })  # fmt: skip
        check_sizes("AltiPlusResult", "encoder layers", {
            "encoder_contributions": enc.shape[1], "encoder_rollout": self.encoder_rollout.shape[1],
        })  # fmt: skip
        check_sizes("AltiPlusResult", "decoder layers", {
            "decoder_contributions": dec.shape[1], "cross_contributions": cross.shape[1],
            "rollout": R.shape[1],
        })  # fmt: skip
        check_sizes("AltiPlusResult", "source positions", {
            "source_tokens": src, "source_attention_mask": self.source_attention_mask.shape[1],
            "encoder_contributions": enc.shape[-1], "cross_contributions - 1": cross.shape[-1] - 1,
            "rollout - target positions": R.shape[-1] - tgt,
            "source_special_mask": size(self.source_special_mask, 1),
        })  # fmt: skip
        check_sizes("AltiPlusResult", "target positions", {
            "target_tokens": tgt, "target_attention_mask": self.target_attention_mask.shape[1],
            "decoder_contributions": dec.shape[-1], "cross_contributions": cross.shape[2],
            "rollout": R.shape[2], "source_contribution": self.source_contribution.shape[1],
            "target_labels": size(self.target_labels, 1),
        })  # fmt: skip

    def __len__(self) -> int:
        return self.rollout.shape[0]

    def _layer(self, layer: int) -> int:
        return check_index(
            layer, self.rollout.shape[1], "layer", "this result has {} decoder layers"
        )

    def _batch(self, batch: int) -> int:
        return check_index(batch, len(self), "batch", "this result holds {} sequences")

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
            stats[f"mean{suffix}"] = masked_mean(sc, mask)
            stats[f"mean_skip_first{suffix}"] = masked_mean(sc, first)
            stats[f"min{suffix}"] = sc.masked_fill(~mask, float("inf")).amin(-1)
            for t in thresholds:
                stats[f"share_above_{t:g}{suffix}"] = masked_mean((sc > t).to(sc.dtype), mask)
        return stats

    def sentence_statistics_frame(self, thresholds: tuple[float, ...] = (0.3, 0.4, 0.5)) -> Any:
        """`sentence_statistics` as a pandas DataFrame, one row per sequence (needs pandas)."""
        stats = self.sentence_statistics(thresholds)
        return tables.dataframe(
            {k: v.tolist() for k, v in stats.items()},
            missing="sentence_statistics_frame() needs pandas: pip install pandas "
            "(sentence_statistics() returns the same numbers as tensors).",
        )

    def top_sources(
        self, step: int = -1, k: int = 5, *, batch: int = 0, layer: int = -1
    ) -> list[tuple[int, str, float]]:
        """The `k` largest columns of the extended rollout at decoder `step`, as (column, token,
        value): source columns first (`src:` tokens), then target-prefix columns (`tgt:`)."""
        row = last_real(self.target_attention_mask, batch, step, "step")
        layer = self._layer(layer)
        labels = [f"src:{t}" for t in self.source_str_tokens[batch]]
        labels += [f"tgt:{t}" for t in self.target_str_tokens[batch]]
        real = torch.cat([self.source_attention_mask[batch], self.target_attention_mask[batch]])
        return selections.top(self.rollout[batch, layer, row], labels, k, real)

    def plot(self, *, batch: int = 0) -> Any:
        """Source vs target-prefix contribution per decoder step (as in the ALTI+ paper)."""
        t = int(self.target_attention_mask[self._batch(batch)].sum())
        return plotting.source_target_bars(
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
        row = last_real(self.target_attention_mask, batch, step, "step")
        layer = self._layer(layer)
        src = self.source_attention_mask[batch].nonzero().flatten().tolist()
        tgt = self.target_attention_mask[batch].nonzero().flatten().tolist()
        values = self.rollout[batch, layer, row]
        S = self.source_tokens.shape[1]
        segments = [
            ("source", [self.source_str_tokens[batch][j] for j in src], values[src], None),
            ("target prefix", [self.target_str_tokens[batch][j] for j in tgt],
             values[[S + j for j in tgt]], tgt.index(row)),
        ]  # fmt: skip
        return text.coloured_segments(segments, html=html, colour=colour)

    def plot_rollout(self, layer: int = -1, *, batch: int = 0) -> Any:
        """Heatmap of the extended rollout `[tgt, src + tgt]` of one sequence."""
        s_real = self.source_attention_mask[self._batch(batch)].bool()
        layer = self._layer(layer)
        t = int(self.target_attention_mask[batch].sum())
        S = self.source_tokens.shape[1]
        cols = [j for j in range(S) if s_real[j]] + [S + j for j in range(t)]
        matrix = self.rollout[batch, layer, :t][:, cols]
        labels = [f"src:{self.source_str_tokens[batch][j]}" for j in range(S) if s_real[j]]
        labels += [f"tgt:{tok}" for tok in self.target_str_tokens[batch][:t]]
        rows = self.target_str_tokens[batch][:t]
        return plotting.heatmap(
            matrix, rows, labels, "ALTI+ extended rollout", ylabel="decoder input"
        )

    def to_dataframe(self) -> Any:
        """A tidy table (pandas): one row per (sequence, decoder step), its source contribution."""
        rows = (
            (b, t, self.target_str_tokens[b][t], float(self.source_contribution[b, t]))
            for b in range(len(self))
            for t in self.target_attention_mask[b].nonzero().flatten().tolist()
        )
        return tables.table(("batch", "step", "token", "source_contribution"), rows)

    def _repr_html_(self) -> str:
        t = int(self.target_attention_mask[0].sum())
        body = html_view.coloured_tokens(
            self.target_str_tokens[0][:t],
            self.source_contribution[0, :t],
            "source contribution per decoder step (sequence 0)",
        )
        return html_view.card(repr(self), body)
