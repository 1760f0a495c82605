"""Random attention terms for the pure tensor tests (contributions, kernels, heads): float64,
seeded, each a valid `AttentionTerms` whose output is exactly the sum of its parts."""

import torch

from alti_lens.core.decompose import AttentionTerms


def random_terms(
    n: int = 9, heads: int = 3, d: int = 8, causal: bool = True, seed: int = 0
) -> AttentionTerms:
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(heads, n, n, generator=gen, dtype=torch.float64)
    if causal:
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    pattern = scores.softmax(-1)
    values = torch.randn(n, heads, d, generator=gen, dtype=torch.float64)
    residual = torch.randn(n, d, generator=gen, dtype=torch.float64) * 3
    bias = torch.randn(n, d, generator=gen, dtype=torch.float64) * 0.1
    output = torch.einsum("hqk,khd->qd", pattern, values) + residual + bias
    return AttentionTerms(pattern, None, values, residual, bias, output)


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
