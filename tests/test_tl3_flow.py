"""`flow_graph` on the deprecated TransformerLens 3.x classes (`HookedTransformer`,
`HookedEncoder`): equal to the naive reference `tests/naive_flow.py`, and its invariants.

These classes do not exist in TransformerLens 4.x, so the module is skipped there; it runs in a
second environment with transformer-lens 3.x.
"""

import functools
import importlib.metadata
import warnings

import pytest
import torch
from conftest import between_runs


def _tl_major() -> int | None:
    try:
        return int(importlib.metadata.version("transformer-lens").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


if _tl_major() != 3:
    pytest.skip(
        "needs TransformerLens 3.x: runs in .ci/run's second environment", allow_module_level=True
    )

import naive_flow  # noqa: E402
from models import D_VOCAB  # noqa: E402
from models_tl3 import TL3_BUILDERS  # noqa: E402

from alti_lens import FlowGraph, ReconstructionError, flow_graph  # noqa: E402

TEXTS = ["the cat sat on the mat and it was very small", "a big red dog ran", "the tree"]
STEPS = {"ht-parallel": "parallel", "ht-attn-only": "attention"}
FIELDS = ("attention", "attention_residual", "mlp", "mlp_residual", "neurons")


@functools.cache
def model_of(name: str, dtype: torch.dtype = torch.float64):
    return TL3_BUILDERS[name](dtype=dtype)


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


def quiet_flow(model, inputs, **options) -> FlowGraph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return flow_graph(model, inputs, **options)


def random_tokens(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, D_VOCAB, (n,), generator=gen)
    tokens[0] = 0  # <bos>
    return tokens


@pytest.fixture(params=list(TL3_BUILDERS), ids=list(TL3_BUILDERS))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def assert_matches_naive(graph: FlowGraph, b: int, tokens: torch.Tensor, name: str, measure: str):
    expected = naive_flow.naive_flow(model_of(name), tokens, measure)
    assert graph.steps == expected.steps == [STEPS.get(name, "attention+mlp")] * graph.n_layers
    k, atol = len(tokens), between_runs(graph)
    for field in FIELDS:
        got, want = getattr(graph, field), getattr(expected, field)
        assert (got is None) == (want is None), field
        if got is None:
            continue
        got = got[b, :, :, :k, :k] if field == "attention" else got[b, :, :k]
        assert torch.equal(got.isnan(), want.isnan()), field
        diff = float((got.nan_to_num() - want.nan_to_num()).abs().max())
        assert diff <= atol, f"{name} {measure} {field}: max|Δ| {diff:.3g} > {atol:.3g}"


def test_flow_matches_naive_reference(name: str) -> None:
    tokens = random_tokens(9, seed=0)
    graph = quiet_flow(model_of(name), tokens[None], neurons=True)
    assert_matches_naive(graph, 0, tokens, name, "l1")


@pytest.mark.parametrize("measure", ["l2", "norm"])
@pytest.mark.parametrize("which", ["ht-gpt2-preLN", "encoder-bert-postLN"])
def test_other_measures_match_naive_reference(which: str, measure: str) -> None:
    tokens = random_tokens(7, seed=1)
    graph = quiet_flow(model_of(which), tokens[None], neurons=True, measure=measure)
    assert_matches_naive(graph, 0, tokens, which, measure)


def test_padded_batch(name: str) -> None:
    """Text input (padded on the right by 3.x's `to_tokens`): each sequence equals the naive
    reference on its real positions; padded positions are zeros (NaN where no step)."""
    model = model_of(name)
    graph = quiet_flow(model, TEXTS, neurons=True)
    mask = graph.attention_mask.bool()
    assert (~mask).any()
    for b in range(len(TEXTS)):
        k = int(mask[b].sum())
        assert mask[b, :k].all()
        assert_matches_naive(graph, b, graph.tokens[b, :k], name, "l1")
        assert (graph.attention[b][..., k:, :] == 0).all()
        assert (graph.attention[b][..., k:] == 0).all()
        assert (graph.attention_residual[b][:, k:] == 0).all()
    for field in (graph.mlp, graph.mlp_residual):
        assert bool(field.isnan().all()) or not field.isnan().any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_weights_are_shares(name: str, dtype: torch.dtype) -> None:
    model = model_of(name, dtype)
    before = hook_count(model)
    graph = quiet_flow(model, TEXTS, neurons=True)
    assert hook_count(model) == before
    atol = between_runs(graph)
    real = graph.attention_mask.bool()
    step = graph.attention.sum(dim=(2, 4)) + graph.attention_residual
    if graph.steps[0] == "parallel":
        step = step + graph.mlp
    sums = [step]
    if graph.steps[0] == "attention+mlp":
        sums.append(graph.mlp + graph.mlp_residual)
    if graph.neurons is not None:
        sums.append(graph.neurons.sum(-1))
    for total in sums:
        got = total.permute(0, 2, 1)[real]
        torch.testing.assert_close(got, torch.ones_like(got), rtol=0, atol=atol)
    assert (graph.attention >= 0).all() and torch.isfinite(graph.reconstruction_error).all()
    if name != "encoder-bert-postLN":
        assert (graph.attention.triu(diagonal=1) == 0).all()


@pytest.mark.parametrize(
    "which, hook, neurons, step",
    [
        ("ht-gpt2-preLN", "blocks.1.hook_resid_post", False, "MLP step"),
        ("ht-gpt2-preLN", "blocks.1.hook_mlp_out", True, "MLP neurons"),
        ("encoder-bert-postLN", "blocks.1.ln2.hook_normalized", False, "MLP step"),
        ("encoder-bert-postLN", "blocks.1.hook_mlp_out", True, "MLP neurons"),
    ],
)  # fmt: skip
def test_broken_mlp_step_is_caught(which: str, hook: str, neurons: bool, step: str) -> None:
    model = TL3_BUILDERS[which](dtype=torch.float32)  # its own: a hook is added
    before = hook_count(model)
    model.add_hook(hook, lambda t, hook: t * 1.5)
    try:
        with pytest.raises(ReconstructionError, match=f"{step} of layer 1"):
            quiet_flow(model, TEXTS, neurons=neurons)
    finally:
        model.reset_hooks()
    assert hook_count(model) == before
    quiet_flow(model, TEXTS, neurons=neurons)
