"""Post-norm decoders (OPT-350m layout, GPT-1), Gemma 4, gated attention output (Laguna, AFMoE).

- post-norm decoder blocks: `y_i = LN1(x_i + attn_i)` (spec §2.2), causal; ALTI-Logit carries the
  residual stream through every block's LN1 and LN2 at their real scales (spec §5);
- Gemma 4: sandwich norms without `hook_scale` (the scale is recomputed from the norm's input),
  values after `v_norm`, KV sharing (a layer attends with another layer's values), wider heads on
  global layers, `layer_scalar`;
- Laguna's per-head output gate folds into the pattern; AFMoE's element-wise gate is refused.

Checked against the model's own outputs (the exactness check and the logit identity), against an
independent naive float64 computation (`naive_post_norm_terms`, `naive_logit_scores`), and by
invariants (rows sum to 1, causal zeros, a padded batch equals single runs).
"""

import functools
import warnings

import naive
import pytest
import torch
from conftest import between_runs
from models import D_VOCAB, N_CTX, _bridge_from_hf

from alti_lens import UnsupportedModelError, alti, alti_logit
from alti_lens.core.logit import later_scales, residual_directions
from tests import architectures

TEXTS = ["the cat sat on the mat and it was very small", "a big red dog ran", "the tree"]
F32_F64 = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])


@functools.cache
def opt_post_norm(dtype: torch.dtype = torch.float64):
    """OPT-350m's layout: LayerNorm after each residual add, no final norm, and the residual
    projected down (`project_out`, d_model 32 → 16) before the unembedding."""
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(0)
    cfg = OPTConfig(
        hidden_size=32, ffn_dim=64, num_hidden_layers=3, num_attention_heads=4,
        vocab_size=D_VOCAB, max_position_embeddings=N_CTX, word_embed_proj_dim=16,
        do_layer_norm_before=False,
    )  # fmt: skip
    return _bridge_from_hf(OPTForCausalLM(cfg), "OPTForCausalLM", 0, dtype)


@functools.cache
def gpt1(dtype: torch.dtype = torch.float64):
    """OpenAI GPT (post-LN, no final norm; its bridge never fires `hook_resid_post`)."""
    return architectures.build("OpenAIGPTLMHeadModel", dtype=dtype)


@functools.cache
def gemma4(dtype: torch.dtype = torch.float64):
    """Gemma 4 text: sliding (head_dim 8) and global (head_dim 16) layers; layers 2 and 3 reuse
    layers 0's and 1's keys and values (KV sharing); per-layer inputs (PLE)."""
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = Gemma4TextConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, global_head_dim=16, vocab_size=D_VOCAB,
            vocab_size_per_layer_input=D_VOCAB, hidden_size_per_layer_input=8,
            max_position_embeddings=64, sliding_window=4, num_kv_shared_layers=2,
            layer_types=["sliding_attention", "full_attention"] * 2,
            pad_token_id=1, bos_token_id=0, eos_token_id=2, tie_word_embeddings=False,
            use_cache=False,
        )  # fmt: skip
        return _bridge_from_hf(Gemma4ForCausalLM(cfg), "Gemma4ForCausalLM", 0, dtype)


@functools.cache
def laguna():
    """Laguna: a softplus output gate per head and query row (its MoE runs in float32 only)."""
    return architectures.build("LagunaForCausalLM", dtype=torch.float32)


BUILDERS = {"opt-postLN": opt_post_norm, "gpt1-postLN": gpt1, "gemma4": gemma4}
KINDS = {"opt-postLN": "post_norm", "gpt1-postLN": "post_norm", "gemma4": "sandwich"}


def assert_invariants(result, kind: str, atol: float) -> None:
    """Rows sum to 1, padded rows and columns and causal positions are exact zeros."""
    C, R, mask = result.contributions, result.rollout, result.attention_mask.bool()
    assert result.metadata["block_kinds"] == [kind] * result.n_layers
    real_rows = mask[:, None, :].expand(-1, result.n_layers, -1)
    for M in (C, R):
        assert (M >= 0).all() and not M.isnan().any()
        sums = M.sum(-1)[real_rows]
        torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=atol)
        assert (M[~real_rows] == 0).all()
        assert (M.triu(1) == 0).all()  # causal zeros, exactly


