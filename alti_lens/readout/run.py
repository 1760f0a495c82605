"""Running a model once with hooks that hand each attention sub-block over as soon as it is done.

A `Plan` names the hook points one sub-block needs (by role) and how to assemble what they caught
into `BlockTensors`. All plans of a model are served by one forward pass; a plan's tensors are
dropped as soon as it has been handed over, so only about one layer's attention is held at a time.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from alti_lens._types import Part
from alti_lens.core.handover import BlockTensors, NormTensors
from alti_lens.errors import AltiLensError, NonFiniteActivationError, UnsupportedModelError

from .models import BRIDGE, ModelInfo
from .protocol import HookedModel

# (part, layer): ("layer", 3), ("encoder", 0), ("decoder_cross", 1), ...; "final" (the final
# norm's plan) is a key of the read-out only, never handed over.
Key = tuple[Part | Literal["final"], int]


@dataclass
class Plan:
    """Hook names (by role) of one sub-block and how to assemble them into `BlockTensors`."""

    key: Key
    names: dict[str, str]
    # None: the plan only collects (e.g. the final norm's scale) and hands nothing over
    assemble: Callable[[dict[str, Tensor], list[str]], BlockTensors | None]
    rows_real: Tensor  # [batch, query_pos] bool: real rows, for the finite check
    keys_real: Tensor  # [batch, key_pos] bool: real key positions (the `v` role)
    # role -> position axis of its hook's activation, where not 1 (MLA's `hook_v` is `[batch,
    # head, pos, d_head]`): moved to axis 1 as it is caught, so every role is `[batch, pos, ...]`
    positions: dict[str, int] = field(default_factory=dict)
    # A collecting plan whose hooks may fire more than once, the last firing being the one it
    # wants: NanoChat runs its final norm module on the embeddings too, before the first block.
    repeats: bool = False
    # Roles read from a Hugging Face module's output instead of a hook point (`layouts`):
    # role -> (module, its output -> the tensor).
    taps: dict[str, tuple[Any, Callable[[Any], Tensor]]] = field(default_factory=dict)
    # Conversions of what a role's hook caught into the layout `BlockTensors` expects (`layouts`).
    adapt: dict[str, Callable[[Tensor], Tensor]] = field(default_factory=dict)
    # Roles whose hook may not fire in this layout (the plan tells from the others which it
    # needs). Such a plan is handed over once every other role is in and a later plan's hook
    # fires, or the forward pass ends.
    optional: frozenset[str] = frozenset()


def fired_after(order: list[str], later: str, earlier: str) -> bool:
    """Whether hook `later` fired after hook `earlier` in this forward pass."""
    return order.index(later) > order.index(earlier)


def norm_affine(
    model: HookedModel, backend: str, ln: Any
) -> tuple[Tensor | None, Tensor | None, bool]:
    """A norm module's effective `γ` and `β` (None where absent) and whether it centres."""
    if backend == BRIDGE:
        weight = getattr(ln, "weight", None)
        # Gemma stores γ − 1. 4.x says so on the norm, 3.x only in the config.
        offset = getattr(ln, "uses_weight_offset", None)
        if offset is None:
            offset = getattr(model.cfg, "rmsnorm_uses_offset", False)
        if weight is not None and offset:
            weight = 1.0 + weight
        rms = _is_rms(ln)
        bias = None if rms else getattr(ln, "bias", None)
        centred = not rms
    else:
        weight, bias = getattr(ln, "w", None), getattr(ln, "b", None)
        centred = type(ln).__name__.startswith("LayerNorm")
    return (
        None if weight is None else weight.detach(),
        None if bias is None else bias.detach(),
        centred,
    )


def recomputable_rms(ln: Any) -> bool:
    """Whether `rms_scale` can recompute this norm's scale: a Hugging Face RMSNorm with an eps."""
    module = getattr(ln, "original_component", ln)
    has_eps = getattr(module, "variance_epsilon", getattr(module, "eps", None)) is not None
    return has_eps and "RMSNorm" in type(module).__name__


