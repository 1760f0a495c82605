"""A deliberately naive, loop-based, float64 reference implementation of ALTI (ALTI_SPEC.md §1-4).

Written from the spec alone, independently of `core.decompose` / `core.measures` (in `alti_lens`),
so that the two implementations can catch each other's mistakes. Readability over speed: explicit
Python loops over query rows `i`, source columns `j` and heads `h`; every `T_i(x_j)` vector is built
on its own. Only one unpadded sequence at a time, TransformerBridge models only.

The model is read with `model.run_with_cache`; which hooks hold what is explicit, per block kind
(established by inspecting the bridge, TransformerLens 4.3):

| kind        | models                   | block output `y` read from           | linearised norm |
|-------------|--------------------------|--------------------------------------|-----------------|
| `pre_norm`  | GPT-2, OPT, Llama        | `blocks.L.hook_resid_mid`            | none            |
| `parallel`  | GPT-NeoX, GPT-J          | `hook_resid_pre + hook_attn_out`     | none            |
| `attn_only` | TL-native attention-only | `blocks.L.hook_resid_post`           | none            |
| `sandwich`  | Gemma-2                  | `blocks.L.hook_resid_mid`            | `ln1_post`      |
| `post_norm` | BERT                     | `blocks.L.hook_attn_out` (= LN1 out) | `ln1`           |
"""

import warnings

import torch
from torch import Tensor

MEASURES = ("l1", "l2", "norm", "attention", "attention_rollout")

# HF architecture name (bridge `cfg.architecture`) -> block kind, spec §2.1-2.3.
BLOCK_KINDS = {
    "GPT2LMHeadModel": "pre_norm",
    "OPTForCausalLM": "pre_norm",
    "LlamaForCausalLM": "pre_norm",
    "GPTNeoXForCausalLM": "parallel",
    "GPTJForCausalLM": "parallel",
    "Gemma2ForCausalLM": "sandwich",
    "BertForMaskedLM": "post_norm",
}


def block_kind(model) -> str:
    arch = model.cfg.architecture
    if arch == "TransformerLensNative":
        return "attn_only" if model.cfg.attn_only else "pre_norm"
    if arch not in BLOCK_KINDS:
        raise NotImplementedError(f"naive reference does not know the block layout of {arch}")
    return BLOCK_KINDS[arch]


class LayerTerms:
    """One attention sub-block of one sequence, decomposed: `y_i = Σ_j T[i, j] + bias[i]`."""

    def __init__(self, T: Tensor, bias: Tensor, y: Tensor, pattern: Tensor, causal: bool):
        self.T = T  # [n, n, d], T[i, j] = T_i(x_j)
        self.bias = bias  # [n, d], the unattributed part of y_i
        self.y = y  # [n, d], the block output read from the model's own hooks
        self.pattern = pattern  # [H, n, n]
        self.causal = causal

    def reconstruction_error(self) -> float:
        return float((self.T.sum(dim=1) + self.bias - self.y).abs().max())


def _f64(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().to(torch.float64).cpu()


def norm_gamma(ln) -> Tensor:
    """The effective `γ` of a bridge norm: Gemma-style norms store `weight = γ − 1`."""
    weight = _f64(ln.weight)
    offset = getattr(ln, "uses_weight_offset", None)  # TransformerLens 4.x
    if offset is None:  # 3.x records it in the config only
        offset = ln.config.rmsnorm_uses_offset
    if offset:
        return 1.0 + weight
    return weight


def linearised_layernorm(u: Tensor, gamma: Tensor, scale: float) -> Tensor:
    """`L_i(u) = γ ⊙ (u − mean(u)) / s_i` (spec §1), the scale frozen at its forward value."""
    return gamma * (u - u.mean()) / scale


def linearised_rmsnorm(u: Tensor, gamma: Tensor, scale: float) -> Tensor:
    """`L_i(u) = γ ⊙ u / s_i` (spec §1)."""
    return gamma * u / scale


def run_cache(model, tokens_1d: Tensor):
    """Run one unpadded sequence through the model and return its activation cache."""
    assert tokens_1d.dim() == 1, "naive reference: one unpadded sequence, shape [pos]"
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens_1d[None].to(model.cfg.device))
    return cache


