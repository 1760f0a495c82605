"""`alti` on a real TransformerLens model of every block kind: invariants of spec §3, §4 and §7."""

import warnings

import pytest
import torch
from conftest import between_runs, bridge, hook_count

from alti_lens import ReconstructionError, WeightProcessingWarning, alti

TEXTS = ["the cat sat on the mat and it was very small", "a big red dog ran", "the tree"]
EXPECTED_KINDS = {
    "gpt2-preLN": "pre_norm",
    "opt-preLN": "pre_norm",
    "llama-RMS-rotary-GQA": "pre_norm",
    "neox-parallel": "parallel",
    "gptj-parallel": "parallel",
    "gemma2-sandwich": "sandwich",
    "bert-postLN": "post_norm",
    "native-attn-only": "attn_only",
}
ENCODERS = {"bert-postLN"}
# float64 models that Hugging Face computes partly in float32 (softmax, attention scores, RMSNorm)
FLOAT32_INSIDE = {"opt-preLN", "llama-RMS-rotary-GQA", "gptj-parallel", "gemma2-sandwich"}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_invariants(kind: str, dtype: torch.dtype) -> None:
    model = bridge(kind, dtype)
    result = alti(model, TEXTS)
    C, R, mask = result.contributions, result.rollout, result.attention_mask.bool()
    assert C.dtype == dtype and R.dtype == dtype and C.device.type == "cpu"
    assert result.metadata["block_kinds"] == [EXPECTED_KINDS[kind]] * result.n_layers
    atol = 1e-12 if dtype == torch.float64 else 1e-5
    real_rows = mask[:, None, :].expand(-1, result.n_layers, -1)
    for M in (C, R):
        assert (M >= 0).all()
        torch.testing.assert_close(
            M.sum(-1)[real_rows], torch.ones_like(M.sum(-1)[real_rows]), rtol=0, atol=atol
        )
        # padded rows and columns are exact zeros
        assert (M[~real_rows] == 0).all()
        assert (M.transpose(-1, -2)[~real_rows] == 0).all()
        assert not M.isnan().any()
        if kind not in ENCODERS:
            assert (M.triu(1) == 0).all()  # causal zeros, exactly
    # the rollout is the chain of the per-layer matrices
    torch.testing.assert_close(R[:, 0], C[:, 0])
    torch.testing.assert_close(R[:, -1], C[:, -1] @ R[:, -2], rtol=0, atol=atol)
    # the exactness check ran on every layer of every sequence and recorded its error
    assert result.reconstruction_error.shape == (3, result.n_layers)
    limit = 1e-9 if dtype == torch.float64 and kind != "gemma2-sandwich" else 5e-6
    assert float(result.reconstruction_error.max()) <= limit


