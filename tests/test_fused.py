"""The fused CPU kernel (alti_lens.fused) against the chunked PyTorch reference path."""

import pytest
import torch
from conftest import bridge
from test_contributions import random_terms

from alti_lens import alti, fused
from alti_lens.contributions import source_scores
from alti_lens.decompose import AttentionTerms

pytestmark = pytest.mark.skipif(
    fused.extension() is None, reason="the C++ kernel could not be compiled on this machine"
)


def window(terms: AttentionTerms, width: int) -> AttentionTerms:
    """Sliding-window attention: each row attends to its last `width` positions only."""
    n = terms.pattern.shape[-1]
    i = torch.arange(n)
    keep = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - width)
    pattern = terms.pattern * keep
    pattern = pattern / pattern.sum(-1, keepdim=True)
    return AttentionTerms(
        pattern, terms.row_scale, terms.values, terms.residual, terms.bias, terms.output
    )


def cross(n_target: int, n_source: int, seed: int) -> AttentionTerms:
    gen = torch.Generator().manual_seed(seed)
    pattern = torch.randn(3, n_target, n_source, generator=gen, dtype=torch.float64).softmax(-1)
    values = torch.randn(n_source, 3, 8, generator=gen, dtype=torch.float64)
    residual = torch.randn(n_target, 8, generator=gen, dtype=torch.float64)
    output = torch.einsum("hts,shd->td", pattern, values) + residual
    return AttentionTerms(
        pattern, None, values, residual, torch.zeros_like(residual), output, residual_column=True
    )


CASES = {
    "causal-9": lambda: random_terms(n=9, heads=3, d=8, causal=True, seed=1),
    "bidirectional-17": lambda: random_terms(n=17, heads=2, d=5, causal=False, seed=2),
    "one-token": lambda: random_terms(n=1, heads=3, d=8, causal=True, seed=3),
    "sliding-window": lambda: window(random_terms(n=23, heads=4, d=8, causal=True, seed=4), 5),
    "cross-5x7": lambda: cross(5, 7, seed=5),
    "cross-1x1": lambda: cross(1, 1, seed=6),
}


@pytest.mark.parametrize("measure", ["l1", "l2", "norm"])
@pytest.mark.parametrize("case", list(CASES))
def test_fused_equals_reference(case: str, measure: str) -> None:
    terms = CASES[case]()
    ref = source_scores(terms, measure, kernel="reference")
    got = source_scores(terms, measure, kernel="fused")
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    assert torch.equal(got == 0, ref == 0)  # the same exact zeros


def test_row_scale_and_float32() -> None:
    terms = random_terms(n=33, heads=4, d=16, causal=True, seed=7)
    scale = torch.rand(33, dtype=torch.float64) + 0.5
    scaled = AttentionTerms(
        terms.pattern, scale, terms.values, terms.residual, terms.bias, terms.output
    )
    torch.testing.assert_close(
        source_scores(scaled, "l1", kernel="fused"),
        source_scores(scaled, "l1", kernel="reference"),
        rtol=0,
        atol=1e-12,
    )
    f32 = AttentionTerms(
        terms.pattern.float(),
        None,
        terms.values.float(),
        terms.residual.float(),
        terms.bias.float(),
        terms.output.float(),
    )
    torch.testing.assert_close(
        source_scores(f32, "l1", kernel="fused"),
        source_scores(f32, "l1", kernel="reference"),
        rtol=1e-5,
        atol=1e-4,
    )


@pytest.mark.parametrize("name", ["llama-RMS-rotary-GQA", "bert-postLN", "gemma2-sandwich"])
def test_models_give_the_same_result_with_either_kernel(name: str, monkeypatch) -> None:
    model = bridge(name, torch.float64)
    texts = ["the cat sat on the mat and it", "a big red dog"]
    with_fused = alti(model, texts)
    monkeypatch.setenv("ALTI_LENS_KERNEL", "reference")
    with_reference = alti(model, texts)
    torch.testing.assert_close(
        with_fused.contributions, with_reference.contributions, rtol=0, atol=1e-12
    )


@pytest.mark.parametrize(
    ("n", "heads", "d", "causal"),
    [(75, 3, 40, True), (50, 5, 33, False), (33, 12, 64, True), (97, 2, 7, True)],
)
@pytest.mark.parametrize("measure", ["l1", "l2", "norm"])
def test_several_row_blocks_and_partial_tiles(
    n: int, heads: int, d: int, causal: bool, measure: str
) -> None:
    """Sizes that cross the kernel's row blocks (32 rows), leave partial register tiles (8 rows)
    and partial feature chunks (32 floats / 16 doubles), in float64 and float32."""
    terms = random_terms(n=n, heads=heads, d=d, causal=causal, seed=n + d)
    ref = source_scores(terms, measure, kernel="reference")
    got = source_scores(terms, measure, kernel="fused")
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    assert torch.equal(got == 0, ref == 0)
    f32 = AttentionTerms(
        terms.pattern.float(), None, terms.values.float(), terms.residual.float(),
        terms.bias.float(), terms.output.float(),
    )  # fmt: skip
    got32 = source_scores(f32, measure, kernel="fused").double()
    assert float((got32 - ref).abs().max()) <= 2e-5 * float(ref.abs().max())
