"""The one module that knows TransformerLens.

It validates the model, tokenizes text, names the hook points, runs the model once with hooks that
keep only what ALTI needs, and hands each layer's attention sub-block to the caller as plain tensors
(`decompose.BlockTensors`) as soon as that layer has run, so that no more than one layer's
attention pattern is held at a time.

Backends: TransformerLens 4.x `TransformerBridge` (and 3.x's), and the deprecated 3.x
`HookedTransformer` and `HookedEncoder`. The hook names are shared (the bridge exposes the
HookedTransformer names as aliases); what differs is recorded here:

| | bridge | HookedTransformer | HookedEncoder |
|---|---|---|---|
| post-LN output `y` | `hook_attn_out` (= LN1 output) | — | `ln1.w · ln1.hook_normalized + ln1.b` |
| norm weights | `ln.weight`, `ln.bias`, Gemma `1 + weight` | `ln.w`, `ln.b` | `ln.w`, `ln.b` |
| absent biases | `None` | zeros | zeros |
| padding mask | `attention_mask=` | `attention_mask=` | `one_zero_attention_mask=` |
"""

import importlib.metadata
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .decompose import BlockKind, BlockTensors, NormTensors
from .errors import InputError, NonFiniteActivationError, UnsupportedModelError

BRIDGE = "TransformerBridge"
HOOKED_TRANSFORMER = "HookedTransformer"
HOOKED_ENCODER = "HookedEncoder"
HOOKED_ENCODER_DECODER = "HookedEncoderDecoder"


def tl_version() -> str:
    try:
        return importlib.metadata.version("transformer-lens")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a dependency
        return "unknown"


def backend_of(model: object) -> str:
    """Name of the TransformerLens class `model` is, or raise `UnsupportedModelError`.

    Matched on the class hierarchy by name and package, which imports nothing and holds across
    TransformerLens versions (3.x exports the bridge from `model_bridge` only, 4.x at top level).
    """
    names = (BRIDGE, HOOKED_TRANSFORMER, HOOKED_ENCODER, HOOKED_ENCODER_DECODER)
    for cls in type(model).__mro__:
        if cls.__name__ in names and cls.__module__.startswith("transformer_lens."):
            return cls.__name__
    raise UnsupportedModelError(
        f"expected a TransformerLens model (TransformerBridge, or with TransformerLens 3.x "
        f"HookedTransformer / HookedEncoder), got {type(model).__module__}.{type(model).__name__}. "
        "Fix: wrap a Hugging Face model with TransformerBridge.boot_transformers(name_or_dir)."
    )


@dataclass(frozen=True)
class ModelInfo:
    """What `alti_lens` needs to know about a model before running it."""

    backend: str
    name: str
    architecture: str
    n_layers: int
    n_heads: int
    d_model: int
    n_ctx: int
    d_vocab: int
    dtype: torch.dtype
    device: torch.device
    weight_processing: dict[str, bool] = field(default_factory=dict)

    @property
    def tl_version(self) -> str:
        return tl_version()


def _is_encoder_decoder(model: Any, backend: str) -> bool:
    if backend == HOOKED_ENCODER_DECODER:
        return True
    return backend == BRIDGE and hasattr(model, "decoder_blocks")


def describe(model: Any) -> ModelInfo:
    """Validate `model` for `alti` (decoder-only or encoder-only) and describe it."""
    backend = backend_of(model)
    if _is_encoder_decoder(model, backend):
        arch = getattr(model.cfg, "architecture", None) or getattr(
            model.cfg, "original_architecture", "?"
        )
        raise UnsupportedModelError(
            f"{type(model).__name__} wraps an encoder-decoder model ({arch}); "
            "alti() explains one stack of self-attention. Fix: use "
            "alti_plus(model, source, target) for source and target contributions (ALTI+)."
        )
    cfg = model.cfg
    blocks = getattr(model, "blocks", None)
    if blocks is None or len(blocks) == 0:
        raise UnsupportedModelError(
            f"{type(model).__name__} has no `blocks`: expected a stack of transformer blocks."
        )
    for layer, block in enumerate(blocks):
        if getattr(block, "attn", None) is None:
            parts = ", ".join(f"{n}: {type(m).__name__}" for n, m in block.named_children())
            raise UnsupportedModelError(
                f"block {layer} has no attention sub-block ({parts}). ALTI decomposes attention; "
                "state-space (SSM/Mamba) and hybrid layers are not supported (spec §2.3). "
                "Fix: use a transformer model."
            )
    param = next(model.parameters())
    arch = getattr(cfg, "architecture", None) or getattr(cfg, "original_architecture", None)
    return ModelInfo(
        backend=backend,
        name=str(getattr(cfg, "model_name", None) or type(model).__name__),
        architecture=str(arch or "unknown"),
        n_layers=len(blocks),
        n_heads=int(cfg.n_heads),
        d_model=int(cfg.d_model),
        n_ctx=int(cfg.n_ctx),
        d_vocab=int(getattr(cfg, "d_vocab", -1)),
        dtype=param.dtype,
        device=param.device,
        weight_processing=weight_processing(model, backend),
    )


