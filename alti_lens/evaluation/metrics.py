"""Evaluation metrics: alignment error rate, top-source accuracy, deletion curves, correlations.

Pure tensor code (no model): the evaluation script feeds it matrices from `alti`, `alti_plus` and
`alti_logit` and the effects measured by `alti_lens.models` (value zeroing).

Alignment error rate (Och & Ney 2003), over a corpus, with predicted links `A`, sure gold links `S`
and possible links `P ⊇ S` (`P = S` when the gold has sure links only):

    AER = 1 − (|A ∩ S| + |A ∩ P|) / (|A| + |S|)

Word-level scores follow the ALTI+ paper's protocol: source subword columns are summed (a word's
share is the sum of its pieces' shares) and target subword rows averaged; each target word is then
aligned to its argmax source word.

Deletion curves: `curve[k]` is the model's score (e.g. the predicted token's probability, or the
cosine similarity to the original embedding) after the `k` most important inputs were removed,
divided by the score with nothing removed; its area over the removed fraction `k / K ∈ [0, 1]`
(trapezoids) is lower when the attribution finds the inputs the output depends on sooner.
"""

from collections.abc import Iterable, Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from alti_lens._contracts import validates_arguments
from alti_lens.errors import InputError

Link = tuple[int, int]  # (target word, source word)


def word_level(
    scores: Float[Tensor, "tgt_pos src_pos"],
    target_words: Sequence[int | None],
    source_words: Sequence[int | None],
) -> Float[Tensor, "tgt_word src_word"]:
    """Token scores merged into word scores: source columns of one word summed, target rows of one
    word averaged. `target_words[t]` / `source_words[s]` is the word index of token `t` / `s`, or
    None for tokens that belong to no word (BOS, EOS, language tags, padding): their rows and
    columns are dropped, so special tokens are never alignment candidates."""
    if len(target_words) != scores.shape[0] or len(source_words) != scores.shape[1]:
        raise InputError(
            f"word_level: scores are {tuple(scores.shape)} but {len(target_words)} target and "
            f"{len(source_words)} source word indices were given; expected one per token. Fix: "
            "give every token its word index (None for special tokens)."
        )
    n_tgt = 1 + max((w for w in target_words if w is not None), default=-1)
    n_src = 1 + max((w for w in source_words if w is not None), default=-1)
    src = torch.zeros(scores.shape[1], n_src, dtype=scores.dtype)
    for s, w in enumerate(source_words):
        if w is not None:
            src[s, w] = 1.0
    tgt = torch.zeros(n_tgt, scores.shape[0], dtype=scores.dtype)
    for t, w in enumerate(target_words):
        if w is not None:
            tgt[w, t] = 1.0
    counts = tgt.sum(dim=1, keepdim=True)
    if bool((counts == 0).any()):
        missing = (counts.flatten() == 0).nonzero().flatten().tolist()
        raise InputError(
            f"word_level: target words {missing} have no token; expected word indices 0..n-1 "
            "with every word covering at least one token. Fix: number the words without gaps."
        )
    # rows: mean over a word's target tokens; columns: sum over a word's source tokens
    return (tgt / counts) @ scores.to(src.dtype) @ src


def argmax_alignment(
    scores: Float[Tensor, "tgt_word src_word"],
    candidates: Bool[Tensor, " src_word"] | None = None,
) -> set[Link]:
    """One link per target word: to its highest-scoring candidate source word (ties: the first)."""
    masked = scores.clone()
    if candidates is not None:
        if not bool(candidates.any()):
            raise InputError(
                "argmax_alignment: no source word is a candidate (candidates is all False); "
                "expected at least one. Fix: mark the source words a target may align to."
            )
        masked[:, ~candidates] = -torch.inf
    return {(t, int(s)) for t, s in enumerate(masked.argmax(dim=1).tolist())}


