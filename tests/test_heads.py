"""Head-level contributions (`alti(..., per_head=True)`): an extension of ALTI."""

import pytest
import torch
from conftest import bridge
from models import BRIDGE_BUILDERS, previous_token_model
from terms import random_terms

from alti_lens import alti
from alti_lens.core.heads import head_source_scores, head_vectors, normalise_heads

TEXTS = ["the cat sat on the mat and it", "a big red dog"]


def test_head_parts_add_up_to_the_token_level_vectors() -> None:
    terms = random_terms(n=7, heads=3, d=8, causal=False)
    T = torch.einsum("hij,jhd->ijd", terms.pattern, terms.values)
    summed = sum(head_vectors(terms, h, 0, 7, 0, 7) for h in range(3))
    torch.testing.assert_close(summed, T, rtol=0, atol=1e-12)
    # with the residual, the parts of a row add up to its output (minus the bias)
    parts = summed.sum(1) + terms.residual + terms.bias
    torch.testing.assert_close(parts, terms.output, rtol=0, atol=1e-12)


@pytest.mark.parametrize("measure", ["l1", "l2", "norm", "attention", "attention_rollout"])
def test_rows_normalise_over_heads_sources_and_residual(measure: str) -> None:
    terms = random_terms(n=6, heads=3, causal=True)
    heads, residual = normalise_heads(*head_source_scores(terms, measure, chunk_size=4))
    assert (heads >= 0).all() and (residual >= 0).all()
    torch.testing.assert_close(
        heads.sum(dim=(0, 2)) + residual, torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-12
    )
    assert (heads.triu(1) == 0).all()


def test_chunking_does_not_change_head_scores() -> None:
    terms = random_terms(n=9, heads=3, causal=True)
    a = head_source_scores(terms, "l1", chunk_size=2)
    b = head_source_scores(terms, "l1", chunk_size=9)
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(BRIDGE_BUILDERS))
def test_per_head_on_every_block_kind(name: str) -> None:
    model = bridge(name, torch.float64)
    result = alti(model, TEXTS, per_head=True)
    heads, residual = result.head_contributions, result.residual_contribution
    assert heads is not None and residual is not None
    batch, layers, n = 2, result.n_layers, result.tokens.shape[1]
    # the model's own (query) head count: under GQA more heads than key/value heads
    assert model.cfg.n_heads == 4
    assert heads.shape == (batch, layers, model.cfg.n_heads, n, n)
    real = result.attention_mask.bool()[:, None].expand(-1, layers, -1)
    totals = heads.sum(dim=(2, 4)) + residual
    torch.testing.assert_close(totals[real], torch.ones_like(totals[real]), rtol=0, atol=1e-12)
    assert (totals[~real] == 0).all() and (heads >= 0).all()
    # the token-level result is unchanged by asking for heads
    plain = alti(bridge(name, torch.float64), TEXTS)
    assert torch.equal(plain.contributions, result.contributions)


def test_known_previous_token_head() -> None:
    model = previous_token_model()
    tokens = torch.tensor([[3, 1, 4, 1, 5, 2, 6, 0]])
    result = alti(model, tokens, per_head=True)
    heads = result.head_contributions
    assert heads is not None and result.residual_contribution is not None
    # layer 0's head reads the previous position; layer 1 writes nothing: all residual
    for t in range(1, 8):
        assert heads[0, 0, 0, t].argmax() == t - 1
    assert (heads[0, 1] == 0).all() and (result.residual_contribution[0, 1] == 1).all()