def rms_scale(ln: Any, u: Tensor) -> Tensor:
    """An RMSNorm's real scale `s = sqrt(mean(u²) + eps)` of its input `u`, for norms whose bridge
    has no `hook_scale` (Gemma 4's plain components): computed as Hugging Face's RMSNorms do, in
    float32 whatever the model's dtype (`pow(mean + eps, -0.5)`), so the exactness check holds to
    float32 (`hf_rms_precision`)."""
    module = getattr(ln, "original_component", ln)
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    if eps is None or not recomputable_rms(ln):
        raise UnsupportedModelError(
            f"the norm {type(module).__name__} exposes no hook_scale and is not an RMSNorm "
            "whose scale alti_lens can recompute from its input. This norm is not supported."
        )
    inverse = torch.pow(u.float().pow(2).mean(-1, keepdim=True) + float(eps), -0.5)
    return inverse.to(u.dtype if u.dtype == torch.float64 else torch.float32).reciprocal()


def _is_rms(ln: Any) -> bool:
    flag = getattr(ln, "uses_rms_norm", None)
    if flag is not None:
        return bool(flag)
    # a plain bridge component around the Hugging Face norm (Gemma 4): the norm's class says
    return "RMSNorm" in type(getattr(ln, "original_component", ln)).__name__


def norm_tensors(model: HookedModel, backend: str, ln: Any, scale: Tensor) -> NormTensors:
    """A norm module's effective affine and its real scale `[batch, pos]`."""
    weight, bias, centred = norm_affine(model, backend, ln)
    scale = scale.reshape(scale.shape[0], scale.shape[1])
    return NormTensors(weight=weight, bias=bias, scale=scale, centred=centred)


def hf_rms_precision(backend: str, norm: NormTensors | None) -> torch.dtype | None:
    """Hugging Face RMSNorms compute in float32 whatever the model's dtype (measured: 2.4e-7 error
    of a float64 Gemma-2 sandwich norm rebuilt from its float64 scale), so the check cannot be
    tighter than float32 there."""
    return torch.float32 if backend == BRIDGE and norm is not None and not norm.centred else None


def hf_rms_block(backend: str, block: Any) -> torch.dtype | None:
    """float32 where a bridged block has any RMSNorm (pre-norm ones too, which the decomposition
    never rebuilds): Hugging Face computes their variance in float32 whatever the model's dtype
    (measured: T5 in float64 differs by 1e-7 between TL 3.x and the bridge), so the model's
    residual stream carries float32 rounding. (T5's norm says `uses_rms_norm = False`.)"""
    if backend != BRIDGE:
        return None
    for module in block.modules():
        if getattr(module, "uses_rms_norm", False) or "RMSNorm" in type(module).__name__:
            return torch.float32
    return None


# Architectures whose attention scores Hugging Face computes in float32 whatever the model's dtype,
# in a way the hooked pattern does not show (its values are not float32s): measured on GPT-J, whose
# float64 model differs by 9.7e-9 between a padded batch and single runs (GPT-2: 1.8e-15).
_FLOAT32_SCORES = ("GPTJ",)


def float32_scores(architecture: str) -> bool:
    """Whether Hugging Face computes this architecture's attention scores in float32 whatever
    the model's dtype (GPT-J), which its pattern does not show."""
    return architecture.startswith(_FLOAT32_SCORES)


def computed_precision(
    precision: torch.dtype | None, *computed: Tensor, float32_scores: bool = False
) -> torch.dtype | None:
    """The narrowest dtype the model computed a block in, where narrower than its weights.

    `precision` is what the exactness check already knows (`hf_rms_precision`); `computed` are
    tensors the model produced (its attention pattern). A float64 tensor every value of which is
    a float32 was computed in float32 and cast up: Hugging Face's eager attention takes the
    softmax in float32 for OPT, Llama, Gemma-2 and computes GPT-J's scores in float32, even in
    float64 models. Such a model's own activations differ by float32 rounding between a padded
    batch and a single run (measured 6e-8 on AVX2 machines), so comparisons of two runs can be no
    tighter than this. Exact zeros and ones (masked keys, one-key rows) say nothing and are left
    out; a float64 value is a float32 by chance with probability 2^-29."""
    if precision is not None:
        return precision
    if float32_scores and any(t.dtype == torch.float64 for t in computed):
        return torch.float32
    for tensor in computed:
        if tensor.dtype != torch.float64:
            continue
        informative = tensor[(tensor != 0) & (tensor != 1)]
        if informative.numel() > 0 and bool((informative.float().double() == informative).all()):
            return torch.float32
    return None


