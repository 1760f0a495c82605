"""ALTI+ pure parts: cross-attention contributions and the extended rollout (random tensors)."""

import pytest
import torch
from naive_plus import naive_extended_rollout

from alti_lens.core.decompose import AttentionTerms
from alti_lens.core.measures import MEASURES, layer_contributions
from alti_lens.core.rollout import extended_rollout, rollout


def random_stochastic(*shape: int, gen: torch.Generator, causal: bool = False) -> torch.Tensor:
    x = torch.rand(*shape, generator=gen, dtype=torch.float64)
    if causal:
        x = x.tril()
    return x / x.sum(-1, keepdim=True)


def cross_terms(T: int = 5, S: int = 7, heads: int = 3, d: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    pattern = torch.randn(heads, T, S, generator=gen, dtype=torch.float64).softmax(-1)
    values = torch.randn(S, heads, d, generator=gen, dtype=torch.float64)
    residual = torch.randn(T, d, generator=gen, dtype=torch.float64)
    bias = torch.randn(T, d, generator=gen, dtype=torch.float64) * 0.1
    output = torch.einsum("hts,shd->td", pattern, values) + residual + bias
    return AttentionTerms(pattern, None, values, residual, bias, output, residual_column=True)


@pytest.mark.parametrize("measure", MEASURES)
def test_cross_rows_have_the_residual_last(measure: str) -> None:
    C = layer_contributions(cross_terms(), measure)
    assert C.shape == (5, 8)
    assert (C >= 0).all()
    torch.testing.assert_close(C.sum(-1), torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-12)
    if measure == "attention":
        assert (C[:, -1] == 0).all()


def test_cross_l1_matches_the_formula() -> None:
    terms = cross_terms()
    t = 3
    vectors = [torch.einsum("h,hd->d", terms.pattern[:, t, j], terms.values[j]) for j in range(7)]
    vectors.append(terms.residual[t])
    y = terms.output[t]
    c = torch.stack([(y.abs().sum() - (y - v).abs().sum()).clamp_min(0) for v in vectors])
    torch.testing.assert_close(layer_contributions(terms, "l1")[t], c / c.sum(), rtol=0, atol=1e-12)


def test_zero_cross_attention_output_puts_everything_on_the_residual() -> None:
    terms = cross_terms()
    zero = AttentionTerms(
        terms.pattern,
        None,
        torch.zeros_like(terms.values),
        terms.residual,
        torch.zeros_like(terms.bias),
        terms.residual,
        residual_column=True,
    )
    C = layer_contributions(zero, "l1")
    assert (C[:, :-1] == 0).all() and (C[:, -1] == 1).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_extended_rollout_matches_the_naive_loops(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    S, T, Le, Ld = 6, 5, 3, 4
    C_enc = random_stochastic(Le, S, S, gen=gen)
    C_sa = random_stochastic(Ld, T, T, gen=gen, causal=True)
    C_ca = random_stochastic(Ld, T, S + 1, gen=gen)
    R_enc = rollout(C_enc)[-1]
    R = extended_rollout(R_enc, C_sa, C_ca)
    torch.testing.assert_close(R, naive_extended_rollout(C_enc, C_sa, C_ca), rtol=0, atol=1e-12)
    # rows of the extended rollout are distributions over [source | target prefix]
    torch.testing.assert_close(
        R.sum(-1), torch.ones(Ld, T, dtype=torch.float64), rtol=0, atol=1e-12
    )
    assert (R[:, :, S:].triu(1) == 0).all()  # a step never draws on later target positions


def test_naive_extended_rollout_can_fail() -> None:
    """The comparison has teeth: swapping the roles of the residual share and the sources shows."""
    gen = torch.Generator().manual_seed(0)
    C_enc = random_stochastic(2, 4, 4, gen=gen)
    C_sa = random_stochastic(2, 3, 3, gen=gen, causal=True)
    C_ca = random_stochastic(2, 3, 5, gen=gen)
    flipped = C_ca.flip(-1)
    R = extended_rollout(rollout(C_enc)[-1], C_sa, flipped)
    assert (R - naive_extended_rollout(C_enc, C_sa, C_ca)).abs().max() > 1e-3