def assert_batch_equals_single(model, batch) -> None:
    for b, text in enumerate(TEXTS):
        single = alti(model, text)
        n = single.tokens.shape[1]
        atol = between_runs(batch, single)
        torch.testing.assert_close(
            batch.contributions[b, :, :n, :n], single.contributions[0], rtol=0, atol=atol
        )


@pytest.mark.parametrize("name", list(BUILDERS))
@F32_F64
def test_exact_causal_and_batch_equals_single(name: str, dtype: torch.dtype) -> None:
    model = BUILDERS[name](dtype)
    if name == "gemma4" and dtype == torch.float64:
        # The float64 model itself goes NaN on padded batches (a padded row with no real key in
        # its sliding window gets a NaN softmax, whose values the next layer's real rows read);
        # alti says so (NonFiniteActivationError). Unpadded runs only.
        for text in TEXTS:
            result = alti(model, text)
            assert float(result.reconstruction_error.max()) <= 5e-6  # its RMSNorms: float32
            assert_invariants(result, KINDS[name], 1e-12)
        return
    result = alti(model, TEXTS)  # check=True: every layer reproduces the model's own output
    limit = 1e-12 if dtype == torch.float64 and name != "gemma4" else 5e-6  # RMSNorm: float32
    assert float(result.reconstruction_error.max()) <= limit
    assert_invariants(result, KINDS[name], 1e-12 if dtype == torch.float64 else 1e-5)
    assert_batch_equals_single(model, result)


CAPTURED = (
    "hook_resid_pre", "attn.hook_pattern", "attn.hook_v", "ln1.hook_scale", "ln1.hook_out",
    "ln2.hook_scale",
)  # fmt: skip