# ---------------------------------------------------------------------------------------------
# Weight processing (spec §6)


def _norm_type(model: Any) -> str:
    return str(getattr(model.cfg, "normalization_type", None) or "")


def weight_processing(model: Any, backend: str) -> dict[str, bool]:
    """Detect TransformerLens' weight processing from flags and, where none exist, from weights.

    3.x keeps no flag for centring or value-bias folding, so both are read off the weights:
    centred writing weights have `W_O` rows with zero mean over `d_model`; folded value biases are
    all zero while some `b_O` is not. Random-initialised models satisfy neither.
    """
    blocks = model.blocks
    # Each test stops at the first layer that settles it (layer 0 for unprocessed models), so a
    # large model's weights are not all read on every call.
    centred = all(_writes_centred(b.attn.W_O.detach()) for b in blocks)
    b_V = [_value_bias(b.attn) for b in blocks]
    folded_v = all(x is not None and not bool(x.detach().any()) for x in b_V) and any(
        b.attn.b_O is not None and bool(b.attn.b_O.detach().any()) for b in blocks
    )
    if backend == BRIDGE:
        processed = bool(getattr(model, "_weights_processed", False))
        fold_ln = processed or bool(getattr(model.cfg, "layer_norm_folding", False))
    else:
        fold_ln = _norm_type(model).endswith("Pre")
    return {
        "fold_ln": fold_ln,
        "center_writing_weights": centred,
        "fold_value_biases": folded_v,
    }


def _writes_centred(W_O: Tensor) -> bool:
    """`W_O` rows have zero mean over `d_model` (TransformerLens' `center_writing_weights`)."""
    W_O = W_O.float()
    return bool(W_O.mean(dim=-1).abs().amax() <= 1e-6 * W_O.abs().amax().clamp_min(1e-30))


def _value_bias(attn: Any) -> Tensor | None:
    # 3.x GQA keeps the raw kv-head bias in `_b_V`; `b_V` is then a repeat_interleave'd property.
    b = getattr(attn, "_b_V", None)
    if b is None:
        b = getattr(attn, "b_V", None)
    return b


_WARNED: "weakref.WeakSet[Any]" = weakref.WeakSet()


def first_time(model: Any) -> bool:
    """True the first time a given model object is seen (for warn-once messages)."""
    if model in _WARNED:
        return False
    _WARNED.add(model)
    return True


# ---------------------------------------------------------------------------------------------
# Tokens


