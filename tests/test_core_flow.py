"""The flow graph's pure steps (`core.flow`) on random tensors, float64, against brute force."""

import pytest
import torch

from alti_lens.core import flow
from alti_lens.core.decompose import AttentionTerms
from alti_lens.core.heads import head_source_scores, normalise_step


def brute(parts: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`max(0, ||y||_1 − ||y − z||_1)` of each part `z` (`[rows, parts, d]`) of its row's `y`."""
    y1 = y.abs().sum(-1, keepdim=True)
    return (y1 - (y[:, None] - parts).abs().sum(-1)).clamp_min(0)


def test_mlp_step_weights_are_the_normalised_proximities() -> None:
    gen = torch.Generator().manual_seed(0)
    m, x = (
        torch.randn(5, 8, generator=gen, dtype=torch.float64),
        torch.randn(5, 8, dtype=torch.float64, generator=gen),
    )
    bias = torch.randn(8, dtype=torch.float64, generator=gen).expand(5, 8)
    terms = flow.MlpTerms(m, x, bias, m + x + bias)
    mlp, residual = flow.mlp_step(terms, "l1")
    scores = brute(torch.stack([m, x], 1), m + x + bias)
    torch.testing.assert_close(mlp, scores[:, 0] / scores.sum(1), rtol=0, atol=1e-14)
    torch.testing.assert_close(mlp + residual, torch.ones(5, dtype=torch.float64))
    assert float((flow.mlp_total(terms) - terms.output).abs().max()) == 0


def test_a_row_whose_parts_all_score_zero_goes_to_the_residual() -> None:
    heads = torch.zeros(2, 3, 3, dtype=torch.float64)
    heads[0, 0, 0] = 1.0
    residual = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    mlp = torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"rows \[1\]"):
        H, r, m = normalise_step(heads, residual, mlp)
    assert m is not None
    torch.testing.assert_close(H.sum((0, 2)) + r + m, torch.ones(3, dtype=torch.float64))
    assert float(r[1]) == 1.0 and float(m[2]) == 1.0 and float(H[0, 0, 0]) == 0.25


@pytest.mark.parametrize("kernel", ["reference", "fused"])
def test_neuron_shares_against_brute_force(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALTI_LENS_KERNEL", kernel)
    gen = torch.Generator().manual_seed(1)
    rows, d_mlp, d = 6, 40, 8
    acts = torch.randn(rows, d_mlp, generator=gen, dtype=torch.float64)
    acts[:, 3] = 0.0  # a silent neuron: share exactly 0
    W = torch.randn(d_mlp, d, generator=gen, dtype=torch.float64)
    b = torch.randn(d, generator=gen, dtype=torch.float64).expand(rows, d)
    scale = torch.rand(rows, generator=gen, dtype=torch.float64) + 0.5
    own = scale[:, None] * (acts @ W) + b
    terms = flow.MlpTerms(own, torch.zeros_like(own), torch.zeros_like(own), own, acts, scale, W, b)
    shares, total = flow.neuron_scores(terms, "l1", chunk_size=4)
    parts = scale[:, None, None] * acts[:, :, None] * W[None]
    expected = brute(parts, own)
    torch.testing.assert_close(shares, expected / expected.sum(1, keepdim=True), rtol=0, atol=1e-13)
    assert bool((shares[:, 3] == 0).all())
    torch.testing.assert_close(total, own, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel", ["reference", "fused"])
def test_head_scores_kernel_path_equals_the_reference_path(
    kernel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The (head, key) pairs as one sub-block's sources give the per-head loop's scores."""
    monkeypatch.setenv("ALTI_LENS_KERNEL", kernel)
    gen = torch.Generator().manual_seed(2)
    H, n, d = 3, 7, 8
    pattern = torch.rand(H, n, n, generator=gen, dtype=torch.float64).tril()
    pattern = pattern / pattern.sum(-1, keepdim=True)
    values = torch.randn(n, H, d, generator=gen, dtype=torch.float64)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.einsum("hij,jhd->id", pattern, values) + x
    terms = AttentionTerms(pattern, None, values, x, torch.zeros_like(x), y)
    for measure in ("l1", "l2", "norm"):
        fast, r_fast = head_source_scores(terms, measure)
        slow, r_slow = head_source_scores(terms, measure, kernel=False)
        torch.testing.assert_close(fast, slow, rtol=0, atol=1e-13)
        assert torch.equal(r_fast, r_slow) and bool((fast.triu(1) == 0).all())
