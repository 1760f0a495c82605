"""The read-out → math hand-over: what one forward pass did, as plain tensors.

`alti_lens.readout` (the only package that knows TransformerLens) fills these; `core.decompose`
and `core.logit` consume them. They are the one module of `core` the read-out imports, so the
contract between the two sides lives in one small file with no behaviour: dataclasses of tensors
and the enumeration of block kinds (spec §2).
"""

import enum
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor


class BlockKind(str, enum.Enum):
    """How the attention sub-block's output is formed (spec §2)."""

    PRE_NORM = "pre_norm"
    POST_NORM = "post_norm"
    PARALLEL = "parallel"
    SANDWICH = "sandwich"
    ATTN_ONLY = "attn_only"


@dataclass(frozen=True)
class NormTensors:
    """A norm applied to the attention output (post-norm or sandwich), frozen at its real scale."""

    weight: Float[Tensor, " d_model"] | None  # effective γ (Gemma's `1 + w` already applied)
    bias: Float[Tensor, " d_model"] | None  # β, never attributed
    scale: Float[Tensor, "batch pos"]  # the real s_i of every row
    centred: bool  # LayerNorm (True) or RMSNorm (False)


@dataclass(frozen=True)
class MlpTensors:
    """What one layer's MLP did, for the information-flow graph's MLP step (spec §8).

    How the parts are formed depends on the block's kind: pre-norm `resid_post = resid_mid +
    output`; post-norm `resid_post = LN2(resid_mid + output)` with `norm` LN2; sandwich `resid_post
    = resid_mid + output` where `output` is already the post-MLP norm's, and `norm` that norm
    (for the neurons); parallel `resid_post = resid_pre + attn_out + output`.
    """

    output: Float[Tensor, "batch pos d_model"]  # `hook_mlp_out`
    resid_post: Float[Tensor, "batch pos d_model"]  # the block's real output (the step's y)
    norm: NormTensors | None = None
    # Gemma 4's `layer_scalar`: the block output is `c · (resid_mid + output)`. None: 1.
    output_scale: float | None = None
    # A further token-wise branch added after the MLP, counted in the MLP's part (Gemma 3n/4's
    # per-layer input: `resid_post = c · (resid_mid + output + extra)`). None: none.
    extra: Float[Tensor, "batch pos d_model"] | None = None
    # The neurons (only when asked): the output projection's input and weights.
    acts: Float[Tensor, "batch pos d_mlp"] | None = None
    W_out: Float[Tensor, "d_mlp d_model"] | None = None
    b_out: Float[Tensor, " d_model"] | None = None
    precision: torch.dtype | None = None  # see BlockTensors.precision


@dataclass(frozen=True)
class BlockTensors:
    """What one layer's attention sub-block did in a forward pass, as plain tensors."""

    kind: BlockKind
    pattern: Float[Tensor, "batch head_index query_pos key_pos"]
    v: Float[Tensor, "batch key_pos kv_head d_head"]
    W_O: Float[Tensor, "head_index d_head d_model"]
    b_O: Float[Tensor, " d_model"] | None
    resid_pre: Float[Tensor, "batch pos d_model"]
    output: Float[Tensor, "batch pos d_model"]  # the model's real y (spec §2.5)
    norm: NormTensors | None = None
    # A per-head scalar gate of each query row on the head's output (Laguna): `T_i(x_j) =
    # Σ_h gate^h_i A^h_ij v^h_j W_O^h`, folded into the pattern by the decomposition. None: 1.
    head_gate: Float[Tensor, "batch head_index query_pos"] | None = None
    # Cross-attention (ALTI+, spec §2.4): keys and values come from the encoder output, and
    # `resid_pre` (the decoder residual entering the sub-block) is one extra source, not a diagonal.
    cross: bool = False
    # The residual stream after the whole block (attention and MLP), when asked for (ALTI-Logit).
    resid_post: Float[Tensor, "batch pos d_model"] | None = None
    # Post-norm blocks, with `resid_post`: the norm after the MLP (`LN2(y + mlp)`), frozen at its
    # real scale: the residual stream passes through it (ALTI-Logit, spec §5).
    mlp_norm: NormTensors | None = None
    # A constant the block multiplies its whole output by, residual included (Gemma 4's
    # `layer_scalar`): `resid_post = c · (y + mlp + ...)`. None: 1. (ALTI-Logit, spec §5.)
    output_scale: float | None = None
    # Set when the model computed part of this block in a narrower dtype than its weights (Hugging
    # Face RMSNorms run in float32 even in float64 models): the exactness check cannot be tighter.
    precision: torch.dtype | None = None
    # The narrowest dtype the model computed this block in, where narrower than its weights, as
    # measured on the block's tensors (`readout.run.computed_precision`): e.g. float32 for the
    # float32 softmax of Hugging Face's eager attention in float64 OPT, Llama, Gemma-2 and GPT-J
    # models. The decomposition stays exact (it uses those very tensors), but two runs of the model
    # (a padded batch and a single text) agree only to this precision. Never wider than `precision`.
    model_precision: torch.dtype | None = None
    # The real scale `s_i` of an RMSNorm applied to the heads' concatenated output before `W_O`
    # (BitNet's `attn_sub_norm`, whose `γ` is already folded into `W_O`): the attention output
    # of row `i`, not its bias or residual, is divided by it.
    attn_sub_norm: Float[Tensor, "batch pos"] | None = None
    # The MLP's tensors, when asked for (the information-flow graph, spec §8).
    mlp: MlpTensors | None = None


@dataclass(frozen=True)
class FinalTensors:
    """What turns the last residual stream into logits, read from one forward pass."""

    norm: NormTensors | None  # the final norm frozen at its real scale; None: no final norm
    W_U: Float[Tensor, "d_model d_vocab"]
    b_U: Float[Tensor, " d_vocab"] | None
    logits: Float[Tensor, "batch pos d_vocab"]  # the model's own output
    soft_cap: float | None = None  # logits = cap · tanh(raw / cap) (Gemma-2)
    # raw = logit_scale · (W_U · Lf(x) + b_U): Cohere's `logit_scale`, Granite's 1/`logits_scaling`
    logit_scale: float = 1.0
    precision: torch.dtype | None = None  # see BlockTensors.precision
