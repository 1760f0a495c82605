"""Single-stack models (decoder-only and encoder-only): which hooks each layer's block needs.

| block kind: y, norm | bridge | HookedTransformer | HookedEncoder |
|---|---|---|---|
| pre-norm | `hook_resid_mid` | same | — |
| parallel, attn-only | `hook_resid_pre + hook_attn_out` | same | — |
| sandwich | `hook_resid_mid`, `ln1_post` | same | — |
| post-LN | `hook_attn_out` (LN1's output), `ln1` | — | `ln1.w·ln1.hook_normalized + ln1.b` |
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from alti_lens.core.handover import BlockKind, BlockTensors, FinalTensors, NormTensors

from .attention import output_weights, position_axis
from .models import BRIDGE, HOOKED_ENCODER, HOOKED_TRANSFORMER, ModelInfo
from .output import output_path
from .protocol import HookedModel
from .run import (
    Key,
    Plan,
    computed_precision,
    fired_after,
    float32_scores,
    hf_rms_block,
    hf_rms_precision,
    norm_affine,
    norm_tensors,
    run_plans,
)
from .subnorm import attn_sub_norm, check_linear_output, fold_gamma, sub_norm_scale


def _hook(layer: int, name: str) -> str:
    return f"blocks.{layer}.{name}"


def _kind_and_names(
    model: HookedModel, backend: str, layer: int, available: Any = None
) -> tuple[BlockKind | None, dict]:
    """The block kind (None: pre- or post-norm, told apart by hook order) and the hooks to read.
    `available`: the model's `hook_dict`, where the caller has it (the bridge builds it anew on
    every access)."""
    block = model.blocks[layer]
    names = {
        "resid_pre": _hook(layer, "hook_resid_pre"),
        "v": _hook(layer, "attn.hook_v"),
        "pattern": _hook(layer, "attn.hook_pattern"),
    }
    if available is None:
        available = model.hook_dict
    cfg = model.cfg
    if backend == HOOKED_ENCODER:
        names["scale"] = _hook(layer, "ln1.hook_scale")
        names["normalized"] = _hook(layer, "ln1.hook_normalized")
        return BlockKind.POST_NORM, names
    if hasattr(block, "ln1_post"):
        names["scale"] = _hook(layer, "ln1_post.hook_scale")
        names["resid_mid"] = _hook(layer, "hook_resid_mid")
        return BlockKind.SANDWICH, names
    if getattr(cfg, "parallel_attn_mlp", False) or _hook(layer, "hook_resid_mid") not in available:
        names["attn_out"] = _hook(layer, "hook_attn_out")
        return (
            BlockKind.ATTN_ONLY if getattr(cfg, "attn_only", False) else BlockKind.PARALLEL
        ), names
    names["resid_mid"] = _hook(layer, "hook_resid_mid")
    if backend == HOOKED_TRANSFORMER or _hook(layer, "ln1.hook_scale") not in available:
        return BlockKind.PRE_NORM, names
    # A bridge block: BERT-style blocks apply `ln1` to `x + attn` (post-norm) and the bridge then
    # reports the norm's output as `hook_attn_out`; pre-norm blocks apply `ln1` before attention.
    names["attn_out"] = _hook(layer, "hook_attn_out")
    names["scale"] = _hook(layer, "ln1.hook_scale")
    return None, names


def _output(kind: BlockKind, got: dict[str, Tensor], block: Any, backend: str) -> Tensor:
    """The attention sub-block's real output `y` (spec §2.5) from the hooks of its kind."""
    if kind in (BlockKind.PARALLEL, BlockKind.ATTN_ONLY):
        return got["resid_pre"] + got["attn_out"]
    if kind is BlockKind.POST_NORM and backend == HOOKED_ENCODER:
        return block.ln1.w.detach() * got["normalized"] + block.ln1.b.detach()
    if kind is BlockKind.POST_NORM:
        return got["attn_out"]
    return got["resid_mid"]


