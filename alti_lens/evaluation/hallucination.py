"""Hallucination detection with ALTI+ source contribution (Dale et al. 2023), on planted errors.

A translation that is not a translation of its source (a hallucination) is expected to draw little
on the source: its ALTI+ total source contribution is low. `hallucination_corpus` builds a test set
from correct sentence pairs and plants four kinds of hallucination in it (`PLANTED`, no model
needed), `generated_hallucinations` adds the model's own hallucinations, `score_pairs` scores every
pair with ALTI+ and cheap baselines, and `detection_aurocs` reports how well each score separates
the hallucinations from the correct pairs (AUROC, hallucination = positive, a low score =
evidence), per kind and overall, with bootstrap intervals.

The kinds (Raunak et al. 2021; Guerreiro et al. 2023 name the same families):

- `unrelated`: the correct translation of another sentence (a fully detached hallucination);
- `copy`: the source itself, copied to the target side;
- `repeated_word`: a correct prefix, then one word of the translation repeated;
- `looped_fragment`: a correct prefix, then a fragment of two or three words of the translation
  looped (an oscillatory hallucination);
- `generated`: the model's own greedy output for a source it cannot read (e.g. a sentence of the
  target language given as the source): fluent, produced by the model itself, supported by nothing
  in the source — the case Dale et al. study.

The planted kinds are teacher-forced: the model would not produce them, so its own probability of
the target exposes them easily; only `generated` tests a detector on what the model does produce.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from alti_lens import AltiPlusResult, alti_plus, models
from alti_lens.errors import InputError
from alti_lens.models import HookedModel

from . import metrics

CORRECT = "correct"
PLANTED = ("unrelated", "copy", "repeated_word", "looped_fragment")
GENERATED = "generated"
KINDS = (*PLANTED, GENERATED)
ALL = "all"  # every kind together against the correct pairs
ALL_PLANTED = "all planted"  # the planted kinds together

# detector name → what `score_pairs` reads (a low value is evidence of a hallucination)
DETECTORS = (
    "ALTI+ source_contribution_mean",
    "ALTI+ source_contribution_mean (no special)",
    "cross-attention to source words (last layer)",
    "log-probability (mean per token)",
)


@dataclass(frozen=True)
class LabelledPair:
    """One sentence pair of the test set: source and target words and what the target is
    (`"correct"` or one of `KINDS`)."""

    source: list[str]
    target: list[str]
    kind: str

    @property
    def hallucination(self) -> bool:
        """True for a planted hallucination."""
        return self.kind != CORRECT


def hallucination_corpus(
    pairs: Sequence[tuple[list[str], list[str]]],
    n_correct: int,
    n_per_kind: int,
    *,
    seed: int = 0,
    max_target_words: int = 30,
) -> list[LabelledPair]:
    """`n_correct` correct pairs and `n_per_kind` hallucinations of each of `PLANTED`, each from
    its own source sentence, shuffled with `random.Random(seed)`.

    `pairs` are correct (source words, target words) pairs (e.g. `alti_lens.demo.translation_pairs`
    as `(p.source, p.target)`); at least `n_correct + len(KINDS) * n_per_kind` distinct ones.
    Repetition targets are as long as the correct translation plus 0-6 words, at most
    `max_target_words` (the model's position limit minus its special tokens).
    """
    needed = n_correct + len(PLANTED) * n_per_kind
    if len(pairs) < needed or n_correct < 1 or n_per_kind < 1:
        raise InputError(
            f"hallucination_corpus: {len(pairs)} pairs for {n_correct} correct pairs and "
            f"{n_per_kind} of each of {len(PLANTED)} kinds; expected at least {needed} pairs and "
            "counts ≥ 1. Fix: pass more pairs or ask for fewer."
        )
    rng = random.Random(seed)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    chosen = [(list(pairs[i][0]), list(pairs[i][1])) for i in order[:needed]]
    out = [LabelledPair(s, t, CORRECT) for s, t in chosen[:n_correct]]
    for k, kind in enumerate(PLANTED):
        start = n_correct + k * n_per_kind
        for source, target in chosen[start : start + n_per_kind]:
            planted = _plant(kind, source, target, chosen, rng, max_target_words)
            out.append(LabelledPair(source, planted, kind))
    rng.shuffle(out)
    return out


def _plant(
    kind: str,
    source: list[str],
    target: list[str],
    pool: list[tuple[list[str], list[str]]],
    rng: random.Random,
    max_words: int,
) -> list[str]:
    """The hallucinated target of one kind for a pair."""
    if kind == "unrelated":
        others = [t for _, t in pool if t != target]
        return list(rng.choice(others))
    if kind == "copy":
        return list(source)
    extra = rng.randint(0, 6)
    cut = rng.randint(0, len(target) // 2)  # the correct prefix kept
    if kind == "repeated_word":
        fragment = [rng.choice(target)]
    else:  # looped_fragment
        size = rng.randint(2, 3)
        at = rng.randint(0, len(target) - size)
        fragment = target[at : at + size]
    # at least two rounds of the fragment, so that every such target does repeat
    length = min(max_words, max(len(target) + extra, cut + 2 * len(fragment)))
    looped = target[:cut]
    while len(looped) < length:
        looped += fragment
    return looped[:length]


def generated_hallucinations(
    model: HookedModel, sources: Sequence[list[str]], *, max_target_words: int = 30
) -> list[LabelledPair]:
    """The model's own greedy translations of `sources` (`alti_plus` with no target), as
    `"generated"` pairs (source, output words without special tokens, at most
    `max_target_words`). Give sources the model cannot read, so that whatever it outputs is
    unsupported by the source; each must produce at least one word."""
    if not sources:
        raise InputError(
            "generated_hallucinations: no sources; expected at least one. Fix: pass sources."
        )
    result = alti_plus(model, [" ".join(s) for s in sources], max_new_tokens=max_target_words + 2)
    special = set(getattr(getattr(model, "tokenizer", None), "all_special_tokens", []))
    labels = result.target_labels
    if labels is None:  # alti_plus records the labels of a generated target; never happens
        raise InputError("generated_hallucinations: alti_plus returned no generated labels.")
    out = []
    for source, row, mask in zip(sources, labels, result.target_attention_mask, strict=True):
        tokens = models.str_tokens(model, row[mask.bool()][None])[0]
        words = [w for w in tokens if w not in special][:max_target_words]
        if not words:
            raise InputError(
                f"generated_hallucinations: the model produced no word for {' '.join(source)!r}; "
                "expected a non-empty output. Fix: leave that source out."
            )
        out.append(LabelledPair(list(source), words, GENERATED))
    return out


def score_pairs(
    model: HookedModel, corpus: Sequence[LabelledPair], *, batch_size: int = 64
) -> dict[str, Tensor]:
    """Every `DETECTORS` score of every pair (teacher forcing of the given target), in corpus
    order: the mean ALTI+ source contribution over the decoder steps (`sentence_statistics()
    ["mean"]`, and `"mean_no_special"` without the source's special-token columns), the same
    the last decoder layer's head-mean cross-attention on the source words (special tokens left
    out; `attention_to_source_words`), and the model's mean log-probability of the target tokens
    (`target_log_probability`). A low value is evidence of a hallucination."""
    columns: dict[str, list[Tensor]] = {name: [] for name in DETECTORS}
    for start in range(0, len(corpus), batch_size):
        batch = corpus[start : start + batch_size]
        sources = [" ".join(p.source) for p in batch]
        targets = [" ".join(p.target) for p in batch]
        result = alti_plus(model, sources, targets)
        stats = result.sentence_statistics()
        columns[DETECTORS[0]].append(stats["mean"])
        columns[DETECTORS[1]].append(stats.get("mean_no_special", stats["mean"]))
        attention = alti_plus(model, sources, targets, measure="attention")
        columns[DETECTORS[2]].append(attention_to_source_words(attention))
        columns[DETECTORS[3]].append(target_log_probability(model, result))
    return {name: torch.cat(values).to(torch.float64) for name, values in columns.items()}


def attention_to_source_words(result: AltiPlusResult) -> Tensor:
    """The last decoder layer's head-mean cross-attention on the source words (the source's
    special tokens left out: BOS / EOS / language tags, where attention rests when the source is
    ignored), averaged over the decoder steps: a `measure="attention"` result's cross matrix.
    Cross-attention weights sum to 1 over the source, so this is `1 −` the attention on the special
    tokens (Guerreiro et al. 2023's Attn-ign-SRC idea, as one number)."""
    n_source = result.source_tokens.shape[1]
    cross = result.cross_contributions[:, -1, :, :n_source]
    special = result.source_special_mask
    words = cross if special is None else cross * (~special.bool())[:, None, :]
    steps = result.target_attention_mask.to(cross.dtype)
    return (words.sum(-1) * steps).sum(-1) / steps.sum(-1)


def target_log_probability(model: HookedModel, result: AltiPlusResult) -> Tensor:
    """The mean log-probability of each sequence's target tokens (`result.target_labels`) under
    the model, teacher-forced on the decoder input `result.target_tokens`: plain forward passes
    (`model(source, decoder_input=...)`), the source unpadded (right-padded sources only)."""
    if result.target_labels is None or bool((result.target_labels < 0).all()):
        raise InputError(
            "target_log_probability needs the target tokens each decoder row predicts "
            "(result.target_labels), which alti_plus records for text targets. Fix: pass the "
            "targets as text."
        )
    labels = result.target_labels
    real = labels >= 0
    picked = torch.zeros(labels.shape, dtype=torch.float64)
    lengths = result.source_attention_mask.sum(-1)
    # one forward pass per source length, unpadded: no source mask to pass (its keyword differs
    # between model kinds); the right-padded decoder input is harmless under causal attention
    for length in lengths.unique().tolist():
        rows = (lengths == length).nonzero().flatten()
        with torch.inference_mode():
            logits = model(
                result.source_tokens[rows, :length], decoder_input=result.target_tokens[rows]
            )
        logp = torch.log_softmax(logits.detach().cpu().to(torch.float64), dim=-1)
        picked[rows] = logp.gather(-1, labels[rows].clamp(min=0)[..., None])[..., 0]
    picked = picked * real
    return picked.sum(-1) / real.sum(-1)


def detection_aurocs(
    scores: dict[str, Tensor],
    kinds: Sequence[str],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Detector → group (each of `KINDS` present, `"all planted"` and `"all"`) → (AUROC, lower,
    upper) of the 95% bootstrap interval; each group's hallucinations against all correct pairs, a
    low score counting as evidence (AUROC of the negated score)."""
    correct = torch.tensor([k == CORRECT for k in kinds])
    members = {k: {k} for k in KINDS if k in kinds}
    planted = {k for k in PLANTED if k in kinds}
    if planted and GENERATED in kinds:
        members[ALL_PLANTED] = planted
    members[ALL] = set(kinds) - {CORRECT}
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    for name, values in scores.items():
        out[name] = {}
        for group, chosen in members.items():
            member = torch.tensor([k in chosen for k in kinds])
            keep = member | correct
            evidence, positive = -values[keep], member[keep]
            low, high = metrics.auroc_interval(
                evidence, positive, n_resamples=n_resamples, seed=seed
            )
            out[name][group] = (metrics.auroc(evidence, positive), low, high)
    return out
