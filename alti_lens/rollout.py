"""Chaining contributions through the layers (spec §4).

Single stack (decoder-only or encoder-only): `R^1 = C^1`, `R^l = C^l · R^{l−1}`. No identity is
added: the residual stream is already a source in every `C^l`; MLPs and the final norm are
token-wise and leave the mixing unchanged.
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
) -> Float[Tensor, "*batch layer query_pos key_pos"]:
    """All partial products `R^l = C^l ··· C^1`."""
    out = torch.empty_like(contributions)
    current = None
    for layer in range(contributions.shape[-3]):
        current = rollout_step(contributions[..., layer, :, :], current)
        out[..., layer, :, :] = current
    return out
