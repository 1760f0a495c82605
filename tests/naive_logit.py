"""A deliberately naive, loop-based, float64 reference implementation of ALTI-Logit (spec §5).

Written from ALTI_SPEC.md alone, independently of `alti_lens` (it reuses only the naive ALTI
reference in `tests/naive.py` for the per-layer matrices `C^l` and the rollout `R^l`). One
unpadded sequence, one output position `t`, one target token `w`; TransformerBridge models.

    Δ^l(j)  = U_w · Lf_t(a^l_t(j))            a^l_t(j) = Σ_h A^h_tj v^h_j W_O^h   (§1)
    Φ(k)    = Σ_l Σ_j Δ^l(j) · M^{l−1}[j, k]   M^0 = I, M^l = R^l                   (§5)

with `Lf_t` the final norm linearised at row `t` (scale frozen at `ln_final.hook_scale[t]`). In a
sandwich-norm block (Gemma-2) the attention output passes `ln1_post` before the residual add, so
`a^l_t(j)` is that norm linearised at row `t` applied to `Σ_h A v W_O` (§2.3).

The pieces that are not token paths, each a logit (a number):
- embedding:         U_w · Lf_t(x^1_t)          (x^1 = `blocks.0.hook_resid_pre`)
- attention_biases:  Σ_l U_w · Lf_t(bias^l_t)   (b_O, or P_t(b_O) + β of a sandwich norm)
- mlps:              Σ_l U_w · Lf_t(resid_post^l_t − y^l_t)   (y^l the attention block output)
- final_norm_bias:   U_w · β_final
- unembedding_bias:  b_U[w]
and `Σ_k Φ(k) + Σ components` is the model's own logit (before Gemma-2's logit soft-capping).
"""

import math
from dataclasses import dataclass

import naive
import torch
from torch import Tensor

COMPONENTS = ("embedding", "attention_biases", "mlps", "final_norm_bias", "unembedding_bias")
LN_TYPES = ("LN", "LNPre")
RMS_TYPES = ("RMS", "RMSPre")


@dataclass
class LogitReference:
    """Brute-force ALTI-Logit of one position of one sequence (all float64)."""

    scores: Tensor  # [n]: Φ(k)
    head_scores: Tensor  # [L, H, n]: the part of Φ(k) routed through head h of layer l
    components: dict[str, float]  # COMPONENTS
    layer_components: dict[str, Tensor]  # attention_biases, mlps: [L]
    logit: float  # the model's own logit (raw, i.e. before soft-capping where there is one)
    capped_logit: float  # the model's output logit as returned (soft-capped on Gemma-2)
    position: int  # t
    rollout: Tensor  # [L, n, n]: the naive R^l the scores were rolled through

    def total(self) -> float:
        """`Σ_k Φ(k) + Σ components`: should be the model's raw logit."""
        return float(self.scores.sum()) + sum(self.components.values())


