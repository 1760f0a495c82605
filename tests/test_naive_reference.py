"""`alti(...)` against the independent naive float64 reference in `tests/naive.py`.

Every offline block kind (`models.BRIDGE_BUILDERS`) and every measure; contributions and rollout
must agree to 1e-9 (max abs difference), on a single sequence and inside a right-padded batch.
"""

import functools
import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

import models
import naive

from alti_lens import alti

ATOL = 1e-9
MODEL_NAMES = list(models.BRIDGE_BUILDERS)
PAD = models.VOCAB_WORDS.index("<pad>")
# one measure per code path (distance-based, norm-based, attention-based): alti dominates the time
PADDED_MEASURES = ("l1", "norm", "attention_rollout")


def _random_tokens(n: int, seed: int) -> tuple[int, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(3, len(models.VOCAB_WORDS), (n,), generator=gen).tolist())


TOKENS = _random_tokens(7, seed=0)
SHORT_TOKENS = _random_tokens(4, seed=1)


@functools.cache
def model64(name: str):
    """A float64 model, built once per module run; one warm-up forward (the bridge registers its
    internal hooks lazily on the first run)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = models.BRIDGE_BUILDERS[name](dtype=torch.float64, seed=0)
        with torch.no_grad():
            model(torch.tensor([[0, 3, 4]]))
    return model


@functools.cache
def naive_terms(name: str, tokens: tuple[int, ...]) -> list[naive.LayerTerms]:
    return naive.naive_terms(model64(name), torch.tensor(tokens))


@functools.cache
def naive_result(name: str, tokens: tuple[int, ...], measure: str):
    return naive.naive_alti(
        model64(name), torch.tensor(tokens), measure, terms=naive_terms(name, tokens)
    )


def run_alti(name: str, tokens: torch.Tensor, measure: str, attention_mask=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return alti(model64(name), tokens, measure=measure, attention_mask=attention_mask)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.to(torch.float64).cpu() - b).abs().max())


@pytest.mark.parametrize("measure", naive.MEASURES)
@pytest.mark.parametrize("name", MODEL_NAMES, ids=MODEL_NAMES)
def test_alti_matches_naive_reference(name: str, measure: str) -> None:
    C, R = naive_result(name, TOKENS, measure)
    # the reference's own sanity: C >= 0, rows sum to 1, causal zeros
    assert (C >= 0).all() and (R >= 0).all()
    assert torch.allclose(C.sum(-1), torch.ones(C.shape[:2], dtype=torch.float64), atol=1e-12)
    if naive.block_kind(model64(name)) != "post_norm":  # the 3.x bridge config calls BERT causal
        upper = torch.ones(len(TOKENS), len(TOKENS)).triu(1).bool()
        assert (C[:, upper] == 0).all() and (R[:, upper] == 0).all()

    result = run_alti(name, torch.tensor([TOKENS]), measure)
    assert result.contributions.shape == (1, *C.shape)
    dC = max_diff(result.contributions[0], C)
    dR = max_diff(result.rollout[0], R)
    assert dC <= ATOL and dR <= ATOL, f"{name} {measure}: max|ΔC| {dC:.3g}, max|ΔR| {dR:.3g}"


@pytest.mark.parametrize("name", MODEL_NAMES, ids=MODEL_NAMES)
def test_padded_batch_matches_naive_reference(name: str) -> None:
    n, m = len(TOKENS), len(SHORT_TOKENS)
    tokens = torch.full((2, n), PAD)
    tokens[0] = torch.tensor(TOKENS)
    tokens[1, :m] = torch.tensor(SHORT_TOKENS)
    mask = torch.zeros(2, n, dtype=torch.long)
    mask[0] = 1
    mask[1, :m] = 1
    for measure in PADDED_MEASURES:
        result = run_alti(name, tokens, measure, attention_mask=mask)
        for b, seq in enumerate([TOKENS, SHORT_TOKENS]):
            k = len(seq)
            C, R = naive_result(name, seq, measure)
            dC = max_diff(result.contributions[b, :, :k, :k], C)
            dR = max_diff(result.rollout[b, :, :k, :k], R)
            assert dC <= ATOL and dR <= ATOL, (
                f"{name} {measure} sequence {b}: max|ΔC| {dC:.3g}, max|ΔR| {dR:.3g}"
            )
        for out in (result.contributions[1], result.rollout[1]):
            assert (out[:, m:, :] == 0).all() and (out[:, :, m:] == 0).all()
            assert not out.isnan().any()


# --- the comparison has teeth: deliberate mistakes in the reference are detected ---------------


def test_wrong_measure_is_caught() -> None:
    C_l1, _ = naive_result("gpt2-preLN", TOKENS, "l1")
    result = run_alti("gpt2-preLN", torch.tensor([TOKENS]), "l1")
    assert max_diff(result.contributions[0], C_l1) <= ATOL
    for wrong in ("l2", "norm", "attention"):
        C_wrong, _ = naive_result("gpt2-preLN", TOKENS, wrong)
        assert max_diff(result.contributions[0], C_wrong) > 1e-3


def test_misattributed_output_bias_is_caught() -> None:
    """Attributing `b_O` to the token itself (spec §2: it is never attributed) keeps the
    decomposition exact but moves ALTI by far more than the tolerance."""
    model = model64("gpt2-preLN")
    terms = naive.naive_terms(model, torch.tensor(TOKENS))
    for layer_terms in terms:
        for i in range(len(TOKENS)):
            layer_terms.T[i, i] += layer_terms.bias[i]
            layer_terms.bias[i] = 0.0
        assert layer_terms.reconstruction_error() <= 1e-12
    C_wrong, _ = naive.naive_alti(model, torch.tensor(TOKENS), "l1", terms=terms)
    result = run_alti("gpt2-preLN", torch.tensor([TOKENS]), "l1")
    assert max_diff(result.contributions[0], C_wrong) > 1e-6


@pytest.mark.parametrize(
    "name, hook, replacement",
    [
        # the value vectors of the wrong layer
        ("gpt2-preLN", "blocks.0.attn.hook_v", lambda c: c["blocks.1.attn.hook_v"]),
        # the wrong residual stream entering the block
        ("bert-postLN", "blocks.1.hook_resid_pre", lambda c: c["blocks.0.hook_resid_pre"]),
        # GQA: kv heads in the wrong order (query head h must use kv head h // (H / H_kv))
        ("llama-RMS-rotary-GQA", "blocks.1.attn.hook_v",
         lambda c: c["blocks.1.attn.hook_v"].flip(2)),
        # the post-attention sandwich norm's scale of the next position
        ("gemma2-sandwich", "blocks.0.ln1_post.hook_scale",
         lambda c: c["blocks.0.ln1_post.hook_scale"].roll(1, dims=1)),
    ],
    ids=["gpt2-v-layer", "bert-resid-layer", "llama-gqa-order", "gemma2-scale-shift"],
)  # fmt: skip
def test_shifted_hook_is_caught(name: str, hook: str, replacement) -> None:
    """The reference's exactness check (spec §2.5) rejects a decomposition built from a wrong
    hook, and the correct cache passes it."""
    model = model64(name)
    tokens = torch.tensor(TOKENS)
    cache = naive.run_cache(model, tokens)
    naive.naive_terms(model, tokens, cache)  # the unmodified cache passes
    shifted = dict(cache.items())
    shifted[hook] = replacement(cache)
    with pytest.raises(AssertionError, match="misses y"):
        naive.naive_terms(model, tokens, shifted)