def test_float32_agrees_with_float64(kind: str) -> None:
    r32 = alti(bridge(kind, torch.float64), TEXTS, dtype=torch.float32)
    r64 = alti(bridge(kind, torch.float64), TEXTS)
    assert r32.contributions.dtype == torch.float32 and r64.contributions.dtype == torch.float64
    torch.testing.assert_close(r32.rollout.double(), r64.rollout, rtol=0, atol=2e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_batch_equals_single_runs(kind: str, dtype: torch.dtype) -> None:
    # Hugging Face computes the softmax of OPT, Llama and Gemma-2 (and GPT-J's scores) in float32
    # even in float64 models: their own activations then differ by float32 rounding between a
    # padded batch and single runs, and `between_runs` follows what the model computed in.
    model = bridge(kind, dtype)
    batch = alti(model, TEXTS)
    expected = "float32" if dtype == torch.float32 or kind in FLOAT32_INSIDE else "float64"
    assert batch.metadata["model_precision"] == expected
    for b, text in enumerate(TEXTS):
        single = alti(model, text)
        atol = between_runs(batch, single)
        n = single.tokens.shape[1]
        assert torch.equal(batch.tokens[b, :n], single.tokens[0])
        assert batch.str_tokens[b][:n] == single.str_tokens[0]
        torch.testing.assert_close(
            batch.contributions[b, :, :n, :n], single.contributions[0], rtol=0, atol=atol
        )
        torch.testing.assert_close(
            batch.rollout[b, :, :n, :n], single.rollout[0], rtol=0, atol=atol
        )


def test_token_tensor_with_mask_equals_text(kind: str) -> None:
    model = bridge(kind, torch.float64)
    from_text = alti(model, TEXTS)
    from_ids = alti(model, from_text.tokens, attention_mask=from_text.attention_mask)
    assert torch.equal(from_ids.contributions, from_text.contributions)
    single = alti(model, from_text.tokens[2])  # a 1-D tensor is one sequence
    assert single.contributions.shape[0] == 1


def test_no_hooks_left_behind(kind: str) -> None:
    model = bridge(kind)
    before = hook_count(model)
    alti(model, TEXTS)
    assert hook_count(model) == before


def test_no_hooks_left_after_an_error_inside_the_run() -> None:
    """A user hook that edits activations makes the check fail mid-run; only that hook remains."""
    model = bridge("gpt2-preLN")
    before = hook_count(model)
    model.blocks[1].hook_attn_out.add_hook(lambda t, hook: t + 1.0)
    try:
        with_user_hook = hook_count(model)
        with pytest.raises(ReconstructionError, match="layer 1") as info:
            alti(model, TEXTS, chunk_size=2)
        assert info.value.layer == 1 and info.value.error > info.value.tolerance
        assert hook_count(model) == with_user_hook
    finally:
        model.blocks[1].hook_attn_out.remove_hooks()
    assert hook_count(model) == before
    assert model.training is False


def test_training_mode_is_restored() -> None:
    model = bridge("bert-postLN", torch.float64)
    model.train()
    try:
        result = alti(model, TEXTS[:1])  # dropout is disabled for the run: still exact
        assert float(result.reconstruction_error.max()) <= 1e-9
        assert all(m.training for m in model.modules())
    finally:
        model.eval()


def test_check_false_skips_the_check() -> None:
    result = alti(bridge("gpt2-preLN"), TEXTS, check=False)
    assert result.reconstruction_error.isnan().all()
    assert result.metadata["check"] is False


def test_chunk_size_does_not_change_results(kind: str) -> None:
    model = bridge(kind, torch.float64)
    a = alti(model, TEXTS, chunk_size=1)
    b = alti(model, TEXTS, chunk_size=5)
    torch.testing.assert_close(a.contributions, b.contributions, rtol=0, atol=1e-12)


def test_metadata_and_repr() -> None:
    result = alti(bridge("llama-RMS-rotary-GQA"), TEXTS[0], measure="l2")
    meta = result.metadata
    assert meta["backend"] == "TransformerBridge"
    assert meta["measure"] == "l2" and meta["dtype"] == "float32"
    assert meta["weight_processing"] == {
        "fold_ln": False,
        "center_writing_weights": False,
        "fold_value_biases": False,
    }
    for key in ("transformer_lens_version", "alti_lens_version", "architecture", "tolerance"):
        assert key in meta
    assert result.str_tokens[0][:3] == ["<bos>", "the", "cat"]
    assert repr(result).startswith("AltiResult(batch=1, layers=3, pos=12, measure='l2'")


def test_weight_processing_is_detected_recorded_and_warned_once() -> None:
    from models import bridge_gpt2

    model = bridge_gpt2(torch.float64, seed=3)
    raw = alti(model, TEXTS[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.enable_compatibility_mode()
    with pytest.warns(WeightProcessingWarning, match="center_writing_weights, fold_value_biases"):
        processed = alti(model, TEXTS[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeightProcessingWarning)
        alti(model, TEXTS[1])  # warned once per model
    assert processed.metadata["weight_processing"] == {
        "fold_ln": True,
        "center_writing_weights": True,
        "fold_value_biases": True,
    }
    # Still exact on processed weights, but the numbers move (spec §6).
    assert float(processed.reconstruction_error.max()) <= 1e-9
    assert float((processed.rollout - raw.rollout).abs().max()) > 1e-3


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", ["gpt2-preLN", "gemma2-sandwich", "bert-postLN"])
def test_half_precision_models_are_upcast(name: str, dtype: torch.dtype) -> None:
    import models

    result = alti(models.BRIDGE_BUILDERS[name](dtype=dtype), TEXTS)
    reference = alti(bridge(name), TEXTS)
    assert result.contributions.dtype == torch.float32
    assert result.metadata["model_dtype"] == str(dtype).removeprefix("torch.")
    assert result.metadata["tolerance"]["rtol"] == 1e-2
    torch.testing.assert_close(result.rollout, reference.rollout, rtol=0, atol=2e-2)


def test_boot_from_a_local_checkpoint_directory(tmp_path) -> None:
    """The users' path: `TransformerBridge.boot_transformers(dir)` of a saved HF model, offline."""
    from models import D_VOCAB, N_CTX, word_tokenizer
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=D_VOCAB, n_positions=N_CTX)
    GPT2LMHeadModel(cfg).save_pretrained(tmp_path)
    word_tokenizer().save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TransformerBridge.boot_transformers(str(tmp_path))
    result = alti(model, TEXTS[:2])
    assert result.str_tokens[1][:3] == ["<bos>", "a", "big"]
    assert result.metadata["block_kinds"] == ["pre_norm", "pre_norm"]
    assert float(result.reconstruction_error.max()) <= 1e-5
