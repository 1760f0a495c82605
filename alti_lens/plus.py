"""`alti_plus`: ALTI+ on encoder-decoder models (spec §2.4, §4, §7).

Like `alti`, every sub-block is measured while the model runs: the encoder layers first (their
rollout `R_enc` is complete before the decoder starts), then per decoder layer its self-attention
`C_sa^l` and its cross-attention `C_ca^l`, at which point the extended rollout step `R^l` is taken.
"""

from typing import Any, no_type_check

import torch
from torch import Tensor

from . import inputs as _inputs
from . import readout
from ._measure import measure_block, run_metadata, warn_weight_processing
from .decompose import BlockTensors
from .errors import InputError
from .results import AltiPlusResult
from .rollout import extended_rollout_start, extended_rollout_step, rollout_step

ENCODER, DECODER_SELF, DECODER_CROSS = readout.ENCODER, readout.DECODER_SELF, readout.DECODER_CROSS
_PART_NAMES = {
    ENCODER: "encoder",
    DECODER_SELF: "decoder self-attention",
    DECODER_CROSS: "decoder cross-attention",
}


@no_type_check
def alti_plus(
    model: Any,
    source: str | list[str] | Tensor,
    target: str | list[str] | Tensor | None = None,
    *,
    source_attention_mask: Tensor | None = None,
    target_attention_mask: Tensor | None = None,
    measure: str = "l1",
    chunk_size: int | None = None,
    check: bool = True,
    dtype: torch.dtype | None = None,
    max_new_tokens: int = 64,
) -> AltiPlusResult:
    """ALTI+ source and target-prefix contributions of an encoder-decoder model.

    Args:
        model: a TransformerLens `TransformerBridge` of an encoder-decoder (T5, BART, Marian,
            M2M100/NLLB, ...) or, with TransformerLens 3.x, a `HookedEncoderDecoder`.
        source: a string, a list of strings (tokenized and padded on the right), or token ids
            `[batch, src_pos]`.
        target: the target text (tokenized and shifted right by alti_lens: the decoder input
            starts with the decoder start token and row `t` predicts target token `t`), a list
            of strings, or the decoder input ids `[batch, tgt_pos]` (already shifted: they must
            start with the decoder start token). None: generate the target greedily with the
            model first (up to `max_new_tokens`), then explain that translation.
        source_attention_mask / target_attention_mask: 1 = real token, 0 = padding; only with ids.
        measure, chunk_size, check, dtype: as in `alti`.

    Returns:
        An `AltiPlusResult`; `result.source_contribution[b, t]` is the share of the source in
        the prediction of step `t`, and `result.sentence_statistics()` summarises it per sequence.
    """
    measure = _inputs.check_measure(measure)
    chunk_size = _inputs.check_chunk_size(chunk_size)
    info = readout.describe(model, encoder_decoder=True)
    src, src_mask = _inputs.prepare(
        model, info, source, source_attention_mask, name="source", mask_name="source_attention_mask"
    )
    if target is None:
        if target_attention_mask is not None:
            raise InputError("target_attention_mask was given without a target.")
        tgt, tgt_mask, labels = readout.generate(model, info, src, src_mask, max_new_tokens)
    else:
        tgt, tgt_mask, labels = _inputs.prepare_target(model, info, target, target_attention_mask)
    if src.shape[0] != tgt.shape[0]:
        raise InputError(
            f"source has {src.shape[0]} sequences but target has {tgt.shape[0]}; expected one "
            "target per source."
        )
    dtype = _inputs.compute_dtype(info.dtype, dtype)
    warn_weight_processing(model, info)

    batch, S = src.shape
    T = tgt.shape[1]
    n_enc, n_dec = info.n_layers, info.n_decoder_layers
    enc_C = torch.zeros(batch, n_enc, S, S, dtype=dtype)
    enc_R = torch.zeros_like(enc_C)
    dec_C = torch.zeros(batch, n_dec, T, T, dtype=dtype)
    cross_C = torch.zeros(batch, n_dec, T, S + 1, dtype=dtype)
    rollout = torch.zeros(batch, n_dec, T, S + T, dtype=dtype)
    sub_blocks = [f"encoder.{i}" for i in range(n_enc)]
    sub_blocks += [f"decoder.{i}.{part}" for i in range(n_dec) for part in ("self", "cross")]
    errors = torch.full((batch, len(sub_blocks)), float("nan"), dtype=dtype)
    kinds: dict[str, str] = {}
    precisions: list[torch.dtype | None] = []
    src_pos = [row.nonzero().flatten().to(info.device) for row in src_mask]
    tgt_pos = [row.nonzero().flatten().to(info.device) for row in tgt_mask]
    enc_rollout: list[Tensor | None] = [None] * batch  # R_enc so far, per sequence
    dec_self: list[Tensor | None] = [None] * batch  # C_sa of the current decoder layer
    ext_rollout: list[Tensor | None] = [None] * batch  # R^{l-1}

    def on_block(part: str, layer: int, block: BlockTensors) -> None:
        kinds[f"{part}.{layer}"] = block.kind.value
        precisions.append(block.model_precision)
        column = layer if part == ENCODER else n_enc + 2 * layer + (part == DECODER_CROSS)
        for b in range(batch):
            rows = src_pos[b] if part == ENCODER else tgt_pos[b]
            keys = tgt_pos[b] if part == DECODER_SELF else src_pos[b]
            C, errors[b, column], _ = measure_block(
                block, b, rows, keys, info, dtype, measure, chunk_size, check, layer,
                _PART_NAMES[part],
            )  # fmt: skip
            r, k = rows.cpu(), keys.cpu()
            if part == ENCODER:
                R = enc_rollout[b] = rollout_step(C, enc_rollout[b])
                enc_C[b, layer, r[:, None], r] = C.cpu()
                enc_R[b, layer, r[:, None], r] = R.cpu()
            elif part == DECODER_SELF:
                dec_self[b] = C
                dec_C[b, layer, r[:, None], r] = C.cpu()
            else:
                R_enc, C_sa = enc_rollout[b], dec_self[b]
                assert R_enc is not None and C_sa is not None  # guaranteed by the hook order
                previous = ext_rollout[b]
                if previous is None:
                    previous = extended_rollout_start(len(k), len(r), C)
                R = ext_rollout[b] = extended_rollout_step(C_sa, C, R_enc, previous)
                # the residual column is the last of `C`; source columns go to the real positions
                cross_C[b, layer, r[:, None], k] = C[:, :-1].cpu()
                cross_C[b, layer, r, S] = C[:, -1].cpu()
                cols = torch.cat([k, S + r])
                rollout[b, layer, r[:, None], cols] = R.cpu()

    readout.read_encoder_decoder(model, info, src, src_mask, tgt, tgt_mask, on_block)
    metadata = run_metadata(
        info,
        measure=measure,
        dtype=dtype,
        check=check,
        chunk_size=chunk_size,
        block_kinds=kinds,
        block_precisions=precisions,
    )
    metadata |= {
        "sub_blocks": sub_blocks,
        "target_generated": target is None,
        "decoder_start_token_id": info.decoder_start_token_id,
    }
    return AltiPlusResult(
        encoder_contributions=enc_C,
        encoder_rollout=enc_R,
        decoder_contributions=dec_C,
        cross_contributions=cross_C,
        rollout=rollout,
        source_contribution=rollout[:, -1, :, :S].sum(-1),
        source_tokens=src,
        target_tokens=tgt,
        source_str_tokens=readout.str_tokens(model, src),
        target_str_tokens=readout.str_tokens(model, tgt),
        source_attention_mask=src_mask,
        target_attention_mask=tgt_mask,
        reconstruction_error=errors,
        target_labels=labels,
        source_special_mask=readout.special_tokens_mask(model, src) & src_mask.bool(),
        metadata=metadata,
    )
