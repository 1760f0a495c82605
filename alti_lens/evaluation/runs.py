"""The evaluation's experiments, on any model `alti_lens` supports (see docs/EVALUATION.md).

Each function runs a model through `alti`, `alti_plus` or `alti_logit` and the interventions of
`alti_lens.models` (plain forward passes, value zeroing), and returns plain numbers (dicts of
floats) for a report:

- `induction_top_sources`: on repeated sequences, is the top source of each prediction in the
  repeated half the token that followed the previous occurrence (the known answer)?
- `decoder_deletion` / `embedding_deletion`: faithfulness by deletion (replace the most important
  inputs by a neutral token; how fast does the output fall?).
- `patching_correlations` / `cross_patching_correlations` (defined in `patching`, re-exported
  here): per layer, the correlation between each measure's contributions `C^l[i, j]` and the
  effect of value zeroing `j` on `y_i^l`.
- `alignment_error_rates` (in `alignment`, re-exported here): AER of word alignments read from
  ALTI+ and the baselines.

Conventions, stated once: "ALTI" is the `l1` measure's rollout after the last layer; "attention"
the last layer's head-mean attention (not rolled out); "attention rollout" Abnar & Zuidema's;
"norm" Kobayashi's `||T_i(x_j)||` rolled out like ALTI.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from alti_lens import Measure, alti, alti_logit, models

from . import metrics, yardsticks
from .alignment import ALIGNMENT_METHODS as ALIGNMENT_METHODS  # re-exported
from .alignment import AlignedPair as AlignedPair
from .alignment import alignment_error_rates as alignment_error_rates

# the patching experiment, defined in `patching`, stays importable from here
from .patching import PATCHING_MEASURES as PATCHING_MEASURES
from .patching import Correlations as Correlations
from .patching import cross_patching_correlations as cross_patching_correlations
from .patching import patching_correlations as patching_correlations

# name → (measure, take the rollout (True) or the last layer's own matrix (False))
SINGLE_STACK_MEASURES: dict[str, tuple[Measure, bool]] = {
    "ALTI": ("l1", True),
    "attention": ("attention", False),
    "attention rollout": ("attention_rollout", True),
    "norm": ("norm", True),
}
LOGIT = "ALTI-Logit"
RANDOM = "random"
CURVE_POINTS = 11  # deletion curves are resampled onto x = 0, 0.1, ..., 1 for averaging


def last_layer_scores(
    model: models.HookedModel,
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Tensor | None = None,
) -> dict[str, Float[Tensor, "batch query_pos key_pos"]]:
    """Every single-stack measure's matrix after the last layer (see `SINGLE_STACK_MEASURES`)."""
    out = {}
    for name, (measure, rolled) in SINGLE_STACK_MEASURES.items():
        result = alti(model, tokens, attention_mask=attention_mask, measure=measure)
        out[name] = (result.rollout if rolled else result.contributions)[:, -1]
    return out


def previous_occurrence(tokens: Int[Tensor, " pos"], t: int) -> int | None:
    """The latest position `p < t` holding the same token as `t` (None: no earlier one)."""
    same = (tokens[:t] == tokens[t]).nonzero().flatten()
    return int(same[-1]) if len(same) else None


@dataclass
class InductionReport:
    """Shares of the correctly predicted repeated-half positions whose top source is the answer
    (`answer`: the position after the previous occurrence), the previous occurrence itself, or
    either of the two (`either`: both are causally necessary for an induction prediction)."""

    n_positions: int  # repeated-half positions with a known next token
    model_accuracy: float  # share of them the model predicts correctly
    answer: dict[str, float] = field(default_factory=dict)
    previous: dict[str, float] = field(default_factory=dict)
    n_evaluated: int = 0
    either: dict[str, float] = field(default_factory=dict)
    # bootstrap 95% interval of `answer` over the evaluated positions
    answer_interval: dict[str, tuple[float, float]] = field(default_factory=dict)


OCCLUSION = "occlusion"


def _method_rows(
    model: models.HookedModel,
    tokens: Int[Tensor, "batch pos"],
    predictions: Tensor,
    positions: list[int],
    replacement: Tensor | None,
    gradient_steps: int,
) -> dict[str, Callable[[int, int], Tensor]]:
    """Method name → `row(b, t)`: its scores of every input for the prediction at `t`."""
    scores = last_layer_scores(model, tokens)
    logit_rows = _logit_rows(model, tokens, predictions, positions)
    rows: dict[str, Callable[[int, int], Tensor]] = {
        name: (lambda b, t, name=name: scores[name][b, t]) for name in SINGLE_STACK_MEASURES
    }
    rows[LOGIT] = lambda b, t: logit_rows[t][b]
    if gradient_steps:
        grads = yardsticks.gradient_rows(model, tokens, predictions, positions, gradient_steps)
        for name, per_t in grads.items():
            rows[name] = lambda b, t, per_t=per_t: per_t[t][b]
    if replacement is not None:
        drop = yardsticks.occlusion_rows(model, tokens, predictions, replacement)
        rows[OCCLUSION] = lambda b, t: drop[b, t]
    return rows


