"""What you may ask of a loaded model besides its ALTI: its kind, size and tokens, its own
predictions, and the value-zeroing intervention the evaluation compares ALTI with.

The public face of `alti_lens.readout` (the one package that knows TransformerLens) for the command
line, the evaluation and users: these names stay when readout's modules change. Every function
takes a model `alti` accepts (a `TransformerBridge`, or a TransformerLens 3.x hooked model).
"""

import torch
from jaxtyping import Float, Int
from torch import Tensor

from . import readout
from .readout import HookedModel, gradients, patching
from .readout.boot import load_model

__all__ = [
    "EmbeddingGradients",
    "HookedModel",
    "embedding_gradients",
    "is_causal_lm",
    "is_encoder_decoder",
    "last_hidden",
    "load_model",
    "logits",
    "n_ctx",
    "n_layers",
    "next_token_logits",
    "str_tokens",
    "tokenize",
    "value_zeroing",
    "value_zeroing_encoder_decoder",
]

# Plain forward passes and value zeroing (see `alti_lens.readout.patching` for the definitions).
logits = patching.logits
last_hidden = patching.last_hidden
value_zeroing = patching.value_zeroing
value_zeroing_encoder_decoder = patching.value_zeroing_encoder_decoder
# Gradient baselines w.r.t. the token embeddings (see `alti_lens.readout.gradients`).
embedding_gradients = gradients.embedding_gradients
EmbeddingGradients = gradients.EmbeddingGradients


def is_encoder_decoder(model: HookedModel) -> bool:
    """True for encoder-decoder models (explained with `alti_plus`)."""
    return readout.is_encoder_decoder(model)


def is_causal_lm(model: HookedModel) -> bool:
    """True for decoder-only language models (whose last position predicts the next token)."""
    return readout.is_causal_lm(model)


def n_layers(model: HookedModel) -> int:
    """The number of blocks of a decoder-only or encoder model (the `layer` axis of `alti`)."""
    return readout.describe(model).n_layers


def n_ctx(model: HookedModel) -> int:
    """The longest input the model reads, in tokens (its config's `n_ctx`; for an
    encoder-decoder, the longest source and the longest decoder input)."""
    return readout.describe(model, encoder_decoder=readout.is_encoder_decoder(model)).n_ctx


def tokenize(model: HookedModel, texts: str | list[str]) -> tuple[Int[Tensor, "batch pos"], Tensor]:
    """`(tokens, attention_mask)` of `texts` exactly as `alti` tokenizes them (each text alone,
    then right-padded); words the tokenizer cannot read are warned of
    (`UnknownTokenWarning`)."""
    return readout.tokenize(model, [texts] if isinstance(texts, str) else list(texts))


def str_tokens(model: HookedModel, tokens: Int[Tensor, "batch pos"]) -> list[list[str]]:
    """Readable token strings, one per position (padding included, so indices match)."""
    return readout.str_tokens(model, tokens)


def next_token_logits(
    model: HookedModel, tokens: Int[Tensor, "batch pos"], attention_mask: Tensor | None = None
) -> Float[Tensor, "batch d_vocab"]:
    """The logits at each sequence's last real token (decoder-only models), from one plain
    forward pass, on the CPU as float32."""
    mask = torch.ones_like(tokens) if attention_mask is None else attention_mask
    return readout.next_token_logits(model, readout.describe(model), tokens, mask)
