"""Single-stack models (decoder-only and encoder-only): which hooks each layer's block needs.

| block kind: y, norm | bridge | HookedTransformer | HookedEncoder |
|---|---|---|---|
| pre-norm | `hook_resid_mid` | same | — |
| parallel, attn-only | `hook_resid_pre + hook_attn_out` | same | — |
| sandwich | `hook_resid_mid`, `ln1_post` (`hook_scale`; Gemma 4: `hook_in`) | same | — |
| post-LN | `ln1.hook_out` (LN1's output), `ln1` | — | `ln1.w·ln1.hook_normalized + ln1.b` |

Values (`values`): `attn.hook_v`, or where the attention normalises its values or shares them
across layers (Gemma 4) the value norm's output of the layer that computed them. A per-head output
gate (Laguna) is read from `attn.gate.hook_out`.

Post-LN on the bridge: BERT reports LN1's output as `hook_attn_out`, while post-LN decoders (OPT
with `do_layer_norm_before=False`, GPT-1) report the raw attention output there and alias
`hook_resid_mid` to the MLP's (or LN2's) input; `ln1.hook_out` is LN1's output in all of them.
For ALTI-Logit a post-LN block also hands over LN2 (`ln2.hook_scale`): the residual stream passes
through it (spec §2.2, §5).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from alti_lens.core.handover import BlockKind, BlockTensors, FinalTensors, NormTensors
from alti_lens.errors import UnsupportedModelError

from .attention import output_projection, position_axis
from .mlp import mlp_names, mlp_tensors
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
    recomputable_rms,
    rms_scale,
    run_plans,
)
from .subnorm import attn_sub_norm, check_linear_output, fold_gamma, sub_norm_scale
from .values import head_gate, output_gate, value_clip, value_hook


def _hook(layer: int, name: str) -> str:
    return f"blocks.{layer}.{name}"


def _kind_and_names(
    model: HookedModel, backend: str, layer: int, available: Any = None
) -> tuple[BlockKind | None, dict]:
    """The block kind (None: pre- or post-norm, told apart by hook order) and the hooks to read.
    `available`: the model's `hook_dict`, where the caller has it (the bridge builds it anew on
    every access)."""
    block = model.blocks[layer]
    if available is None:
        available = model.hook_dict
    names = {
        "resid_pre": _hook(layer, "hook_resid_pre"),
        "v": _hook(layer, "attn.hook_v")
        if backend != BRIDGE
        else value_hook(model, layer, available),
        "pattern": _hook(layer, "attn.hook_pattern"),
    }
    gate = output_gate(model, layer, available) if backend == BRIDGE else None
    if gate is not None:
        names["gate"] = gate
    cfg = model.cfg
    if backend == HOOKED_ENCODER:
        names["scale"] = _hook(layer, "ln1.hook_scale")
        names["normalized"] = _hook(layer, "ln1.hook_normalized")
        return BlockKind.POST_NORM, names
    if hasattr(block, "ln1_post"):
        scale = _hook(layer, "ln1_post.hook_scale")
        # no hook_scale (Gemma 4's plain norm component): recomputed from the norm's input
        names["scale" if scale in available else "norm_in"] = (
            scale if scale in available else _hook(layer, "ln1_post.hook_in")
        )
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
    # A bridge block: post-norm blocks (BERT, GPT-1, OPT-350m) apply `ln1` to `x + attn`, pre-norm
    # blocks apply it before attention; the hook order tells them apart (`_plan`).
    norm_out = _hook(layer, "ln1.hook_out")
    names["norm_out"] = norm_out if norm_out in available else _hook(layer, "hook_attn_out")
    names["scale"] = _hook(layer, "ln1.hook_scale")
    return None, names


def _output(kind: BlockKind, got: dict[str, Tensor], block: Any, backend: str) -> Tensor:
    """The attention sub-block's real output `y` (spec §2.5) from the hooks of its kind."""
    if kind in (BlockKind.PARALLEL, BlockKind.ATTN_ONLY):
        return got["resid_pre"] + got["attn_out"]
    if kind is BlockKind.POST_NORM and backend == HOOKED_ENCODER:
        return block.ln1.w.detach() * got["normalized"] + block.ln1.b.detach()
    if kind is BlockKind.POST_NORM:
        return got["norm_out"]  # LN1's output (`ln1.hook_out`, or BERT's `hook_attn_out`)
    return got["resid_mid"]