def _plan(
    model: HookedModel,
    info: ModelInfo,
    layer: int,
    real: Tensor,
    resid_post: bool,
    available: Any = None,
) -> Plan:
    backend = info.backend
    if available is None:
        available = model.hook_dict
    planned, names = _kind_and_names(model, backend, layer, available)
    if resid_post:
        names["resid_post"] = _hook(layer, "hook_resid_post")
    block = model.blocks[layer]
    clip = value_clip(model)
    # MLA fires `hook_v` on `[batch, head, pos, d_v]`: the hook point says where positions are
    axis = position_axis(available.get(names["v"]))
    positions = {} if axis == 1 else {"v": axis}
    sub_norm = attn_sub_norm(block) if backend == BRIDGE else None
    if sub_norm is not None:  # refused before the run where W_O is not linear
        check_linear_output(block, info.architecture, layer)

    def assemble(got: dict[str, Tensor], order: list[str]) -> BlockTensors:
        kind = planned
        if kind is None:  # the norm fired after the value projection: it normalises the output
            post = fired_after(order, names["scale"], names["v"])
            kind = BlockKind.POST_NORM if post else BlockKind.PRE_NORM
        norm = None
        if kind in (BlockKind.POST_NORM, BlockKind.SANDWICH):
            ln = block.ln1_post if kind is BlockKind.SANDWICH else block.ln1
            norm = norm_tensors(model, backend, ln, got["scale"])
        v = got["v"] if clip is None else got["v"].clamp(-clip, clip)
        W_O, b_O = output_projection(block)  # read per block: MLA's W_O is a reshaped copy
        sub_scale = None
        if sub_norm is not None:
            W_O = fold_gamma(W_O, sub_norm)
            sub_scale = sub_norm_scale(got["pattern"], v, sub_norm)
        # a rebuilt sub-norm is a Hugging Face RMSNorm: float32 whatever the model's dtype
        precision = hf_rms_precision(backend, norm) or (torch.float32 if sub_norm else None)
        return BlockTensors(
            kind=kind,
            pattern=got["pattern"],
            v=v,
            W_O=W_O,
            b_O=b_O,
            resid_pre=got["resid_pre"],
            output=_output(kind, got, block, backend),
            norm=norm,
            precision=precision,
            model_precision=computed_precision(
                precision or hf_rms_block(backend, block),
                got["pattern"],
                float32_scores=float32_scores(info.architecture),
            ),
            resid_post=got.get("resid_post"),
            attn_sub_norm=sub_scale,
        )

    return Plan(("layer", layer), names, assemble, real, real, positions)


def value_clip(model: HookedModel) -> float | None:
    """`clip_qkv` (OLMo-1, OLMoE, MPT): the model clamps q, k and v to ±clip after projecting them,
    after `hook_v` fires (measured on the bridge: its attention clamps out of place), so the values
    attention consumed are `hook_v` clamped; clamping again is harmless where a hook fires after."""
    config = getattr(getattr(model, "original_model", None), "config", None)
    for cfg in (config, getattr(config, "attn_config", None), model.cfg):
        clip = getattr(cfg, "clip_qkv", None)
        if isinstance(clip, (int, float)) and clip > 0:
            return float(clip)
    return None


def residual_multiplier(block: Any) -> float:
    """The factor the block multiplies its attention output by before the residual add: Granite's
    `residual_multiplier` (`h = x + m · attn(x)`), which the bridge's `ScaledResidualBlockBridge`
    declares as `residual_contribution_scale`; 1 elsewhere."""
    return float(getattr(block, "residual_contribution_scale", 1.0))


def output_projection(block: Any) -> tuple[Tensor, Tensor | None]:
    """`W_O` and `b_O` as they reach the residual stream: scaled by the residual multiplier, so
    the per-source vectors are `m · A v W_O` and the bias `m · b_O` (spec §2)."""
    W_O, b_O = output_weights(block.attn)
    m = residual_multiplier(block)
    if m != 1.0:
        W_O, b_O = W_O * m, None if b_O is None else b_O * m
    return W_O, b_O


