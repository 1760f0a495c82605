"""The model's own next-token prediction (for summaries that name what is being explained)."""

import torch
from jaxtyping import Float
from torch import Tensor

from .models import (
    HOOKED_ENCODER,
    HOOKED_ENCODER_DECODER,
    ModelInfo,
    backend_of,
    is_encoder_decoder,
)
from .protocol import HookedModel
from .run import eval_mode
from .single import mask_kwargs

# Hugging Face heads of encoder models (bidirectional attention): no next-token prediction.
_ENCODER_HEADS = (
    "ForMaskedLM", "ForPreTraining", "ForSequenceClassification", "ForTokenClassification",
    "ForQuestionAnswering", "ForMultipleChoice", "ForNextSentencePrediction",
)  # fmt: skip


def is_causal_lm(model: HookedModel) -> bool:
    """True for decoder-only language models (whose last position predicts the next token).

    The bridged model's architecture decides first: TransformerLens 3.x's bridge sets
    `cfg.attention_dir = "causal"` for BERT (`BertForMaskedLM`), which 4.x sets to
    "bidirectional"."""
    if backend_of(model) in (HOOKED_ENCODER, HOOKED_ENCODER_DECODER) or is_encoder_decoder(model):
        return False
    if str(getattr(model.cfg, "architecture", None) or "").endswith(_ENCODER_HEADS):
        return False
    return getattr(model.cfg, "attention_dir", "causal") == "causal"


def next_token_logits(
    model: HookedModel, info: ModelInfo, tokens: Tensor, mask: Tensor
) -> Float[Tensor, "batch d_vocab"]:
    """Logits at each sequence's last real token, from one plain forward pass (no hooks)."""
    kwargs = mask_kwargs(info, mask)
    with eval_mode(model), torch.inference_mode():
        logits = model(tokens.to(info.device), return_type="logits", **kwargs)
    last = mask.long().cumsum(-1).argmax(-1)  # index of the last 1 in each row
    return logits[torch.arange(len(tokens)), last.to(logits.device)].float().cpu()
