"""Multi-head latent attention (spec §2.3.1): DeepSeek-V2/V3, GLM-4-MoE-Lite, GLM-MoE-DSA, Youtu.

Tiny random models of the five architecture keys (`tests/architectures.py`), with the three
corrections an MLA config needs to run at all in Hugging Face's own forward pass, and a value width
of its own (`MLA_CONFIG`).
Checked: the exactness check, rows, causal zeros, padded batch against single runs, `per_head`,
ALTI-Logit's identity on the MoE layers, value zeroing, and an independent naive float64 ALTI of
one layer whose value vectors are recomputed by hand from the model's own `kv_a_proj_with_mqa`,
`kv_a_layernorm`, `kv_b_proj` and `o_proj` weights.
"""

import functools
import warnings
from typing import Any

import naive
import pytest
import torch
from conftest import between_runs
from models import _bridge_from_hf

from alti_lens import ReconstructionError, alti, alti_logit
from alti_lens import models as alti_models
from alti_lens.readout import attention
from alti_lens.readout.models import describe
from tests import architectures as A

KEYS = [
    "DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "Glm4MoeLiteForCausalLM",
    "GlmMoeDsaForCausalLM", "YoutuForCausalLM",
]  # fmt: skip
# What a tiny MLA config needs besides `architectures.TINY` for Hugging Face's own forward to run:
# one key/value head per query head (MLA shares no values; HF's eager attention repeats keys by
# heads / key_value_heads), the rotary embedding's `head_dim` equal to `qk_rope_head_dim` (the
# rotary part of the key), and the experts in plain PyTorch (`grouped_mm` has no float64 kernel).
# And a value width (6) other than the query/key width (4 + 4) and d_model / heads (8).
MLA_CONFIG: dict[str, Any] = dict(
    num_key_value_heads=4, head_dim=4, qk_rope_head_dim=4, experts_implementation="eager",
    v_head_dim=6,
)  # fmt: skip
TOKENS = torch.tensor([[0, 5, 6, 7, 8, 9, 10], [0, 5, 6, 11, 12, 1, 1]])
MASK = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
LAYER = 1  # the MoE layer (first_k_dense_replace = 1): its attention is MLA like layer 0's


@functools.cache
def mla(key: str, dtype: torch.dtype = torch.float64, **changes: Any) -> Any:
    """A tiny bridged MLA model of architecture `key`; `changes` to its config (e.g.
    `q_lora_rank=None`, DeepSeek-V2-Lite's direct `q_proj`)."""
    model_cls, _ = A.hf_classes(key)
    saved = A.OVERRIDES.get(key)
    A.OVERRIDES[key] = {**(saved or {}), **MLA_CONFIG, **changes}
    try:
        cfg = A.config(key)
    finally:  # architectures.OVERRIDES is shared with other test modules
        if saved is None:
            del A.OVERRIDES[key]
        else:
            A.OVERRIDES[key] = saved
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _bridge_from_hf(model_cls(cfg), key, 0, dtype)


VARIANTS = [(key, {}) for key in KEYS] + [
    # V2-Lite's direct q_proj (no query compression), with biases in kv_a_proj and o_proj (b_O)
    ("DeepseekV2ForCausalLM", {"q_lora_rank": None, "attention_bias": True}),
    ("GlmMoeDsaForCausalLM", {"index_topk": 3}),  # DSA: each row attends to its top-3 keys only
]
IDS = [
    k.removesuffix("ForCausalLM") + "".join(f"-{n}={v}" for n, v in c.items()) for k, c in VARIANTS
]
# every key in both dtypes; the config variants in float64 only (a model build is ~0.5 s)
EXACT = [(v, torch.float64) for v in VARIANTS] + [(v, torch.float32) for v in VARIANTS[: len(KEYS)]]
EXACT_IDS = [f"f64-{i}" for i in IDS] + [f"f32-{i}" for i in IDS[: len(KEYS)]]


def _model(variant: tuple[str, dict], dtype: torch.dtype) -> Any:
    key, changes = variant
    return mla(key, dtype, **changes)


def _resid_mid(name: str) -> bool:
    return name.endswith("hook_resid_mid")


@pytest.mark.parametrize(("variant", "dtype"), EXACT, ids=EXACT_IDS)
def test_alti_is_exact_and_well_formed(variant: tuple[str, dict], dtype: torch.dtype) -> None:
    model = _model(variant, dtype)
    result = alti(model, TOKENS, attention_mask=MASK)  # check=True: raises if not exact
    assert result.metadata["block_kinds"] == ["pre_norm", "pre_norm"]
    # the recorded error is within the check's own bound, `atol + rtol · max|y|` (spec §2.5)
    with torch.no_grad():
        _, cache = model.run_with_cache(TOKENS, attention_mask=MASK, names_filter=_resid_mid)
    y_max = max(float(t[MASK.bool()].abs().max()) for t in cache.values())
    tol = result.metadata["tolerance"]
    assert float(result.reconstruction_error.max()) <= tol["atol"] + tol["rtol"] * y_max
    C = result.contributions
    sums = C.sum(-1)[MASK.bool()[:, None].expand(-1, C.shape[1], -1)]  # real rows
    atol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=atol)
    assert (C.triu(diagonal=1) == 0).all()  # causal: no later source
    assert (C >= 0).all()
    # the padded sequence alone (the other one fills the batch: its row is a single run already)
    n = int(MASK[1].sum())
    one = alti(model, TOKENS[1:, :n])
    atol = between_runs(result, one)
    torch.testing.assert_close(C[1, :, :n, :n], one.contributions[0], rtol=0, atol=atol)
    torch.testing.assert_close(result.rollout[1, :, :n, :n], one.rollout[0], rtol=0, atol=atol)