def _final_plan(model: HookedModel, backend: str, real: Tensor, sink: list) -> Plan | None:
    """The final norm's scale and the dtype it really computed in, if the model has one
    (captured into `sink`; where the norm module runs more than once, as NanoChat's does on the
    embeddings too, the last run is appended last)."""
    name = "ln_final.hook_scale"
    available = model.hook_dict
    if name not in available:
        return None
    names = {"scale": name}
    if backend == BRIDGE and "ln_final.hook_out" in available:
        names["out"] = "ln_final.hook_out"

    def assemble(got: dict[str, Tensor], order: list[str]) -> None:
        norm = norm_tensors(model, backend, model.ln_final, got["scale"])
        sink.append((norm, final_norm_precision(backend, norm, got.get("out"))))

    return Plan(("final", 0), names, assemble, real, real, repeats=True)


def final_norm_precision(backend: str, norm: NormTensors, out: Tensor | None) -> torch.dtype | None:
    """The dtype the final norm really computed in, where narrower than the model's.

    Hugging Face RMSNorms compute in float32 (`hf_rms_precision`); so do some LayerNorms (OLMo's
    weightless `OlmoLayerNorm` casts to float32 and back), which no flag declares: their float64
    output then holds float32 values only, which is what
    `computed_precision` detects (measured: OLMo-1 in float64 misses its own logit by 2.8e-8)."""
    precision = hf_rms_precision(backend, norm)
    if precision is None and out is not None:
        precision = computed_precision(None, out)
    return precision


def final_norm_affine(
    model: HookedModel, info: ModelInfo
) -> tuple[Tensor | None, Tensor | None, bool] | None:
    """The final norm's `γ`, `β` and centring (None: the model has no final norm)."""
    if "ln_final.hook_scale" not in model.hook_dict:
        return None
    return norm_affine(model, info.backend, model.ln_final)


def unembedding(model: HookedModel) -> tuple[Tensor, Tensor | None]:
    """`W_U [d_model, d_vocab]` and `b_U [d_vocab]` (None where absent)."""
    b_U = getattr(model, "b_U", None)
    return model.W_U.detach(), None if b_U is None else b_U.detach()


def read_blocks(
    model: HookedModel,
    info: ModelInfo,
    tokens: Tensor,
    mask: Tensor,
    on_block: Callable[[int, BlockTensors], None],
    *,
    final: bool = False,
    stop_early: bool = False,
) -> FinalTensors | None:
    """Run `model` on `tokens` and call `on_block(layer, tensors)` as each layer completes.

    `mask` is `[batch, pos]` with 1 for real tokens; it is passed to the model only when it
    contains padding. Hooks are removed when the run ends, also when `on_block` raises. With
    `final`, each block also carries `resid_post`, and the logits, the unembedding and the final
    norm are returned (ALTI-Logit). With `stop_early` (and not `final`) the forward pass ends
    once the last block has been handed over (`run_plans`): for callers that need nothing else
    of it, not for those that read other hooks during the run (`patching`).
    """
    # the output path is known before the run: a non-linear head is refused up front
    soft_cap, logit_scale = output_path(model, info) if final else (None, 1.0)
    real = mask.bool().to(info.device)
    available = model.hook_dict
    plans = [_plan(model, info, layer, real, final, available) for layer in range(info.n_layers)]
    final_norm: list[tuple[NormTensors, torch.dtype | None]] = []
    final_plan = _final_plan(model, info.backend, real, final_norm) if final else None
    if final_plan is not None:
        plans.append(final_plan)
    kwargs: dict[str, Tensor] = {}
    if not bool(real.all()):
        key = "one_zero_attention_mask" if info.backend == HOOKED_ENCODER else "attention_mask"
        kwargs[key] = mask.to(info.device)
    logits: list[Tensor] = []

    def forward(fwd_hooks: list) -> None:
        out = model.run_with_hooks(
            tokens.to(info.device),
            fwd_hooks=fwd_hooks,
            return_type="logits" if final else None,
            **kwargs,
        )
        if final:
            logits.append(out.detach())

    def handover(key: Key, block: BlockTensors) -> None:
        on_block(key[1], block)

    run_plans(model, info, plans, forward, handover, stop_early=stop_early and not final)
    if not final:
        return None
    # the norm's last run is the final one
    norm, precision = final_norm[-1] if final_norm else (None, None)
    W_U, b_U = unembedding(model)
    return FinalTensors(
        norm=norm,
        W_U=W_U,
        b_U=b_U,
        logits=logits[0],
        soft_cap=soft_cap,
        logit_scale=logit_scale,
        precision=precision,
    )
