"""Models alti_lens cannot run as they are: the errors name the real cause and the fix; clip_qkv
models are exact; the bridge is cross-checked against the Hugging Face model it wraps."""

import json
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import hook_count

from alti_lens import (
    BridgeMismatchWarning,
    ModelForwardError,
    NonFiniteActivationError,
    UnsupportedModelError,
    alti,
    alti_logit,
    alti_plus,
)
from tests import architectures

TOKENS = torch.tensor([[0, 5, 6, 7, 8, 9, 3, 4], [0, 5, 6, 1, 1, 1, 1, 1]])
MASK = (TOKENS != 1).long()
TARGETS = torch.tensor([3, 4])


def tiny(key: str, dtype: torch.dtype = torch.float32, **config):
    """`architectures.build(key)` with config values of its own."""
    saved = architectures.OVERRIDES.get(key, {})
    architectures.OVERRIDES[key] = {**saved, **config}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return architectures.build(key, dtype)
    finally:
        architectures.OVERRIDES[key] = saved


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    ("key", "config"),
    [
        ("OlmoForCausalLM", {"clip_qkv": 0.05}),
        ("OlmoeForCausalLM", {"clip_qkv": 0.05}),
        ("MptForCausalLM", {"attn_config": {"clip_qkv": 0.05}}),
    ],
    ids=["olmo", "olmoe", "mpt"],
)
def test_clip_qkv_models_are_exact(key: str, config: dict, dtype: torch.dtype) -> None:
    # the clip is tight enough to change most values: the model clamps them after `hook_v`
    model = tiny(key, torch.float32 if key == "OlmoeForCausalLM" else dtype, **config)
    run_dtype = dtype if key == "OlmoeForCausalLM" else None  # OLMoE's MoE: float32 only
    _, cache = model.run_with_cache(TOKENS, names_filter="blocks.0.attn.hook_v")
    assert float(cache["blocks.0.attn.hook_v"].abs().max()) > 0.05  # the clip changes values
    result = alti(model, TOKENS, attention_mask=MASK, dtype=run_dtype)
    assert float(result.reconstruction_error.max()) <= (5e-6 if dtype == torch.float32 else 1e-6)
    logit = alti_logit(model, TOKENS, TARGETS, attention_mask=MASK, dtype=run_dtype)
    assert logit.scores.shape == TOKENS.shape


def test_float64_moe_names_the_fix() -> None:
    model = tiny("MixtralForCausalLM", torch.float64)
    with pytest.raises(RuntimeError):  # the model alone fails (and registers its own hooks)
        model(TOKENS)
    before = hook_count(model)
    fixes = r"in float64.*dtype=torch\.float64.*set_experts_implementation"
    with pytest.raises(ModelForwardError, match=fixes) as caught:
        alti(model, TOKENS, attention_mask=MASK)
    assert "Mixtral" in str(caught.value) and isinstance(caught.value, UnsupportedModelError)
    assert caught.value.__cause__ is not None  # the model's own exception, chained
    assert hook_count(model) == before  # nothing left behind
    # what the message recommends works, and is exact
    model32 = tiny("MixtralForCausalLM", torch.float32)
    result = alti(model32, TOKENS, attention_mask=MASK, dtype=torch.float64)
    assert result.contributions.dtype == torch.float64
    model.original_model.set_experts_implementation("eager")  # the other fix it names
    assert float(alti(model, TOKENS, attention_mask=MASK).reconstruction_error.max()) < 1e-12


def test_float64_sliding_window_nan_names_padding() -> None:
    model = tiny("MistralForCausalLM", torch.float64, sliding_window=4)
    with pytest.raises(NonFiniteActivationError, match=r"sliding-window.*window 4.*5 padded"):
        alti(model, TOKENS, attention_mask=MASK)
    # less padding than the window: no NaN, no error
    alti(model, TOKENS[:, :6], attention_mask=MASK[:, :6])
    result = alti(
        tiny("MistralForCausalLM", sliding_window=4),
        TOKENS,
        attention_mask=MASK,
        dtype=torch.float64,
    )
    assert not result.rollout.isnan().any()


def test_a_model_whose_forward_fails_is_refused_as_such() -> None:
    model = architectures.build("CodeGenForCausalLM")  # TransformerLens' own forward fails
    with pytest.raises(ModelForwardError, match=r"CodeGenForCausalLM failed in its own forward"):
        alti(model, TOKENS, attention_mask=MASK)


@pytest.mark.parametrize("key", ["JetMoeForCausalLM", "DeepseekV4ForCausalLM"])
def test_attention_without_output_weights_is_refused(key: str) -> None:
    with pytest.raises(UnsupportedModelError, match=rf"{key}: TransformerLens gives no per-head"):
        alti(architectures.build(key), TOKENS, attention_mask=MASK)


