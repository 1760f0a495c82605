"""The MLP step of a single-stack block, for the information-flow graph (spec §8): which hooks it
needs and how they become `MlpTensors`.

| block kind | the MLP's part (`output`) | the step's `y` (`resid_post`) | norm |
|---|---|---|---|
| pre-norm, parallel | `hook_mlp_out` | `hook_resid_post` | — |
| sandwich | `hook_mlp_out` (after `ln2_post`) | `hook_resid_post` | `ln2_post` (neurons) |
| post-norm, bridge | `hook_mlp_out` (raw) | `ln2.hook_out` | `ln2` (`hook_scale`) |
| post-norm, HookedEncoder | `hook_mlp_out` (raw) | `ln2.w · ln2.hook_normalized + ln2.b` | `ln2` |

Gemma 3n/4's per-layer-input branch, added after the MLP: `post_per_layer_input_norm.hook_out`.
Neurons: the output projection's input `mlp.hook_post` (the bridge's `mlp.out` input; gated MLPs:
`act(gate) ⊙ up`) and the block's `W_out [d_mlp, d_model]`, `b_out`.
Roles are prefixed `flow_` so that they never collide with ALTI-Logit's.
"""

from typing import Any

from torch import Tensor

from alti_lens.core.handover import BlockKind, MlpTensors
from alti_lens.errors import UnsupportedModelError

from .models import BRIDGE, HOOKED_ENCODER
from .protocol import HookedModel
from .run import hf_rms_precision, norm_tensors, rms_scale


def _hook(layer: int, name: str) -> str:
    return f"blocks.{layer}.{name}"


def mlp_names(
    layer: int, backend: str, planned: BlockKind | None, available: Any, neurons: bool
) -> tuple[dict[str, str], frozenset[str]]:
    """The hooks of layer `layer`'s MLP step (by role), and those that may not fire. `planned`
    is the block kind `single` knows before the run (None: a bridge block, pre- or post-norm)."""
    if planned is BlockKind.ATTN_ONLY:
        return {}, frozenset()
    names = {"flow_mlp_out": _hook(layer, "hook_mlp_out")}
    optional: frozenset[str] = frozenset()
    if backend == HOOKED_ENCODER:
        names["flow_ln2_scale"] = _hook(layer, "ln2.hook_scale")
        names["flow_ln2_normalized"] = _hook(layer, "ln2.hook_normalized")
    else:
        names["flow_post"] = _hook(layer, "hook_resid_post")
    if planned is None and _hook(layer, "ln2.hook_scale") in available:
        # read LN2 (used only if the block turns out post-norm); GPT-1's bridge never fires
        # `hook_resid_post` (its block returns a list), LN2's output is its block's output
        names["flow_ln2_scale"] = _hook(layer, "ln2.hook_scale")
        names["flow_ln2_out"] = _hook(layer, "ln2.hook_out")
        optional = frozenset({"flow_post"})
    if planned is BlockKind.SANDWICH and neurons:
        scale = _hook(layer, "ln2_post.hook_scale")
        # no hook_scale (Gemma 4's plain norm component): recomputed from the norm's input
        names["flow_p2_scale" if scale in available else "flow_p2_in"] = (
            scale if scale in available else _hook(layer, "ln2_post.hook_in")
        )
    per_layer_input = _hook(layer, "post_per_layer_input_norm.hook_out")
    if per_layer_input in available:  # Gemma 3n/4: a per-layer-input branch after the MLP
        names["flow_extra"] = per_layer_input
    if neurons:
        names["flow_acts"] = _hook(layer, "mlp.hook_post")
    return names, optional


def _neuron_weights(block: Any, architecture: str, layer: int) -> tuple[Tensor, Tensor | None]:
    """`W_out [d_mlp, d_model]` and `b_out` of the block's MLP, or a refusal (mixture of
    experts: no single output projection)."""
    mlp = getattr(block, "mlp", None)
    W_out = getattr(mlp, "W_out", None)
    if not isinstance(W_out, Tensor) or W_out.ndim != 2:
        raise UnsupportedModelError(
            f"layer {layer}'s MLP ({type(mlp).__name__}, {architecture}) has no single output "
            "projection W_out [d_mlp, d_model] (a mixture of experts?), so its output cannot be "
            "split over neurons. Fix: flow_graph(..., neurons=False) (the MLP stays one part)."
        )
    b_out = getattr(mlp, "b_out", None)
    return W_out.detach(), b_out.detach() if isinstance(b_out, Tensor) else None


def mlp_tensors(
    model: HookedModel,
    backend: str,
    block: Any,
    kind: BlockKind,
    got: dict[str, Tensor],
    context: tuple[str, int, float | None],
) -> MlpTensors | None:
    """The MLP step's tensors from what the hooks of `mlp_names` caught (None: the block has no
    MLP). `context`: the architecture, the layer and the block's output scale (Gemma 4)."""
    if "flow_mlp_out" not in got:
        return None
    architecture, layer, output_scale = context
    norm = None
    if kind is BlockKind.POST_NORM:
        if "flow_ln2_scale" not in got:
            raise UnsupportedModelError(
                f"layer {layer} is post-norm but its LN2 has no hook_scale ({architecture}): "
                "the MLP step cannot be linearised. This model's flow graph is not supported."
            )
        ln2 = block.ln2
        norm = norm_tensors(model, backend, ln2, got["flow_ln2_scale"])
        if backend == HOOKED_ENCODER:
            post = ln2.w.detach() * got["flow_ln2_normalized"] + ln2.b.detach()
        else:
            post = got["flow_ln2_out"]
    else:
        if "flow_post" not in got:
            raise UnsupportedModelError(
                f"layer {layer}'s output hook blocks.{layer}.hook_resid_post did not fire "
                f"({architecture}); the flow graph's MLP step reads it."
            )
        post = got["flow_post"]
        if kind is BlockKind.SANDWICH and ("flow_p2_scale" in got or "flow_p2_in" in got):
            p2 = block.ln2_post
            scale = got.get("flow_p2_scale")
            if scale is None:
                scale = rms_scale(p2, got["flow_p2_in"])
            norm = norm_tensors(model, backend, p2, scale)
    W_out = b_out = None
    if "flow_acts" in got:
        W_out, b_out = _neuron_weights(block, architecture, layer)
    return MlpTensors(
        output=got["flow_mlp_out"],
        resid_post=post,
        norm=norm,
        output_scale=output_scale,
        extra=got.get("flow_extra"),
        acts=got.get("flow_acts"),
        W_out=W_out,
        b_out=b_out,
        precision=hf_rms_precision(backend, norm) if backend == BRIDGE else None,
    )