def read_layers(model, tokens_1d: Tensor, cache=None) -> list[LayerTerms]:
    """Spec §2: build every `T_i(x_j)` of every layer explicitly from the model's hooks."""
    if cache is None:
        cache = run_cache(model, tokens_1d)
    kind = block_kind(model)
    # Known per architecture, not read from the config: the 3.x bridge's BERT config says "causal".
    causal = kind != "post_norm"
    layers = []
    for layer in range(model.cfg.n_layers):
        block = model.blocks[layer]
        name = f"blocks.{layer}"
        x = _f64(cache[f"{name}.hook_resid_pre"][0])  # [n, d]
        pattern = _f64(cache[f"{name}.attn.hook_pattern"][0])  # [H, n, n]
        v = _f64(cache[f"{name}.attn.hook_v"][0])  # [n, H_kv, d_head]
        W_O = _f64(block.attn.W_O)  # [H, d_head, d]
        b_O = _f64(block.attn.b_O)
        n, d = x.shape
        n_heads, n_kv = W_O.shape[0], v.shape[1]
        assert pattern.shape == (n_heads, n, n) and n_heads % n_kv == 0
        group = n_heads // n_kv  # GQA: query head h uses kv head h // group
        if b_O is None:
            b_O = torch.zeros(d, dtype=torch.float64)

        # a_i(j) = Σ_h A^h_ij · v^h_j W_O^h  (spec §1)
        a = torch.zeros(n, n, d, dtype=torch.float64)
        for i in range(n):
            for j in range(n):
                for h in range(n_heads):
                    a[i, j] += pattern[h, i, j] * (v[j, h // group] @ W_O[h])

        T = torch.zeros(n, n, d, dtype=torch.float64)
        bias = torch.zeros(n, d, dtype=torch.float64)
        if kind in ("pre_norm", "parallel", "attn_only"):
            # §2.1 / §2.3: T_i(x_j) = a_i(j) + δ_ij x_j, bias_i = b_O
            for i in range(n):
                for j in range(n):
                    T[i, j] = a[i, j] + (x[j] if i == j else 0.0)
                bias[i] = b_O
            if kind == "pre_norm":
                y = _f64(cache[f"{name}.hook_resid_mid"][0])
            elif kind == "parallel":  # virtual y = x + attn_out (no resid_mid on parallel blocks)
                y = x + _f64(cache[f"{name}.hook_attn_out"][0])
            else:  # attention-only: the block output is x + attn_out
                y = _f64(cache[f"{name}.hook_resid_post"][0])
        elif kind == "sandwich":
            # §2.3: T_i(x_j) = P_i(a_i(j)) + δ_ij x_j, bias_i = P_i(b_O) + β
            ln = block.ln1_post
            gamma, beta = norm_gamma(ln), _f64(getattr(ln, "bias", None))
            scale = _f64(cache[f"{name}.ln1_post.hook_scale"][0, :, 0])  # [n]
            for i in range(n):
                for j in range(n):
                    T[i, j] = linearised_rmsnorm(a[i, j], gamma, float(scale[i]))
                    if i == j:
                        T[i, j] += x[j]
                bias[i] = linearised_rmsnorm(b_O, gamma, float(scale[i]))
                if beta is not None:
                    bias[i] += beta
            y = _f64(cache[f"{name}.hook_resid_mid"][0])
        elif kind == "post_norm":
            # §2.2: T_i(x_j) = L_i(a_i(j) + δ_ij x_j), bias_i = L_i(b_O) + β;
            # on the bridge, BERT's hook_attn_out is LN1(x + attn) and ln1.hook_scale its scale
            ln = block.ln1
            gamma, beta = norm_gamma(ln), _f64(ln.bias)
            scale = _f64(cache[f"{name}.ln1.hook_scale"][0, :, 0])  # [n]
            for i in range(n):
                for j in range(n):
                    u = a[i, j] + (x[j] if i == j else 0.0)
                    T[i, j] = linearised_layernorm(u, gamma, float(scale[i]))
                bias[i] = linearised_layernorm(b_O, gamma, float(scale[i])) + beta
            y = _f64(cache[f"{name}.hook_attn_out"][0])
        else:
            raise AssertionError(kind)
        layers.append(LayerTerms(T, bias, y, pattern, causal))
    return layers


def layer_matrix(terms: LayerTerms, measure: str) -> Tensor:
    """Spec §3: the `[n, n]` contribution matrix of one layer for one measure."""
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}")
    n = terms.T.shape[0]
    c = torch.zeros(n, n, dtype=torch.float64)  # unnormalised scores c_ij
    for i in range(n):
        y_i = terms.y[i]
        for j in range(n):
            if terms.causal and j > i:
                continue  # masked source: exactly 0
            t = terms.T[i, j]
            if measure == "l1":  # ALTI: c_ij = max(0, ||y_i||_1 − ||y_i − T_i(x_j)||_1)
                c[i, j] = max(0.0, float(y_i.abs().sum() - (y_i - t).abs().sum()))
            elif measure == "l2":  # the same with the L2 norm
                c[i, j] = max(0.0, float(y_i.norm(p=2) - (y_i - t).norm(p=2)))
            elif measure == "norm":  # Kobayashi: ||T_i(x_j)||_2
                c[i, j] = float(t.norm(p=2))
            elif measure == "attention":  # head-mean attention, no residual
                c[i, j] = terms.pattern[:, i, j].mean()
            else:  # "attention_rollout": Abnar & Zuidema, 0.5·Ā + 0.5·I
                c[i, j] = 0.5 * terms.pattern[:, i, j].mean() + (0.5 if i == j else 0.0)

    # C_ij = c_ij / Σ_k c_ik for every measure (the shared interface: rows sum to 1). For the
    # attention measures this is a no-op up to rounding, except where the model's softmax ran in
    # float32 (HF Llama/OPT/Gemma eager attention): there rows of A sum to 1 only within ~1e-7.
    C = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        total = c[i].sum()
        if total == 0:
            warnings.warn(
                f"naive reference: row {i} has zero total contribution; mass on self",
                stacklevel=2,
            )
            C[i, i] = 1.0
        else:
            for j in range(n):
                C[i, j] = c[i, j] / total
    return C


def rollout(contributions: Tensor) -> Tensor:
    """Spec §4: `R^1 = C^1`, `R^l = C^l · R^{l−1}`, written out as sums."""
    n_layers, n, _ = contributions.shape
    R = torch.zeros_like(contributions)
    R[0] = contributions[0]
    for layer in range(1, n_layers):
        for i in range(n):
            for k in range(n):
                R[layer, i, k] = sum(
                    contributions[layer, i, j] * R[layer - 1, j, k] for j in range(n)
                )
    return R


def exactness_rtol(model) -> float:
    """Spec §2.5 relative tolerance of the decomposition for a float64 model.

    1e-9, except Gemma-2: HF's Gemma RMSNorm runs in float32 even in a float64 model, so the
    real `y` (after `ln1_post`) differs from the float64 linearisation by ~1e-7 relative.
    """
    return 1e-5 if block_kind(model) == "sandwich" else 1e-9


def naive_terms(model, tokens_1d: Tensor, cache=None) -> list[LayerTerms]:
    """`read_layers`, then check every layer against the model's own output (spec §2.5,
    `max|Δ| ≤ rtol · max|y|`): `AssertionError` if the decomposition is not exact."""
    layers = read_layers(model, tokens_1d, cache)
    rtol = exactness_rtol(model)
    for layer, terms in enumerate(layers):
        error, limit = terms.reconstruction_error(), rtol * float(terms.y.abs().max())
        assert error <= limit, f"naive: layer {layer} misses y by {error:.3g} > {limit:.3g}"
    return layers


def naive_alti(
    model, tokens_1d: Tensor, measure: str = "l1", *, terms: list[LayerTerms] | None = None
) -> tuple[Tensor, Tensor]:
    """Contributions `C [L, n, n]` and rollout `R [L, n, n]` (float64) of one unpadded sequence.

    Convert the model to float64 first. `terms` (optional): the `naive_terms` of `tokens_1d`,
    to reuse one decomposition for several measures.
    """
    if terms is None:
        terms = naive_terms(model, tokens_1d)
    C = torch.stack([layer_matrix(layer_terms, measure) for layer_terms in terms])
    return C, rollout(C)
