"""A deliberately naive, loop-based, float64 reference of the information-flow graph
(ALTI_SPEC.md §8, on §1–§3), to test `alti_lens.flow_graph` against.

Written from the spec, independently of `alti_lens` (`flow_api`, `core.flow`, `core.heads`,
`core.decompose`, `readout.mlp`): every part of every state is built on its own with explicit
Python loops over rows `i`, heads `h`, sources `j` and neurons `k`, then scored with the §3
measure and normalised. One unpadded sequence at a time, read with `model.run_with_cache`.
Readability over speed: the models are tiny.

Which hooks hold what, per backend and block kind (TransformerLens 4.3 bridge; 3.x
`HookedTransformer` and `HookedEncoder`):

- attention step, `y`: pre-norm and sandwich `hook_resid_mid`; post-norm LN1's output (bridge
  `ln1.hook_out`, encoder `ln1.w · ln1.hook_normalized + ln1.b`); attention-only and the
  parallel one step `hook_resid_post`. Parts: the residual `x_i` (post-norm `L_i(x_i)`) and every
  `z^h_ij` (post-norm `L_i(z)`, sandwich `P_i(z)` with `ln1_post`); parallel also `hook_mlp_out`.
- MLP step, `y`: `hook_resid_post` (post-norm: LN2's output, bridge `ln2.hook_out`, encoder
  `hook_normalized_resid_post`). Parts: pre-norm `hook_mlp_out` and `resid_mid` (the attention
  step's `y`); sandwich `P2_i(m_i)` (`m`: the MLP's own output before `ln2_post`) and
  `resid_mid`; post-norm `L2_i(hook_mlp_out)` and `L2_i(resid_mid)`.

Neurons: `act_ik` is the input of the MLP's output projection (bridge: `mlp.out.hook_in`, the HF
`Linear`/`Conv1D` itself; 3.x: `mlp.hook_post`), `W_out[k]` that projection's row `k`
(bridge: read from the Hugging Face module, not from TransformerLens' `W_out` view).
"""

import warnings
from dataclasses import dataclass, field

import naive
import torch
from torch import Tensor

F64 = torch.float64
MEASURES = ("l1", "l2", "norm")


@dataclass
class NaiveFlow:
    """One sequence's flow graph: the same layout as `FlowGraph` without the batch axis."""

    attention: Tensor  # [L, H, n, n]
    attention_residual: Tensor  # [L, n]
    mlp: Tensor  # [L, n]  (NaN: no MLP step / part)
    mlp_residual: Tensor  # [L, n]  (NaN: parallel or attention-only)
    neurons: Tensor | None  # [L, n, d_mlp]
    steps: list[str]
    errors: list[dict[str, float]] = field(default_factory=list)  # per layer, per step


# --- the model: backend, block kind, hooks and weights ------------------------------------------


def backend(model) -> str:
    """`"bridge"` (TransformerBridge), `"ht"` (3.x HookedTransformer) or `"encoder"`."""
    name = type(model).__name__
    if name == "HookedEncoder":
        return "encoder"
    if name == "HookedTransformer":
        return "ht"
    return "bridge"


def flow_kind(model) -> str:
    """The block kind of spec §2 (`naive.BLOCK_KINDS` for bridges, the config for 3.x)."""
    which = backend(model)
    if which == "encoder":
        return "post_norm"
    if which == "bridge":
        return naive.block_kind(model)
    cfg = model.cfg
    if cfg.attn_only:
        return "attn_only"
    if cfg.parallel_attn_mlp:
        return "parallel"
    return "sandwich" if cfg.use_normalization_before_and_after else "pre_norm"


def exactness_rtol(model) -> float:
    """The naive decomposition's own exactness tolerance (spec §2.5): float64 models 1e-9, but the
    bridge's Gemma-2 norms run in float32 (HF) even in float64 models."""
    if backend(model) == "bridge":
        return naive.exactness_rtol(model)
    return 1e-9


def f64(t) -> Tensor | None:
    return None if t is None else t.detach().to(F64).cpu()


