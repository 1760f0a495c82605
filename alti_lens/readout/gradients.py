"""Gradient baselines for the evaluation: gradient norm, gradient × input and integrated gradients
with respect to the input token embeddings (plain PyTorch autograd, no Captum).

The caller gives a `forward()` that runs the model on its inputs (any call: a decoder's logits, an
encoder-decoder's `model(source, decoder_input=...)`, a pooled embedding through a head) and returns
one score per sequence, `[batch]`. The embeddings are taken at hook points (`hook_embed` for a
decoder or an encoder, the encoder's and the decoder's embedding hooks for an encoder-decoder), so
positions and everything after the embedding are the model's own. For each named hook and every
token `j`, with `x_j` the token embedding there and `F` the summed score:

- gradient norm: `||∂F/∂x_j||_2`;
- gradient × input: `∂F/∂x_j · x_j` (signed);
- integrated gradients (Sundararajan et al. 2017, all-zero baseline for the token embeddings,
  positions kept): `x_j · mean_k ∂F/∂x_j(α_k x)` with `α_k = (k + ½)/steps` (midpoint rule);
  their sum over tokens and hooks approximates `F(x) − F(0)` (completeness).

The sequences of a batch must not interact (no batch norm), so summing the scores gives each
sequence's own gradients. The model is in eval mode for the calls and left as it was.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from alti_lens.errors import InputError

from .protocol import HookedModel
from .run import eval_mode


@dataclass
class EmbeddingGradients:
    """Per-token attributions at one embedding hook, float64 on the CPU."""

    norm: Float[Tensor, "batch pos"]
    times_input: Float[Tensor, "batch pos"]
    integrated: Float[Tensor, "batch pos"]


def _scaling_hook(
    name: str, alpha: float, inputs: dict[str, Tensor], grads: dict[str, Tensor]
) -> Callable:
    # keyed by the name asked for: a bridge reports an alias (`hook_embed`) by its real name
    def hook(tensor: Tensor, hook: Any = None) -> Tensor:
        x = tensor.detach()
        inputs.setdefault(name, x)
        scaled = (x * alpha).requires_grad_(True)
        scaled.register_hook(lambda g: grads.__setitem__(name, g.detach()))
        return scaled

    return hook


def _run(
    model: HookedModel, forward: Callable[[], Tensor], names: Sequence[str], alpha: float
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    unknown = [n for n in names if n not in model.hook_dict]
    if unknown:
        raise InputError(
            f"embedding_gradients: no hook point {unknown} on this model; expected its token "
            f"embedding hooks, e.g. {[k for k in model.hook_dict if 'embed' in k][:6]}. Fix: "
            "pass names= with those (an encoder-decoder: its encoder's and decoder's)."
        )
    inputs: dict[str, Tensor] = {}
    grads: dict[str, Tensor] = {}
    hooks = [(name, _scaling_hook(name, alpha, inputs, grads)) for name in names]
    with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
        scores = forward()
        scores.sum().backward()
    missing = [n for n in names if n not in grads]
    if missing:
        raise ValueError(
            f"the hooks {missing} did not fire (or the score does not depend on them): expected "
            f"embedding hook points of this model, e.g. one of "
            f"{[k for k in model.hook_dict if 'embed' in k][:6]}"
        )
    return inputs, grads


def embedding_gradients(
    model: HookedModel,
    forward: Callable[[], Float[Tensor, " batch"]],
    names: Sequence[str] = ("hook_embed",),
    steps: int = 32,
) -> dict[str, EmbeddingGradients]:
    """Gradient norm, gradient × input and integrated gradients of `forward()`'s scores with
    respect to the token embeddings at each hook in `names` (see the module docstring); `steps`
    points of the integral (0: skip integrated gradients, NaN there)."""
    with eval_mode(model):
        x, g = _run(model, forward, names, 1.0)
        total = {n: torch.zeros_like(g[n], dtype=torch.float64) for n in names}
        for k in range(steps):
            _, gk = _run(model, forward, names, (k + 0.5) / steps)
            for n in names:
                total[n] += gk[n].to(torch.float64)
    out = {}
    for n in names:
        xn, gn = x[n].to(torch.float64), g[n].to(torch.float64)
        nan = torch.full_like(xn[..., 0], torch.nan)
        integrated = (xn * total[n] / steps).sum(-1) if steps else nan
        out[n] = EmbeddingGradients(
            norm=gn.norm(dim=-1).cpu(),
            times_input=(gn * xn).sum(-1).cpu(),
            integrated=integrated.cpu(),
        )
    return out
