"""Encoder-decoder models (ALTI+): which hooks each encoder, decoder self- and cross-attention
sub-block needs (measured: every sub-block rebuilt to ≤ 2e-15 in float64 on T5, M2M100, Marian,
BART bridges and TL 3.x `HookedEncoderDecoder`).

Bridge (blocks `encoder_blocks.L`, `decoder_blocks.L` with `ln1, self_attn, ln2, cross_attn, ln3`):

| sub-block | pre-norm (T5, M2M100): y = r + attn | post-norm (Marian, BART): y = LN(r + attn) |
|---|---|---|
| encoder self | r `hook_resid_pre`, y `ln2.hook_in` | r `hook_resid_pre`, y `ln1.hook_out`, `ln1` |
| decoder self | r `hook_resid_pre`, y `ln2.hook_in` | r `hook_resid_pre`, y `ln1.hook_out`, `ln1` |
| cross | r `ln2.hook_in`, y `ln3.hook_in` | r `ln1.hook_out`, y `ln2.hook_out`, `ln2` |

Pre- and post-norm blocks are told apart by the order the hooks fire in (a post-norm `ln1` runs
after the values). `hook_resid_mid` is not used: on BART-family bridges it aliases `ln2.hook_in`.
TL 3.x `HookedEncoderDecoder` (T5, pre-norm): blocks `encoder.L`, `decoder.L`; y of the encoder
and decoder self-attention `hook_resid_mid`, cross r `hook_resid_mid`, y `hook_resid_mid_cross`.
"""

from collections.abc import Callable

from torch import Tensor

from alti_lens._types import Part
from alti_lens.core.handover import BlockKind, BlockTensors

from . import layouts
from .models import (
    BRIDGE,
    HOOKED_ENCODER_DECODER,
    ModelInfo,
    attention_modules,
    decoder_blocks,
    encoder_blocks,
)
from .protocol import HookedModel
from .run import (
    Key,
    Plan,
    computed_precision,
    fired_after,
    hf_rms_block,
    hf_rms_precision,
    norm_tensors,
    run_plans,
)

ENCODER: Part = "encoder"
DECODER_SELF: Part = "decoder_self"
DECODER_CROSS: Part = "decoder_cross"


def _bridge_plan(
    model: HookedModel, part: Part, layer: int, rows_real: Tensor, keys_real: Tensor
) -> Plan:
    stack = "encoder_blocks" if part == ENCODER else "decoder_blocks"
    block = (encoder_blocks if part == ENCODER else decoder_blocks)(model)[layer]

    def hook(name: str) -> str:
        return f"{stack}.{layer}.{name}"

    self_attn = "attn" if part == ENCODER else "self_attn"
    # Both layouts' hooks are read; the order ln1 / values fired in says which layout it is.
    names = {
        "order_v": hook(f"{self_attn}.hook_v"),
        "ln1_scale": hook("ln1.hook_scale"),
        "ln1_out": hook("ln1.hook_out"),
        "ln2_in": hook("ln2.hook_in"),
    }
    attn_name = "cross_attn" if part == DECODER_CROSS else self_attn
    names["v"] = hook(f"{attn_name}.hook_v")
    names["pattern"] = hook(f"{attn_name}.hook_pattern")
    if part == DECODER_CROSS:
        names |= {"ln2_out": hook("ln2.hook_out"), "ln2_scale": hook("ln2.hook_scale")}
        names["ln3_in"] = hook("ln3.hook_in")
    else:
        names["resid_pre"] = hook("hook_resid_pre")
    attn = getattr(block, attn_name)
    shape = layouts.layout(attn, part == ENCODER, int(keys_real.shape[1]))
    taps = {}
    if shape.tap is not None:  # the pattern comes from the Hugging Face module, not the hook
        taps["pattern"] = shape.tap
        del names["pattern"]

    def assemble(got: dict[str, Tensor], order: list[str]) -> BlockTensors:
        post = fired_after(order, names["ln1_scale"], names["order_v"])
        kind = BlockKind.POST_NORM if post else BlockKind.PRE_NORM
        norm = None
        if part != DECODER_CROSS:
            x = got["resid_pre"]
            y = got["ln1_out"] if post else got["ln2_in"]
            if post:
                norm = norm_tensors(model, BRIDGE, block.ln1, got["ln1_scale"])
        else:
            x = got["ln1_out"] if post else got["ln2_in"]
            y = got["ln2_out"] if post else got["ln3_in"]
            if post:
                norm = norm_tensors(model, BRIDGE, block.ln2, got["ln2_scale"])
        precision = hf_rms_precision(BRIDGE, norm)
        return BlockTensors(
            kind=kind,
            pattern=got["pattern"],
            v=got["v"],
            W_O=attn.W_O.detach(),
            b_O=None if attn.b_O is None else attn.b_O.detach(),
            resid_pre=x,
            output=y,
            norm=norm,
            cross=part == DECODER_CROSS,
            precision=precision,
            model_precision=computed_precision(
                precision or hf_rms_block(BRIDGE, block), got["pattern"]
            ),
        )

    return Plan((part, layer), names, assemble, rows_real, keys_real, taps=taps, adapt=shape.adapt)


