"""`alti_logit(...)` against the independent brute-force float64 reference in `naive_logit.py`.

Every decoder-only offline block kind (`models.BRIDGE_BUILDERS` without the BERT encoder):
token scores, per-head scores, the non-token components and the logit must agree to 1e-9 (max
abs difference) for a single sequence, for a contrastive (foil) logit, and inside a right-padded
batch; deliberate mistakes in the reference must be visible far above that tolerance.
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
import naive_logit

from alti_lens import alti_logit

ATOL = 1e-9
MODEL_NAMES = [name for name in models.BRIDGE_BUILDERS if name != "bert-postLN"]
PAD = models.VOCAB_WORDS.index("<pad>")
BOS = models.VOCAB_WORDS.index("<bos>")
TARGET = models.VOCAB_WORDS.index("cat")
FOIL = models.VOCAB_WORDS.index("dog")
OTHER_TARGET = models.VOCAB_WORDS.index("tree")


def _random_tokens(n: int, seed: int) -> tuple[int, ...]:
    gen = torch.Generator().manual_seed(seed)
    body = torch.randint(3, len(models.VOCAB_WORDS), (n - 1,), generator=gen).tolist()
    return (BOS, *body)


TOKENS = _random_tokens(7, seed=0)
SHORT_TOKENS = _random_tokens(4, seed=1)


@functools.cache
def model64(name: str):
    """A float64 model, built once per module run, with one warm-up forward (the bridge
    registers its internal hooks lazily on the first run)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = models.BRIDGE_BUILDERS[name](dtype=torch.float64, seed=0)
        with torch.no_grad():
            model(torch.tensor([[0, 3, 4]]))
    return model


@functools.cache
def terms(name: str, tokens: tuple[int, ...]) -> list[naive.LayerTerms]:
    return naive.naive_terms(model64(name), torch.tensor(tokens))


@functools.cache
def reference(
    name: str,
    tokens: tuple[int, ...],
    target: int,
    position: int = -1,
    final_scale: bool = True,
    rollout_lag: int = 1,
) -> naive_logit.LogitReference:
    return naive_logit.naive_alti_logit(
        model64(name),
        torch.tensor(tokens),
        target,
        position=position,
        terms=terms(name, tokens),
        final_scale=final_scale,
        rollout_lag=rollout_lag,
    )


def run(name: str, tokens: torch.Tensor, target, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return alti_logit(model64(name), tokens, target, **kwargs)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.to(torch.float64).cpu() - b.to(torch.float64)).abs().max())


def differences(result, b: int, ref: naive_logit.LogitReference, k: int) -> dict[str, float]:
    """Max abs differences between sequence `b` of an `alti_logit` result (its first `k`
    positions) and a reference, for every output; the logit is the model's own (soft-capped)."""
    diffs = {
        "scores": max_diff(result.scores[b, :k], ref.scores),
        "head_scores": max_diff(result.head_scores[b, :, :, :k], ref.head_scores),
        "logit": abs(float(result.logit[b]) - ref.capped_logit),
    }
    for key in naive_logit.COMPONENTS:
        diffs[key] = abs(float(result.components[key][b]) - ref.components[key])
    for key, per_layer in ref.layer_components.items():
        diffs[f"layer_{key}"] = max_diff(result.layer_components[key][b], per_layer)
    return diffs


def assert_close(diffs: dict[str, float], what: str) -> None:
    bad = {key: f"{value:.3g}" for key, value in diffs.items() if not value <= ATOL}
    assert not bad, f"{what}: differences above {ATOL:g}: {bad}"


def reference_identity_error(model, ref: naive_logit.LogitReference) -> tuple[float, float]:
    """|Σ_k Φ(k) + components − raw model logit| and its allowed limit."""
    largest = max([abs(v) for v in ref.components.values()] + [float(ref.scores.abs().sum()), 1.0])
    return abs(ref.total() - ref.logit), naive_logit.identity_rtol(model) * largest


@pytest.mark.parametrize("position", [-1, -3, 2])
@pytest.mark.parametrize("name", MODEL_NAMES, ids=MODEL_NAMES)
def test_alti_logit_matches_reference(name: str, position: int) -> None:
    model = model64(name)
    n = len(TOKENS)
    t = position % n if position < 0 else position
    ref = reference(name, TOKENS, TARGET, t)

    # the reference itself: its pieces add up to the model's own (raw) logit
    error, limit = reference_identity_error(model, ref)
    assert error <= limit, f"{name}: reference misses the logit by {error:.3g} > {limit:.3g}"
    assert torch.allclose(ref.head_scores.sum((0, 1)), ref.scores, rtol=0, atol=1e-13)

    result = run(name, torch.tensor([TOKENS]), TARGET, position=position)
    assert result.scores.shape == (1, n) and result.head_scores.shape[-1] == n
    assert int(result.position[0]) == t and int(result.target[0]) == TARGET
    assert result.foil is None
    assert_close(differences(result, 0, ref, n), f"{name} position {position}")
    # the rollout the scores were rolled through is the naive ALTI one
    assert max_diff(result.alti.rollout[0], ref.rollout) <= ATOL
    # alti_logit's own pieces add up to the raw logit (before Gemma-2's soft-capping)
    api_total = float(result.scores.sum()) + sum(float(v[0]) for v in result.components.values())
    assert abs(api_total - ref.logit) <= limit