class Norm:
    """A norm of one block, linearised per row at its real scale (spec §1):
    `L_i(u) = γ ⊙ centre(u) / s_i` (LayerNorm) or `γ ⊙ u / s_i` (RMSNorm), bias `β` apart."""

    def __init__(self, module, scale: Tensor, centred: bool, bridge: bool):
        if bridge:  # a bridge norm component (Gemma's weight offset included: γ = 1 + weight)
            gamma, beta = naive.norm_gamma(module), f64(getattr(module, "bias", None))
        else:  # 3.x LayerNorm / RMSNorm: w, b
            gamma, beta = f64(module.w), f64(getattr(module, "b", None))
        self.gamma, self.beta, self.scale, self.centred = gamma, beta, scale, centred

    def linear(self, u: Tensor, i: int) -> Tensor:
        if self.centred:
            return naive.linearised_layernorm(u, self.gamma, float(self.scale[i]))
        return naive.linearised_rmsnorm(u, self.gamma, float(self.scale[i]))

    def bias(self, d: int) -> Tensor:
        return torch.zeros(d, dtype=F64) if self.beta is None else self.beta


def _centred(model, module) -> bool:
    """LayerNorm (centres) or RMSNorm."""
    if backend(model) != "bridge":
        return model.cfg.normalization_type in ("LN", "LNPre") or backend(model) == "encoder"
    hf = getattr(module, "original_component", module)
    return "rms" not in type(hf).__name__.lower()


def _norm(model, cache, layer: int, name: str) -> Norm:
    block = model.blocks[layer]
    module = getattr(block, name)
    scale = f64(cache[f"blocks.{layer}.{name}.hook_scale"][0, :, 0])
    return Norm(module, scale, _centred(model, module), backend(model) == "bridge")


def _out_projection(model, layer: int) -> tuple[Tensor, Tensor]:
    """`W_out [d_mlp, d_model]` and `b_out` of layer `layer`'s MLP."""
    mlp = model.blocks[layer].mlp
    if backend(model) != "bridge":
        b_out = f64(getattr(mlp, "b_out", None))
        W_out = f64(mlp.W_out)
    else:
        proj = mlp.out.original_component  # the HF Linear (weight [out, in]) or Conv1D ([in, out])
        weight = f64(proj.weight)
        W_out = weight if type(proj).__name__ == "Conv1D" else weight.T
        b_out = f64(getattr(proj, "bias", None))
    if b_out is None:
        b_out = torch.zeros(W_out.shape[1], dtype=F64)
    return W_out, b_out


def _acts(model, cache, layer: int) -> Tensor:
    hook = "mlp.out.hook_in" if backend(model) == "bridge" else "mlp.hook_post"
    return f64(cache[f"blocks.{layer}.{hook}"][0])


# --- the §3 measure and the normalisation --------------------------------------------------------


def score(z: Tensor, y: Tensor, measure: str) -> float:
    """`c(z; y)`: `max(0, ||y|| − ||y − z||)` (L1 or L2), or Kobayashi's `||z||_2`."""
    if measure == "l1":
        return max(0.0, float(y.abs().sum() - (y - z).abs().sum()))
    if measure == "l2":
        return max(0.0, float(y.norm(p=2) - (y - z).norm(p=2)))
    if measure == "norm":
        return float(z.norm(p=2))
    raise ValueError(f"naive flow: unknown measure {measure!r}")


def _check(name: str, total: Tensor, y: Tensor, rtol: float) -> float:
    error, limit = float((total - y).abs().max()), rtol * float(y.abs().max())
    assert error <= limit, f"naive flow: {name} misses y by {error:.3g} > {limit:.3g}"
    return error


# --- one layer ------------------------------------------------------------------------------------


