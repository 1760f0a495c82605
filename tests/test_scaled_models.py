"""Models with multipliers, scales and sub-norms between the residual stream and the output.

Every factor the model applies is part of the decomposition, so these tiny models carry REAL,
non-trivial values (the configs' defaults, 1.0, would hide a missing factor): Granite's residual,
embedding and attention multipliers and its logit scaling, Cohere's `logit_scale`, NanoChat's soft
cap (and its final norm, which also runs on the embeddings), OLMo's float32 LayerNorm in float64
models, BitNet's RMSNorm before `o_proj`; ModernBERT-decoder's non-linear prediction head is
refused. Each model is compared with its own Hugging Face outputs, and Granite with a naive
float64 recomputation of ALTI-Logit written from the spec.
"""

import warnings
from functools import cache
from typing import Any

import naive
import pytest
import torch

import alti_lens
from alti_lens import ReconstructionError, UnsupportedModelError, alti, alti_logit
from alti_lens.readout import attention as readout_attention
from alti_lens.readout import output as readout_output
from alti_lens.readout import single as readout_single
from tests import architectures as A
from tests.models import _bridge_from_hf

# TransformerLens 4.x's adapters (ScaledResidualBlockBridge, the output transforms, the tiny
# builders of tests/architectures.py): .ci/run's 3.x environment deselects the module.

TOKENS = torch.tensor([[0, 5, 6, 7, 8, 9, 10], [0, 5, 6, 11, 12, 1, 1]])
MASK = torch.tensor([[1] * 7, [1, 1, 1, 1, 1, 0, 0]])
TARGET = torch.tensor([3, 4])
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])

GRANITE = dict(
    residual_multiplier=0.22,
    embedding_multiplier=12.0,
    attention_multiplier=1 / 128,
    logits_scaling=8.0,
    attention_bias=True,  # m · b_O is the bias of the block
)
# Real multipliers per architecture key, set on the tiny config from `tests/architectures.py`.
SCALED: dict[str, dict[str, Any]] = {
    "GraniteForCausalLM": GRANITE,
    "GraniteMoeForCausalLM": {k: v for k, v in GRANITE.items() if k != "attention_bias"},
    "CohereForCausalLM": dict(logit_scale=0.3),
    "Cohere2ForCausalLM": dict(logit_scale=0.3),
    "NanoChatForCausalLM": dict(final_logit_softcapping=3.0),  # the soft cap bites at 3
    "BitNetForCausalLM": {},
}


@cache
def build(key: str, dtype: torch.dtype) -> tuple[Any, Any]:
    """`(bridge, hf_model)`: the tiny model of `key` with the real multipliers of `SCALED`."""
    model_cls, _ = A.hf_classes(key)
    cfg = A.config(key)
    for name, value in SCALED.get(key, {}).items():
        setattr(cfg, name, value)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = model_cls(cfg)
    if dtype == torch.float64 and hasattr(hf, "set_experts_implementation"):
        hf.set_experts_implementation("eager")  # grouped_mm has no float64 kernel (MoE)
    return _bridge_from_hf(hf, key, 0, dtype), hf


def hf_logits(hf: Any) -> torch.Tensor:
    """The Hugging Face model's own logits of TOKENS (float64), independent of TransformerLens."""
    with torch.no_grad():
        return hf(TOKENS, attention_mask=MASK).logits.to(torch.float64)


def assert_alti_invariants(result: Any, dtype: torch.dtype) -> None:
    """Exact (the check ran and passed), rows of C and R sum to 1, causal and padding zeros."""
    C, R = result.contributions, result.rollout
    real = result.attention_mask.bool()[:, None, :].expand(-1, result.n_layers, -1)
    atol = 1e-12 if dtype == torch.float64 else 1e-5
    for M in (C, R):
        assert (M >= 0).all() and not M.isnan().any()
        sums = M.sum(-1)[real]
        torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=atol)
        assert (M.triu(1) == 0).all()  # causal zeros, exactly
        assert (M[~real] == 0).all()
    assert not result.reconstruction_error[result.attention_mask.any(-1)].isnan().any()


