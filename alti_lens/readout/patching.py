"""Interventions for the evaluation: value zeroing, and plain forward passes that return outputs.

Value zeroing (Mohebbi et al. 2023, an activation-patching check for token-to-token mixing): the
value vector of source `j` in one attention sub-block is set to zero in every head, and the change
of that same sub-block's output `y_i` (the representation ALTI decomposes: residual included,
after the norm in post-norm blocks) is measured at every query row `i`:

    effect[i, j] = ||y_i(v_j = 0) − y_i||_2 / ||y_i||_2

The same run also measures the change of the whole layer's output `h_i` (after the MLP,
`hook_resid_post`), where the MLP's and norms' non-linearities act. At the sub-block output the
change is `||A_ij v_j W_O||` up to a post-norm, i.e. Kobayashi's norm measure divided by
`||y_i||`: that comparison checks the read-out more than any measure.

One forward pass serves every source: the sequence is repeated `1 + n_keys` times along the batch,
copy `1 + j` zeroes source `j` (copy 0 is the clean run). The outputs are read by the same hook
plans `alti` uses, so `y` is exactly what the decomposition reproduces.
"""

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from alti_lens.core.handover import BlockTensors
from alti_lens.errors import InputError, UnsupportedModelError

from . import encdec, single
from .attention import position_axis
from .models import BRIDGE, describe
from .protocol import HookedModel
from .run import eval_mode


def _zero_hook(n_keys: int, axis: int = 1) -> Callable[..., Tensor]:
    """Zero source `j`'s value (every head) in batch copy `1 + j`; `axis`: the value hook's
    position axis (`[batch, key_pos, head_index, d_head]`, MLA's `[batch, head, key_pos, d]`)."""

    def hook(v: Tensor, hook: Any = None) -> Tensor:
        v = v.clone()
        copies = torch.arange(n_keys, device=v.device)
        v.movedim(axis, 1)[copies + 1, copies] = 0.0  # a view of `v`: writes through
        return v

    return hook


def _relative_change(
    outputs: Float[Tensor, "copy query_pos d_model"],
) -> Float[Tensor, "query_pos key_pos"]:
    clean = outputs[0]
    change = torch.linalg.vector_norm(outputs[1:] - clean, dim=-1)  # [key_pos, query_pos]
    return (change / torch.linalg.vector_norm(clean, dim=-1)).T


SUB_BLOCK, LAYER = "sub-block", "layer"


def _layer_output_name(model: HookedModel, prefix: str) -> str:
    """The block's output hook: `hook_resid_post` (TransformerLens' name), or the bridge's
    `hook_out` of the block where no alias exists."""
    name = f"{prefix}.hook_resid_post"
    return name if name in model.hook_dict else f"{prefix}.hook_out"


def _fired(sink: list[Tensor], name: str, info: Any) -> Tensor:
    """What hook `name` caught; an error that says so where it never fired (GPT-1's bridge never
    fires its blocks' `hook_resid_post`: each block returns a list)."""
    if not sink:
        raise UnsupportedModelError(
            f"{info.architecture}: the block output hook {name!r} did not fire during the forward "
            "pass, so the layer's output cannot be read here (alti, alti_plus and alti_logit read "
            "it another way). Fix: none for this model in this function."
        )
    return sink[0]


def _capture(sink: list[Tensor]) -> Callable[..., None]:
    def hook(tensor: Tensor, hook: Any = None) -> None:
        sink.append(tensor.detach().to(torch.float64).cpu())

    return hook


def value_zeroing(
    model: HookedModel, tokens: Int[Tensor, "1 pos"], layer: int
) -> dict[str, Float[Tensor, "query_pos key_pos"]]:
    """`effect[i, j]` of zeroing source `j`'s value vectors in `layer`, on that layer's attention
    sub-block output at `i` (`"sub-block"`) and on the layer's output (`"layer"`); a
    decoder-only or encoder model, one unpadded sequence."""
    info = describe(model)
    n = tokens.shape[1]
    batch = tokens.reshape(1, n).expand(n + 1, n).clone()
    mask = torch.ones_like(batch)
    v_name = f"blocks.{layer}.attn.hook_v"
    outputs: list[Tensor] = []
    layer_out: list[Tensor] = []

    def on_block(index: int, block: BlockTensors) -> None:
        if index == layer:
            outputs.append(block.output.detach().to(torch.float64).cpu())

    axis = position_axis(model.hook_dict.get(v_name))
    hooks: list[tuple[str, Callable[..., Any]]] = [(v_name, _zero_hook(n, axis))]
    out_name = _layer_output_name(model, f"blocks.{layer}")
    hooks.append((out_name, _capture(layer_out)))
    with model.hooks(fwd_hooks=hooks):
        single.read_blocks(model, info, batch, mask, on_block)
    layer_output = _fired(layer_out, out_name, info)
    return {SUB_BLOCK: _relative_change(outputs[0]), LAYER: _relative_change(layer_output)}


