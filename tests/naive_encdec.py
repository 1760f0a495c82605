"""A deliberately naive, loop-based, float64 reference implementation of ALTI+ (ALTI_SPEC.md §1-4)
for encoder-decoder TransformerBridge models (T5, Marian, BART, M2M100).

Written from the spec and from `.notes/encdec_facts.md` alone, independently of `alti_lens`, so
that the two implementations can catch each other's mistakes. Readability over speed: explicit
Python loops over query rows `i` and source columns `j`; every `T_i(·)` vector is built on its own
(heads and the model width are vectorised inside one `(i, j)` term). One unpadded
(source, decoder input) pair at a time.

Hook layout of every sub-block (facts §3): `r` = residual entering the sub-block, `y` = its
output; pre-norm (T5, M2M100) `y = r + Σ_j a(j) + b_O`, post-norm (Marian, BART)
`y = LN(r + Σ_j a(j) + b_O)` with `LN`'s own `hook_scale` and `hook_out`.

- enc self, pre:  r `encoder_blocks.L.hook_resid_pre`, y `encoder_blocks.L.ln2.hook_in`
- enc self, post: r `encoder_blocks.L.hook_resid_pre`, norm `encoder_blocks.L.ln1`
- dec self, pre:  r `decoder_blocks.L.hook_resid_pre`, y `decoder_blocks.L.ln2.hook_in`
- dec self, post: r `decoder_blocks.L.hook_resid_pre`, norm `decoder_blocks.L.ln1`
- cross, pre:     r `decoder_blocks.L.ln2.hook_in`, y `decoder_blocks.L.ln3.hook_in`
- cross, post:    r `decoder_blocks.L.ln1.hook_out`, norm `decoder_blocks.L.ln2`

Cross-attention keys/values come from the encoder output (`encoder_ln_final.hook_out` for the
pre-norm families, the last encoder block's `hook_out` for the post-norm ones).
"""

import warnings

import torch
from torch import Tensor

MEASURES = ("l1", "norm")

# HF architecture (bridge `cfg.architecture`) -> block kind (facts §1, §3).
ENC_DEC_KINDS = {
    "T5ForConditionalGeneration": "pre_norm",
    "M2M100ForConditionalGeneration": "pre_norm",
    "MarianMTModel": "post_norm",
    "BartForConditionalGeneration": "post_norm",
}


def enc_dec_kind(model) -> str:
    arch = model.cfg.architecture
    if arch not in ENC_DEC_KINDS:
        raise NotImplementedError(f"naive ALTI+ reference does not know the layout of {arch}")
    return ENC_DEC_KINDS[arch]


