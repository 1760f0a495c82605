"""A one-time cross-check of the TransformerLens bridge against the Hugging Face model it wraps.

ALTI is checked against the bridge's own activations, so it is exact for the model the bridge
computes. Where the bridge computes a different model than transformers (measured: Falcon-40B's
layout, `new_decoder_architecture` with grouped kv heads, logits off by 1.2–2.5), ALTI is exact for
the wrong model. This check rebuilds the plain Hugging Face model around the bridge's own weight
tensors (no copy: it is built on the meta device and the tensors are assigned), runs both on the
same tokens and compares the logits at real positions.
"""

import math
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from alti_lens.errors import BridgeMismatchWarning, warn_user

from . import failures
from .models import BRIDGE, ModelInfo
from .protocol import HookedModel

_WRAPPER = "_original_component."


@dataclass(frozen=True)
class BridgeCheck:
    """How far the bridge's logits are from the Hugging Face model's, on the first checked call."""

    max_abs_diff: float  # NaN where the check could not run (see `note`)
    tolerance: float
    agrees: bool | None  # None: not checked (not a bridge, or the reference could not be built)
    note: str = ""

    def as_metadata(self) -> dict[str, Any]:
        """The check as a JSON-able dict (for a result's metadata)."""
        return {
            "max_abs_logit_diff": None if math.isnan(self.max_abs_diff) else self.max_abs_diff,
            "tolerance": self.tolerance,
            "agrees": self.agrees,
            "note": self.note,
        }


_CHECKED: "weakref.WeakKeyDictionary[Any, BridgeCheck]" = weakref.WeakKeyDictionary()


def last_check(model: HookedModel) -> BridgeCheck | None:
    """The cross-check already made of this model object, if any."""
    return _CHECKED.get(model)


def tolerance(dtype: torch.dtype, scale: float) -> float:
    """Two eager implementations of one model differ by rounding only: ~1e-6 relative in float32.
    1000 ulps of the model's dtype, relative to the logits' scale, and at most 5%: bfloat16's ulp
    (7.8e-3) would otherwise hide a wrong model."""
    return min(0.05, 1e3 * torch.finfo(dtype).eps) * max(1.0, scale)


def cross_check(
    model: HookedModel,
    info: ModelInfo,
    tokens: Tensor,
    mask: Tensor,
    decoder_tokens: Tensor | None = None,
) -> BridgeCheck:
    """Compare the bridge's logits with the wrapped Hugging Face model's, once per model object;
    warn (`BridgeMismatchWarning`) with the measured difference when they disagree."""
    done = _CHECKED.get(model)
    if done is not None:
        return done
    if info.backend != BRIDGE or getattr(model, "original_model", None) is None:
        result = BridgeCheck(math.nan, math.nan, None, f"not a bridge ({info.backend})")
    else:
        result = _compare(model, info, tokens.to(info.device), mask.to(info.device), decoder_tokens)
    _CHECKED[model] = result
    if result.agrees is False:
        warn_user(
            f"the TransformerLens bridge of {info.architecture} computes other logits than the "
            f"Hugging Face model it wraps: max|Δlogit| = {result.max_abs_diff:.3g} on these "
            f"inputs (tolerance {result.tolerance:.3g}). ALTI is exact for the bridge's model, "
            "not for the Hugging Face one: treat the results as those of a different model. "
            "Fix: report it to TransformerLens; check your TransformerLens version.",
            BridgeMismatchWarning,
        )
    return result


def _compare(
    model: HookedModel, info: ModelInfo, tokens: Tensor, mask: Tensor, decoder: Tensor | None
) -> BridgeCheck:
    reference = _rebuild(model.original_model)
    if isinstance(reference, str):
        return BridgeCheck(math.nan, math.nan, None, reference)
    kwargs: dict[str, Tensor] = {"attention_mask": mask}
    if decoder is not None:
        decoder = decoder.to(info.device)
    with torch.inference_mode():
        try:
            if decoder is None:
                ours = model(tokens, **kwargs)
            else:
                ours = model(tokens, decoder_input=decoder, **kwargs)
        except Exception as e:  # the bridge itself does not run: say so as alti would
            raise failures.forward_failed(model, info, e) from e
        try:
            extra = {} if decoder is None else {"decoder_input_ids": decoder}
            theirs = reference(input_ids=tokens, **kwargs, **extra).logits
        except Exception as e:  # the rebuilt Hugging Face model: a note, not a failed run
            note = f"the Hugging Face model did not run: {type(e).__name__}: {e}"
            return BridgeCheck(math.nan, math.nan, None, note)
    real = mask.bool() if decoder is None else torch.ones(decoder.shape, dtype=torch.bool)
    if ours.shape != theirs.shape:
        note = f"logit shapes differ: {tuple(ours.shape)} vs {tuple(theirs.shape)}"
        return BridgeCheck(math.inf, math.nan, False, note)
    diff = float((ours[real].double() - theirs[real].double()).abs().max())
    limit = tolerance(info.dtype, float(theirs[real].abs().max()))
    return BridgeCheck(diff, limit, diff <= limit)


def _rebuild(wrapped: Any) -> Any:
    """The plain Hugging Face model of `wrapped` (a bridged one), sharing its weight tensors; or a
    string that says why it cannot be built."""
    tensors: dict[str, Tensor] = {}
    # every name of each tensor (the bridge registers one tensor under several names)
    every = [
        *wrapped.named_parameters(remove_duplicate=False),
        *wrapped.named_buffers(remove_duplicate=False),
    ]
    for name, tensor in every:
        tensors.setdefault(name.replace(_WRAPPER, ""), tensor)
    try:
        with torch.device("meta"):
            reference = type(wrapped)._from_config(wrapped.config)
        reference.load_state_dict(tensors, strict=False, assign=True)
    except Exception as e:  # transformers' own constructors: say why instead of failing the run
        return f"could not rebuild {type(wrapped).__name__}: {type(e).__name__}: {e}"
    if hasattr(reference, "tie_weights"):
        reference.tie_weights()
    left = [n for n, t in [*reference.named_parameters(), *reference.named_buffers()] if t.is_meta]
    for name in left:  # buffers computed at init (rotary frequencies): the bridge's copy
        if name in tensors:
            _set(reference, name, tensors[name])
    left = [n for n, t in [*reference.named_parameters(), *reference.named_buffers()] if t.is_meta]
    if left:
        return f"could not rebuild {type(wrapped).__name__}: no weights for {left[:3]}"
    return reference.eval()


def _set(module: Any, name: str, tensor: Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    target = module.get_submodule(owner) if owner else module
    if leaf in target._buffers:
        target._buffers[leaf] = tensor
    else:
        target._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=False)
