"""Validation of user inputs, masks and options, with errors that say how to fix them.

The entry points validate here first, then call their shape-checked inner functions
(`alti_lens._contracts`).
"""

import torch
from torch import Tensor

from . import readout
from ._contracts import validates_arguments as validates_arguments  # re-exported
from ._types import MEASURES, ROWS, Measure, Rows
from .errors import InputError

_TOLERANCES = {  # (rtol, atol) of the exactness check (spec §2.5)
    torch.float64: (1e-9, 1e-12),
    torch.float32: (1e-5, 1e-7),
    torch.bfloat16: (1e-2, 1e-4),
    torch.float16: (1e-2, 1e-4),
}


def check_measure(measure: object) -> Measure:
    """`measure` as one of `MEASURES`, else an `InputError` naming them."""
    for known in MEASURES:
        if measure == known:
            return known
    raise InputError(
        f"unknown measure {measure!r}; expected one of {', '.join(map(repr, MEASURES))}. "
        'Fix: measure="l1" is ALTI; the others are offered for comparison.'
    )


def check_rows(rows: object, per_head: bool) -> Rows:
    """`rows` as one of `ROWS` (`"last"` not with `per_head`), else an `InputError`."""
    for known in ROWS:
        if rows == known:
            if known == "last" and per_head:
                raise InputError(
                    'rows="last" does not compute the last layer\'s other rows, which '
                    'per_head=True needs. Fix: use rows="all" with per_head=True.'
                )
            return known
    raise InputError(
        f'rows must be "all" (every query position) or "last" (the rollout of each '
        f'sequence\'s last real token only), got {rows!r}. Fix: rows="all" unless only '
        "each sequence's last token is explained."
    )