def _f64(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().to(torch.float64).cpu()


def linearised_norm(u: Tensor, norm_type: str, gamma: Tensor | None, scale: float) -> Tensor:
    """A norm at one row with its scale frozen (spec §1), without its `β`:
    LayerNorm `γ ⊙ (u − mean(u)) / s`, RMSNorm `γ ⊙ u / s`."""
    if norm_type in LN_TYPES:
        out = (u - u.mean()) / scale
    elif norm_type in RMS_TYPES:
        out = u / scale
    else:
        raise AssertionError(f"unknown normalization type {norm_type!r}")
    return out if gamma is None else gamma * out


def unsoftcap(logit: float, cap: float | None) -> float:
    """Gemma-2 returns `cap · tanh(raw / cap)`; the decomposition adds up to `raw`."""
    if cap is None or cap <= 0:
        return logit
    return cap * math.atanh(logit / cap)


def naive_alti_logit(
    model,
    tokens_1d: Tensor,
    target: int,
    *,
    position: int = -1,
    terms: list[naive.LayerTerms] | None = None,
    final_scale: bool = True,
    rollout_lag: int = 1,
) -> LogitReference:
    """ALTI-Logit of `target` at `position` (negative: counted from the end) of one unpadded
    sequence, by explicit loops over layers, heads, sources and tokens. The model must be float64.

    `terms`: optional `naive.naive_terms` of the same tokens (reused for `C^l`, `R^l`).
    `final_scale` and `rollout_lag` exist only to build deliberately wrong variants for the
    "the comparison has teeth" tests: `final_scale=False` forgets the final norm's `1 / s_t`;
    `rollout_lag=0` rolls layer `l`'s contributions through `R^l` instead of `R^{l−1}`.
    """
    assert tokens_1d.dim() == 1, "one unpadded sequence, shape [pos]"
    n = tokens_1d.shape[0]
    t = position % n
    cache = naive.run_cache(model, tokens_1d)
    if terms is None:
        terms = naive.naive_terms(model, tokens_1d, cache)
    _, R = naive.naive_alti(model, tokens_1d, "l1", terms=terms)
    kind = naive.block_kind(model)
    assert kind != "post_norm", "ALTI-Logit is for decoder-only models"
    norm_type = model.cfg.normalization_type
    n_layers = model.cfg.n_layers

    # --- the readout: U_w, b_U[w], and the final norm linearised at row t ------------------
    W_U = _f64(model.W_U)  # [d, vocab]
    U_w = W_U[:, target]
    b_U = _f64(getattr(model, "b_U", None))
    ln_final = getattr(model, "ln_final", None)
    if ln_final is None or "ln_final.hook_scale" not in cache:
        assert norm_type is None, "a final norm without a recorded scale"

        def Lf(u: Tensor) -> Tensor:  # no final norm: the identity
            return u

        beta_final = None
    else:
        gamma_final = naive.norm_gamma(ln_final)
        beta_final = _f64(getattr(ln_final, "bias", None))
        s_t = float(cache["ln_final.hook_scale"][0, t, 0]) if final_scale else 1.0

        def Lf(u: Tensor) -> Tensor:
            return linearised_norm(u, norm_type, gamma_final, s_t)

    def logit_of(u: Tensor) -> float:
        """`U_w · Lf_t(u)` for one residual-stream vector `u`."""
        return float(U_w @ Lf(u))

    # --- token paths, layer by layer -------------------------------------------------------
    d = W_U.shape[0]
    n_heads = model.cfg.n_heads
    head_scores = torch.zeros(n_layers, n_heads, n, dtype=torch.float64)
    layer_bias = torch.zeros(n_layers, dtype=torch.float64)
    layer_mlp = torch.zeros(n_layers, dtype=torch.float64)
    identity = torch.eye(n, dtype=torch.float64)
    for layer in range(n_layers):
        block = model.blocks[layer]
        name = f"blocks.{layer}"
        x = _f64(cache[f"{name}.hook_resid_pre"][0])  # [n, d]
        pattern = _f64(cache[f"{name}.attn.hook_pattern"][0])  # [H, n, n]
        v = _f64(cache[f"{name}.attn.hook_v"][0])  # [n, H_kv, d_head]
        W_O = _f64(block.attn.W_O)  # [H, d_head, d]
        b_O = _f64(block.attn.b_O)
        if b_O is None:
            b_O = torch.zeros(d, dtype=torch.float64)
        group = n_heads // v.shape[1]  # GQA: query head h reads kv head h // group

        if kind == "sandwich":  # ln1_post, linearised at row t: P_t(u) = γ ⊙ u / s_t
            post = block.ln1_post
            gamma_post = naive.norm_gamma(post)
            beta_post = _f64(getattr(post, "bias", None))
            s_post = float(cache[f"{name}.ln1_post.hook_scale"][0, t, 0])

            def P(u: Tensor, gamma_post=gamma_post, s_post=s_post) -> Tensor:
                return linearised_norm(u, norm_type, gamma_post, s_post)

            bias_t = P(b_O) + (beta_post if beta_post is not None else 0.0)
        else:

            def P(u: Tensor) -> Tensor:
                return u

            bias_t = b_O

        # M^{l−1} (1-based layers): the identity before the first layer
        source = layer - rollout_lag
        M = identity if source < 0 else R[source]

        attn_t = torch.zeros(d, dtype=torch.float64)  # Σ_j a^l_t(j), for a self-check
        for h in range(n_heads):
            for j in range(n):
                a_thj = P(pattern[h, t, j] * (v[j, h // group] @ W_O[h]))  # a^{l,h}_t(j)
                attn_t += a_thj
                delta = logit_of(a_thj)  # Δ^{l,h}(j)
                for k in range(n):
                    head_scores[layer, h, k] += delta * M[j, k]
        # the decomposition of this block's row t is the naive ALTI one: y_t = x_t + attn + bias
        y_t = terms[layer].y[t]
        rebuilt = x[t] + attn_t + bias_t
        assert float((rebuilt - y_t).abs().max()) <= 1e-5 * float(y_t.abs().max())

        layer_bias[layer] = logit_of(bias_t)
        # the MLP (and anything else token-wise after the attention sub-block)
        resid_post = _f64(cache[f"{name}.hook_resid_post"][0])
        layer_mlp[layer] = logit_of(resid_post[t] - y_t)

    scores = torch.zeros(n, dtype=torch.float64)
    for k in range(n):
        scores[k] = head_scores[:, :, k].sum()

    embedding = logit_of(_f64(cache["blocks.0.hook_resid_pre"][0, t]))
    components = {
        "embedding": embedding,
        "attention_biases": float(layer_bias.sum()),
        "mlps": float(layer_mlp.sum()),
        "final_norm_bias": 0.0 if beta_final is None else float(U_w @ beta_final),
        "unembedding_bias": 0.0 if b_U is None else float(b_U[target]),
    }

    with torch.no_grad():
        logits = model(tokens_1d[None].to(model.cfg.device))
    capped = float(logits[0, t, target].to(torch.float64))
    cap = getattr(model.cfg, "output_logits_soft_cap", None)
    return LogitReference(
        scores=scores,
        head_scores=head_scores,
        components=components,
        layer_components={"attention_biases": layer_bias, "mlps": layer_mlp},
        logit=unsoftcap(capped, cap),
        capped_logit=capped,
        position=t,
        rollout=R,
    )


def identity_rtol(model) -> float:
    """How closely `Σ_k Φ(k) + components` must meet the model's logit, relative to the largest
    term: 1e-9 in float64, except where HF computes RMSNorms in float32 even for a float64 model
    (Llama's final norm, Gemma-2's norms), which makes the frozen-scale linearisation exact only
    to ~1e-7."""
    return 1e-5 if model.cfg.normalization_type in RMS_TYPES else 1e-9
