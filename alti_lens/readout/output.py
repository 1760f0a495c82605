"""What lies between the final residual stream and the logits (ALTI-Logit, spec §5).

The logit must be linear in the final residual once the final norm's scale is frozen: the
unembedding, then a constant factor (Cohere's `logit_scale`, Granite's `1 / logits_scaling`,
Falcon-H1's `lm_head_multiplier`) and optionally Gemma-2's soft cap, which is undone exactly. The
bridge declares that path as its adapter's `apply_output_logits_transform` (the very function
TransformerLens' own logit lens applies); a model whose head is not linear (ModernBERT-decoder's
dense + activation + norm prediction head) is refused.
"""

import math

import torch

from alti_lens.errors import UnsupportedModelError

from .models import BRIDGE, ModelInfo
from .protocol import HookedModel

# Bridge components that TransformerLens' adapters place between `ln_final` and `unembed`: a
# BERT-style prediction head (dense → activation → norm), which is not linear in the residual.
_NONLINEAR_HEADS = ("prediction_head",)


def soft_cap(model: HookedModel) -> float | None:
    """The soft cap `c` of `logits = c · tanh(raw / c)` (Gemma-2, NanoChat), None if none."""
    cap = getattr(model.cfg, "output_logits_soft_cap", None)
    return float(cap) if cap is not None and cap > 0 else None


def logit_scale(model: HookedModel, info: ModelInfo) -> float:
    """The constant factor between the unembedding's output and the (pre-soft-cap) logits.

    Read from the bridge adapter's declared output transform `f`, probed in float64 at 0, 1 and
    2 after undoing the soft cap: a pure scale `s` gives `0, s, 2s`. Anything else (an offset, a
    non-linear map) has no per-token decomposition and is refused. 1 for TransformerLens 3.x
    models, whose output path is the unembedding (and the soft cap) alone."""
    if info.backend != BRIDGE:
        return 1.0
    transform = getattr(getattr(model, "adapter", None), "apply_output_logits_transform", None)
    if not callable(transform):
        return 1.0
    probe = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    out = torch.as_tensor(transform(probe.clone()), dtype=torch.float64)
    cap = soft_cap(model)
    if cap is not None:
        out = cap * torch.atanh(out / cap)
    zero, scale, double = (float(v) for v in out)
    linear = abs(zero) <= 1e-12 * abs(scale) and abs(double - 2 * scale) <= 1e-12 * abs(scale)
    if not (linear and math.isfinite(scale) and scale != 0):
        raise UnsupportedModelError(
            f"{info.architecture}'s output logits are not a constant multiple of the "
            f"unembedding's output (its output transform maps 0, 1, 2 to {out.tolist()}), so the "
            "logit has no exact per-token decomposition. Fix: use alti(model, inputs), which does "
            "not need the logit."
        )
    return scale


def check_linear_head(model: HookedModel, info: ModelInfo) -> None:
    """Refuse a model whose final residual reaches the unembedding through a non-linear head."""
    for name in _NONLINEAR_HEADS:
        if getattr(model, name, None) is not None:
            raise UnsupportedModelError(
                f"alti_logit needs a logit linear in the final residual stream, but "
                f"{info.architecture} applies a prediction head ({name}: a dense layer, an "
                "activation and a norm) between the final norm and the unembedding, which is not "
                "linear per source. Fix: use alti(model, inputs), which does not need the logit."
            )


def output_path(model: HookedModel, info: ModelInfo) -> tuple[float | None, float]:
    """`(soft_cap, logit_scale)` of a model whose head is linear, else UnsupportedModelError."""
    check_linear_head(model, info)
    return soft_cap(model), logit_scale(model, info)
