"""`flow_graph` against the independent naive float64 reference `tests/naive_flow.py` (spec §8).

Every offline block kind (`models.BRIDGE_BUILDERS`): the attention step's head and residual
weights, the MLP step's (or the parallel step's MLP) weights and the neuron shares, on a single
sequence and inside a right-padded batch, to a tolerance derived from the precision the model
really computed in (`conftest.between_runs`: ~1e-13 for float64-throughout models, ~6e-5 where
Hugging Face computes the softmax or the norms in float32). The three vector measures on one
model of each MLP layout.
"""

import functools
import warnings

import models
import naive_flow
import pytest
import torch
from conftest import between_runs, bridge

from alti_lens import flow_graph

MODEL_NAMES = list(models.BRIDGE_BUILDERS)
PAD = models.VOCAB_WORDS.index("<pad>")
FIELDS = ("attention", "attention_residual", "mlp", "mlp_residual", "neurons")


def _random_tokens(n: int, seed: int) -> tuple[int, ...]:
    gen = torch.Generator().manual_seed(seed)
    return (0, *torch.randint(3, len(models.VOCAB_WORDS), (n - 1,), generator=gen).tolist())


TOKENS = _random_tokens(7, seed=0)
SHORT_TOKENS = _random_tokens(4, seed=1)


def model64(name: str):
    return bridge(name, torch.float64)


@functools.cache
def reference(name: str, tokens: tuple[int, ...], measure: str) -> naive_flow.NaiveFlow:
    return naive_flow.naive_flow(model64(name), torch.tensor(tokens), measure)


def run(name: str, tokens: torch.Tensor, measure: str = "l1", attention_mask=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return flow_graph(
            model64(name), tokens, measure=measure, neurons=True, attention_mask=attention_mask
        )


def differences(graph, b: int, k: int, expected: naive_flow.NaiveFlow) -> dict[str, float]:
    """max|Δ| per field of sequence `b`'s first `k` positions; NaN exactly where expected."""
    got = {
        "attention": graph.attention[b, :, :, :k, :k],
        "attention_residual": graph.attention_residual[b, :, :k],
        "mlp": graph.mlp[b, :, :k],
        "mlp_residual": graph.mlp_residual[b, :, :k],
        "neurons": None if graph.neurons is None else graph.neurons[b, :, :k],
    }
    out = {}
    for name, tensor in got.items():
        want = getattr(expected, name)
        assert (tensor is None) == (want is None), name
        if tensor is None:
            continue
        assert tensor.shape == want.shape, (name, tensor.shape, want.shape)
        assert torch.equal(tensor.isnan(), want.isnan()), f"{name}: NaN in different places"
        out[name] = float((tensor.nan_to_num() - want.nan_to_num()).abs().max())
    return out


def assert_matches(graph, b: int, tokens: tuple[int, ...], measure: str, name: str) -> None:
    expected = reference(name, tokens, measure)
    assert graph.steps == expected.steps
    diffs = differences(graph, b, len(tokens), expected)
    atol = between_runs(graph)
    bad = {k: v for k, v in diffs.items() if not v <= atol}
    assert not bad, f"{name} {measure} sequence {b}: {bad} > {atol:.3g} (all: {diffs})"


@pytest.mark.parametrize("name", MODEL_NAMES, ids=MODEL_NAMES)
def test_flow_matches_naive_reference(name: str) -> None:
    expected = reference(name, TOKENS, "l1")
    # the reference's own sanity: a node's incoming weights sum to 1
    att = expected.attention.sum(dim=(1, 3)) + expected.attention_residual
    if expected.steps[0] == "parallel":
        att = att + expected.mlp
    else:
        mlp_sum = expected.mlp + expected.mlp_residual
        assert expected.steps[0] == "attention" or torch.allclose(mlp_sum, torch.ones_like(mlp_sum))
    assert torch.allclose(att, torch.ones_like(att), rtol=0, atol=1e-12)
    assert_matches(run(name, torch.tensor([TOKENS])), 0, TOKENS, "l1", name)


@pytest.mark.parametrize(
    "name", ["gpt2-preLN", "gemma2-sandwich", "bert-postLN", "neox-parallel"]
)  # fmt: skip
@pytest.mark.parametrize("measure", ["l2", "norm"])
def test_flow_matches_naive_reference_other_measures(name: str, measure: str) -> None:
    assert_matches(run(name, torch.tensor([TOKENS]), measure), 0, TOKENS, measure, name)


@pytest.mark.parametrize("name", MODEL_NAMES, ids=MODEL_NAMES)
def test_padded_batch_matches_naive_reference(name: str) -> None:
    n, m = len(TOKENS), len(SHORT_TOKENS)
    tokens = torch.full((2, n), PAD)
    tokens[0], tokens[1, :m] = torch.tensor(TOKENS), torch.tensor(SHORT_TOKENS)
    mask = (tokens != PAD).long()
    graph = run(name, tokens, attention_mask=mask)
    for b, seq in enumerate([TOKENS, SHORT_TOKENS]):
        assert_matches(graph, b, seq, "l1", name)


# --- the comparison has teeth -------------------------------------------------------------------


def test_another_measure_is_caught() -> None:
    """The l1 graph differs from the naive l2 and norm graphs by far more than the tolerance, in
    every field (so a measure mixed up in one step would be seen)."""
    graph = run("gpt2-preLN", torch.tensor([TOKENS]))
    atol = between_runs(graph)
    for wrong in ("l2", "norm"):
        diffs = differences(graph, 0, len(TOKENS), reference("gpt2-preLN", TOKENS, wrong))
        assert all(v > 1e3 * atol for v in diffs.values()), (wrong, diffs)


def test_unlinearised_post_norm_mlp_step_is_caught() -> None:
    """In BERT (post-norm) the MLP's and residual's parts go through LN2 linearised (spec §8):
    scoring the raw `mlp_out` and `resid_mid` against LN2's output gives other weights."""
    model = model64("bert-postLN")
    cache = naive_flow.naive.run_cache(model, torch.tensor(TOKENS))
    graph = run("bert-postLN", torch.tensor([TOKENS]))
    y = cache["blocks.0.ln2.hook_out"][0]
    raw_mlp, raw_mid = cache["blocks.0.hook_mlp_out"][0], cache["blocks.0.ln1.hook_out"][0]
    wrong = []
    for i in range(len(TOKENS)):
        s = [naive_flow.score(p, y[i], "l1") for p in (raw_mlp[i], raw_mid[i])]
        wrong.append(s[0] / sum(s) if sum(s) else 0.0)
    assert float((graph.mlp[0, 0] - torch.tensor(wrong, dtype=torch.float64)).abs().max()) > 1e-3
