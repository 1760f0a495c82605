"""`alti(rows="last")`: the rollout of each sequence's last real token, right to left."""

import pytest
import torch
from conftest import bridge
from terms import random_terms

from alti_lens import alti
from alti_lens.core.decompose import AttentionTerms
from alti_lens.core.kernels import dispatch
from alti_lens.core.measures import normalise, source_scores
from alti_lens.core.rollout import last_row_rollout, rollout

TEXTS = ["the cat sat on the mat and it was very small", "a big red dog ran", "the tree"]


def test_last_row_rollout_is_the_row_of_every_partial_product() -> None:
    gen = torch.Generator().manual_seed(0)
    C = torch.rand(5, 7, 7, generator=gen, dtype=torch.float64)
    C = C / C.sum(-1, keepdim=True)
    full = rollout(C)
    for t in (0, 3, 6):
        C_last = C.clone()
        C_last[-1, torch.arange(7) != t] = float("nan")  # rows it must not read
        torch.testing.assert_close(last_row_rollout(C_last, t), full[:, t], rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "name",
    ["gpt2-preLN", "llama-RMS-rotary-GQA", "neox-parallel", "gemma2-sandwich", "bert-postLN"],
)
@pytest.mark.parametrize("measure", ["l1", "norm", "attention_rollout"])
def test_equals_the_full_computation(name: str, measure: str) -> None:
    model = bridge(name, torch.float64)
    full = alti(model, TEXTS, measure=measure)
    last = alti(model, TEXTS, measure=measure, rows="last")
    t = [int(row.nonzero()[-1]) for row in full.attention_mask]  # the last real token
    assert len(set(t)) == 3 and t[0] == full.rollout.shape[-1] - 1  # padded on the right
    assert last.metadata["rows"] == "last"
    assert last.metadata["rollout_rows"] == t and full.metadata["rows"] == "all"
    assert last.rollout.shape == (3, full.n_layers, 1, full.rollout.shape[-1])
    for b in range(3):
        torch.testing.assert_close(
            last.rollout[b, :, 0], full.rollout[b, :, t[b]], rtol=0, atol=1e-12
        )
        # every layer but the last is the full C; the last holds row t only, the rest is NaN
        torch.testing.assert_close(
            last.contributions[b, :-1], full.contributions[b, :-1], rtol=0, atol=1e-12
        )
        torch.testing.assert_close(
            last.contributions[b, -1, t[b]], full.contributions[b, -1, t[b]], rtol=0, atol=1e-12
        )
        others = torch.arange(last.contributions.shape[-1]) != t[b]
        assert last.contributions[b, -1, others].isnan().all()
    # padded sources are exact zeros, and each rollout row is a distribution over real tokens
    assert (
        last.rollout[~last.attention_mask.bool()[:, None, None, :].expand_as(last.rollout)] == 0
    ).all()
    torch.testing.assert_close(
        last.rollout.sum(-1), torch.ones_like(last.rollout.sum(-1)), rtol=0, atol=1e-12
    )
    errors = last.reconstruction_error
    assert not errors.isnan().any() and float(errors.max()) <= 5e-6


def test_float32_and_the_reference_path(monkeypatch: pytest.MonkeyPatch) -> None:
    model = bridge("llama-RMS-rotary-GQA", torch.float32)
    fast = alti(model, TEXTS, rows="last")
    monkeypatch.setenv("ALTI_LENS_KERNEL", "reference")
    reference = alti(model, TEXTS, rows="last")
    full = alti(model, TEXTS)
    torch.testing.assert_close(fast.rollout, reference.rollout, rtol=0, atol=2e-5)
    for b, t in enumerate(fast.metadata["rollout_rows"]):
        torch.testing.assert_close(fast.rollout[b, :, 0], full.rollout[b, :, t], rtol=0, atol=2e-5)


@pytest.mark.parametrize("kernel", ["reference", "fused"])
@pytest.mark.parametrize("measure", ["l1", "l2", "norm"])
def test_the_last_row_alone_scores_like_the_full_matrix(kernel: str, measure: str) -> None:
    """`query_offset`: the one row's residual is its own key, the last one."""
    if kernel == "fused" and dispatch.cpu_kernel() is None:
        pytest.skip("the C++ kernel could not be compiled on this machine")
    terms = random_terms(n=13, heads=3, d=8, causal=True, seed=5)
    full = source_scores(terms, measure, kernel="reference")
    t = slice(12, 13)
    scale = None if terms.row_scale is None else terms.row_scale[t]
    row = AttentionTerms(
        terms.pattern[:, t], scale, terms.values, terms.residual[t], terms.bias[t],
        terms.output[t],
    )  # fmt: skip
    got = source_scores(row, measure, chunk_size=1, kernel=kernel, query_offset=12)
    torch.testing.assert_close(got, full[t], rtol=0, atol=1e-12)


def test_an_empty_last_row_falls_back_to_its_own_position() -> None:
    with pytest.warns(UserWarning, match="own position"):
        C = normalise(torch.zeros(1, 4, dtype=torch.float64), query_offset=3)
    assert C.tolist() == [[0.0, 0.0, 0.0, 1.0]]


def test_argument_errors() -> None:
    model = bridge("gpt2-preLN")
    with pytest.raises(ValueError, match=r'"all".*"last"'):
        alti(model, "the cat", rows="first")
    with pytest.raises(ValueError, match="per_head"):
        alti(model, "the cat", rows="last", per_head=True)


def test_top_sources_reads_the_one_rollout_row() -> None:
    model = bridge("gpt2-preLN", torch.float64)
    full, last = alti(model, TEXTS), alti(model, TEXTS, rows="last")
    for b in range(3):
        got, expected = last.top_sources(batch=b, k=3), full.top_sources(batch=b, k=3)
        assert [p for p, _, _ in got] == [p for p, _, _ in expected]
        assert [v for _, _, v in got] == pytest.approx([v for _, _, v in expected], abs=1e-12)
    with pytest.raises(ValueError, match='rows="last"'):
        last.top_sources(position=0)
