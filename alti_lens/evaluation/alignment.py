"""Word alignments read from ALTI+ and the baselines, scored by their alignment error rate.

One of the evaluation's experiments (`runs` re-exports it): the gold target is teacher-forced, each
method's source scores of every decoder layer are merged into word scores (`metrics.word_level`)
and each target word is aligned to its argmax source word (the ALTI+ paper's protocol).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from alti_lens import Measure, alti_plus
from alti_lens.errors import InputError
from alti_lens.models import HookedModel

from . import metrics


@dataclass
class AlignedPair:
    """One sentence pair: token ids, each token's word index (None: special token) and the gold
    links (target word, source word)."""

    source_ids: list[int]
    source_words: list[int | None]
    decoder_input: list[int]  # starts with the decoder start token
    label_words: list[int | None]  # word of the token each decoder row predicts
    gold: set[metrics.Link]


# name → (measure, which matrix): "rollout" is the extended rollout's source columns R^l, "cross"
# the layer's own cross-attention source columns C_ca^l, "cross x enc" C_ca^l · R_enc.
ALIGNMENT_METHODS: dict[str, tuple[Measure, str]] = {
    "ALTI+ (rollout R^l)": ("l1", "rollout"),
    "ALTI cross C_ca^l": ("l1", "cross"),
    "ALTI cross x encoder rollout": ("l1", "cross x enc"),
    "cross-attention (head mean)": ("attention", "cross"),
    "cross-attention x encoder attention rollout": ("attention_rollout", "cross x enc"),
    "attention rollout (extended)": ("attention_rollout", "rollout"),
    "norm (Kobayashi) cross": ("norm", "cross"),
    "norm rollout (extended)": ("norm", "rollout"),
}


def alignment_error_rates(
    model: HookedModel,
    pairs: Sequence[AlignedPair],
    methods: dict[str, tuple[Measure, str]] | None = None,
    *,
    row: str = "predicting",
    intervals: dict[str, list[tuple[float, float]]] | None = None,
) -> dict[str, list[float]]:
    """Method (default: every one of `ALIGNMENT_METHODS`) → AER per decoder layer, with teacher
    forcing of the gold target. `row="predicting"`: target word `w` is read from the decoder
    rows that predict its tokens (row `t` predicts label `t`); `"input"`: from the rows that hold
    them as input (row `t + 1`, Chen et al. 2020's Shift-Att), where the model has seen the word.
    `intervals`, if given, receives each method's bootstrap 95% interval per layer (sentences
    resampled, `metrics.alignment_error_interval`).
    """
    if row not in ("predicting", "input"):
        raise InputError(
            f"row must be 'predicting' (the decoder rows that predict a target word) or 'input' "
            f'(the rows that hold it as input, Shift-Att), got {row!r}. Fix: row="predicting" '
            '(the default) or row="input".'
        )
    src, src_mask = _pad([p.source_ids for p in pairs])
    tgt, tgt_mask = _pad([p.decoder_input for p in pairs])
    cache: dict[str, Any] = {}
    out: dict[str, list[float]] = {}
    for name, (measure, matrix) in (methods or ALIGNMENT_METHODS).items():
        if measure not in cache:
            cache[measure] = alti_plus(
                model,
                src,
                tgt,
                source_attention_mask=src_mask,
                target_attention_mask=tgt_mask,
                measure=measure,
            )
        result = cache[measure]
        rates = []
        for layer in range(result.rollout.shape[1]):
            predicted = []
            for b, pair in enumerate(pairs):
                s, t = len(pair.source_ids), len(pair.decoder_input)
                if matrix == "rollout":
                    scores = result.rollout[b, layer, :t, :s]
                else:
                    scores = result.cross_contributions[b, layer, :t, :s]
                    if matrix == "cross x enc":
                        scores = scores @ result.encoder_rollout[b, -1, :s, :s]
                target_words = pair.label_words
                if row == "input":  # row t + 1 holds label t
                    target_words = [None, *pair.label_words[:-1]]
                words = metrics.word_level(scores, target_words, pair.source_words)
                predicted.append(metrics.argmax_alignment(words))
            gold = [p.gold for p in pairs]
            rates.append(metrics.alignment_error_rate(predicted, gold))
            if intervals is not None:
                intervals.setdefault(name, []).append(
                    metrics.alignment_error_interval(predicted, gold)
                )
        out[name] = rates
    return out


def _pad(rows: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    n = max(len(r) for r in rows)
    tokens = torch.zeros(len(rows), n, dtype=torch.long)
    mask = torch.zeros(len(rows), n, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return tokens, mask