def _hooked_plan(
    model: HookedModel, part: Part, layer: int, rows_real: Tensor, keys_real: Tensor
) -> Plan:
    stack = "encoder" if part == ENCODER else "decoder"
    block = (encoder_blocks if part == ENCODER else decoder_blocks)(model)[layer]
    prefix = f"{stack}.{layer}."
    attn_name = "cross_attn" if part == DECODER_CROSS else "attn"
    names = {
        "v": f"{prefix}{attn_name}.hook_v",
        "pattern": f"{prefix}{attn_name}.hook_pattern",
        "resid_pre": prefix + ("hook_resid_mid" if part == DECODER_CROSS else "hook_resid_pre"),
        "output": prefix + ("hook_resid_mid_cross" if part == DECODER_CROSS else "hook_resid_mid"),
    }
    attn = getattr(block, attn_name)

    def assemble(got: dict[str, Tensor], order: list[str]) -> BlockTensors:
        return BlockTensors(
            kind=BlockKind.PRE_NORM,
            pattern=got["pattern"],
            v=got["v"],
            W_O=attn.W_O.detach(),
            b_O=None if attn.b_O is None else attn.b_O.detach(),
            resid_pre=got["resid_pre"],
            output=got["output"],
            cross=part == DECODER_CROSS,
            model_precision=computed_precision(None, got["pattern"]),
        )

    return Plan((part, layer), names, assemble, rows_real, keys_real)


def read_encoder_decoder(
    model: HookedModel,
    info: ModelInfo,
    src: Tensor,
    src_mask: Tensor,
    tgt: Tensor,
    tgt_mask: Tensor,
    on_block: Callable[[Part, int, BlockTensors], None],
) -> None:
    """Run `model` with teacher forcing and call `on_block(part, layer, tensors)` for every
    sub-block as it completes: all encoder layers first, then per decoder layer its
    self-attention (`DECODER_SELF`) and its cross-attention (`DECODER_CROSS`)."""
    src_real, tgt_real = src_mask.bool().to(info.device), tgt_mask.bool().to(info.device)
    hooked = info.backend == HOOKED_ENCODER_DECODER
    make = _hooked_plan if hooked else _bridge_plan
    plans = [make(model, ENCODER, i, src_real, src_real) for i in range(info.n_layers)]
    for i in range(info.n_decoder_layers):
        plans.append(make(model, DECODER_SELF, i, tgt_real, tgt_real))
        plans.append(make(model, DECODER_CROSS, i, tgt_real, src_real))
    kwargs: dict[str, Tensor | bool] = {}
    if hooked:
        if not bool(src_real.all()):
            # 3.x turns an integer mask into NaN scores in float64 models: pass it as floats.
            kwargs["one_zero_attention_mask"] = src_mask.to(info.device, info.dtype)
        # 3.x takes no decoder mask: right padding is harmless under causal attention.
    else:
        if not bool(src_real.all()):
            kwargs["attention_mask"] = src_mask.to(info.device)
        if not bool(tgt_real.all()):
            kwargs["decoder_attention_mask"] = tgt_mask.to(info.device)
        if layouts.needs_output_attentions(attention_modules(model)):
            kwargs["output_attentions"] = True

    def forward(fwd_hooks: list) -> None:
        model.run_with_hooks(
            src.to(info.device),
            decoder_input=tgt.to(info.device),
            fwd_hooks=fwd_hooks,
            return_type=None,
            **kwargs,
        )

    def handover(key: Key, block: BlockTensors) -> None:
        part = key[0]
        if part == "final":  # encoder-decoder plans are all sub-blocks; never happens
            raise TypeError("an encoder-decoder read-out has no final-norm plan")
        on_block(part, key[1], block)

    run_plans(model, info, plans, forward, handover)