def _head_parts(model, cache, layer: int) -> Tensor:
    """`z[h, i, j] = A^h_ij · v^h_j W_O^h` (not yet linearised), `[H, n, n, d]`."""
    name = f"blocks.{layer}"
    pattern = f64(cache[f"{name}.attn.hook_pattern"][0])  # [H, n, n]
    v = f64(cache[f"{name}.attn.hook_v"][0])  # [n, H_kv, d_head]
    W_O = f64(model.blocks[layer].attn.W_O)  # [H, d_head, d]
    H, n, _ = pattern.shape
    group = H // v.shape[1]  # GQA: query head h reads kv head h // group
    z = torch.zeros(H, n, n, W_O.shape[-1], dtype=F64)
    for h in range(H):
        for i in range(n):
            for j in range(n):
                z[h, i, j] = pattern[h, i, j] * (v[j, h // group] @ W_O[h])
    return z


def _b_O(model, layer: int, d: int) -> Tensor:
    b_O = f64(getattr(model.blocks[layer].attn, "b_O", None))
    return torch.zeros(d, dtype=F64) if b_O is None else b_O


def _attention_state(model, cache, layer: int, kind: str):
    """The attention step's (or the one step's) `y`, and the map and bias of its parts."""
    name = f"blocks.{layer}"
    x = f64(cache[f"{name}.hook_resid_pre"][0])
    d = x.shape[1]
    b_O = _b_O(model, layer, d)
    identity = lambda u, i: u  # noqa: E731
    if kind == "pre_norm":
        return x, f64(cache[f"{name}.hook_resid_mid"][0]), identity, lambda i: b_O
    if kind in ("parallel", "attn_only"):
        return x, f64(cache[f"{name}.hook_resid_post"][0]), identity, lambda i: b_O
    if kind == "sandwich":  # y_i = x_i + P_i(attn_out_i): residual unmapped, heads through P_i
        P = _norm(model, cache, layer, "ln1_post")
        bias = lambda i: P.linear(b_O, i) + P.bias(d)  # noqa: E731
        return x, f64(cache[f"{name}.hook_resid_mid"][0]), P.linear, bias
    assert kind == "post_norm", kind
    L1 = _norm(model, cache, layer, "ln1")
    if backend(model) == "encoder":
        ln1 = model.blocks[layer].ln1
        y = f64(ln1.w) * f64(cache[f"{name}.ln1.hook_normalized"][0]) + f64(ln1.b)
    else:
        y = f64(cache[f"{name}.ln1.hook_out"][0])
    return x, y, L1.linear, lambda i: L1.linear(b_O, i) + L1.bias(d)


def _normalise(scores: list[float]) -> list[float] | None:
    total = sum(scores)
    return None if total == 0 else [s / total for s in scores]


def _attention_step(model, cache, layer: int, kind: str, measure: str, out: NaiveFlow) -> float:
    """Heads per source, the residual and (parallel) the MLP output as parts of `y_i`."""
    x, y, mapped, bias = _attention_state(model, cache, layer, kind)
    z = _head_parts(model, cache, layer)
    H, n = z.shape[0], z.shape[1]
    mlp_out = f64(cache[f"blocks.{layer}.hook_mlp_out"][0]) if kind == "parallel" else None
    residual_mapped = kind == "post_norm"  # sandwich: the residual skips P_i
    error = 0.0
    for i in range(n):
        parts = {(h, j): mapped(z[h, i, j], i) for h in range(H) for j in range(n)}
        residual = mapped(x[i], i) if residual_mapped else x[i]
        total = sum(parts.values()) + residual + bias(i)
        if mlp_out is not None:
            total = total + mlp_out[i]
        rtol = exactness_rtol(model)
        error = max(error, _check(f"layer {layer} attention row {i}", total, y[i], rtol))
        scores = [score(p, y[i], measure) for p in parts.values()]
        scores.append(score(residual, y[i], measure))
        if mlp_out is not None:
            scores.append(score(mlp_out[i], y[i], measure))
        weights = _normalise(scores)
        if weights is None:  # every part scores 0: the residual takes the weight (spec §3, §8)
            warnings.warn(f"naive flow: layer {layer} row {i}: all parts score 0", stacklevel=2)
            weights = [0.0] * len(parts) + [1.0] + ([0.0] if mlp_out is not None else [])
        for (h, j), w in zip(parts, weights, strict=False):
            out.attention[layer, h, i, j] = w
        out.attention_residual[layer, i] = weights[len(parts)]
        if mlp_out is not None:
            out.mlp[layer, i] = weights[len(parts) + 1]
    return error


def _mlp_state(model, cache, layer: int, kind: str, resid_mid: Tensor):
    """The MLP step's `y`, its MLP part `M`, residual part `R`, bias, and the linear map
    (with its bias) that takes the MLP's raw output to `M`."""
    name = f"blocks.{layer}"
    d = resid_mid.shape[1]
    identity = lambda u, i: u  # noqa: E731
    zero = torch.zeros(d, dtype=F64)
    n = resid_mid.shape[0]
    if kind in ("pre_norm", "parallel"):
        y = f64(cache[f"{name}.hook_resid_post"][0])
        M = f64(cache[f"{name}.hook_mlp_out"][0])
        return y, M, resid_mid, [zero] * n, identity, lambda i: zero
    if kind == "sandwich":  # y = resid_mid + P2_i(m_i): M = P2_i(m_i), β of P2 apart
        P2 = _norm(model, cache, layer, "ln2_post")
        if backend(model) == "bridge":
            m = f64(cache[f"{name}.mlp.hook_out"][0])
        else:  # 3.x RMSNorm has no input hook: m = normalized · scale
            m = f64(cache[f"{name}.ln2_post.hook_normalized"][0]) * P2.scale[:, None]
        M = torch.stack([P2.linear(m[i], i) for i in range(n)])
        y = f64(cache[f"{name}.hook_resid_post"][0])
        return y, M, resid_mid, [P2.bias(d)] * n, P2.linear, lambda i: P2.bias(d)
    assert kind == "post_norm", kind  # y = LN2(resid_mid + m): both through L2_i, β2 apart
    L2 = _norm(model, cache, layer, "ln2")
    m = f64(cache[f"{name}.hook_mlp_out"][0])
    if backend(model) == "encoder":
        y = f64(cache[f"{name}.hook_normalized_resid_post"][0])
    else:
        y = f64(cache[f"{name}.ln2.hook_out"][0])
    M = torch.stack([L2.linear(m[i], i) for i in range(n)])
    R = torch.stack([L2.linear(resid_mid[i], i) for i in range(n)])
    return y, M, R, [L2.bias(d)] * n, L2.linear, lambda i: zero


def _mlp_step(model, cache, layer: int, kind: str, measure: str, out: NaiveFlow) -> float:
    """`y_i = M_i + R_i + bias_i`: the MLP's and the residual's weights."""
    resid_mid = _attention_state(model, cache, layer, kind)[1]  # the attention step's real y
    y, M, R, bias, _, _ = _mlp_state(model, cache, layer, kind, resid_mid)
    error = 0.0
    for i in range(y.shape[0]):
        total = M[i] + R[i] + bias[i]
        error = max(error, _check(f"layer {layer} MLP row {i}", total, y[i], exactness_rtol(model)))
        weights = _normalise([score(M[i], y[i], measure), score(R[i], y[i], measure)])
        if weights is None:
            warnings.warn(f"naive flow: layer {layer} MLP row {i}: both score 0", stacklevel=2)
            weights = [0.0, 1.0]
        out.mlp[layer, i], out.mlp_residual[layer, i] = weights
    return error


def _neurons(model, cache, layer: int, kind: str, measure: str, out: NaiveFlow) -> float:
    """Neuron `k`'s part `map_i(act_ik W_out[k])` of the MLP's part `M_i`, scored against `M_i`."""
    assert out.neurons is not None
    resid_mid = _attention_state(model, cache, layer, kind)[1]
    _, M, _, _, mapped, map_bias = _mlp_state(model, cache, layer, kind, resid_mid)
    if kind == "parallel":
        M = f64(cache[f"blocks.{layer}.hook_mlp_out"][0])
    W_out, b_out = _out_projection(model, layer)
    acts = _acts(model, cache, layer)
    error = 0.0
    for i in range(M.shape[0]):
        parts = [mapped(acts[i, k] * W_out[k], i) for k in range(W_out.shape[0])]
        total = sum(parts) + mapped(b_out, i) + map_bias(i)
        error = max(error, _check(f"layer {layer} neurons row {i}", total, M[i],
                                  exactness_rtol(model)))  # fmt: skip
        weights = _normalise([score(p, M[i], measure) for p in parts])
        if weights is None:  # no neuron scores: zero shares (spec §8)
            weights = [0.0] * len(parts)
        for k, w in enumerate(weights):
            out.neurons[layer, i, k] = w
    return error


# --- the whole model ------------------------------------------------------------------------------


def naive_flow(model, tokens_1d: Tensor, measure: str = "l1", neurons: bool = True) -> NaiveFlow:
    """The flow graph of one unpadded sequence, every part built explicitly (spec §8)."""
    if measure not in MEASURES:
        raise ValueError(f"naive flow: unknown measure {measure!r}")
    cache = naive.run_cache(model, tokens_1d)
    kind = flow_kind(model)
    L, n = model.cfg.n_layers, len(tokens_1d)
    H = model.cfg.n_heads
    nan = torch.full((L, n), torch.nan, dtype=F64)
    d_mlp = None if kind == "attn_only" else _out_projection(model, 0)[0].shape[0]
    out = NaiveFlow(
        attention=torch.zeros(L, H, n, n, dtype=F64),
        attention_residual=torch.zeros(L, n, dtype=F64),
        mlp=nan.clone(),
        mlp_residual=nan.clone(),
        neurons=torch.zeros(L, n, d_mlp, dtype=F64) if neurons and d_mlp else None,
        steps=[{"parallel": "parallel", "attn_only": "attention"}.get(kind, "attention+mlp")] * L,
    )
    for layer in range(L):
        errors = {"attention": _attention_step(model, cache, layer, kind, measure, out)}
        if kind in ("pre_norm", "sandwich", "post_norm"):
            errors["mlp"] = _mlp_step(model, cache, layer, kind, measure, out)
        if out.neurons is not None:
            errors["neurons"] = _neurons(model, cache, layer, kind, measure, out)
        out.errors.append(errors)
    return out
