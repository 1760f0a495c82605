"""The one place that knows TransformerLens (`alti_lens.readout`, a small package).

It validates the model, tokenizes text, names the hook points, runs the model once with hooks that
keep only what ALTI needs, and hands each layer's attention sub-block to the caller as plain tensors
(`decompose.BlockTensors`) as soon as that layer has run, so that no more than one layer's
attention pattern is held at a time.

Backends: TransformerLens 4.x `TransformerBridge` (and 3.x's), and the deprecated 3.x
`HookedTransformer`, `HookedEncoder` and `HookedEncoderDecoder`. The hook names are shared where
they can be (the bridge exposes the HookedTransformer names as aliases); the differences are
tabled in `single` and `encdec`.

Modules: `models` (which backend, shapes, weight processing), `tokens` (text ↔ ids, generation),
`run` (one forward pass with hooks), `single` (single-stack hook plans), `encdec` (ALTI+ plans),
`boot` (a model by built-in name, directory or hub name), `predict` (plain next-token logits),
`protocol` (`HookedModel`: what alti_lens needs of a model), `failures` (errors naming why a
model's own forward pass failed), `crosscheck` (the bridge against the Hugging Face model it wraps).
"""

from .boot import DTYPES, builtin_models, load_model, resolve
from .crosscheck import BridgeCheck, cross_check, last_check
from .encdec import DECODER_CROSS, DECODER_SELF, ENCODER, read_encoder_decoder
from .models import (
    BRIDGE,
    HOOKED_ENCODER,
    HOOKED_ENCODER_DECODER,
    HOOKED_TRANSFORMER,
    ModelInfo,
    backend_of,
    describe,
    first_time,
    is_encoder_decoder,
    tl_version,
    weight_processing,
)
from .predict import is_causal_lm, next_token_logits
from .protocol import HookedModel
from .single import block_norm_affines, final_norm_affine, read_blocks, unembedding
from .tokens import (
    generate,
    single_token_id,
    special_tokens_mask,
    str_tokens,
    tokenize,
    tokenize_targets,
    unknown_token_id,
    unknown_words,
)

__all__ = [
    "BRIDGE",
    "DECODER_CROSS",
    "DECODER_SELF",
    "DTYPES",
    "ENCODER",
    "HOOKED_ENCODER",
    "HOOKED_ENCODER_DECODER",
    "HOOKED_TRANSFORMER",
    "BridgeCheck",
    "HookedModel",
    "ModelInfo",
    "backend_of",
    "block_norm_affines",
    "builtin_models",
    "cross_check",
    "describe",
    "final_norm_affine",
    "first_time",
    "generate",
    "is_causal_lm",
    "is_encoder_decoder",
    "last_check",
    "load_model",
    "next_token_logits",
    "read_blocks",
    "read_encoder_decoder",
    "resolve",
    "single_token_id",
    "special_tokens_mask",
    "str_tokens",
    "tl_version",
    "tokenize",
    "tokenize_targets",
    "unembedding",
    "unknown_token_id",
    "unknown_words",
    "weight_processing",
]