def check_chunk_size(chunk_size: object) -> int | None:
    """`chunk_size` as None or a positive int, else an `InputError`."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(
            f"chunk_size must be a positive int (query rows per chunk) or None, got "
            f"{chunk_size!r}. Fix: chunk_size=None chooses it from the free memory."
        )
    return chunk_size


def check_max_new_tokens(max_new_tokens: object) -> int:
    """`max_new_tokens` as a positive int, else an `InputError`."""
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 1
    ):
        raise InputError(
            f"max_new_tokens must be a positive int (the most target tokens generated), got "
            f"{max_new_tokens!r}. Fix: max_new_tokens=64 (the default), or pass the target."
        )
    return max_new_tokens


def compute_dtype(model_dtype: torch.dtype, dtype: object) -> torch.dtype:
    """float32 by default, float64 for float64 models; half-precision models are upcast."""
    if dtype is None:
        return torch.float64 if model_dtype == torch.float64 else torch.float32
    if not isinstance(dtype, torch.dtype) or dtype not in (torch.float32, torch.float64):
        raise InputError(
            f"dtype must be torch.float32 or torch.float64 (or None), got {dtype!r}: the measure "
            "is a difference of large similar numbers and needs at least float32. Fix: "
            "dtype=None (float32, or float64 for float64 models)."
        )
    return dtype


def tolerance(dtypes: list[torch.dtype]) -> tuple[float, float]:
    """The loosest (rtol, atol) among the dtypes the model and the decomposition computed in."""
    pairs = [_TOLERANCES.get(d, _TOLERANCES[torch.float32]) for d in dtypes]
    return max(p[0] for p in pairs), max(p[1] for p in pairs)


def _as_texts(inputs: object, mask: object, name: str, mask_name: str) -> list[str] | Tensor:
    """The validated list of texts, or `inputs` itself when it is a token tensor."""
    if isinstance(inputs, Tensor):
        return inputs
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)):
        raise InputError(
            f"{name} must be a string, a list of strings or an int tensor [batch, pos]; "
            f"got {type(inputs).__name__}. Fix: pass the text, or model.to_tokens(text)."
        )
    if len(inputs) == 0:
        raise InputError(
            f"{name} is an empty list; expected at least one string. Fix: pass a text to explain."
        )
    if mask is not None:
        raise InputError(
            f"{mask_name} was given with text {name}; text is padded by alti_lens itself, so no "
            "mask is expected. "
            f"Fix: drop {mask_name}, or pass token ids with their mask."
        )
    for i, text in enumerate(inputs):
        if not isinstance(text, str):
            raise InputError(
                f"{name}[{i}] is a {type(text).__name__}; expected a string. Fix: pass a list of "
                "strings only, or token ids as one int tensor."
            )
        if not text.strip():
            raise InputError(
                f"{name}[{i}] is an empty string; expected text to explain. Fix: drop it or "
                "give it words."
            )
    return list(inputs)


def _check_length(tokens: Tensor, mask: Tensor, n_ctx: int, name: str) -> None:
    if tokens.shape[1] > n_ctx:
        n = int(mask.sum(-1).max())
        raise InputError(
            f"{name} have {tokens.shape[1]} positions ({n} real tokens in the longest sequence), "
            f"longer than the model's context of {n_ctx} (cfg.n_ctx); expected at most {n_ctx}. "
            "Fix: shorten or split the text."
        )


def prepare(
    model: readout.HookedModel,
    info: readout.ModelInfo,
    inputs: object,
    attention_mask: object,
    *,
    name: str = "inputs",
    mask_name: str = "attention_mask",
) -> tuple[Tensor, Tensor]:
    """Tokens `[batch, pos]` (long, CPU) and mask (long, 1 = real) from whatever the user passed."""
    texts = _as_texts(inputs, attention_mask, name, mask_name)
    if isinstance(texts, Tensor):
        tokens = _check_tokens(texts, info, name)
        mask = _check_mask(attention_mask, tokens, mask_name)
    else:
        tokens, mask = readout.tokenize(model, texts, name)
    _check_length(tokens, mask, info.n_ctx, name)
    return tokens, mask


def prepare_target(
    model: readout.HookedModel,
    info: readout.ModelInfo,
    target: object,
    target_attention_mask: object,
) -> tuple[Tensor, Tensor, Tensor]:
    """Decoder input `[batch, tgt_pos]`, its mask, and the token each row predicts (-1: unknown).

    Text is tokenized as a target and shifted right here; ids must already be the decoder input.
    """
    mask_name = "target_attention_mask"
    texts = _as_texts(target, target_attention_mask, "target", mask_name)
    if not isinstance(texts, Tensor):
        tokens, mask, labels = readout.tokenize_targets(model, info, texts)
    else:
        tokens = _check_tokens(texts, info, "target")
        mask = _check_mask(target_attention_mask, tokens, mask_name)
        start = info.decoder_start_token_id
        if start is not None and not bool((tokens[:, 0] == start).all()):
            raise InputError(
                f"target ids must be the decoder input: the target shifted right, starting with "
                f"the decoder start token {start}; got first tokens {tokens[:, 0].tolist()}. "
                "Fix: prepend the start token (and drop the last token), or pass the target as "
                "text and alti_lens shifts it."
            )
        if not bool(mask[:, 0].all()):
            raise InputError(
                f"{mask_name} must mark the decoder start token (position 0) as real; got 0 there "
                "in some sequence. Fix: set the mask's first column to 1 (padding goes right)."
            )
        # Row t predicts the decoder input's token t + 1, where the input has one.
        labels = torch.full_like(tokens, -1)
        labels[:, :-1] = torch.where(mask[:, 1:].bool(), tokens[:, 1:], -1)
    _check_length(tokens, mask, info.n_ctx, "target")
    return tokens, mask, labels


def _check_tokens(tokens: Tensor, info: readout.ModelInfo, name: str = "inputs") -> Tensor:
    if tokens.dtype in (torch.bool,) or tokens.is_floating_point() or tokens.is_complex():
        raise InputError(
            f"{name}: token tensor has dtype {tokens.dtype}; expected an integer dtype "
            "(torch.long). "
            "Fix: pass model.to_tokens(text), or tokens.long() if they are ids stored as floats."
        )
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2:
        raise InputError(
            f"{name}: token tensor has shape {tuple(tokens.shape)}; expected [batch, pos] "
            "(or [pos]). Fix: stack the sequences into one [batch, pos] tensor (pad on the "
            "right, with an attention mask)."
        )
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise InputError(
            f"{name}: token tensor of shape {tuple(tokens.shape)} is empty; expected tokens. "
            "Fix: pass at least one sequence of at least one token."
        )
    tokens = tokens.detach().to("cpu", torch.long)
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or (info.d_vocab > 0 and high >= info.d_vocab):
        raise InputError(
            f"{name}: token ids range over [{low}, {high}], outside the model's vocabulary "
            f"[0, {info.d_vocab - 1}]; expected ids within it. Fix: tokenize with this model's "
            "tokenizer (model.to_tokens)."
        )
    return tokens


def _check_mask(mask: object, tokens: Tensor, name: str = "attention_mask") -> Tensor:
    if mask is None:
        return torch.ones_like(tokens)
    if not isinstance(mask, Tensor):
        raise InputError(
            f"{name} must be a tensor [batch, pos], got {type(mask).__name__}. "
            f"Fix: torch.tensor({name})."
        )
    if mask.ndim == 1:
        mask = mask[None]
    if tuple(mask.shape) != tuple(tokens.shape):
        raise InputError(
            f"{name} has shape {tuple(mask.shape)} but the tokens have shape "
            f"{tuple(tokens.shape)}; expected one 1/0 entry per token. Fix: pass the mask made "
            "with these tokens."
        )
    mask = mask.detach().to("cpu")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise InputError(
            f"{name} must contain only 0 (padding) and 1 (real token); got other values. "
            f"Fix: ({name} != 0).long()."
        )
    mask = mask.long()
    empty = (mask.sum(-1) == 0).nonzero().flatten().tolist()
    if empty:
        raise InputError(
            f"sequences {empty} have no real token in {name} (all zeros); expected at least one 1 "
            "per sequence. Fix: drop those sequences."
        )
    return mask