@pytest.mark.parametrize("key", ["ViTModel", "HubertModel", "ASTForAudioClassification"])
def test_vision_and_audio_models_are_refused(key: str) -> None:
    with pytest.raises(UnsupportedModelError, match="alti_lens needs a text-token model"):
        alti(architectures.build(key), TOKENS, attention_mask=MASK)


# ---------------------------------------------------------------------------------------------
# the bridge against the Hugging Face model it wraps


def _scaled_block_input(model) -> None:
    """Make the bridge compute another model than Hugging Face's while ALTI stays exact for it:
    a persistent hook that scales block 1's input (as a wrong adapter would)."""
    model.blocks[1].hook_resid_pre.add_hook(lambda t, hook: t * 1.5, is_permanent=True)


def test_check_bridge_agrees_on_a_faithful_bridge() -> None:
    model = architectures.build("LlamaForCausalLM")
    with warnings.catch_warnings():
        warnings.simplefilter("error", BridgeMismatchWarning)
        result = alti(model, TOKENS, attention_mask=MASK, check_bridge=True)
    check = result.metadata["bridge_check"]
    assert check["agrees"] is True and check["max_abs_logit_diff"] <= check["tolerance"]
    assert alti(model, TOKENS, attention_mask=MASK).metadata["bridge_check"] is None  # opt-in


def test_check_bridge_warns_with_the_measured_difference_once() -> None:
    model = architectures.build("LlamaForCausalLM")
    _scaled_block_input(model)
    with pytest.warns(BridgeMismatchWarning, match=r"max\|Δlogit\| = [0-9.]+"):
        result = alti(model, TOKENS, attention_mask=MASK, check_bridge=True)
    check = result.metadata["bridge_check"]
    assert check["agrees"] is False and check["max_abs_logit_diff"] > 10 * check["tolerance"]
    # once per model object: the next call neither measures nor warns again
    with warnings.catch_warnings():
        warnings.simplefilter("error", BridgeMismatchWarning)
        again = alti_logit(
            model, TOKENS, TARGETS, attention_mask=MASK, check_bridge=True, check=False
        )
    assert again.metadata["bridge_check"] == check


def test_check_bridge_on_an_encoder_decoder() -> None:
    model = architectures.build("BartForConditionalGeneration")
    result = alti_plus(
        model, TOKENS[:, 1:], TOKENS[:, :3], source_attention_mask=MASK[:, 1:], check_bridge=True
    )
    assert result.metadata["bridge_check"]["agrees"] is True


def test_check_bridge_is_not_applicable_without_a_bridge() -> None:
    # 3.x's HookedTransformer wraps no Hugging Face model: recorded as not checked, no warning
    import dataclasses

    from alti_lens import readout

    model = architectures.build("GPT2LMHeadModel")
    info = dataclasses.replace(readout.describe(model), backend=readout.HOOKED_TRANSFORMER)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BridgeMismatchWarning)
        check = readout.cross_check(model, info, TOKENS, MASK)
    assert check.agrees is None and "not a bridge (HookedTransformer)" in check.note
    assert check.as_metadata()["max_abs_logit_diff"] is None


def test_cli_checks_the_bridge_by_default(tmp_path) -> None:
    from checkpoints import save_gpt2

    folder = save_gpt2(tmp_path / "gpt2")
    checks = {}
    for flag in ("", "--no-check-bridge"):
        run = subprocess.run(
            [sys.executable, "-m", "alti_lens", "explain", "--model", str(folder), "the cat sat",
             "--json", "-", *([flag] if flag else [])],
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "computes other logits" not in run.stderr
        checks[flag] = json.loads(run.stdout)["bridge_check"]
    assert checks[""]["agrees"] is True and checks[""]["max_abs_logit_diff"] <= 1e-4
    assert checks["--no-check-bridge"] is None


@pytest.mark.parametrize("check_bridge", [False, True])
def test_a_bridge_that_does_not_run_is_refused_with_or_without_the_cross_check(
    check_bridge: bool,
) -> None:
    # Falcon-RW's layout (no multi-query, old decoder architecture): TransformerLens 4.3's bridge
    # reshapes its fused qkv wrongly and its own forward fails
    model = tiny("FalconForCausalLM", multi_query=False, new_decoder_architecture=False)
    with pytest.raises(ModelForwardError, match=r"FalconForCausalLM failed in its own forward"):
        alti(model, TOKENS, attention_mask=MASK, check_bridge=check_bridge)
