"""`AltiLogitResult`: a prediction's logit (or logit difference) over input tokens (ALTI-Logit).

All tensors live on the CPU, detached, in the computation dtype. Pictures, text and tables are
drawn by `alti_lens.render`.
"""

from dataclasses import dataclass, field
from typing import Any

from jaxtyping import Float, Int
from torch import Tensor

from alti_lens.errors import InputError, InputIndexError
from alti_lens.render import html as html_view
from alti_lens.render import tables, text

from . import selections
from .alti import AltiResult
from .base import ResultBase, check_sizes, size
from .selections import check_index


@dataclass(frozen=True, repr=False)
class AltiLogitResult(ResultBase):
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
    alti: AltiResult  # the ALTI contributions and rollout the scores were rolled through
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_sizes("AltiLogitResult", "sequences", {
            "scores": self.scores.shape[0], "logit": self.logit.shape[0],
            "head_scores": self.head_scores.shape[0], "tokens": self.tokens.shape[0],
            "attention_mask": self.attention_mask.shape[0], "str_tokens": len(self.str_tokens),
            "position": self.position.shape[0], "target": self.target.shape[0],
            "foil": size(self.foil, 0), "logit_error": self.logit_error.shape[0],
            **{f"components[{k!r}]": v.shape[0] for k, v in self.components.items()},
        })  # fmt: skip
        check_sizes("AltiLogitResult", "positions", {
            "scores": self.scores.shape[1], "head_scores": self.head_scores.shape[3],
            "tokens": self.tokens.shape[1], "attention_mask": self.attention_mask.shape[1],
        })  # fmt: skip

    def __len__(self) -> int:
        return self.scores.shape[0]

    def _batch(self, batch: int) -> int:
        return check_index(batch, len(self), "batch", "this result holds {} sequences")

    def __repr__(self) -> str:
        batch, pos = self.scores.shape
        return (
            f"AltiLogitResult(batch={batch}, pos={pos}, layers={self.head_scores.shape[1]}, "
            f"contrastive={self.foil is not None}, model={self.metadata.get('model_name')!r}, "
            f"max_logit_error={float(self.logit_error.max()):.2e})"
        )

    def top_sources(self, k: int = 5, *, batch: int = 0) -> list[tuple[int, str, float]]:
        """The `k` input tokens with the largest scores, as (position, token, score)."""
        b = self._batch(batch)
        return selections.top(self.scores[b], self.str_tokens[b], k, self.attention_mask[b])

    def head(self, layer: int, head: int) -> Float[Tensor, "batch pos"]:
        """The logit contribution (logit units) routed through one head, over input tokens:
        `[batch, pos]`."""
        n_layers, n_heads = self.head_scores.shape[1:3]
        if not -n_heads <= head < n_heads:
            raise InputIndexError(
                f"head={head} is out of range: this model has {n_heads} heads. "
                f"Fix: pass a head in 0..{n_heads - 1} (or -{n_heads}..-1 from the end)."
            )
        layer = check_index(layer, n_layers, "layer", "this result has {} layers")
        return self.head_scores[:, layer, head]

    def top_heads(self, k: int = 5, *, batch: int = 0) -> list[tuple[int, int, float]]:
        """The `k` heads routing the most logit (summed over tokens), as
        (layer, head, logit contribution in logit units)."""
        totals = self.head_scores[self._batch(batch)].sum(-1)
        n_heads = totals.shape[1]
        best = selections.top(totals.flatten(), [""] * totals.numel(), k)
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
            raise InputError(
                f"got layer={layer} and head={head}: pass both layer and head (one head's "
                "share), or neither (the scores)."
            )
        values = self.scores if layer is None or head is None else self.head(layer, head)
        real = self.attention_mask[self._batch(batch)].nonzero().flatten().tolist()
        position = int(self.position[batch])
        return text.coloured_row(
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
        return tables.table(("batch", "pos", "token", "score"), rows)

    def _repr_html_(self) -> str:
        n = int(self.attention_mask[0].sum())
        body = html_view.coloured_tokens(
            self.str_tokens[0][:n], self.scores[0, :n], "ALTI-Logit scores (sequence 0)"
        )
        return html_view.card(repr(self), body)