def value_zeroing_encoder_decoder(
    model: HookedModel,
    source: Int[Tensor, "1 src_pos"],
    decoder_input: Int[Tensor, "1 tgt_pos"],
    part: str,
    layer: int,
) -> dict[str, Float[Tensor, "query_pos key_pos"]]:
    """As `value_zeroing`, for an encoder-decoder model: `part` is `"encoder"` (zero encoder
    source `j`, effect on encoder rows) or `"decoder_cross"` (zero source `j` in the
    cross-attention of decoder `layer`, effect on the cross-attention output of decoder rows)."""
    if part not in (encdec.ENCODER, encdec.DECODER_CROSS):
        raise InputError(
            f"part must be 'encoder' or 'decoder_cross', got {part!r}. Fix: 'encoder' zeroes "
            "encoder sources for encoder rows, 'decoder_cross' for a decoder's cross-attention."
        )
    info = describe(model, encoder_decoder=True)
    S, T = source.shape[1], decoder_input.shape[1]
    src = source.reshape(1, S).expand(S + 1, S).clone()
    tgt = decoder_input.reshape(1, T).expand(S + 1, T).clone()
    if info.backend == BRIDGE:
        stack = "encoder_blocks" if part == encdec.ENCODER else "decoder_blocks"
    else:
        stack = "encoder" if part == encdec.ENCODER else "decoder"
    attn = "attn" if part == encdec.ENCODER else "cross_attn"
    v_name = f"{stack}.{layer}.{attn}.hook_v"
    outputs: list[Tensor] = []
    layer_out: list[Tensor] = []

    def on_block(name: str, index: int, block: BlockTensors) -> None:
        if name == part and index == layer:
            outputs.append(block.output.detach().to(torch.float64).cpu())

    hooks: list[tuple[str, Callable[..., Any]]] = [(v_name, _zero_hook(S))]
    hooks.append((_layer_output_name(model, f"{stack}.{layer}"), _capture(layer_out)))
    with model.hooks(fwd_hooks=hooks):
        encdec.read_encoder_decoder(
            model, info, src, torch.ones_like(src), tgt, torch.ones_like(tgt), on_block
        )
    return {SUB_BLOCK: _relative_change(outputs[0]), LAYER: _relative_change(layer_out[0])}


def logits(
    model: HookedModel, tokens: Int[Tensor, "batch pos"], attention_mask: Tensor | None = None
) -> Float[Tensor, "batch pos d_vocab"]:
    """The model's logits (decoder-only model), without gradients, dropout off."""
    info = describe(model)
    kwargs = {} if attention_mask is None else single.mask_kwargs(info, attention_mask)
    with eval_mode(model), torch.inference_mode():
        out = model(tokens.to(info.device), **kwargs)
    return out.detach().cpu()


def last_hidden(
    model: HookedModel,
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    *,
    grad: bool = False,
) -> Float[Tensor, "batch pos d_model"]:
    """The last block's output (`hook_resid_post`) of an encoder or decoder-only model: the
    token representations a sentence embedding pools. With `grad`, on the model's device and
    still attached to the graph (a classifier head's score, for gradient baselines)."""
    info = describe(model)
    name = f"blocks.{info.n_layers - 1}.hook_resid_post"
    got: list[Tensor] = []

    def hook(tensor: Tensor, hook: Any = None) -> None:
        got.append(tensor if grad else tensor.detach().cpu())

    with eval_mode(model), torch.inference_mode(not grad):
        model.run_with_hooks(
            tokens.to(info.device),
            fwd_hooks=[(name, hook)],
            return_type=None,
            **single.mask_kwargs(info, attention_mask),
        )
    return _fired(got, name, info)
