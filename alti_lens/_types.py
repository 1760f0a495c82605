"""The vocabulary of alti_lens: option literals and the dimension names, in one torch-free module.

Dimension names follow TransformerLens (`batch`, `pos`, `query_pos`, `key_pos`, `head_index`,
`kv_head_index`, `d_model`, `d_head`, `d_vocab`, `layer`); alti_lens adds `source` (a row's
sources: its key positions, plus the residual as a last column in cross-attention), `src_pos` /
`tgt_pos` (encoder-decoder sides) and `src_tgt` (`src_pos + tgt_pos` columns of the extended
rollout). jaxtyping annotations use these names throughout.

This module imports nothing heavy, so the command line can offer the choices before loading torch.
"""

from typing import Literal, get_args

# The contribution measure (spec §3): "l1" is ALTI; the others are offered for comparison.
Measure = Literal["l1", "l2", "norm", "attention", "attention_rollout"]
# Which rollout rows `alti` computes: every query position, or each sequence's last real token.
Rows = Literal["all", "last"]
# The distance kernel: chosen by size and device ("auto"), or forced.
Kernel = Literal["auto", "fused", "reference", "triton"]
# The TransformerLens class a model is read through.
Backend = Literal["TransformerBridge", "HookedTransformer", "HookedEncoder", "HookedEncoderDecoder"]
# The kind of attention sub-block: a single stack's layer, or one of the encoder-decoder's three.
Part = Literal["layer", "encoder", "decoder_self", "decoder_cross"]

MEASURES: tuple[Measure, ...] = get_args(Measure)
ROWS: tuple[Rows, ...] = get_args(Rows)
KERNELS: tuple[Kernel, ...] = get_args(Kernel)
VECTOR_MEASURES: tuple[Measure, ...] = ("l1", "l2", "norm")  # need the vectors T_i(x_j)