def induction_top_sources(
    model: models.HookedModel,
    tokens: Int[Tensor, "batch pos"],
    *,
    bos: bool = True,
    replacement: Int[Tensor, " batch"] | None = None,
    gradient_steps: int = 0,
) -> InductionReport:
    """Top-source accuracy on repeated sequences (unpadded, `[batch, pos]`).

    Evaluated: every position `t` whose token occurred before at `p` with `p + 1 < t`, that has a
    next token in the sequence, and where the model's argmax is that next token. The candidates
    for the top source exclude the query position `t` itself (its own residual dominates every
    measure's row) and, with `bos`, position 0. With `replacement` (a token absent from each
    sequence) occlusion is scored too (the causal reference: the input whose replacement lowers
    the prediction's probability most); with `gradient_steps` the gradient baselines (gradient
    norm, gradient × input, integrated gradients with that many steps).
    """
    n = tokens.shape[1]
    predictions = models.logits(model, tokens).argmax(-1)
    rows = _induction_rows(tokens)
    correct = [(b, t, p) for b, t, p in rows if int(predictions[b, t]) == int(tokens[b, t + 1])]
    positions = sorted({t for _, t, _ in correct})
    method_rows = _method_rows(model, tokens, predictions, positions, replacement, gradient_steps)
    hits = {name: ([], [], []) for name in method_rows}
    for b, t, p in correct:
        excluded = torch.zeros(n, dtype=torch.bool)
        excluded[t] = True
        excluded[t + 1 :] = True  # causal: later positions are never sources
        if bos:
            excluded[0] = True
        for name, row in method_rows.items():
            top = metrics.top_source(row(b, t), excluded)
            answer, previous, either = hits[name]
            answer.append(float(top == p + 1))
            previous.append(float(top == p))
            either.append(float(top in (p, p + 1)))
    count = max(1, len(correct))
    intervals = {k: metrics.mean_interval(torch.tensor(v[0]))[1:] for k, v in hits.items() if v[0]}
    return InductionReport(
        n_positions=len(rows),
        model_accuracy=len(correct) / max(1, len(rows)),
        answer={k: sum(v[0]) / count for k, v in hits.items()},
        previous={k: sum(v[1]) / count for k, v in hits.items()},
        n_evaluated=len(correct),
        either={k: sum(v[2]) / count for k, v in hits.items()},
        answer_interval=intervals,
    )


def _induction_rows(tokens: Int[Tensor, "batch pos"]) -> list[tuple[int, int, int]]:
    """(sequence, position t, previous occurrence p) of every position with an induction answer."""
    rows = []
    for b in range(tokens.shape[0]):
        for t in range(1, tokens.shape[1] - 1):
            p = previous_occurrence(tokens[b], t)
            if p is not None and p + 1 < t:
                rows.append((b, t, p))
    return rows


def _logit_rows(
    model: models.HookedModel,
    tokens: Int[Tensor, "batch pos"],
    predictions: Tensor,
    positions: list[int],
) -> dict[int, Float[Tensor, "batch pos"]]:
    """ALTI-Logit scores of each sequence's own prediction at each of `positions`."""
    return {
        t: alti_logit(model, tokens, target=predictions[:, t].clone(), position=t).scores
        for t in positions
    }


@dataclass
class DeletionReport:
    """Mean area under the normalised deletion curves (lower: the output falls sooner), per
    ordering, and the mean resampled curves (`CURVE_POINTS` points over the removed fraction)."""

    auc: dict[str, float]
    curves: dict[str, list[float]]
    n_examples: int
    # share of examples where the ordering's AUC is below the random orders' mean AUC
    beats_random: dict[str, float] = field(default_factory=dict)
    # bootstrap 95% interval of the mean AUC over the examples
    auc_interval: dict[str, tuple[float, float]] = field(default_factory=dict)


def _summarise(aucs: dict[str, list[float]], curves: dict[str, list[Tensor]]) -> DeletionReport:
    random_auc = torch.tensor(aucs[RANDOM], dtype=torch.float64)
    return DeletionReport(
        auc={k: sum(v) / len(v) for k, v in aucs.items()},
        curves={k: torch.stack(v).mean(0).tolist() for k, v in curves.items()},
        n_examples=len(aucs[RANDOM]),
        beats_random={
            k: float((torch.tensor(v, dtype=torch.float64) < random_auc).double().mean())
            for k, v in aucs.items()
            if k != RANDOM
        },
        auc_interval={k: metrics.mean_interval(torch.tensor(v))[1:] for k, v in aucs.items()},
    )


def _variants(
    tokens: Int[Tensor, " pos"], orders: Sequence[Int[Tensor, " k"]], replacement: int
) -> Int[Tensor, "variant pos"]:
    """For each order and each k = 0..K, the tokens with the first k of the order replaced."""
    out = []
    for order in orders:
        for k in range(len(order) + 1):
            row = tokens.clone()
            row[order[:k]] = replacement
            out.append(row)
    return torch.stack(out)