@contextmanager
def eval_mode(model: HookedModel) -> Iterator[None]:
    """Disable dropout for the run and restore every module's own training flag afterwards.

    Only modules in training mode are touched: `model.eval()` and restoring every flag walk the
    whole module tree twice through `nn.Module.__setattr__` (measured 40 ms a call on GPT-2
    small, a quarter of a 128-token forward pass), for models that are almost always in eval."""
    training = [m for m in model.modules() if m.training]
    for m in training:
        m.training = False
    try:
        yield
    finally:
        for m in training:
            m.training = True


def _all_finite(values: Tensor) -> bool:
    """Whether every value is finite, with one reduction where it can: a sum is finite only if
    every term is (a NaN or infinite term makes it NaN or infinite, in any order of summation),
    so a finite sum proves it without the elementwise mask `isfinite` writes (measured ~10× faster
    at 128 tokens). A non-finite sum of finite values (overflow) falls back to the mask."""
    if values.is_floating_point():
        wide = torch.float64 if values.dtype == torch.float64 else torch.float32
        if bool(torch.isfinite(values.sum(dtype=wide))):
            return True
    return bool(torch.isfinite(values).all())


def _check_finite(name: str, tensor: Tensor, real: Tensor, *, pattern: bool = False) -> None:
    """Raise on NaN/inf at real (unpadded) positions; `real` is `[batch, pos]` bool; `pattern`:
    `tensor` is `[batch, head, query, key]`. The mask goes where the tensor is (a layer of a model
    split over devices is on its own)."""
    real = real.to(tensor.device)
    if bool(real.all()):
        values = tensor  # no padding: check everything without copying
    elif pattern and tensor.dim() == 4 and (tensor.shape[0], tensor.shape[2]) == real.shape:
        # (a pattern of other rows, e.g. TL 3.x's bridge firing on T5's position bias, is
        # checked whole below)
        values = tensor.transpose(1, 2)[real]  # [rows, head, key]
    elif not pattern and tensor.shape[:2] == real.shape:
        values = tensor[real]
    else:
        values = tensor
    if not _all_finite(values):
        raise NonFiniteActivationError(
            f"{name} contains NaN or infinite values at real token positions; "
            "the model's activations are not finite, so no decomposition is meaningful. "
            "Fix: check the weights (e.g. NaN after training or loading) or run in a wider dtype."
        )


def _forward(
    model: HookedModel,
    info: ModelInfo,
    plans: list[Plan],
    forward: Callable[[list[tuple[str, Callable[..., None]]]], None],
    fwd_hooks: list[tuple[str, Callable[..., None]]],
) -> None:
    """`forward(fwd_hooks)`, with the model's own failures turned into errors that say so."""
    from . import failures  # (it imports this module's neighbours, not this module)

    try:
        forward(fwd_hooks)
    except NonFiniteActivationError as e:
        raise failures.not_finite(model, info, plans[0].rows_real, e) from None
    except (AltiLensError, _AllHandedOver):
        raise
    except Exception as e:  # raised inside the model, not by our hooks
        raise failures.forward_failed(model, info, e) from e


def _check_available(model: HookedModel, info: ModelInfo, fwd_hooks: list) -> None:
    available = model.hook_dict  # built anew on every access on the bridge (~0.2 ms)
    for name, _ in fwd_hooks:
        if name not in available:
            raise UnsupportedModelError(
                f"the model has no hook point {name!r}, which ALTI reads. This TransformerLens "
                f"architecture ({info.architecture}) is not supported."
            )


@contextmanager
def _tapped(plans: list[Plan], make_hook: Callable[..., Callable[..., None]]) -> Iterator[None]:
    """Forward hooks on the Hugging Face modules the plans tap (removed afterwards, also after
    an error): each passes what its extractor takes from the module's output to the role's hook."""
    handles = []
    try:
        for plan in plans:
            for role, (module, extract) in plan.taps.items():
                hook = make_hook(plan, role, f"{plan.key[0]}.{plan.key[1]}.{role} (module output)")
                handles.append(
                    module.register_forward_hook(
                        lambda _m, _args, output, hook=hook, extract=extract: hook(extract(output))
                    )
                )
        yield
    finally:
        for handle in handles:
            handle.remove()


