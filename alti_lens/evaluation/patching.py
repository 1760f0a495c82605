"""The evaluation's patching experiment: does each measure's `C^l[i, j]` follow the effect of
value zeroing source `j` (`alti_lens.models.value_zeroing`) on the sub-block output `y_i^l` and
on the layer output? Spearman and Pearson correlations per layer, averaged over sequences.
"""

from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from alti_lens import alti, alti_plus, models

from . import metrics

PATCHING_MEASURES = ("l1", "l2", "norm", "attention")


def _pair_correlations(
    scores: Float[Tensor, "query_pos key_pos"],
    effects: Float[Tensor, "query_pos key_pos"],
    pairs: Bool[Tensor, "query_pos key_pos"],
) -> tuple[float, float, float]:
    """(Spearman, Pearson) over all `pairs` pooled, and Spearman within each row (rows with at
    least 3 pairs), averaged: the per-row number ignores how rows are scaled."""
    x, y = scores[pairs].double(), effects[pairs].double()
    rows = [
        metrics.spearman(scores[i, pairs[i]].double(), effects[i, pairs[i]].double())
        for i in range(pairs.shape[0])
        if int(pairs[i].sum()) >= 3
    ]
    return metrics.spearman(x, y), metrics.pearson(x, y), _mean(rows)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return sum(finite) / len(finite) if finite else float("nan")


Correlations = dict[str, dict[str, dict[str, tuple[float, float, float]]]]


def _record(per: dict, measure: str, where: str, layer: str, value: tuple[float, ...]) -> None:
    per.setdefault(measure, {}).setdefault(where, {}).setdefault(layer, []).append(value)


def _average(per: dict) -> Correlations:
    return {
        m: {w: {k: _mean_pair(v) for k, v in layers.items()} for w, layers in wheres.items()}
        for m, wheres in per.items()
    }


def patching_correlations(
    model: models.HookedModel, sequences: Sequence[Int[Tensor, " _pos"]]
) -> Correlations:
    """Measure → where (`"sub-block"`: the attention sub-block output `y_i^l`; `"layer"`: the
    layer output after the MLP) → layer → (Spearman, Pearson, per-row Spearman), averaged over
    the sequences, between `C^l[i, j]` and the value-zeroing effect of `j` over the pairs `i ≠ j`
    attention connects. The diagonal is left out: zeroing `v_i` leaves `i`'s own residual, which
    `C[i, i]` includes."""
    per: dict = {}
    for seq in sequences:
        tokens = seq.reshape(1, -1)
        results = {m: alti(model, tokens, measure=m).contributions[0] for m in PATCHING_MEASURES}
        n_layers = results["attention"].shape[0]
        pairs = results["attention"][0] > 0
        pairs.fill_diagonal_(False)
        for layer in range(n_layers):
            effects = models.value_zeroing(model, tokens, layer)
            for where, effect in effects.items():
                for m in PATCHING_MEASURES:
                    value = _pair_correlations(results[m][layer], effect, pairs)
                    _record(per, m, where, str(layer), value)
    return _average(per)


def _mean_pair(values: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return (
        _mean([v[0] for v in values]),
        _mean([v[1] for v in values]),
        _mean([v[2] for v in values]),
    )


def cross_patching_correlations(
    model: models.HookedModel,
    sources: Sequence[Int[Tensor, " _src_pos"]],
    decoder_inputs: Sequence[Int[Tensor, " _tgt_pos"]],
) -> Correlations:
    """As `patching_correlations` for an encoder-decoder: per encoder layer (`"encoder L"`, pairs
    `i ≠ j`) and per decoder cross-attention (`"cross L"`, every target row × source, against the
    source columns of `C_ca^l`)."""
    per: dict = {}
    for src, tgt in zip(sources, decoder_inputs, strict=True):
        s, t = src.reshape(1, -1), tgt.reshape(1, -1)
        S = s.shape[1]
        results = {m: alti_plus(model, s, t, measure=m) for m in PATCHING_MEASURES}
        pairs = ~torch.eye(S, dtype=torch.bool)
        for layer in range(results["attention"].encoder_contributions.shape[1]):
            effects = models.value_zeroing_encoder_decoder(model, s, t, "encoder", layer)
            for where, effect in effects.items():
                for m in PATCHING_MEASURES:
                    C = results[m].encoder_contributions[0, layer]
                    value = _pair_correlations(C, effect, pairs)
                    _record(per, m, where, f"encoder {layer}", value)
        every = torch.ones(t.shape[1], S, dtype=torch.bool)
        for layer in range(results["attention"].cross_contributions.shape[1]):
            effects = models.value_zeroing_encoder_decoder(model, s, t, "decoder_cross", layer)
            for where, effect in effects.items():
                for m in PATCHING_MEASURES:
                    C = results[m].cross_contributions[0, layer, :, :S]
                    value = _pair_correlations(C, effect, every)
                    _record(per, m, where, f"cross {layer}", value)
    return _average(per)
