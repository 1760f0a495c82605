"""ALTI-Logit: one prediction's logit decomposed over input tokens (spec §5).

For output position `t`, the unembedding direction `u = U_w` (or `U_w − U_f` against a foil) and
the final norm linearised at row `t`, `Lf_t(v) = γ ⊙ centre(v) / s_t` (RMS: no centring; no final
norm: identity), every part of the final residual reaches the logit through the vector

    g = centre(γ ⊙ u) / s_t,   logit = g · x^L_t + u · β + b_U

because `centre` is an orthogonal projection. The attention output of layer `l` at `t` is
`Σ_j a^l_t(j)`, so source `j` gives `Δ^l(j) = g · a^l_t(j)`, and through the ALTI rollout

    Φ(k) = Σ_l Σ_j Δ^l(j) · M^{l−1}[j, k],   M^0 = I,  M^l = R^l.

Since every rollout row sums to 1, `Σ_k Φ(k) = Σ_l Σ_j Δ^l(j)`; with the parts that are not token
paths (the embedding `g · x^0_t`, the attention biases, the MLP outputs, `u · β`, `b_U`) this adds
up to the model's logit exactly — checked on every call. Per head, `Δ^{l,h}(j)` uses head `h`'s
term only; the heads' scores add up to `Φ`.

Post-norm stacks (GPT-1, OPT-350m): the residual stream itself passes through every block's two
norms, `x^l = N2_l(N1_l(x^{l−1} + attn) + mlp)`, each linear at its real scale:
`N(u) = γ ⊙ centre(u) / s + β`. A part `u` added before layer `l'`'s norms reaches the logit as
`g_l · u`, with `g` carried back through the later norms' transposes, `centre(γ ⊙ g) / s`. The `γ`
and centring part of that direction depends on weights only (`residual_directions`, before the
run); the product of the later rows' `1/s` is a scalar per layer, applied after the run.
This module is pure tensor code.
"""

import torch
from jaxtyping import Float
from torch import Tensor

from .decompose import AttentionTerms


def effective_direction(
    direction: Float[Tensor, "*batch d_model"],
    weight: Float[Tensor, " d_model"] | None,
    scale: Float[Tensor, ""] | None,
    centred: bool,
) -> Float[Tensor, "*batch d_model"]:
    """`g = centre(γ ⊙ u) / s_t`: the direction the final residual at `t` is read along."""
    g = direction if weight is None else direction * weight
    if centred:
        g = g - g.mean(dim=-1, keepdim=True)
    return g if scale is None else g / scale


def residual_directions(
    g: Float[Tensor, "*batch d_model"],
    norms: list[tuple[Tensor | None, bool, Tensor | None, bool]],
) -> list[Float[Tensor, "*batch d_model"]]:
    """Post-norm stacks: the direction each layer's output (`resid_post`) is read along, without
    the later norms' `1/s`. `norms[l]` is layer `l`'s (γ1, centred1, γ2, centred2); `g` is the
    direction of the last layer's output. Layer `l − 1`'s direction is layer `l`'s carried back
    through `N2_l` and then `N1_l`."""
    out = []
    for w1, c1, w2, c2 in reversed(norms):
        out.append(g)
        g = effective_direction(effective_direction(g, w2, None, c2), w1, None, c1)
    return out[::-1]


def later_scales(inverse_scales: Float[Tensor, "batch layer"]) -> Float[Tensor, "batch layer"]:
    """`Π_{k>l} inverse_scales[:, k]`: what the later layers multiply layer `l`'s parts by."""
    suffix = inverse_scales.flip(-1).cumprod(-1).flip(-1)  # Π_{k≥l}
    return torch.cat([suffix[:, 1:], torch.ones_like(suffix[:, :1])], dim=-1)


def source_logit_parts(
    terms: AttentionTerms, row: int, g: Float[Tensor, " d_model"]
) -> Float[Tensor, "head_index key_pos"]:
    """`Δ^{l,h}(j) = g · (r_t A^h_tj values[j, h])`: each head's and source's logit
    contribution (logit units) at `row`.

    Summed over heads it is `Δ^l(j)`; the residual and the bias are not included.
    """
    along = torch.einsum("khd,d->hk", terms.values, g)  # values[j, h] · g
    parts = terms.pattern[:, row, :] * along
    if terms.row_scale is not None:
        parts = parts * terms.row_scale[row]
    return parts


def roll_to_tokens(
    parts: Float[Tensor, "*batch head_index key_pos"],
    previous_rollout: Float[Tensor, "*batch key_pos pos"] | None,
) -> Float[Tensor, "*batch head_index pos"]:
    """`Σ_j Δ^{l,h}(j) · M^{l−1}[j, k]` with `M^0 = I`."""
    return parts if previous_rollout is None else parts @ previous_rollout