class _AllHandedOver(Exception):
    """Raised from the last hook ALTI reads to skip the rest of the forward pass."""


class _Handover:
    """What the hooks of one `run_plans` caught, and handing each plan over once complete."""

    def __init__(
        self, plans: list[Plan], on_block: Callable[[Key, BlockTensors], None], stop_early: bool
    ) -> None:
        self.plans, self.on_block, self.stop_early = plans, on_block, stop_early
        self.got: dict[Key, dict[str, Tensor]] = {p.key: {} for p in plans}
        self.order: dict[Key, list[str]] = {p.key: [] for p in plans}
        self.done: set[Key] = set()
        self.position = {p.key: i for i, p in enumerate(plans)}
        self.lenient = [p for p in plans if p.optional]

    def hand_over(self, plan: Plan) -> None:
        block = plan.assemble(self.got[plan.key], self.order[plan.key])
        self.got[plan.key] = {}  # drop the tensors before the next layer runs
        self.done.add(plan.key)
        if block is not None:
            self.on_block(plan.key, block)
        if self.stop_early and len(self.done) == len(self.plans):
            raise _AllHandedOver

    def flush(self, before: int) -> None:
        """Hand over the plans before position `before` that have every role but optional ones
        (a later plan's hook fired, or the forward pass ended: their optional hooks never will)."""
        for plan in self.lenient:
            if self.position[plan.key] >= before or plan.key in self.done:
                continue
            if (set(plan.names) | set(plan.taps)) - plan.optional <= self.got[plan.key].keys():
                self.hand_over(plan)

    def hook(self, plan: Plan, role: str, name: str) -> Callable[..., None]:
        real = plan.keys_real if role == "v" else plan.rows_real
        axis = plan.positions.get(role, 1)
        adapt = plan.adapt.get(role)
        n_roles = len(plan.names) + len(plan.taps)

        def hook(tensor: Tensor, hook: Any = None) -> None:
            if self.lenient:
                self.flush(self.position[plan.key])
            if axis != 1:
                tensor = tensor.movedim(axis, 1)
            if adapt is not None:
                tensor = adapt(tensor)
            _check_finite(name, tensor, real, pattern=role == "pattern")
            # Residual-stream tensors may be reused in place later in the block: keep a copy.
            keep = tensor.detach() if role in ("pattern", "v") else tensor.detach().clone()
            got = self.got[plan.key]
            got[role] = keep
            self.order[plan.key].append(name)
            if len(got) == n_roles and (plan.key not in self.done or plan.repeats):
                self.hand_over(plan)

        return hook


def run_plans(
    model: HookedModel,
    info: ModelInfo,
    plans: list[Plan],
    forward: Callable[[list[tuple[str, Callable[..., None]]]], None],
    on_block: Callable[[Key, BlockTensors], None],
    *,
    stop_early: bool = False,
) -> None:
    """Call `forward(fwd_hooks)` once, handing each plan's `BlockTensors` to `on_block` as soon
    as all its hooks have fired. Hooks are removed when the run ends, also after an error.

    With `stop_early` (the caller needs nothing of the forward pass but the plans), the forward
    pass ends, by an exception from the hook, once the last plan has been handed over: the rest
    of the model (the last block's MLP, the final norm, the unembedding: about a third of a
    GPT-2-small forward pass at 128 tokens) is not run. The same path as an error in a hook:
    hooks are removed and the model is left as it was."""
    state = _Handover(plans, on_block, stop_early)
    fwd_hooks = [(name, state.hook(p, role, name)) for p in plans for role, name in p.names.items()]
    _check_available(model, info, fwd_hooks)
    with (
        eval_mode(model),
        torch.inference_mode(),
        _tapped(plans, state.hook),
        suppress(_AllHandedOver),
    ):
        _forward(model, info, plans, forward, fwd_hooks)
        state.flush(len(plans))
    missing = [p.key for p in plans if p.key not in state.done]
    if missing:
        raise UnsupportedModelError(
            f"sub-blocks {missing}: not every hook ALTI reads fired during the forward pass "
            f"({info.architecture}); the model's blocks do not have the expected layout."
        )
