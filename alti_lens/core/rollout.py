"""Chaining contributions through the layers (spec §4).

Single stack (decoder-only or encoder-only): `R^1 = C^1`, `R^l = C^l · R^{l−1}`. No identity is
added: the residual stream is already a source in every `C^l`; MLPs and the final norm are
token-wise and leave the mixing unchanged.

ALTI+ extended rollout (encoder-decoder), over `S` source and `T` target-prefix columns, from the
last encoder rollout `R_enc` (`S×S`), the decoder self-attention matrices `C_sa^l` (`T×T`) and the
cross-attention matrices `C_ca^l` (`T×(S+1)`, residual last):

    E^l = C_ca^l[:, :S],  ρ^l = C_ca^l[:, S],  R^0 = [0 | I_T],
    R^l = [E^l · R_enc | 0] + diag(ρ^l) · C_sa^l · R^{l−1}          (T × (S+T))

Next-token analyses need one row only, `R^l[t] = e_t C^l ··· C^1`: `last_row_rollout` carries the
row right to left through the layers (`L` vector-matrix products per layer instead of one `n³`
matrix product), and needs only row `t` of the last layer's `C`.
"""

import torch
from jaxtyping import Float
from torch import Tensor


def rollout_step(
    contributions: Float[Tensor, "*batch query_pos key_pos"],
    previous: Float[Tensor, "*batch key_pos pos"] | None,
) -> Float[Tensor, "*batch query_pos pos"]:
    """`R^l = C^l · R^{l−1}`, with `R^1 = C^1` (`previous` is None at the first layer)."""
    return contributions if previous is None else contributions @ previous


def rollout(
    contributions: Float[Tensor, "*batch layer query_pos key_pos"],
    device: torch.device | str | None = None,
) -> Float[Tensor, "*batch layer query_pos key_pos"]:
    """All partial products `R^l = C^l ··· C^1`, in a tensor like `contributions`. With
    `device`, each product is formed there (a model's GPU) and only written back."""
    out = torch.empty_like(contributions)
    current = None
    for layer in range(contributions.shape[-3]):
        C = contributions[..., layer, :, :]
        current = rollout_step(C if device is None else C.to(device), current)
        out[..., layer, :, :] = current
    return out


def extended_rollout_start(
    n_source: int, n_target: int, like: Tensor
) -> Float[Tensor, "tgt_pos src_tgt"]:
    """`R^0 = [0_{T×S} | I_T]`: before the decoder, each target position is only itself."""
    start = torch.zeros(n_target, n_source + n_target, dtype=like.dtype, device=like.device)
    start[:, n_source:] = torch.eye(n_target, dtype=like.dtype, device=like.device)
    return start


def extended_rollout_step(
    self_attention: Float[Tensor, "tgt_pos tgt_pos"],
    cross_attention: Float[Tensor, "tgt_pos src_plus_one"],
    encoder_rollout: Float[Tensor, "src_pos src_pos"],
    previous: Float[Tensor, "tgt_pos src_tgt"],
) -> Float[Tensor, "tgt_pos src_tgt"]:
    """One decoder layer of the extended rollout (spec §4, ALTI+)."""
    n_source = encoder_rollout.shape[0]
    source_part = cross_attention[:, :n_source] @ encoder_rollout
    residual_share = cross_attention[:, n_source]
    out = residual_share[:, None] * (self_attention @ previous)
    out[:, :n_source] += source_part
    return out


def extended_rollout(
    encoder_rollout: Float[Tensor, "src_pos src_pos"],
    self_attention: Float[Tensor, "layer tgt_pos tgt_pos"],
    cross_attention: Float[Tensor, "layer tgt_pos src_plus_one"],
) -> Float[Tensor, "layer tgt_pos src_tgt"]:
    """All decoder layers' `R^l` of one sequence."""
    n_source, n_target = encoder_rollout.shape[0], self_attention.shape[-1]
    current = extended_rollout_start(n_source, n_target, encoder_rollout)
    out = []
    for layer in range(self_attention.shape[0]):
        current = extended_rollout_step(
            self_attention[layer], cross_attention[layer], encoder_rollout, current
        )
        out.append(current)
    return torch.stack(out)


def last_row_rollout(
    contributions: Float[Tensor, "layer pos pos"], row: int
) -> Float[Tensor, "layer key_pos"]:
    """Row `row` of every `R^l = C^l ··· C^1`, right to left, without any `n × n` product.

    `e_t R^l = (((e_t C^l) C^{l−1}) ···) C^1`: the rows of all layers are carried down together,
    one `[layers, n] @ [n, n]` product per layer (each `C` is read once), instead of the
    `n³` matrix products of the full rollout. Only row `row` of the last layer's `C` is read.
    """
    n_layers = contributions.shape[0]
    rows = contributions[n_layers - 1, row][None]  # e_t C^L, to be carried down to C^1
    for layer in range(n_layers - 2, -1, -1):
        rows = torch.cat([contributions[layer, row][None], rows @ contributions[layer]])
    return rows