def _plan(
    model: HookedModel,
    info: ModelInfo,
    layer: int,
    real: Tensor,
    resid_post: bool,
    available: Any = None,
    mlp: tuple[bool, bool] = (False, False),
) -> Plan:
    """Layer `layer`'s plan; `mlp`: (read the MLP step, split it over neurons), spec §8."""
    backend = info.backend
    if available is None:
        available = model.hook_dict
    planned, names = _kind_and_names(model, backend, layer, available)
    optional: frozenset[str] = frozenset()
    if mlp[0]:
        extra, optional = mlp_names(layer, backend, planned, available, mlp[1])
        names.update(extra)
    if resid_post:
        names["resid_post"] = _hook(layer, "hook_resid_post")
        if planned is None and _hook(layer, "ln2.hook_scale") in (available or model.hook_dict):
            # A post-norm block's output is its LN2's: read LN2 (used only if post-norm). GPT-1's
            # bridge never fires `hook_resid_post` (its block returns a list), so it is optional.
            names["mlp_scale"] = _hook(layer, "ln2.hook_scale")
            names["mlp_out"] = _hook(layer, "ln2.hook_out")
            optional = optional | {"resid_post"}
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
        norm = _attention_norm(model, backend, block, kind, got)
        post, mlp_norm = _block_output(model, backend, block, kind, got)
        if resid_post and post is None:
            raise UnsupportedModelError(
                f"layer {layer}'s output hook {names['resid_post']!r} did not fire "
                f"({info.architecture}); alti_logit reads it. Fix: use alti(model, inputs)."
            )
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
            head_gate=head_gate(got["gate"], got["pattern"].dtype) if "gate" in got else None,
            precision=precision,
            model_precision=computed_precision(
                precision or hf_rms_block(backend, block),
                got["pattern"],
                float32_scores=float32_scores(info.architecture),
            ),
            resid_post=post,
            mlp_norm=mlp_norm,
            output_scale=_layer_scalar(block) if resid_post else None,
            attn_sub_norm=sub_scale,
            mlp=mlp_tensors(
                model, backend, block, kind, got, (info.architecture, layer, _layer_scalar(block))
            )
            if mlp[0]
            else None,
        )

    return Plan(("layer", layer), names, assemble, real, real, positions, optional=optional)


def _attention_norm(
    model: HookedModel, backend: str, block: Any, kind: BlockKind, got: dict[str, Tensor]
) -> NormTensors | None:
    """The norm on the attention output (post-norm: LN1, sandwich: `ln1_post`) at its real scale:
    its `hook_scale`, or (Gemma 4's plain norm component) recomputed from its input."""
    if kind not in (BlockKind.POST_NORM, BlockKind.SANDWICH):
        return None
    ln = block.ln1_post if kind is BlockKind.SANDWICH else block.ln1
    scale = got["scale"] if "scale" in got else rms_scale(ln, got["norm_in"])
    return norm_tensors(model, backend, ln, scale)


def _block_output(
    model: HookedModel, backend: str, block: Any, kind: BlockKind, got: dict[str, Tensor]
) -> tuple[Tensor | None, NormTensors | None]:
    """The block's output (`resid_post`, ALTI-Logit) and, in a post-norm block, its LN2 at its
    real scale: the output is then LN2's own (GPT-1's `hook_resid_post` never fires)."""
    if kind is BlockKind.POST_NORM and "mlp_scale" in got:
        return got["mlp_out"], norm_tensors(model, backend, block.ln2, got["mlp_scale"])
    return got.get("resid_post"), None


def _layer_scalar(block: Any) -> float | None:
    """Gemma 4's per-layer `layer_scalar` (the Hugging Face layer multiplies its whole output by
    it, residual included), where it is not 1; None otherwise."""
    scalar = getattr(getattr(block, "original_component", None), "layer_scalar", None)
    if not isinstance(scalar, Tensor) or scalar.numel() != 1 or float(scalar) == 1.0:
        return None
    return float(scalar)


def _final_norm_hook(model: HookedModel) -> tuple[str, str] | None:
    """The final norm's role and hook: its scale, or (Gemma 4's plain norm component, which has
    none) its input, from which the scale is recomputed (`rms_scale`). None: no final norm."""
    available = model.hook_dict
    if "ln_final.hook_scale" in available:
        return "scale", "ln_final.hook_scale"
    ln_final = getattr(model, "ln_final", None)
    if "ln_final.hook_in" in available and ln_final is not None and recomputable_rms(ln_final):
        return "norm_in", "ln_final.hook_in"
    return None


def _final_plan(model: HookedModel, backend: str, real: Tensor, sink: list) -> Plan | None:
    """The final norm's scale and the dtype it really computed in, if the model has one
    (captured into `sink`; where the norm module runs more than once, as NanoChat's does on the
    embeddings too, the last run is appended last). Gemma 4's plain norm component has no
    `hook_scale`: its scale is recomputed from its input (`rms_scale`)."""
    hook = _final_norm_hook(model)
    if hook is None:
        return None
    role, name = hook
    names = {role: name}
    if backend == BRIDGE and "ln_final.hook_out" in model.hook_dict:
        names["out"] = "ln_final.hook_out"

    def assemble(got: dict[str, Tensor], order: list[str]) -> None:
        scale = got["scale"] if role == "scale" else rms_scale(model.ln_final, got["norm_in"])
        norm = norm_tensors(model, backend, model.ln_final, scale)
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
    if _final_norm_hook(model) is None:
        return None
    return norm_affine(model, info.backend, model.ln_final)