def alignment_error_rate(
    predicted: Iterable[set[Link]],
    sure: Iterable[set[Link]],
    possible: Iterable[set[Link]] | None = None,
) -> float:
    """Corpus-level AER (counts summed over sentences, not averaged per sentence)."""
    predicted, sure = list(predicted), list(sure)
    possible = sure if possible is None else list(possible)
    if not len(predicted) == len(sure) == len(possible):
        raise InputError(
            f"alignment_error_rate: {len(predicted)} predicted, {len(sure)} sure and "
            f"{len(possible)} possible alignments; expected one of each per sentence. Fix: pass "
            "the same sentences to all three (possible=None: the sure links)."
        )
    hit_sure = hit_possible = n_predicted = n_sure = 0
    for a, s, p in zip(predicted, sure, possible, strict=True):
        p = p | s  # sure links are possible by definition
        hit_sure += len(a & s)
        hit_possible += len(a & p)
        n_predicted += len(a)
        n_sure += len(s)
    if n_predicted + n_sure == 0:
        raise InputError(
            "alignment_error_rate: no links at all (empty corpus); expected at least one "
            "predicted or sure link. Fix: pass the alignments of at least one sentence."
        )
    return 1.0 - (hit_sure + hit_possible) / (n_predicted + n_sure)


def alignment_error_interval(
    predicted: Sequence[set[Link]],
    sure: Sequence[set[Link]],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the corpus-level AER (sure links only, P = S): the
    sentences are resampled with replacement and the AER of each resample is computed from its
    summed counts, as `alignment_error_rate` does."""
    alignment_error_rate(predicted, sure)  # the same checks, with the same message
    hits = torch.tensor([2.0 * len(a & s) for a, s in zip(predicted, sure, strict=True)])
    sizes = torch.tensor([float(len(a) + len(s)) for a, s in zip(predicted, sure, strict=True)])
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(hits), (n_resamples, len(hits)), generator=generator)
    rates = 1.0 - hits[picks].sum(-1) / sizes[picks].sum(-1).clamp(min=1.0)
    tail = (1 - level) / 2
    return float(rates.quantile(tail)), float(rates.quantile(1 - tail))


def top_source(
    row: Float[Tensor, " key_pos"], excluded: Bool[Tensor, " key_pos"] | None = None
) -> int:
    """The position with the largest value, leaving out `excluded` positions."""
    masked = row.clone()
    if excluded is not None:
        masked[excluded] = -torch.inf
    return int(masked.argmax())


def deletion_order(
    scores: Float[Tensor, " pos"], candidates: Bool[Tensor, " pos"]
) -> Int[Tensor, " n_candidates"]:
    """Candidate positions, most important (highest score) first; ties keep position order."""
    index = candidates.nonzero().flatten()
    order = torch.sort(scores[index], descending=True, stable=True).indices
    return index[order]


def random_orders(
    candidates: Bool[Tensor, " pos"], n: int, generator: torch.Generator
) -> list[Int[Tensor, " n_candidates"]]:
    """`n` random permutations of the candidate positions (the chance baseline)."""
    index = candidates.nonzero().flatten()
    return [index[torch.randperm(len(index), generator=generator)] for _ in range(n)]


def deletion_auc(curve: Float[Tensor, " step"]) -> float:
    """Area under a deletion curve over `x = k / K ∈ [0, 1]` (trapezoids), `curve[0]` being the
    score with nothing removed. Normalise the curve first (`curve / curve[0]`) to compare inputs."""
    if curve.ndim != 1 or curve.numel() < 2:
        raise InputError(
            f"deletion_auc: expected a 1-D curve with at least 2 points, got {tuple(curve.shape)}. "
            "Fix: pass one input's curve, from nothing removed to every candidate removed."
        )
    x = torch.linspace(0.0, 1.0, curve.numel(), dtype=torch.float64)
    return float(torch.trapezoid(curve.to(torch.float64), x))


def _ranks(x: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
    """Ranks 0..n-1 with ties given their average rank."""
    x = x.to(torch.float64)
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(len(x), dtype=torch.float64)
    values, inverse = torch.unique(x, return_inverse=True)
    mean_rank = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, ranks)
    counts = torch.zeros(len(values), dtype=torch.float64).index_add_(
        0, inverse, torch.ones_like(ranks)
    )
    return (mean_rank / counts)[inverse]


@validates_arguments  # with friendly errors, before any shape check
def pearson(x: Float[Tensor, " n"], y: Float[Tensor, " n"]) -> float:
    """Pearson's correlation; NaN when either input is constant."""
    if x.shape != y.shape or x.ndim != 1 or x.numel() < 2:
        raise InputError(
            f"pearson: expected two 1-D tensors of the same length ≥ 2, got {tuple(x.shape)} "
            f"and {tuple(y.shape)}. Fix: pass paired observations, flattened."
        )
    x, y = x.to(torch.float64), y.to(torch.float64)
    dx, dy = x - x.mean(), y - y.mean()
    denominator = torch.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / denominator) if float(denominator) > 0 else float("nan")