def _rms(u: torch.Tensor, gamma: torch.Tensor, eps: float) -> torch.Tensor:
    return gamma * u / torch.sqrt(u.pow(2).mean(-1, keepdim=True) + eps)


def _linear(module: Any, u: torch.Tensor) -> torch.Tensor:
    bias = getattr(module, "bias", None)
    out = u @ module.weight.detach().double().T
    return out if bias is None else out + bias.detach().double()


def naive_values(model: Any, layer: int, x: torch.Tensor) -> torch.Tensor:
    """`v^h_j [n, H, d_v]` recomputed in float64 from the attention input `x [n, d]` (the
    pre-norm's output) with the Hugging Face module's own weights: latent `c_j` =
    `kv_a_proj_with_mqa(x_j)[:kv_lora_rank]` (the rest is the rotary key, which only keys use),
    RMS-normalised, up-projected by `kv_b_proj` into per-head `[k_nope | v]`."""
    hf = model.blocks[layer].attn.original_component
    latent = _linear(hf.kv_a_proj_with_mqa, x)[:, : hf.kv_lora_rank]
    eps = float(hf.kv_a_layernorm.original_component.variance_epsilon)
    latent = _rms(latent, hf.kv_a_layernorm.weight.detach().double(), eps)
    kv = _linear(hf.kv_b_proj, latent).reshape(x.shape[0], -1, hf.qk_nope_head_dim + hf.v_head_dim)
    return kv[..., hf.qk_nope_head_dim :]


def run_cache(model: Any, tokens: torch.Tensor) -> Any:
    """The activations of one unpadded sequence `tokens [n]`."""
    with torch.no_grad():
        return model.run_with_cache(tokens[None])[1]