def capture(model, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """The hooks the naive references read, of one unpadded sequence. (Not `run_with_cache`:
    TransformerLens 4.3's OPT bridge flattens LN2's output to 2-D when every hook is attached,
    which breaks the next layer of a post-LN OPT.)"""
    cache: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(tensor: torch.Tensor, hook) -> None:  # an alias's hook.name is its target's
            cache[name] = tensor.detach().clone()

        return hook

    names = [f"blocks.{layer}.{name}" for layer in range(model.cfg.n_layers) for name in CAPTURED]
    with torch.no_grad():
        model.run_with_hooks(tokens[None], fwd_hooks=[(name, keep(name)) for name in names])
    return cache


def naive_post_norm_terms(model, tokens: torch.Tensor) -> list[naive.LayerTerms]:
    """Spec §2.2 written out with loops for a post-LN decoder (float64): `T_i(x_j) =
    L_i(a_i(j) + δ_ij x_j)`, `bias_i = L_i(b_O) + β`, `y_i = LN1(x_i + attn_i)` read from the
    norm's own output, `L_i` the LayerNorm at its real scale `ln1.hook_scale`."""
    cache = capture(model, tokens)
    layers = []
    for layer in range(model.cfg.n_layers):
        name, block = f"blocks.{layer}", model.blocks[layer]
        x = cache[f"{name}.hook_resid_pre"][0].double()
        pattern = cache[f"{name}.attn.hook_pattern"][0].double()
        v = cache[f"{name}.attn.hook_v"][0].double()
        W_O, b_O = block.attn.W_O.detach().double(), block.attn.b_O.detach().double()
        gamma, beta = block.ln1.weight.detach().double(), block.ln1.bias.detach().double()
        scale = cache[f"{name}.ln1.hook_scale"][0, :, 0].double()
        n, d = x.shape
        T = torch.zeros(n, n, d, dtype=torch.float64)
        bias = torch.zeros(n, d, dtype=torch.float64)
        for i in range(n):
            for j in range(n):
                a = sum(pattern[h, i, j] * (v[j, h] @ W_O[h]) for h in range(W_O.shape[0]))
                u = a + (x[j] if i == j else 0.0)
                T[i, j] = naive.linearised_layernorm(u, gamma, float(scale[i]))
            bias[i] = naive.linearised_layernorm(b_O, gamma, float(scale[i])) + beta
        y = cache[f"{name}.ln1.hook_out"][0].double()
        layers.append(naive.LayerTerms(T, bias, y, pattern, causal=True))
    return layers


def test_post_norm_decoder_against_naive_reference() -> None:
    model = opt_post_norm(torch.float64)
    text = TEXTS[1]
    result = alti(model, text)
    terms = naive_post_norm_terms(model, result.tokens[0])
    for layer_terms in terms:
        assert layer_terms.reconstruction_error() <= 1e-12 * float(layer_terms.y.abs().max())
    C = torch.stack([naive.layer_matrix(t, "l1") for t in terms])
    torch.testing.assert_close(result.contributions[0], C, rtol=0, atol=1e-10)
    torch.testing.assert_close(result.rollout[0], naive.rollout(C), rtol=0, atol=1e-10)


def naive_logit_scores(model, tokens: torch.Tensor, target: int) -> torch.Tensor:
    """ALTI-Logit's `Φ(k)` of the last row `t` of a post-LN decoder without a final norm, pushing
    every per-source vector FORWARD through the norms it meets (the block's LN1 and LN2, every
    later block's LN1 and LN2, each linearised at its real scale at row `t`), then through
    `project_out` (where there is one) and the unembedding; rolled out with the naive `R`."""
    cache = capture(model, tokens)
    n_layers, t = model.cfg.n_layers, tokens.shape[0] - 1
    u_w = model.W_U.detach().double()[:, target]
    project = getattr(model, "project_out", None)
    if project is not None:
        u_w = project.weight.detach().double().T @ u_w

    def ln(layer: int, which: str, u: torch.Tensor) -> torch.Tensor:
        norm = getattr(model.blocks[layer], which)
        scale = float(cache[f"blocks.{layer}.{which}.hook_scale"][0, t, 0])
        return naive.linearised_layernorm(u, norm.weight.detach().double(), scale)

    terms = naive_post_norm_terms(model, tokens)
    R = naive.rollout(torch.stack([naive.layer_matrix(x, "l1") for x in terms]))
    n = tokens.shape[0]
    scores = torch.zeros(n, dtype=torch.float64)
    for layer in range(n_layers):
        block = model.blocks[layer]
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0].double()
        v = cache[f"blocks.{layer}.attn.hook_v"][0].double()
        W_O = block.attn.W_O.detach().double()
        delta = torch.zeros(n, dtype=torch.float64)
        for j in range(n):
            a = sum(pattern[h, t, j] * (v[j, h] @ W_O[h]) for h in range(W_O.shape[0]))
            u = ln(layer, "ln2", ln(layer, "ln1", a))
            for later in range(layer + 1, n_layers):
                u = ln(later, "ln2", ln(later, "ln1", u))
            delta[j] = u @ u_w
        scores += delta if layer == 0 else delta @ R[layer - 1]
    return scores


@pytest.mark.parametrize("name", ["opt-postLN", "gpt1-postLN"])
def test_alti_logit_on_post_norm_decoders(name: str) -> None:
    model = BUILDERS[name](torch.float64)
    text, target = TEXTS[0], 5
    result = alti_logit(model, text, target)  # check=True: the logit identity holds
    assert float(result.logit_error.max()) <= 1e-12
    assert result.metadata["block_kinds"] == ["post_norm"] * model.cfg.n_layers
    expected = naive_logit_scores(model, result.tokens[0], target)
    torch.testing.assert_close(result.scores[0], expected, rtol=0, atol=1e-10)


@F32_F64
def test_alti_logit_identity_padded_batch(dtype: torch.dtype) -> None:
    for build in (opt_post_norm, gpt1) + ((gemma4,) if dtype == torch.float32 else ()):
        result = alti_logit(build(dtype), TEXTS, "the", foil="a")
        assert result.logit_error.shape == (3,)  # the identity is checked inside (check=True)