@validates_arguments  # with friendly errors, before any shape check
def spearman(x: Float[Tensor, " n"], y: Float[Tensor, " n"]) -> float:
    """Spearman's rank correlation (Pearson's on average ranks, so ties are handled)."""
    if x.shape != y.shape:
        raise InputError(
            f"spearman: shapes differ, {tuple(x.shape)} and {tuple(y.shape)}; expected two 1-D "
            "tensors of the same length (paired observations). Fix: pass paired observations, "
            "flattened."
        )
    return pearson(_ranks(x), _ranks(y))


def resample_curve(curve: Float[Tensor, " step"], points: int) -> Float[Tensor, " point"]:
    """A deletion curve linearly interpolated onto `points` evenly spaced removed fractions, so
    that curves of inputs of different lengths can be averaged."""
    curve = curve.to(torch.float64)
    x = torch.linspace(0.0, 1.0, points, dtype=torch.float64) * (curve.numel() - 1)
    left = x.floor().long().clamp(max=curve.numel() - 2)
    frac = x - left
    return curve[left] * (1 - frac) + curve[left + 1] * frac


def auroc(scores: Float[Tensor, " n"], positive: Bool[Tensor, " n"]) -> float:
    """Area under the ROC curve of `scores` (higher = more likely positive) for the labels
    `positive`: the probability that a random positive scores above a random negative, ties
    counting one half (the Mann-Whitney U statistic divided by `n_pos · n_neg`)."""
    positive = positive.bool()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if scores.shape != positive.shape or scores.ndim != 1 or n_pos == 0 or n_neg == 0:
        raise InputError(
            f"auroc: expected 1-D scores and labels of the same length with at least one positive "
            f"and one negative, got scores {tuple(scores.shape)}, labels {tuple(positive.shape)} "
            f"({n_pos} positive, {n_neg} negative). Fix: score both classes."
        )
    ranks = _ranks(scores) + 1  # average ranks 1..n, so ties count one half
    u = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def auroc_interval(
    scores: Float[Tensor, " n"],
    positive: Bool[Tensor, " n"],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `auroc`: positives and negatives are resampled with
    replacement separately (so every resample has both classes, in the original proportions)."""
    auroc(scores, positive)  # the same checks, with the same message
    positive = positive.bool()
    pos = scores[positive].to(torch.float64)
    neg = scores[~positive].to(torch.float64)
    # win[i, j]: positive i against negative j (1 above, 1/2 tied); a resample's AUROC is the
    # mean of its rows and columns of this matrix, which is `auroc` of the resampled scores
    win = (pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()
    generator = torch.Generator().manual_seed(seed)
    values = torch.empty(n_resamples, dtype=torch.float64)
    for r in range(n_resamples):
        rows = torch.randint(len(pos), (len(pos),), generator=generator)
        cols = torch.randint(len(neg), (len(neg),), generator=generator)
        values[r] = win[rows][:, cols].mean()
    tail = (1 - level) / 2
    return float(values.quantile(tail)), float(values.quantile(1 - tail))


def mean_interval(
    values: Float[Tensor, " n"] | Sequence[float],
    *,
    groups: Sequence[int] | Tensor | None = None,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """`(mean, low, high)`: the mean of `values` (per-example numbers: hits as 0/1, AUCs, ranks'
    reciprocals) and its percentile bootstrap interval over the examples. With `groups` (e.g. the
    training seed of each value) the values are resampled within each group, so every resample
    keeps the groups' sizes."""
    values = torch.as_tensor(values, dtype=torch.float64).flatten()
    if values.numel() == 0:
        raise InputError("mean_interval: expected at least one value, got none. Fix: pass values.")
    generator = torch.Generator().manual_seed(seed)
    if groups is None:
        picks = torch.randint(values.numel(), (n_resamples, values.numel()), generator=generator)
        means = values[picks].mean(-1)
    else:
        labels = torch.as_tensor(groups)
        means = torch.zeros(n_resamples, dtype=torch.float64)
        for g in labels.unique():
            members = values[labels == g]
            picks = torch.randint(len(members), (n_resamples, len(members)), generator=generator)
            means += members[picks].sum(1)
        means /= values.numel()
    tail = (1 - level) / 2
    return float(values.mean()), float(means.quantile(tail)), float(means.quantile(1 - tail))