def _f64(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().to(torch.float64).cpu()


class SubBlockTerms:
    """One attention sub-block of one sequence: `y_i = Σ_j T[i, j] + bias[i]`.

    `allowed[i, j]`: whether `j` is a real source of row `i` (False: causal mask, exactly 0).
    `own[i]`: the column that takes the row's mass if its clipped sum is 0 (self / residual).
    """

    def __init__(self, name: str, T: Tensor, bias: Tensor, y: Tensor, allowed: Tensor, own):
        self.name = name
        self.T = T  # [n_query, n_source, d]
        self.bias = bias  # [n_query, d]
        self.y = y  # [n_query, d]
        self.allowed = allowed  # [n_query, n_source] bool
        self.own = own  # list[int], one per query row

    def reconstruction_error(self) -> float:
        return float((self.T.sum(dim=1) + self.bias - self.y).abs().max())


def linearised_layernorm(u: Tensor, gamma: Tensor, scale: float) -> Tensor:
    """`L_i(u) = γ ⊙ (u − mean(u)) / s_i` (spec §1), the scale frozen at its forward value."""
    return gamma * (u - u.mean()) / scale


def per_source_attention(pattern: Tensor, v: Tensor, W_O: Tensor, i: int, j: int) -> Tensor:
    """`a_i(j) = Σ_h A^h_ij · v^h_j W_O^h` (spec §1); pattern [H, q, k], v [k, H, d_h]."""
    n_heads = W_O.shape[0]
    out = torch.zeros(W_O.shape[-1], dtype=torch.float64)
    for h in range(n_heads):
        out += pattern[h, i, j] * (v[j, h] @ W_O[h])
    return out


def self_attention_terms(
    name: str,
    kind: str,
    attn,
    pattern: Tensor,
    v: Tensor,
    x: Tensor,
    y: Tensor,
    *,
    causal: bool,
    ln=None,
    scale: Tensor | None = None,
) -> SubBlockTerms:
    """Spec §2.1 (pre-norm) / §2.2 (post-norm) for one self-attention sub-block."""
    n, d = x.shape
    W_O, b_O = _f64(attn.W_O), _f64(attn.b_O)
    if b_O is None:
        b_O = torch.zeros(d, dtype=torch.float64)
    assert pattern.shape == (W_O.shape[0], n, n) and v.shape[:2] == (n, W_O.shape[0])
    T = torch.zeros(n, n, d, dtype=torch.float64)
    bias = torch.zeros(n, d, dtype=torch.float64)
    allowed = torch.ones(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            if causal and j > i:
                allowed[i, j] = False
                assert float(pattern[:, i, j].abs().max()) == 0.0, "causal pattern not zero"
                continue
            u = per_source_attention(pattern, v, W_O, i, j)
            if i == j:
                u = u + x[j]  # the residual enters only as the source's own term
            if kind == "pre_norm":
                T[i, j] = u
            else:
                T[i, j] = linearised_layernorm(u, _f64(ln.weight), float(scale[i]))
        if kind == "pre_norm":
            bias[i] = b_O
        else:
            bias[i] = linearised_layernorm(b_O, _f64(ln.weight), float(scale[i])) + _f64(ln.bias)
    return SubBlockTerms(name, T, bias, y, allowed, list(range(n)))


def cross_attention_terms(
    name: str,
    kind: str,
    attn,
    pattern: Tensor,
    v: Tensor,
    r: Tensor,
    y: Tensor,
    *,
    ln=None,
    scale: Tensor | None = None,
    residual_first: bool = False,
) -> SubBlockTerms:
    """Spec §2.4: sources `e_1..e_S` and the decoder residual `r_i` as the LAST extra column.

    `residual_first=True` is a deliberately wrong variant (residual column first), for the
    teeth test only.
    """
    T_len, d = r.shape
    S = v.shape[0]
    W_O, b_O = _f64(attn.W_O), _f64(attn.b_O)
    if b_O is None:
        b_O = torch.zeros(d, dtype=torch.float64)
    assert pattern.shape == (W_O.shape[0], T_len, S) and v.shape[:2] == (S, W_O.shape[0])
    T = torch.zeros(T_len, S + 1, d, dtype=torch.float64)
    bias = torch.zeros(T_len, d, dtype=torch.float64)
    for i in range(T_len):
        for j in range(S + 1):
            u = r[i] if j == S else per_source_attention(pattern, v, W_O, i, j)
            if kind == "pre_norm":
                T[i, j] = u
            else:
                T[i, j] = linearised_layernorm(u, _f64(ln.weight), float(scale[i]))
        if kind == "pre_norm":
            bias[i] = b_O
        else:
            bias[i] = linearised_layernorm(b_O, _f64(ln.weight), float(scale[i])) + _f64(ln.bias)
    own = [S] * T_len
    if residual_first:
        T = torch.cat([T[:, S:], T[:, :S]], dim=1)
        own = [0] * T_len
    allowed = torch.ones(T_len, S + 1, dtype=torch.bool)
    return SubBlockTerms(name, T, bias, y, allowed, own)


def run_cache(model, src_1d: Tensor, tgt_1d: Tensor):
    assert src_1d.dim() == 1 and tgt_1d.dim() == 1, "naive reference: one unpadded pair"
    with torch.no_grad():
        _, cache = model.run_with_cache(src_1d[None], decoder_input=tgt_1d[None])
    return cache


def read_sub_blocks(
    model,
    src_1d: Tensor,
    tgt_1d: Tensor,
    *,
    residual_first: bool = False,
    cross_scale_from: str = "ln2",
) -> tuple[list[SubBlockTerms], list[SubBlockTerms], list[SubBlockTerms]]:
    """Every sub-block of the model, decomposed from the raw hooks: (encoder self, decoder self,
    cross) lists. `residual_first` / `cross_scale_from="ln1"`: deliberately wrong variants for the
    teeth test (residual column first; the post-norm cross block linearised with the scale of the
    self-attention norm instead of its own)."""
    kind = enc_dec_kind(model)
    c = run_cache(model, src_1d, tgt_1d)

    def hook(name: str) -> Tensor:
        return _f64(c[name][0])

    enc, dec, cross = [], [], []
    n_enc = len(model.encoder_blocks)
    for layer, blk in enumerate(model.encoder_blocks):
        p = f"encoder_blocks.{layer}."
        pattern, v, x = (
            hook(p + "attn.hook_pattern"),
            hook(p + "attn.hook_v"),
            hook(p + "hook_resid_pre"),
        )
        if kind == "pre_norm":
            enc.append(
                self_attention_terms(
                    p, kind, blk.attn, pattern, v, x, hook(p + "ln2.hook_in"), causal=False
                )
            )
        else:
            enc.append(
                self_attention_terms(
                    p, kind, blk.attn, pattern, v, x, hook(p + "ln1.hook_out"),
                    causal=False, ln=blk.ln1, scale=hook(p + "ln1.hook_scale")[:, 0],
                )
            )  # fmt: skip

    # The tensor the cross-attention keys/values are computed from (facts §2).
    if kind == "pre_norm":
        enc_out = hook("encoder_ln_final.hook_out")
    else:
        enc_out = hook(f"encoder_blocks.{n_enc - 1}.hook_out")

    for layer, blk in enumerate(model.decoder_blocks):
        p = f"decoder_blocks.{layer}."
        pattern, v, x = (
            hook(p + "self_attn.hook_pattern"),
            hook(p + "self_attn.hook_v"),
            hook(p + "hook_resid_pre"),
        )
        if kind == "pre_norm":
            dec.append(
                self_attention_terms(
                    p + "self",
                    kind,
                    blk.self_attn,
                    pattern,
                    v,
                    x,
                    hook(p + "ln2.hook_in"),
                    causal=True,
                )
            )
        else:
            dec.append(
                self_attention_terms(
                    p + "self", kind, blk.self_attn, pattern, v, x, hook(p + "ln1.hook_out"),
                    causal=True, ln=blk.ln1, scale=hook(p + "ln1.hook_scale")[:, 0],
                )
            )  # fmt: skip

        cross_v = hook(p + "cross_attn.hook_v")  # [S, H, d_h], v^h_j of encoder output e_j
        W_V, b_V = _f64(blk.cross_attn.W_V), _f64(blk.cross_attn.b_V)
        v_check = torch.einsum("sm,hmk->shk", enc_out, W_V) + (0.0 if b_V is None else b_V)
        assert float((v_check - cross_v).abs().max()) < 1e-12, "cross values not from enc output"
        pattern = hook(p + "cross_attn.hook_pattern")  # [H, T, S]
        if kind == "pre_norm":
            r, y = hook(p + "ln2.hook_in"), hook(p + "ln3.hook_in")
            cross.append(
                cross_attention_terms(
                    p + "cross",
                    kind,
                    blk.cross_attn,
                    pattern,
                    cross_v,
                    r,
                    y,
                    residual_first=residual_first,
                )
            )
        else:
            r, y = hook(p + "ln1.hook_out"), hook(p + "ln2.hook_out")
            scale = hook(p + f"{cross_scale_from}.hook_scale")[:, 0]
            cross.append(
                cross_attention_terms(
                    p + "cross", kind, blk.cross_attn, pattern, cross_v, r, y,
                    ln=blk.ln2, scale=scale, residual_first=residual_first,
                )
            )  # fmt: skip
    return enc, dec, cross


def check_exact(sub_blocks: list[SubBlockTerms], rtol: float = 1e-9) -> float:
    """Spec §2.5: `max|Σ_j T_i(x_j) + bias_i − y_i| ≤ rtol · max|y|` for every sub-block.
    Returns the largest error."""
    worst = 0.0
    for sb in sub_blocks:
        error, limit = sb.reconstruction_error(), rtol * float(sb.y.abs().max())
        assert error <= limit, f"naive: {sb.name} misses y by {error:.3g} > {limit:.3g}"
        worst = max(worst, error)
    return worst


def contribution_matrix(sb: SubBlockTerms, measure: str) -> Tensor:
    """Spec §3: the `[n_query, n_source]` contribution matrix of one sub-block."""
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}")
    n_q, n_s = sb.allowed.shape
    c = torch.zeros(n_q, n_s, dtype=torch.float64)
    for i in range(n_q):
        y_i = sb.y[i]
        for j in range(n_s):
            if not sb.allowed[i, j]:
                continue
            t = sb.T[i, j]
            if measure == "l1":  # c_ij = max(0, ||y_i||_1 − ||y_i − T_i(x_j)||_1)
                c[i, j] = max(0.0, float(y_i.abs().sum() - (y_i - t).abs().sum()))
            else:  # "norm" (Kobayashi): ||T_i(x_j)||_2
                c[i, j] = float(t.norm(p=2))
    C = torch.zeros(n_q, n_s, dtype=torch.float64)
    for i in range(n_q):
        total = float(c[i].sum())
        if total == 0.0:
            warnings.warn(f"naive: {sb.name} row {i} has zero total; mass on own", stacklevel=2)
            C[i, sb.own[i]] = 1.0
            continue
        for j in range(n_s):
            C[i, j] = c[i, j] / total
    return C


def matmul(A: Tensor, B: Tensor) -> Tensor:
    """`A · B` written out as sums."""
    n, m = A.shape
    m2, k = B.shape
    assert m == m2
    out = torch.zeros(n, k, dtype=torch.float64)
    for i in range(n):
        for col in range(k):
            out[i, col] = sum(float(A[i, j]) * float(B[j, col]) for j in range(m))
    return out


def extended_rollout(enc_C: Tensor, dec_C: Tensor, cross_C: Tensor) -> tuple[Tensor, Tensor]:
    """Spec §4: encoder rollout `[Le, S, S]` and ALTI+ rollout `[Ld, T, S+T]`."""
    n_enc, S, _ = enc_C.shape
    n_dec, T, _ = dec_C.shape
    enc_R = torch.zeros_like(enc_C)
    enc_R[0] = enc_C[0]
    for layer in range(1, n_enc):
        enc_R[layer] = matmul(enc_C[layer], enc_R[layer - 1])
    R_enc = enc_R[-1]
    R_prev = torch.zeros(T, S + T, dtype=torch.float64)
    for t in range(T):
        R_prev[t, S + t] = 1.0  # R^0 = [0 | I]
    R = torch.zeros(n_dec, T, S + T, dtype=torch.float64)
    for layer in range(n_dec):
        E, rho = cross_C[layer, :, :S], cross_C[layer, :, S]
        source_part = matmul(E, R_enc)  # [T, S]
        target_part = matmul(dec_C[layer], R_prev)  # [T, S+T]
        for t in range(T):
            for col in range(S + T):
                R[layer, t, col] = float(rho[t]) * float(target_part[t, col])
                if col < S:
                    R[layer, t, col] += float(source_part[t, col])
        R_prev = R[layer]
    return enc_R, R


def naive_alti_plus(
    model, src_1d: Tensor, tgt_1d: Tensor, measure: str = "l1", *, check: bool = True, **variant
) -> dict:
    """Contributions and rollouts of one unpadded pair (float64 model), after the exactness check
    (`check=False` to skip it, for the deliberately wrong `variant`s of `read_sub_blocks`)."""
    enc, dec, cross = read_sub_blocks(model, src_1d, tgt_1d, **variant)
    error = check_exact(enc + dec + cross) if check else float("nan")
    enc_C = torch.stack([contribution_matrix(sb, measure) for sb in enc])
    dec_C = torch.stack([contribution_matrix(sb, measure) for sb in dec])
    cross_C = torch.stack([contribution_matrix(sb, measure) for sb in cross])
    enc_R, R = extended_rollout(enc_C, dec_C, cross_C)
    return {
        "encoder_contributions": enc_C,
        "decoder_contributions": dec_C,
        "cross_contributions": cross_C,
        "encoder_rollout": enc_R,
        "rollout": R,
        "reconstruction_error": error,
        "sub_blocks": (enc, dec, cross),
    }