def naive_layer(model: Any, layer: int, cache: Any) -> naive.LayerTerms:
    """Spec §2.1 written out for one MLA layer: `T_i(x_j) = Σ_h A^h_ij v^h_j W_O^h + δ_ij x_j`
    with `W_O^h` the columns `h·d_v ... (h+1)·d_v − 1` of `o_proj`'s weight."""
    name = f"blocks.{layer}"
    f64 = lambda t: t[0].detach().double()  # noqa: E731
    x, y = f64(cache[f"{name}.hook_resid_pre"]), f64(cache[f"{name}.hook_resid_mid"])
    pattern = f64(cache[f"{name}.attn.hook_pattern"])  # [H, n, n]
    v = naive_values(model, layer, f64(cache[f"{name}.attn.hook_in"]))
    o_proj = model.blocks[layer].attn.original_component.o_proj
    W = o_proj.weight.detach().double()  # [d, H·d_v]
    n, d = x.shape
    n_heads, d_v = v.shape[1], v.shape[2]
    T = torch.zeros(n, n, d, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            for h in range(n_heads):
                T[i, j] += pattern[h, i, j] * (v[j, h] @ W[:, h * d_v : (h + 1) * d_v].T)
            if i == j:
                T[i, j] += x[j]
    b_O = o_proj.bias
    bias = torch.zeros(n, d, dtype=torch.float64) if b_O is None else b_O.detach().double()
    bias = bias.expand(n, d)
    return naive.LayerTerms(T, bias, y, pattern, causal=True)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_matches_naive_float64_layer(variant: tuple[str, dict]) -> None:
    model = _model(variant, torch.float64)
    tokens = TOKENS[0]
    cache = run_cache(model, tokens)
    terms = naive_layer(model, LAYER, cache)
    # the naive decomposition reproduces the model's own y; HF's RMSNorms (kv_a_layernorm, the
    # pre-norm) compute in float32 even in a float64 model: exact to float32 rounding, not 1e-9
    limit = 1e-5 * float(terms.y.abs().max())
    assert terms.reconstruction_error() <= limit
    result = alti(model, tokens[None])
    expected = naive.layer_matrix(terms, "l1")
    atol = between_runs(result)
    torch.testing.assert_close(result.contributions[0, LAYER], expected, rtol=0, atol=atol)
    # and the vectors alti decomposed are the model's own: its hook_v, one value per head
    hooked = cache[f"blocks.{LAYER}.attn.hook_v"][0].transpose(0, 1)  # [H, n, d_v] -> [n, H, d_v]
    v = naive_values(model, LAYER, cache[f"blocks.{LAYER}.attn.hook_in"][0].double())
    torch.testing.assert_close(hooked, v, rtol=1e-5, atol=1e-6)


def test_float32_model_matches_naive_float64() -> None:
    model = mla("DeepseekV3ForCausalLM", torch.float32)
    tokens = TOKENS[0]
    terms = naive_layer(model, LAYER, run_cache(model, tokens))
    result = alti(model, tokens[None], dtype=torch.float64)
    torch.testing.assert_close(
        result.contributions[0, LAYER],
        naive.layer_matrix(terms, "l1"),
        rtol=0,
        atol=between_runs(alti(model, tokens[None])),
    )


def test_a_wrong_head_layout_fails_the_exactness_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: `o_proj`'s columns read head-minor instead of head-major."""
    model = mla("DeepseekV3ForCausalLM")
    right = attention._mla_output_weights

    def head_minor(hf: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        W_O, b_O = right(hf)
        H, d_v, d = W_O.shape
        return W_O.reshape(H * d_v, d).reshape(d_v, H, d).transpose(0, 1), b_O

    monkeypatch.setattr(attention, "_mla_output_weights", head_minor)
    with pytest.raises(ReconstructionError):
        alti(model, TOKENS[:1])


def test_the_variants_have_what_they_test() -> None:
    hf = _model(VARIANTS[len(KEYS)], torch.float64).blocks[0].attn.original_component
    assert hf.q_lora_rank is None and hasattr(hf, "q_proj")
    assert hf.kv_a_proj_with_mqa.bias is not None and hf.o_proj.bias is not None


def test_weight_processing_is_detected_without_transformer_lens_errors() -> None:
    info = describe(mla("DeepseekV2ForCausalLM"))
    assert info.weight_processing == {
        "fold_ln": False, "center_writing_weights": False, "fold_value_biases": False,
    }  # fmt: skip
    W_O, b_O = attention.output_weights(mla("DeepseekV2ForCausalLM").blocks[0].attn)
    # v_head_dim 6: not the query/key head width 8, not TransformerLens' d_head 4 (rotary width)
    assert W_O.shape == (4, 6, 32) and b_O is None


def test_per_head_on_mla() -> None:
    model = mla("DeepseekV3ForCausalLM")
    result = alti(model, TOKENS, attention_mask=MASK, per_head=True)
    heads, residual = result.head_contributions, result.residual_contribution
    assert heads is not None and residual is not None
    assert heads.shape == (2, 2, 4, 7, 7)
    real = MASK.bool()[:, None].expand(-1, 2, -1)
    totals = heads.sum(dim=(2, 4)) + residual
    torch.testing.assert_close(totals[real], torch.ones_like(totals[real]), rtol=0, atol=1e-12)
    assert (heads >= 0).all() and (heads.triu(diagonal=1) == 0).all()
    assert torch.equal(alti(model, TOKENS, attention_mask=MASK).contributions, result.contributions)


@pytest.mark.parametrize("key", ["DeepseekV3ForCausalLM", "GlmMoeDsaForCausalLM"])
def test_alti_logit_identity_on_moe_layers(key: str) -> None:
    model = mla(key)
    result = alti_logit(model, TOKENS, torch.tensor([3, 4]), attention_mask=MASK)
    total = result.scores.sum(-1) + sum(result.components.values())
    # HF's RMSNorms compute in float32 even in float64 models (test_logit.py: the same for Llama)
    torch.testing.assert_close(total, result.logit, rtol=0, atol=1e-5)
    with torch.no_grad():
        logits = model(TOKENS, attention_mask=MASK)
    for b, target in enumerate((3, 4)):
        own = logits[b, int(MASK[b].sum()) - 1, target]
        torch.testing.assert_close(result.logit[b], own, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.head_scores.sum(dim=(1, 2)), result.scores)


def test_value_zeroing_zeroes_positions_not_heads() -> None:
    """MLA's hook_v is `[batch, head, pos, d_v]`: zeroing source j must zero its position in every
    head. At the sub-block output the change is `||a_i(j)|| / ||y_i||` (patching.py)."""
    model = mla("DeepseekV3ForCausalLM")
    tokens = TOKENS[:1, :5]
    effect = alti_models.value_zeroing(model, tokens, LAYER)["sub-block"]
    cache = run_cache(model, tokens[0])
    terms = naive_layer(model, LAYER, cache)
    x = cache[f"blocks.{LAYER}.hook_resid_pre"][0].double()
    a = terms.T.clone()  # a_i(j) = T_i(x_j) − δ_ij x_j
    a[range(5), range(5)] -= x
    expected = a.norm(dim=-1) / terms.y.norm(dim=-1)[:, None]
    torch.testing.assert_close(effect, expected, rtol=1e-5, atol=1e-6)


def test_the_bridge_computes_the_hugging_face_model() -> None:
    """TransformerLens reimplements MLA's forward (to fire its hooks): it agrees with Hugging
    Face's own on this config (measured: logits identical on all five keys)."""
    result = alti(mla("DeepseekV3ForCausalLM"), TOKENS, attention_mask=MASK, check_bridge=True)
    assert result.metadata["bridge_check"]["agrees"] is True
