"""`alti` and `alti_logit` on the deprecated TransformerLens 3.x classes (`HookedTransformer`,
`HookedEncoder`); `HookedEncoderDecoder` is in test_tl3_encdec.py.

These classes do not exist in TransformerLens 4.x, so the module is skipped there; it runs in a
second environment with transformer-lens 3.x.
"""

import functools
import importlib.metadata
import warnings

import pytest
import torch
from conftest import between_runs
from models import D_VOCAB
from models_tl3 import TL3_BUILDERS, ht_gpt2, ht_llama

import alti_lens
from alti_lens import (
    ReconstructionError,
    WeightProcessingWarning,
    alti,
)


def _tl_major() -> int | None:
    try:
        return int(importlib.metadata.version("transformer-lens").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


if _tl_major() != 3:
    pytest.skip(
        "needs TransformerLens 3.x: runs in .ci/run's second environment", allow_module_level=True
    )

TEXTS = ["the cat sat on the mat and it was very small", "a big red dog ran", "the tree"]
EXPECTED_KINDS = {
    "ht-gpt2-preLN": "pre_norm",
    "ht-llama-RMS-rotary-GQA": "pre_norm",
    "ht-parallel": "parallel",
    "ht-sandwich-RMS": "sandwich",
    "ht-attn-only": "attn_only",
    "encoder-bert-postLN": "post_norm",
}
ENCODERS = {"encoder-bert-postLN"}
assert set(EXPECTED_KINDS) == set(TL3_BUILDERS)


@functools.cache
def model_of(name: str, dtype: torch.dtype = torch.float64):
    """A cached model; tests that modify a model build their own."""
    return TL3_BUILDERS[name](dtype=dtype)


def random_tokens(batch: int = 2, n: int = 11, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, D_VOCAB, (batch, n), generator=gen)
    tokens[:, 0] = 0  # <bos>
    return tokens


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


@pytest.fixture(params=list(TL3_BUILDERS), ids=list(TL3_BUILDERS))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_builders_draw_every_parameter(name: str) -> None:
    """Fresh 3.x models have zero biases and unit norm weights; HookedEncoder's are torch.empty."""
    model = model_of(name)
    assert not model.training
    for param_name, p in model.named_parameters():
        assert torch.isfinite(p).all(), param_name
        assert not bool((p == 0).all()) and not bool((p == 1).all()), param_name


def test_exact_on_token_tensor(name: str) -> None:
    model = model_of(name)
    result = alti(model, random_tokens())
    assert result.metadata["block_kinds"] == [EXPECTED_KINDS[name]] * model.cfg.n_layers
    assert result.metadata["backend"] == type(model).__name__
    assert result.reconstruction_error.shape == (2, model.cfg.n_layers)
    assert float(result.reconstruction_error.max()) <= 1e-9
    assert result.metadata["weight_processing"] == {
        "fold_ln": False,
        "center_writing_weights": False,
        "fold_value_biases": False,
    }


def test_invariants(name: str) -> None:
    result = alti(model_of(name), TEXTS)
    C, R, mask = result.contributions, result.rollout, result.attention_mask.bool()
    assert C.dtype == torch.float64 and R.dtype == torch.float64
    real_rows = mask[:, None, :].expand(-1, result.n_layers, -1)
    for M in (C, R):
        assert not M.isnan().any()
        assert (M >= 0).all()
        sums = M.sum(-1)[real_rows]
        torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-9)
        if name not in ENCODERS:
            assert (M.triu(1) == 0).all()  # causal zeros, exactly
    torch.testing.assert_close(R[:, 0], C[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(R[:, -1], C[:, -1] @ R[:, -2], rtol=0, atol=1e-12)
    if name in ENCODERS:  # bidirectional: some mass above the diagonal
        assert float(C[0, 0].triu(1).sum()) > 0.1


def test_float32_agrees_with_float64(name: str) -> None:
    tokens = random_tokens()
    r32 = alti(model_of(name, torch.float32), tokens)
    r64 = alti(model_of(name, torch.float64), tokens)
    assert r32.contributions.dtype == torch.float32
    assert float(r32.reconstruction_error.max()) <= 1e-5
    for a, b in ((r32.contributions, r64.contributions), (r32.rollout, r64.rollout)):
        torch.testing.assert_close(a.double(), b, rtol=0, atol=1e-4)


def test_strings_padded_on_the_right_equal_single_runs(name: str) -> None:
    model = model_of(name)
    texts = ["the cat sat", "a dog"]
    batch = alti(model, texts)
    # <bos> prepended, short sequence padded on the right with <pad>
    assert batch.tokens.tolist() == [[0, 3, 5, 7], [0, 4, 6, 1]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch.str_tokens[0] == ["<bos>", "the", "cat", "sat"]
    assert float(batch.reconstruction_error.max()) <= 1e-9
    for b, text in enumerate(texts):
        single = alti(model, text)
        n = single.tokens.shape[1]
        assert torch.equal(batch.tokens[b, :n], single.tokens[0])
        torch.testing.assert_close(
            batch.contributions[b, :, :n, :n],
            single.contributions[0],
            rtol=0,
            atol=between_runs(batch, single),
        )
        torch.testing.assert_close(
            batch.rollout[b, :, :n, :n], single.rollout[0], rtol=0, atol=between_runs(batch, single)
        )
    for M in (batch.contributions, batch.rollout):
        assert (M[1, :, 3, :] == 0).all() and (M[1, :, :, 3] == 0).all()


def test_no_hooks_left_behind(name: str) -> None:
    model = model_of(name)
    before = hook_count(model)
    alti(model, TEXTS)
    assert hook_count(model) == before


def test_no_hooks_left_after_errors(name: str) -> None:
    model = TL3_BUILDERS[name](dtype=torch.float64)
    before = hook_count(model)
    # An error inside the forward pass, with alti's hooks registered: a token id out of vocabulary.
    tokens = random_tokens()
    tokens[0, 3] = D_VOCAB + 5
    with pytest.raises((IndexError, RuntimeError, ValueError)):
        alti(model, tokens)
    assert hook_count(model) == before
    # An error raised by alti from inside a hook: a user hook that edits activations makes the
    # exactness check fail at layer 1; only the user's hook remains. (Not `t + 1`: post-LN
    # centring removes a constant shift, so the encoder would still be exact.)
    model.blocks[1].hook_attn_out.add_hook(lambda t, hook: 1.5 * t)
    try:
        with_user_hook = hook_count(model)
        with pytest.raises(ReconstructionError, match="layer 1") as info:
            alti(model, TEXTS)
        assert info.value.layer == 1
        assert hook_count(model) == with_user_hook
    finally:
        model.reset_hooks()
    assert hook_count(model) == before
    assert model.training is False


@pytest.mark.parametrize("centred", [True, False], ids=["LN", "RMS"])
def test_weight_processing_is_detected_recorded_and_warned_once(centred: bool) -> None:
    model = (ht_gpt2 if centred else ht_llama)(torch.float64, seed=3)
    raw = alti(model, TEXTS[0])
    assert float(model.blocks[0].attn.b_O.detach().abs().max()) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=True)
    changed = "center_writing_weights, fold_value_biases" if centred else "fold_value_biases"
    with pytest.warns(WeightProcessingWarning, match=changed):
        processed = alti(model, TEXTS[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeightProcessingWarning)
        again = alti(model, TEXTS[1])  # warned once per model
    for result in (processed, again):
        assert result.metadata["weight_processing"] == {
            "fold_ln": True,
            "center_writing_weights": centred,  # TL centres only LayerNorm models
            "fold_value_biases": True,
        }
        # Still exact on processed weights, but the numbers move (spec §6).
        assert float(result.reconstruction_error.max()) <= 1e-9
    assert float((processed.rollout - raw.rollout).abs().max()) > 1e-3


# --- ALTI-Logit and head-level contributions on HookedTransformer --------------------------------

DECODER_NAMES = [name for name in TL3_BUILDERS if name not in ENCODERS]


@pytest.mark.parametrize("name", DECODER_NAMES)
def test_alti_logit_identity(name: str) -> None:
    model = model_of(name)
    result = alti_lens.alti_logit(model, TEXTS, "the", foil="a")
    total = result.scores.sum(-1) + sum(result.components.values())
    torch.testing.assert_close(total, result.logit, rtol=0, atol=1e-12)  # TL norms run in float64
    torch.testing.assert_close(result.head_scores.sum(dim=(1, 2)), result.scores)
    with torch.no_grad():
        logits = model(result.tokens, attention_mask=result.attention_mask)
    the, a = model.to_single_token("the"), model.to_single_token("a")
    for b in range(len(TEXTS)):
        t = int(result.position[b])
        expected = logits[b, t, the] - logits[b, t, a]
        torch.testing.assert_close(result.logit[b], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", DECODER_NAMES)
def test_per_head_rows_sum_to_one(name: str) -> None:
    result = alti(model_of(name), TEXTS, per_head=True)
    heads, residual = result.head_contributions, result.residual_contribution
    assert heads is not None and residual is not None
    real = result.attention_mask.bool()[:, None].expand(-1, result.n_layers, -1)
    totals = heads.sum(dim=(2, 4)) + residual
    torch.testing.assert_close(totals[real], torch.ones_like(totals[real]), rtol=0, atol=1e-12)