def test_gemma4_layer_scalar_is_a_residual_path() -> None:
    """Gemma 4 multiplies each layer's whole output by `layer_scalar`. Scaling the LAST layer's
    output leaves the logits unchanged (the final RMSNorm undoes it, up to its eps), so every
    score must stay; a decomposition that reads the last layer along the unscaled direction moves
    ~0.1 of logit from the tokens into the MLP part."""
    model = gemma4(torch.float64)
    before = alti_logit(model, TEXTS[1], "the")
    scalar = model.blocks[-1].original_component.layer_scalar
    try:
        with torch.no_grad():
            scalar.fill_(3.0)
        after = alti_logit(model, TEXTS[1], "the")
    finally:
        with torch.no_grad():
            scalar.fill_(1.0)
    torch.testing.assert_close(after.scores, before.scores, rtol=0, atol=1e-7)
    for key, value in before.components.items():
        torch.testing.assert_close(after.components[key], value, rtol=0, atol=1e-7)


def test_laguna_per_head_gate_is_exact() -> None:
    # softplus(g_proj(x_i)) scales head h's output at row i: without folding it into the pattern
    # the decomposition misses the block's output by ~0.27
    model = laguna()
    result = alti(model, TEXTS)
    assert float(result.reconstruction_error.max()) <= 5e-6
    assert_invariants(result, "pre_norm", 1e-5)
    assert_batch_equals_single(model, result)


def test_elementwise_output_gate_is_refused() -> None:
    model = architectures.build("AfmoeForCausalLM")
    with pytest.raises(UnsupportedModelError, match=r"AfmoeAttention.*element-wise.*query row"):
        alti(model, TEXTS[0])


def test_later_scales_and_residual_directions() -> None:
    inverse = torch.tensor([[2.0, 3.0, 5.0]], dtype=torch.float64)
    assert later_scales(inverse).tolist() == [[15.0, 5.0, 1.0]]
    g = torch.tensor([[1.0, 2.0, 6.0]], dtype=torch.float64)
    gamma = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    first, last = residual_directions(g, [(gamma, True, None, False)] * 2)
    assert torch.equal(last, g)
    # back through LN2 (no γ, no centring: identity), then LN1: centre(γ ⊙ g)
    torch.testing.assert_close(first, gamma * g - (gamma * g).mean(), rtol=0, atol=1e-15)


def test_gpt1_padded_batches() -> None:
    """GPT-1's bridge drops the causal mask whenever an attention mask is passed, so right-padded
    batches run without one (exact: causal rows never see the padding after them) and other
    padding is refused."""
    from alti_lens import readout

    model = gpt1(torch.float64)
    info = readout.describe(model)
    tokens, mask = readout.tokenize(model, TEXTS)
    batch = readout.next_token_logits(model, info, tokens, mask)
    for b in range(len(TEXTS)):
        n = int(mask[b].sum())
        one = readout.next_token_logits(model, info, tokens[b : b + 1, :n], mask[b : b + 1, :n])
        torch.testing.assert_close(batch[b], one[0], rtol=0, atol=1e-5)  # float32 logits
    left = torch.stack([row.roll(int((row == 0).sum())) for row in mask])
    with pytest.raises(UnsupportedModelError, match="pad on the right"):
        alti(model, tokens, attention_mask=left)


def test_gpt1_public_forwards_follow_the_same_mask_rule() -> None:
    """`alti_lens.models.logits` runs GPT-1 as `alti` does: a right-padded batch (or an all-ones
    mask, which its bridge also mishandles) equals single unmasked runs. `last_hidden` cannot read
    GPT-1's block output (its `hook_resid_post` never fires) and says so."""
    from alti_lens import models

    model = gpt1(torch.float64)
    tokens, mask = models.tokenize(model, TEXTS)
    logits = models.logits(model, tokens, mask)
    for b in range(len(TEXTS)):
        n = int(mask[b].sum())
        one, ones = tokens[b : b + 1, :n], torch.ones(1, n, dtype=torch.long)
        torch.testing.assert_close(logits[b, :n], models.logits(model, one)[0], rtol=0, atol=1e-9)
        torch.testing.assert_close(logits[b, :n], models.logits(model, one, ones)[0])
    with pytest.raises(UnsupportedModelError, match="hook_resid_post' did not fire"):
        models.last_hidden(model, tokens, mask)
