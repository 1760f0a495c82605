"""Why a model's forward pass failed or produced NaN: the errors that name the real cause.

A failure inside TransformerLens or transformers is not a bug of the user's call into `alti_lens`,
but the user meets it there; these messages say where it came from and what works instead.
"""

import torch
from torch import Tensor

from alti_lens.errors import ModelForwardError, NonFiniteActivationError

from .models import ModelInfo
from .protocol import HookedModel

_HOW_TO_WIDEN = (
    "run the model in float32 and let alti_lens decompose in float64: "
    "alti(model_float32, inputs, dtype=torch.float64) (the same for alti_plus and alti_logit)"
)


def sliding_window(model: HookedModel) -> int | None:
    """The model's sliding attention window, if it has one (read off the Hugging Face config)."""
    for cfg in (getattr(getattr(model, "original_model", None), "config", None), model.cfg):
        window = getattr(cfg, "sliding_window", None)
        if isinstance(window, int) and window > 0:
            return window
    return None


def forward_failed(model: HookedModel, info: ModelInfo, error: Exception) -> ModelForwardError:
    """The error for an exception raised by the model's own forward pass."""
    where = f"{type(error).__name__}: {error}"
    message = (
        f"{info.architecture} failed in its own forward pass{' in float64' * _wide(info)} "
        f"({where}), inside TransformerLens or transformers, not in alti_lens: `model(tokens)` "
        "fails the same way, and alti_lens cannot decompose a model that does not run."
    )
    if _wide(info):
        return ModelForwardError(
            f"{message} Some models run in float32 but not in float64 (mixture-of-experts "
            "layers, whose grouped matrix multiply takes float32/bfloat16/float16 only; masks "
            f"that overflow). Fix: {_HOW_TO_WIDEN}; for mixture-of-experts layers, also "
            "`model.original_model.set_experts_implementation('eager')` (a Hugging Face "
            "setting) runs them in float64."
        )
    return ModelForwardError(
        f"{message} Fix: none in alti_lens; check that this architecture runs in your "
        "TransformerLens version (docs/SUPPORTED_MODELS.md)."
    )


def _wide(info: ModelInfo) -> bool:
    return info.dtype == torch.float64


def not_finite(
    model: HookedModel, info: ModelInfo, real: Tensor, error: NonFiniteActivationError
) -> NonFiniteActivationError:
    """`error`, with the real cause where it is known: in float64, Hugging Face's sliding-window
    attention gives NaN for a padded row whose window holds only padding, and the NaN reaches the
    real rows in the next layer (measured on Mistral: padding ≥ the window)."""
    window = sliding_window(model)
    padding = int((~real).sum(-1).max()) if real.numel() else 0
    if info.dtype != torch.float64 or window is None or padding < window:
        return error
    return NonFiniteActivationError(
        f"{error.args[0].split(';')[0]}. Cause: in float64, the sliding-window attention of "
        f"{info.architecture} (window {window}) gives NaN when a sequence has at least a window "
        f"of padding (here up to {padding} padded positions), in transformers itself. Fix: "
        f"{_HOW_TO_WIDEN}; or batch texts of similar lengths, or pass them one at a time."
    )