def tokenize(model: Any, texts: list[str]) -> tuple[Tensor, Tensor]:
    """Tokenize each text as the model does (BOS as its config says), then right-pad.

    Each text is tokenized alone, so the mask is known exactly even where the pad token is also the
    BOS/EOS token (GPT-2); padding on the right keeps positions identical to a single run.
    """
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise InputError(
            "got text, but the model has no tokenizer. Fix: pass token ids as an int tensor "
            "[batch, pos], or give the model a tokenizer."
        )
    rows: list[Tensor] = []
    for text in texts:
        out = model.to_tokens(text, truncate=False)
        ids = out[0] if isinstance(out, tuple) else out  # HookedEncoder returns (ids, types, mask)
        rows.append(ids[0].cpu())
    n = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    tokens = torch.full((len(rows), n), int(pad), dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return tokens, mask


def str_tokens(model: Any, tokens: Tensor) -> list[list[str]]:
    """Readable token strings, one per position (padding included, so indices match tensors)."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return [[str(int(t)) for t in row] for row in tokens]
    return [tokenizer.batch_decode([[int(t)] for t in row]) for row in tokens]


# ---------------------------------------------------------------------------------------------
# Running the model


@dataclass
class _LayerPlan:
    """Hook names to read for one layer and how to assemble them into `BlockTensors`."""

    layer: int
    names: dict[str, str]  # role -> hook name
    kind: BlockKind | None  # None: pre- or post-norm, decided from the order the hooks fire in


def _hook(layer: int, name: str) -> str:
    return f"blocks.{layer}.{name}"


def _plan(model: Any, backend: str, layer: int) -> _LayerPlan:
    block = model.blocks[layer]
    names = {
        "resid_pre": _hook(layer, "hook_resid_pre"),
        "v": _hook(layer, "attn.hook_v"),
        "pattern": _hook(layer, "attn.hook_pattern"),
    }
    available = model.hook_dict
    has_mid = _hook(layer, "hook_resid_mid") in available
    cfg = model.cfg
    if backend == HOOKED_ENCODER:
        names["scale"] = _hook(layer, "ln1.hook_scale")
        names["normalized"] = _hook(layer, "ln1.hook_normalized")
        return _LayerPlan(layer, names, BlockKind.POST_NORM)
    if hasattr(block, "ln1_post"):
        names["scale"] = _hook(layer, "ln1_post.hook_scale")
        names["resid_mid"] = _hook(layer, "hook_resid_mid")
        return _LayerPlan(layer, names, BlockKind.SANDWICH)
    if getattr(cfg, "parallel_attn_mlp", False) or not has_mid:
        names["attn_out"] = _hook(layer, "hook_attn_out")
        attn_only = getattr(cfg, "attn_only", False)
        return _LayerPlan(layer, names, BlockKind.ATTN_ONLY if attn_only else BlockKind.PARALLEL)
    names["resid_mid"] = _hook(layer, "hook_resid_mid")
    if backend == HOOKED_TRANSFORMER or _hook(layer, "ln1.hook_scale") not in available:
        return _LayerPlan(layer, names, BlockKind.PRE_NORM)
    # A bridge block: BERT-style blocks apply `ln1` to `x + attn` (post-norm) and the bridge then
    # reports the norm's output as `hook_attn_out`; pre-norm blocks apply `ln1` before attention.
    names["attn_out"] = _hook(layer, "hook_attn_out")
    names["scale"] = _hook(layer, "ln1.hook_scale")
    return _LayerPlan(layer, names, None)


def _norm_module(block: Any, kind: BlockKind) -> Any:
    return block.ln1_post if kind is BlockKind.SANDWICH else block.ln1


def _norm_tensors(
    model: Any, backend: str, block: Any, kind: BlockKind, scale: Tensor
) -> NormTensors:
    ln = _norm_module(block, kind)
    if backend == BRIDGE:
        weight = getattr(ln, "weight", None)
        # Gemma stores γ − 1. 4.x says so on the norm, 3.x only in the config.
        offset = getattr(ln, "uses_weight_offset", None)
        if offset is None:
            offset = getattr(model.cfg, "rmsnorm_uses_offset", False)
        if weight is not None and offset:
            weight = 1.0 + weight
        bias = getattr(ln, "bias", None) if not getattr(ln, "uses_rms_norm", False) else None
        centred = not getattr(ln, "uses_rms_norm", False)
    else:
        weight, bias = getattr(ln, "w", None), getattr(ln, "b", None)
        centred = type(ln).__name__.startswith("LayerNorm")
    return NormTensors(
        weight=None if weight is None else weight.detach(),
        bias=None if bias is None else bias.detach(),
        scale=scale.reshape(scale.shape[0], scale.shape[1]),
        centred=centred,
    )


def _assemble(
    model: Any, backend: str, plan: _LayerPlan, got: dict[str, Tensor], order: list[str]
) -> BlockTensors:
    block = model.blocks[plan.layer]
    kind = plan.kind
    if kind is None:
        # The norm fired after the value projection: it normalises the attention output.
        post = order.index(plan.names["scale"]) > order.index(plan.names["v"])
        kind = BlockKind.POST_NORM if post else BlockKind.PRE_NORM
    x = got["resid_pre"]
    if kind in (BlockKind.PARALLEL, BlockKind.ATTN_ONLY):
        y = x + got["attn_out"]
    elif kind is BlockKind.POST_NORM and backend == HOOKED_ENCODER:
        y = block.ln1.w.detach() * got["normalized"] + block.ln1.b.detach()
    elif kind is BlockKind.POST_NORM:
        y = got["attn_out"]
    else:
        y = got["resid_mid"]
    norm = None
    if kind in (BlockKind.POST_NORM, BlockKind.SANDWICH):
        norm = _norm_tensors(model, backend, block, kind, got["scale"])
    # Hugging Face RMSNorm implementations compute in float32 whatever the model's dtype (measured:
    # 2.4e-7 error of a float64 Gemma-2 sandwich norm rebuilt from its float64 scale).
    hf_rms = backend == BRIDGE and norm is not None and not norm.centred
    b_O = block.attn.b_O
    return BlockTensors(
        kind=kind,
        pattern=got["pattern"],
        v=got["v"],
        W_O=block.attn.W_O.detach(),
        b_O=None if b_O is None else b_O.detach(),
        resid_pre=x,
        output=y,
        norm=norm,
        precision=torch.float32 if hf_rms else None,
    )


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Disable dropout for the run and restore every module's own training flag afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _check_finite(name: str, tensor: Tensor, real: Tensor) -> None:
    """Raise on NaN/inf at real (unpadded) positions; `real` is `[batch, pos]` bool."""
    if bool(real.all()):
        values = tensor  # no padding: check everything without copying
    elif name.endswith("hook_pattern"):
        values = tensor.transpose(1, 2)[real]  # [rows, head, key]
    elif tensor.shape[:2] == real.shape:
        values = tensor[real]
    else:
        values = tensor
    if not bool(torch.isfinite(values).all()):
        raise NonFiniteActivationError(
            f"{name} contains NaN or infinite values at real token positions; "
            "the model's activations are not finite, so no decomposition is meaningful. "
            "Fix: check the weights (e.g. NaN after training or loading) or run in a wider dtype."
        )


def _forward_kwargs(backend: str, mask: Tensor | None) -> dict[str, Tensor]:
    if mask is None:
        return {}
    key = "one_zero_attention_mask" if backend == HOOKED_ENCODER else "attention_mask"
    return {key: mask}


def read_blocks(
    model: Any,
    info: ModelInfo,
    tokens: Tensor,
    mask: Tensor,
    on_block: Callable[[int, BlockTensors], None],
) -> None:
    """Run `model` on `tokens` and call `on_block(layer, tensors)` as each layer completes.

    `mask` is `[batch, pos]` with 1 for real tokens; it is passed to the model only when it
    contains padding. Hooks are removed when the run ends, also when `on_block` raises.
    """
    plans = [_plan(model, info.backend, layer) for layer in range(info.n_layers)]
    real = mask.bool().to(info.device)
    got: list[dict[str, Tensor]] = [{} for _ in plans]
    order: list[list[str]] = [[] for _ in plans]
    done: set[int] = set()

    def make_hook(plan: _LayerPlan, role: str) -> Callable[..., None]:
        def hook(tensor: Tensor, hook: Any = None) -> None:
            name = plan.names[role]
            _check_finite(name, tensor, real)
            # Residual-stream tensors may be reused in place later in the block: keep a copy.
            keep = tensor.detach() if role in ("pattern", "v") else tensor.detach().clone()
            got[plan.layer][role] = keep
            order[plan.layer].append(name)
            if len(got[plan.layer]) == len(plan.names):
                block = _assemble(model, info.backend, plan, got[plan.layer], order[plan.layer])
                got[plan.layer] = {}  # drop this layer's tensors before the next layer runs
                done.add(plan.layer)
                on_block(plan.layer, block)

        return hook

    fwd_hooks = [(name, make_hook(p, role)) for p in plans for role, name in p.names.items()]
    for name, _ in fwd_hooks:
        if name not in model.hook_dict:
            raise UnsupportedModelError(
                f"the model has no hook point {name!r}, which ALTI reads. This TransformerLens "
                f"architecture ({info.architecture}) is not supported."
            )
    padded = None if bool(real.all()) else mask.to(info.device)
    with _eval_mode(model), torch.inference_mode():
        model.run_with_hooks(
            tokens.to(info.device),
            fwd_hooks=fwd_hooks,
            return_type=None,
            **_forward_kwargs(info.backend, padded),
        )
    missing = [p.layer for p in plans if p.layer not in done]
    if missing:
        raise UnsupportedModelError(
            f"layers {missing}: not every hook ALTI reads fired during the forward pass "
            f"({info.architecture}); the model's blocks do not have the expected layout."
        )