def test_soft_capped_logit_is_uncapped_for_the_identity() -> None:
    """Gemma-2 soft-caps its output logits: the decomposition adds up to the raw logit
    `cap · atanh(logit / cap)`, which differs from the returned one well above the tolerance."""
    name = "gemma2-sandwich"
    ref = reference(name, TOKENS, TARGET, len(TOKENS) - 1)
    assert abs(ref.logit - ref.capped_logit) > 1e-7
    assert abs(ref.total() - ref.logit) < abs(ref.total() - ref.capped_logit) / 10
    result = run(name, torch.tensor([TOKENS]), TARGET)
    assert abs(float(result.metadata["pre_soft_cap_logit"][0]) - ref.logit) <= ATOL


@pytest.mark.parametrize("name", MODEL_NAMES, ids=MODEL_NAMES)
def test_contrastive_is_difference_of_references(name: str) -> None:
    n = len(TOKENS)
    target_ref = reference(name, TOKENS, TARGET, n - 1)
    foil_ref = reference(name, TOKENS, FOIL, n - 1)
    result = run(name, torch.tensor([TOKENS]), TARGET, foil=FOIL)
    assert int(result.foil[0]) == FOIL
    diffs = {
        "scores": max_diff(result.scores[0], target_ref.scores - foil_ref.scores),
        "head_scores": max_diff(
            result.head_scores[0], target_ref.head_scores - foil_ref.head_scores
        ),
        "logit": abs(float(result.logit[0]) - (target_ref.capped_logit - foil_ref.capped_logit)),
    }
    for key in naive_logit.COMPONENTS:
        expected = target_ref.components[key] - foil_ref.components[key]
        diffs[key] = abs(float(result.components[key][0]) - expected)
    for key in target_ref.layer_components:
        expected = target_ref.layer_components[key] - foil_ref.layer_components[key]
        diffs[f"layer_{key}"] = max_diff(result.layer_components[key][0], expected)
    assert_close(diffs, f"{name} contrastive")
    # and the same as two single-target alti_logit runs
    single_target = run(name, torch.tensor([TOKENS]), TARGET)
    single_foil = run(name, torch.tensor([TOKENS]), FOIL)
    assert max_diff(result.scores, single_target.scores - single_foil.scores) <= ATOL


@pytest.mark.parametrize("name", MODEL_NAMES, ids=MODEL_NAMES)
def test_padded_batch_matches_single_runs(name: str) -> None:
    n, m = len(TOKENS), len(SHORT_TOKENS)
    tokens = torch.full((2, n), PAD)
    tokens[0] = torch.tensor(TOKENS)
    tokens[1, :m] = torch.tensor(SHORT_TOKENS)
    mask = torch.zeros(2, n, dtype=torch.long)
    mask[0] = 1
    mask[1, :m] = 1
    targets = [TARGET, OTHER_TARGET]
    result = run(name, tokens, torch.tensor(targets), attention_mask=mask, position=-1)
    assert result.position.tolist() == [n - 1, m - 1]
    for b, (seq, target) in enumerate(zip([TOKENS, SHORT_TOKENS], targets, strict=True)):
        k = len(seq)
        ref = reference(name, seq, target, k - 1)
        assert_close(differences(result, b, ref, k), f"{name} padded sequence {b}")
        single = run(name, torch.tensor([seq]), target)
        assert max_diff(result.scores[b, :k], single.scores[0]) <= ATOL
        assert max_diff(result.head_scores[b, :, :, :k], single.head_scores[0]) <= ATOL
        assert abs(float(result.logit[b]) - float(single.logit[0])) <= ATOL
    # padded positions carry exactly nothing
    assert (result.scores[1, m:] == 0).all() and (result.head_scores[1, :, :, m:] == 0).all()
    assert not result.scores.isnan().any()


# --- the comparison has teeth: deliberate mistakes in the reference are detected ---------------


@pytest.mark.parametrize(
    "mistake", [{"final_scale": False}, {"rollout_lag": 0}], ids=["no-final-scale", "rollout-R^l"]
)
@pytest.mark.parametrize("name", ["gpt2-preLN", "llama-RMS-rotary-GQA", "gemma2-sandwich"])
def test_wrong_reference_is_caught(name: str, mistake: dict) -> None:
    """Forgetting the final norm's `1 / s_t`, or rolling layer `l` through `R^l` instead of
    `R^{l−1}`, moves the scores far above the tolerance; the correct reference does not."""
    n = len(TOKENS)
    result = run(name, torch.tensor([TOKENS]), TARGET)
    correct = reference(name, TOKENS, TARGET, n - 1)
    wrong = reference(name, TOKENS, TARGET, n - 1, **mistake)
    assert max_diff(result.scores[0], correct.scores) <= ATOL
    assert max_diff(result.scores[0], wrong.scores) > 1e-3


def test_wrong_position_or_target_is_caught() -> None:
    name = "gpt2-preLN"
    n = len(TOKENS)
    result = run(name, torch.tensor([TOKENS]), TARGET)
    assert max_diff(result.scores[0], reference(name, TOKENS, TARGET, n - 2).scores) > 1e-3
    assert max_diff(result.scores[0], reference(name, TOKENS, FOIL, n - 1).scores) > 1e-3
