"""An RMSNorm between the attention heads and `W_O` (BitNet's `attn_sub_norm`, spec §2).

BitNet computes `o_proj(γ ⊙ z_i / s_i)` with `z_i = concat_h Σ_j A^h_ij v^h_j` and
`s_i = sqrt(mean(z_i²) + ε)` over all heads together. With `s_i` frozen at its real value this is
linear per source: `Σ_h Σ_j A^h_ij (v^h_j ⊙ γ^h) W_O^h / s_i`, so `γ` is folded into `W_O` and
`1 / s_i` is a row factor of the attention output (not of the bias or the residual). That holds
only where `o_proj` is linear: Hugging Face's `AutoBitLinear` (every real BitNet checkpoint, packed
or bf16) quantises its input activations per token, which no per-source split survives.
"""

from typing import Any

import torch
from torch import Tensor

from alti_lens.errors import UnsupportedModelError


def attn_sub_norm(block: Any) -> Any:
    """The Hugging Face attention's `attn_sub_norm` module, None where it has none."""
    hf = getattr(block.attn, "original_component", None)
    module = getattr(hf, "attn_sub_norm", None)
    return module if isinstance(module, torch.nn.Module) else None


def check_linear_output(block: Any, architecture: str, layer: int) -> None:
    """Refuse an output projection that is not a plain `nn.Linear` (BitNet's `AutoBitLinear`
    quantises the activations it is given: the value path is not linear per source)."""
    hf = getattr(getattr(block.attn, "o", None), "original_component", None)
    if isinstance(hf, torch.nn.Linear) and type(hf).forward is torch.nn.Linear.forward:
        return
    raise UnsupportedModelError(
        f"layer {layer} of {architecture}: the attention's output projection is "
        f"{type(hf).__name__}, not a plain linear layer: BitNet quantises the activations inside "
        "its projections, so the value path is not linear per source and no exact "
        "decomposition exists. Fix: use a model whose projections are plain nn.Linear (BitNet "
        "built without a quantization_config is)."
    )


def fold_gamma(W_O: Tensor, sub_norm: Any) -> Tensor:
    """`W_O^h` with the sub-norm's `γ^h` folded into its rows: `(v ⊙ γ^h) W_O^h = v (γ^h W_O^h)`."""
    weight = getattr(sub_norm, "weight", None)
    if weight is None:
        return W_O
    n_heads, d_head, _ = W_O.shape
    return W_O * weight.detach().to(W_O.dtype).reshape(n_heads, d_head, 1)


def sub_norm_scale(pattern: Tensor, v: Tensor, sub_norm: Any) -> Tensor:
    """The sub-norm's real scale `s_i` `[batch, pos]`, from the model's own pattern and values,
    computed as Hugging Face does (in float32: `BitNetRMSNorm` casts its input)."""
    n_heads = pattern.shape[1]
    v = v.repeat_interleave(n_heads // v.shape[2], dim=2)  # grouped-query attention
    z = torch.einsum("bhqk,bkhd->bqhd", pattern.to(v.dtype), v).flatten(2).float()
    eps = getattr(sub_norm, "variance_epsilon", None)
    if eps is None:
        raise UnsupportedModelError(
            f"the attention sub-norm {type(sub_norm).__name__} has no `variance_epsilon`, so its "
            "scale cannot be rebuilt. Only BitNet's RMSNorm sub-norm is supported."
        )
    inverse = torch.rsqrt(z.pow(2).mean(-1) + float(eps))
    return (1.0 / inverse.double()).to(v.dtype)
