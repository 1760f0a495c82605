"""The contribution measure on random tensors (pure; milliseconds)."""

import pytest
import torch
from terms import random_terms

from alti_lens.core.decompose import AttentionTerms
from alti_lens.core.measures import MEASURES, layer_contributions, normalise, source_scores


@pytest.mark.parametrize("measure", MEASURES)
def test_rows_are_distributions_with_causal_zeros(measure: str) -> None:
    C = layer_contributions(random_terms(), measure)
    assert (C >= 0).all()
    torch.testing.assert_close(C.sum(-1), torch.ones(9, dtype=torch.float64), rtol=0, atol=1e-12)
    assert (C.triu(1) == 0).all()  # exact zeros, not small numbers


@pytest.mark.parametrize("measure", ["l1", "l2", "norm"])
@pytest.mark.parametrize("chunk_size", [1, 2, 4, 100])
def test_chunk_size_does_not_change_the_result(measure: str, chunk_size: int) -> None:
    terms = random_terms(n=11, causal=False)
    reference = source_scores(terms, measure, chunk_size=11)
    torch.testing.assert_close(
        source_scores(terms, measure, chunk_size), reference, rtol=0, atol=1e-12
    )


def test_invariant_to_scaling_a_row() -> None:
    terms = random_terms()
    factor = torch.rand(9, dtype=torch.float64) * 5 + 0.1
    scaled = AttentionTerms(
        terms.pattern,
        factor,  # row_scale multiplies the attention terms of each row
        terms.values,
        terms.residual * factor[:, None],
        terms.bias * factor[:, None],
        terms.output * factor[:, None],
    )
    for measure in ("l1", "l2", "norm"):
        torch.testing.assert_close(
            layer_contributions(scaled, measure),
            layer_contributions(terms, measure),
            rtol=0,
            atol=1e-12,
        )


def test_zero_attention_output_gives_identity() -> None:
    terms = random_terms()
    zero = AttentionTerms(
        terms.pattern,
        None,
        torch.zeros_like(terms.values),
        terms.residual,
        torch.zeros_like(terms.bias),
        terms.residual,
    )
    assert torch.equal(layer_contributions(zero, "l1"), torch.eye(9, dtype=torch.float64))


def test_l1_matches_the_formula_on_one_row() -> None:
    terms = random_terms(n=4, causal=False)
    i = 2
    T = [
        torch.einsum("h,hd->d", terms.pattern[:, i, j], terms.values[j])
        + (terms.residual[j] if i == j else 0)
        for j in range(4)
    ]
    y = terms.output[i]
    c = torch.stack([(y.abs().sum() - (y - t).abs().sum()).clamp_min(0) for t in T])
    torch.testing.assert_close(layer_contributions(terms, "l1")[i], c / c.sum(), rtol=0, atol=1e-12)


def test_empty_row_falls_back_to_self_and_warns() -> None:
    scores = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]])
    with pytest.warns(UserWarning, match=r"rows \[1\]"):
        C = normalise(scores)
    assert C[1].tolist() == [0.0, 1.0, 0.0]
    assert torch.allclose(C.sum(-1), torch.ones(3))


def test_attention_measures() -> None:
    terms = random_terms()
    torch.testing.assert_close(
        layer_contributions(terms, "attention"), terms.pattern.mean(0), rtol=0, atol=1e-12
    )
    rollout_step = 0.5 * terms.pattern.mean(0) + 0.5 * torch.eye(9, dtype=torch.float64)
    torch.testing.assert_close(
        layer_contributions(terms, "attention_rollout"), rollout_step, rtol=0, atol=1e-12
    )


def test_reference_path_never_forms_the_whole_n_n_d_tensor(monkeypatch) -> None:
    """Peak memory is set by the chunk: no tensor of n·n·d elements is ever allocated."""
    import alti_lens.core.measures as contributions

    n, d = 64, 16
    terms = random_terms(n=n, heads=4, d=d, causal=True, seed=3)
    largest = []
    real_bmm = torch.bmm

    def recording_bmm(a, b):
        out = real_bmm(a, b)
        largest.append(out.numel())
        return out

    monkeypatch.setattr(contributions.torch, "bmm", recording_bmm)
    source_scores(terms, "l1", chunk_size=4, kernel="reference")
    assert len(largest) == n // 4
    assert max(largest) <= 4 * n * d < n * n * d