def assert_identity(result: Any, hf: Any, dtype: torch.dtype) -> None:
    """`scores.sum + components` is the Hugging Face model's own logit (pre-soft-cap), to the
    precision the model computed in."""
    logits = hf_logits(hf)[torch.arange(2), result.position, :]
    real = logits[torch.arange(2), TARGET]
    cap = result.metadata["logit_soft_cap"]
    raw = real if cap is None else cap * torch.atanh(real / cap)
    total = result.scores.double().sum(-1) + sum(c.double() for c in result.components.values())
    precision = getattr(torch, result.metadata["model_precision"])
    rtol = {torch.float64: 1e-9, torch.float32: 1e-5}[precision]
    if dtype == torch.float32:
        rtol = 1e-5
    magnitude = result.scores.abs().sum(-1).double() + sum(
        c.abs().double() for c in result.components.values()
    )
    assert ((total - raw).abs() <= rtol * magnitude).all(), (total - raw).abs()
    torch.testing.assert_close(result.logit.double(), real, rtol=rtol, atol=rtol)


@DTYPES
@pytest.mark.parametrize("key", list(SCALED))
def test_exact_with_real_multipliers(key: str, dtype: torch.dtype) -> None:
    model, hf = build(key, dtype)
    result = alti_logit(model, TOKENS, TARGET, attention_mask=MASK)
    assert_alti_invariants(result.alti, dtype)
    assert_identity(result, hf, dtype)
    expected = 1 / SCALED[key].get("logits_scaling", 1.0) * SCALED[key].get("logit_scale", 1.0)
    assert result.metadata["logit_scale"] == pytest.approx(expected, rel=1e-7)


def test_granite_multipliers_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Teeth: without the residual multiplier the block is not exact; without the logit scale
    the identity fails. The bridge declares both; nothing is guessed from the config here."""
    model, _ = build("GraniteForCausalLM", torch.float64)
    assert readout_attention.residual_multiplier(model.blocks[0]) == pytest.approx(0.22)
    info = alti_lens.readout.describe(model)
    assert readout_output.logit_scale(model, info) == pytest.approx(1 / 8, rel=1e-15)
    with monkeypatch.context() as patch:
        patch.setattr(readout_attention, "residual_multiplier", lambda block: 1.0)
        with pytest.raises(ReconstructionError, match="exactness check failed at layer 0"):
            alti(model, TOKENS, attention_mask=MASK)
    with monkeypatch.context() as patch:
        patch.setattr(readout_single, "output_path", lambda model, info: (None, 1.0))
        with pytest.raises(ReconstructionError, match="logit identity failed"):
            alti_logit(model, TOKENS, TARGET, attention_mask=MASK)


def test_cohere_logit_scale_is_read() -> None:
    model, _ = build("CohereForCausalLM", torch.float32)
    info = alti_lens.readout.describe(model)
    assert readout_output.logit_scale(model, info) == pytest.approx(0.3, rel=1e-7)


def test_non_scale_output_transform_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = build("CohereForCausalLM", torch.float32)
    monkeypatch.setattr(model.adapter, "apply_output_logits_transform", lambda x: x * x)
    with pytest.raises(UnsupportedModelError, match="not a constant multiple"):
        alti_logit(model, TOKENS, TARGET, attention_mask=MASK)


def test_modernbert_decoder_prediction_head_is_refused() -> None:
    model = A.build("ModernBertDecoderForCausalLM")
    alti(model, TOKENS, attention_mask=MASK)  # ALTI itself is exact
    with pytest.raises(UnsupportedModelError, match="prediction head"):
        alti_logit(model, TOKENS, TARGET, attention_mask=MASK)


def test_olmo_float32_layernorm_in_float64_model() -> None:
    """OLMo's LayerNorm casts to float32 even in float64 models: the identity holds to float32
    (it used to be refused against a float64 tolerance) and the result says so."""
    model = A.build("OlmoForCausalLM", torch.float64)
    result = alti_logit(model, TOKENS, TARGET, attention_mask=MASK)
    assert result.metadata["model_precision"] == "float32"
    assert float(result.logit_error.max()) > 1e-12  # float32 rounding really is there
    assert float(result.logit_error.max()) < 1e-6


def test_bitnet_quantised_projection_is_refused() -> None:
    """A real BitNet checkpoint's `o_proj` is an AutoBitLinear, which quantises its input
    activations: no exact per-source split exists, refused before the run."""
    from transformers.integrations.bitnet import AutoBitLinear

    model, hf = build("BitNetForCausalLM", torch.float32)
    attn = hf.model.layers[1].self_attn
    original = attn.o_proj
    quantised = AutoBitLinear(original.in_features, original.out_features, bias=False)
    attn.o_proj = quantised
    model.blocks[1].attn.o.set_original_component(quantised)
    try:
        with pytest.raises(UnsupportedModelError, match="quantises the activations"):
            alti(model, TOKENS, attention_mask=MASK)
    finally:
        attn.o_proj = original
        model.blocks[1].attn.o.set_original_component(original)


def test_bitnet_sub_norm_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Teeth: without the sub-norm's scale and γ, BitNet's blocks are not exact."""
    model, _ = build("BitNetForCausalLM", torch.float64)
    monkeypatch.setattr(readout_single, "attn_sub_norm", lambda block: None)
    with pytest.raises(ReconstructionError):
        alti(model, TOKENS, attention_mask=MASK)