def _collect(
    values: Float[Tensor, " variant"],
    names: list[str],
    n_steps: int,
    n_random: int,
    aucs: dict[str, list[float]],
    curves: dict[str, list[Tensor]],
) -> None:
    """Split the variants' scores back into one normalised curve per ordering and record it."""
    per_order = values.reshape(-1, n_steps)
    per_order = per_order / per_order[:, :1]
    random_curves = per_order[len(names) :]
    for name, curve in zip(names, per_order[: len(names)], strict=True):
        aucs.setdefault(name, []).append(metrics.deletion_auc(curve))
        curves.setdefault(name, []).append(metrics.resample_curve(curve, CURVE_POINTS))
    assert random_curves.shape[0] == n_random
    aucs.setdefault(RANDOM, []).append(
        sum(metrics.deletion_auc(c) for c in random_curves) / n_random
    )
    curves.setdefault(RANDOM, []).append(
        torch.stack([metrics.resample_curve(c, CURVE_POINTS) for c in random_curves]).mean(0)
    )


def decoder_deletion(
    model: models.HookedModel,
    tokens: Int[Tensor, "batch pos"],
    examples: Sequence[tuple[int, int]],
    replacement: int,
    *,
    n_random: int = 5,
    seed: int = 0,
    bos: bool = True,
    gradient_steps: int = 0,
) -> DeletionReport:
    """Deletion curves of next-token predictions of a decoder-only model.

    For each `(sequence, position t)` of `examples`, the candidates are the positions before `t`
    (without BOS with `bos`; the query token `t` itself is kept); they are replaced by the token
    `replacement` in order of each measure's importance (ALTI-Logit: its signed logit score), and
    the probability of the token the model predicted at `t` on the clean input is recorded.
    With `gradient_steps`, the gradient baselines' orders are scored too (signed scores: gradient
    × input and integrated gradients order by their value, most positive first).
    """
    generator = torch.Generator().manual_seed(seed)
    predictions = models.logits(model, tokens).argmax(-1)
    positions = sorted({t for _, t in examples})
    rows = _method_rows(model, tokens, predictions, positions, None, gradient_steps)
    names = list(rows)
    aucs: dict[str, list[float]] = {}
    curves: dict[str, list[Tensor]] = {}
    for b, t in examples:
        candidates = torch.zeros(tokens.shape[1], dtype=torch.bool)
        candidates[int(bos) : t] = True
        orders = [metrics.deletion_order(rows[n](b, t), candidates) for n in names]
        orders += metrics.random_orders(candidates, n_random, generator)
        variants = _variants(tokens[b, : t + 1], orders, replacement)
        probs = models.logits(model, variants)[:, t].double().softmax(-1)
        values = probs[:, int(predictions[b, t])]
        _collect(values, names, int(candidates.sum()) + 1, n_random, aucs, curves)
    return _summarise(aucs, curves)


def mean_pool(
    hidden: Float[Tensor, "batch pos d_model"], mask: Int[Tensor, "batch pos"]
) -> Float[Tensor, "batch d_model"]:
    """Sentence-transformers' mean pooling over the real tokens ([CLS] and [SEP] included)."""
    weights = mask.to(hidden.dtype)[..., None]
    return (hidden * weights).sum(1) / weights.sum(1)


def embedding_deletion(
    model: models.HookedModel,
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    special: Bool[Tensor, "batch pos"],
    replacement: int,
    *,
    n_random: int = 5,
    seed: int = 0,
) -> DeletionReport:
    """Deletion curves of a mean-pooled sentence embedding (an encoder such as MiniLM).

    Each measure's importance of input `j` is its share in the pooled embedding: the mean over
    the real rows `i` of the last layer's matrix `[i, j]` (pooling is a mean of the rows). The
    non-special real tokens are replaced by `replacement` (e.g. [MASK]) in that order; the score
    is the cosine similarity of the embedding to the clean one.
    """
    generator = torch.Generator().manual_seed(seed)
    scores = last_layer_scores(model, tokens, attention_mask)
    names = list(SINGLE_STACK_MEASURES)
    aucs: dict[str, list[float]] = {}
    curves: dict[str, list[Tensor]] = {}
    for b in range(tokens.shape[0]):
        n = int(attention_mask[b].sum())
        candidates = ~special[b, :n]
        pooled = {k: v[b, :n, :n].mean(0) for k, v in scores.items()}
        orders = [metrics.deletion_order(pooled[k], candidates) for k in names]
        orders += metrics.random_orders(candidates, n_random, generator)
        variants = _variants(tokens[b, :n], orders, replacement)
        ones = torch.ones_like(variants)
        clean = mean_pool(models.last_hidden(model, tokens[b : b + 1, :n], ones[:1]), ones[:1])
        emb = mean_pool(models.last_hidden(model, variants, ones), ones)
        values = torch.nn.functional.cosine_similarity(emb.double(), clean.double(), dim=-1)
        _collect(values, names, int(candidates.sum()) + 1, n_random, aucs, curves)
    return _summarise(aucs, curves)