def unembedding(model: HookedModel) -> tuple[Tensor, Tensor | None]:
    """`W_U [d_model, d_vocab]` and `b_U [d_vocab]` (None where absent), read from the residual
    stream: where the model projects the residual down before the unembedding (OPT-350m's
    bias-free `project_out`, d_model → word_embed_proj_dim), the projection is folded in."""
    b_U = getattr(model, "b_U", None)
    W_U = model.W_U.detach()
    project = getattr(model, "project_out", None)
    weight = getattr(project, "weight", None)
    if weight is not None and weight.shape[0] == W_U.shape[0]:
        W_U = weight.detach().T.to(W_U.dtype) @ W_U
    return W_U, None if b_U is None else b_U.detach()


def block_norm_affines(model: HookedModel, info: ModelInfo) -> list[tuple[Any, Any]]:
    """Each layer's `ln1` and `ln2` affine (`norm_affine`): the norms a post-norm block's
    residual stream passes through (ALTI-Logit). Models without `ln2` are not post-norm."""
    return [
        (norm_affine(model, info.backend, b.ln1), norm_affine(model, info.backend, b.ln2))
        for b in model.blocks
    ]


# Bridged architectures whose attention stops being causal when an attention mask is passed
# (TransformerLens 4.3's GPT-1 bridge: with any mask, even all ones, every row attends to every
# position; measured, the logits move by 0.47 on a tiny model).
_MASK_BREAKS_CAUSAL = ("OpenAIGPTLMHeadModel",)


def mask_kwargs(info: ModelInfo, mask: Tensor) -> dict[str, Tensor]:
    """The attention-mask keyword of a forward pass of a single-stack model: none where the batch
    has no padding or the mask must not be passed (`needs_mask`)."""
    if bool(mask.bool().all()) or not needs_mask(info, mask):
        return {}
    key = "one_zero_attention_mask" if info.backend == HOOKED_ENCODER else "attention_mask"
    return {key: mask.to(info.device)}


def needs_mask(info: ModelInfo, mask: Tensor) -> bool:
    """Whether the padded batch needs its attention mask passed. For the architectures above it
    must not be: a right-padded batch does not need it (causal attention never lets a real row see
    the padding after it), and other padding cannot be run correctly."""
    if info.backend != BRIDGE or info.architecture not in _MASK_BREAKS_CAUSAL:
        return True
    lengths = mask.sum(-1, keepdim=True)
    positions = torch.arange(mask.shape[1], device=mask.device)
    if bool(((positions < lengths) == mask.bool()).all()):
        return False
    raise UnsupportedModelError(
        f"{info.architecture}'s TransformerLens bridge drops the causal mask when an attention "
        "mask is passed, so a batch padded other than on the right cannot be run correctly. "
        "Fix: pad on the right (the default), or run the texts one at a time."
    )


def read_blocks(
    model: HookedModel,
    info: ModelInfo,
    tokens: Tensor,
    mask: Tensor,
    on_block: Callable[[int, BlockTensors], None],
    *,
    final: bool = False,
    stop_early: bool = False,
    mlp: tuple[bool, bool] = (False, False),
) -> FinalTensors | None:
    """Run `model` on `tokens` and call `on_block(layer, tensors)` as each layer completes.

    `mask` is `[batch, pos]` with 1 for real tokens; it is passed to the model only when it
    contains padding. Hooks are removed when the run ends, also when `on_block` raises. With
    `final`, each block also carries `resid_post`, and the logits, the unembedding and the final
    norm are returned (ALTI-Logit). With `stop_early` (and not `final`) the forward pass ends
    once the last block has been handed over (`run_plans`): for callers that need nothing else
    of it, not for those that read other hooks during the run (`patching`). `mlp`: each block
    also carries its MLP step (and its neurons), spec §8 (`readout.mlp`).
    """
    # the output path is known before the run: a non-linear head is refused up front
    soft_cap, logit_scale = output_path(model, info) if final else (None, 1.0)
    real = mask.bool().to(info.device)
    available = model.hook_dict
    plans = [
        _plan(model, info, layer, real, final, available, mlp) for layer in range(info.n_layers)
    ]
    final_norm: list[tuple[NormTensors, torch.dtype | None]] = []
    final_plan = _final_plan(model, info.backend, real, final_norm) if final else None
    if final_plan is not None:
        plans.append(final_plan)
    kwargs = mask_kwargs(info, mask)
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