def naive_granite_logit(model: Any, hf: Any, tokens: torch.Tensor, target: int) -> dict:
    """ALTI-Logit of `target` at the last position of one unpadded sequence of Granite, by loops
    in float64 from the spec and Hugging Face's own weights and config (no alti_lens, no
    TransformerLens weight views): the hooks give only the model's activations."""
    config = hf.config
    m, logits_scaling = config.residual_multiplier, config.logits_scaling
    cache_ = naive.run_cache(model, tokens)
    n, t = tokens.shape[0], tokens.shape[0] - 1
    n_heads, d_head = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    f64 = lambda x: x.detach().to(torch.float64)  # noqa: E731
    layers = []
    for layer, hf_layer in enumerate(hf.model.layers):
        name = f"blocks.{layer}"
        x, y = f64(cache_[f"{name}.hook_resid_pre"][0]), f64(cache_[f"{name}.hook_resid_mid"][0])
        pattern, v = (
            f64(cache_[f"{name}.attn.hook_pattern"][0]),
            f64(cache_[f"{name}.attn.hook_v"][0]),
        )
        o_proj = hf_layer.self_attn.o_proj
        W = f64(o_proj.weight)  # [d, H·d_head]: the head h reads columns h·d_head …
        b_O = (
            torch.zeros(W.shape[0], dtype=torch.float64)
            if o_proj.bias is None
            else f64(o_proj.bias)
        )
        group = n_heads // v.shape[1]
        T = torch.zeros(n, n, W.shape[0], dtype=torch.float64)
        for i in range(n):
            for j in range(n):
                for h in range(n_heads):
                    W_h = W[:, h * d_head : (h + 1) * d_head]
                    T[i, j] += m * pattern[h, i, j] * (W_h @ v[j, h // group])
                if i == j:
                    T[i, j] += x[j]
        bias = (m * b_O).expand(n, -1)
        layers.append(
            (
                naive.LayerTerms(T, bias, y, pattern, causal=True),
                x,
                f64(cache_[f"{name}.hook_resid_post"][0]),
            )
        )
    for terms, _, _ in layers:
        assert terms.reconstruction_error() <= 1e-9 * float(terms.y.abs().max())
    R = naive.rollout(torch.stack([naive.layer_matrix(terms, "l1") for terms, _, _ in layers]))
    # raw logit = (U_w · γ ⊙ x^L_t / s_t) / logits_scaling: one linear map of the final residual
    s_t = float(cache_["ln_final.hook_scale"][0, t, 0])
    g = f64(hf.lm_head.weight[target]) * f64(hf.model.norm.weight) / s_t / logits_scaling
    scores = torch.zeros(n, dtype=torch.float64)
    mlps = biases = 0.0
    for layer, (terms, x, post) in enumerate(layers):
        M = torch.eye(n, dtype=torch.float64) if layer == 0 else R[layer - 1]
        for j in range(n):
            # Δ^l(j) = g · a^l_t(j): the source's attention vector, without the residual x_t
            delta = float(g @ (terms.T[t, j] - (x[j] if j == t else 0.0)))
            for k in range(n):
                scores[k] += delta * M[j, k]
        biases += float(g @ terms.bias[t])
        mlps += float(g @ (post[t] - terms.y[t]))
    embedding = float(g @ layers[0][1][t])
    return dict(scores=scores, embedding=embedding, mlps=mlps, attention_biases=biases)


def test_granite_against_naive_float64() -> None:
    model, hf = build("GraniteForCausalLM", torch.float64)
    tokens = TOKENS[0]
    ref = naive_granite_logit(model, hf, tokens, 3)
    result = alti_logit(model, tokens[None], 3)
    torch.testing.assert_close(result.scores[0], ref["scores"], rtol=1e-9, atol=1e-12)
    for name in ("embedding", "mlps", "attention_biases"):
        got = float(result.components[name][0])
        assert got == pytest.approx(ref[name], rel=1e-9, abs=1e-12), name
    # and the naive parts add up to the model's own logit (RMSNorm in float32: 1e-7)
    total = float(ref["scores"].sum()) + ref["embedding"] + ref["mlps"] + ref["attention_biases"]
    with torch.no_grad():
        logit = float(hf(tokens[None]).logits[0, -1, 3])
    assert total == pytest.approx(logit, rel=1e-6, abs=1e-9)
