"""Validation of user inputs, masks and options, with errors that say how to fix them."""

from typing import Any

import torch
from torch import Tensor

from . import readout
from .contributions import MEASURES
from .errors import InputError

_TOLERANCES = {  # (rtol, atol) of the exactness check (spec §2.5)
    torch.float64: (1e-9, 1e-12),
    torch.float32: (1e-5, 1e-7),
    torch.bfloat16: (1e-2, 1e-4),
    torch.float16: (1e-2, 1e-4),
}


def check_measure(measure: object) -> str:
    if measure not in MEASURES:
        raise InputError(
            f"unknown measure {measure!r}; expected one of {', '.join(map(repr, MEASURES))}. "
            'Fix: measure="l1" is ALTI; the others are offered for comparison.'
        )
    return str(measure)


def check_chunk_size(chunk_size: object) -> int | None:
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(
            f"chunk_size must be a positive int (query rows per chunk) or None, got {chunk_size!r}."
        )
    return chunk_size


def compute_dtype(model_dtype: torch.dtype, dtype: object) -> torch.dtype:
    """float32 by default, float64 for float64 models; half-precision models are upcast."""
    if dtype is None:
        return torch.float64 if model_dtype == torch.float64 else torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise InputError(
            f"dtype must be torch.float32 or torch.float64 (or None), got {dtype!r}: the measure "
            "is a difference of large similar numbers and needs at least float32."
        )
    return dtype  # type: ignore[return-value]


def tolerance(dtypes: list[torch.dtype]) -> tuple[float, float]:
    """The loosest (rtol, atol) among the dtypes the model and the decomposition computed in."""
    pairs = [_TOLERANCES.get(d, _TOLERANCES[torch.float32]) for d in dtypes]
    return max(p[0] for p in pairs), max(p[1] for p in pairs)


def prepare(
    model: Any, info: readout.ModelInfo, inputs: object, attention_mask: object
) -> tuple[Tensor, Tensor]:
    """Tokens `[batch, pos]` (long, CPU) and mask (long, 1 = real) from whatever the user passed."""
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(inputs, (list, tuple)):
        if len(inputs) == 0:
            raise InputError("inputs is an empty list; expected at least one string.")
        if attention_mask is not None:
            raise InputError(
                "attention_mask was given with text inputs; text is padded by alti_lens itself. "
                "Fix: drop attention_mask, or pass token ids with their mask."
            )
        for i, text in enumerate(inputs):
            if not isinstance(text, str):
                raise InputError(f"inputs[{i}] is a {type(text).__name__}; expected a string.")
            if not text.strip():
                raise InputError(f"inputs[{i}] is an empty string; expected text to explain.")
        tokens, mask = readout.tokenize(model, list(inputs))
    elif isinstance(inputs, Tensor):
        tokens = _check_tokens(inputs, info)
        mask = _check_mask(attention_mask, tokens)
    else:
        raise InputError(
            f"inputs must be a string, a list of strings or an int tensor [batch, pos]; "
            f"got {type(inputs).__name__}."
        )
    n = int(mask.sum(-1).max())
    if tokens.shape[1] > info.n_ctx:
        raise InputError(
            f"inputs have {tokens.shape[1]} positions ({n} real tokens in the longest sequence), "
            f"longer than the model's context of {info.n_ctx} (cfg.n_ctx). "
            "Fix: shorten or split the text."
        )
    return tokens, mask


def _check_tokens(tokens: Tensor, info: readout.ModelInfo) -> Tensor:
    if tokens.dtype in (torch.bool,) or tokens.is_floating_point() or tokens.is_complex():
        raise InputError(
            f"token tensor has dtype {tokens.dtype}; expected an integer dtype (torch.long). "
            "Fix: pass model.to_tokens(text), or tokens.long() if they are ids stored as floats."
        )
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2:
        raise InputError(
            f"token tensor has shape {tuple(tokens.shape)}; expected [batch, pos] (or [pos])."
        )
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise InputError(f"token tensor of shape {tuple(tokens.shape)} is empty; expected tokens.")
    tokens = tokens.detach().to("cpu", torch.long)
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or (info.d_vocab > 0 and high >= info.d_vocab):
        raise InputError(
            f"token ids range over [{low}, {high}], outside the model's vocabulary "
            f"[0, {info.d_vocab - 1}]. Fix: tokenize with this model's tokenizer (model.to_tokens)."
        )
    return tokens


def _check_mask(mask: object, tokens: Tensor) -> Tensor:
    if mask is None:
        return torch.ones_like(tokens)
    if not isinstance(mask, Tensor):
        raise InputError(
            f"attention_mask must be a tensor [batch, pos], got {type(mask).__name__}."
        )
    if mask.ndim == 1:
        mask = mask[None]
    if tuple(mask.shape) != tuple(tokens.shape):
        raise InputError(
            f"attention_mask has shape {tuple(mask.shape)} but the tokens have shape "
            f"{tuple(tokens.shape)}; expected one 1/0 entry per token."
        )
    mask = mask.detach().to("cpu")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise InputError("attention_mask must contain only 0 (padding) and 1 (real token).")
    mask = mask.long()
    empty = (mask.sum(-1) == 0).nonzero().flatten().tolist()
    if empty:
        raise InputError(f"sequences {empty} have no real token in attention_mask (all zeros).")
    return mask
