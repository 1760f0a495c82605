"""`alti_plus`: ALTI+ on encoder-decoder models (spec §2.4, §4, §7).

A composition like `alti`: one run of the pipeline measures every encoder layer and each decoder
layer's self- and cross-attention; a collector scatters them into padded tensors; the encoder
rollout and the extended rollout (`rollout.extended_rollout`) are taken after the run.
"""

import torch
from beartype import beartype
from jaxtyping import Int, jaxtyped
from torch import Tensor

from . import inputs as _inputs
from . import pipeline, readout
from ._measure import Request, Validated, run_metadata, warn_weight_processing
from ._types import Measure
from .core.rollout import extended_rollout, rollout
from .errors import InputError
from .results import AltiPlusResult

ENCODER, DECODER_SELF = readout.ENCODER, readout.DECODER_SELF


@_inputs.validates_arguments  # then `_alti_plus` checks the shapes
def alti_plus(
    model: readout.HookedModel,
    source: str | list[str] | Tensor,
    target: str | list[str] | Tensor | None = None,
    *,
    source_attention_mask: Tensor | None = None,
    target_attention_mask: Tensor | None = None,
    measure: Measure = "l1",
    chunk_size: int | None = None,
    check: bool = True,
    dtype: torch.dtype | None = None,
    max_new_tokens: int = 64,
    check_bridge: bool = False,
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
        source_attention_mask: `[batch, src_pos]`, 1 = real token, 0 = padding; only with ids.
        target_attention_mask: `[batch, tgt_pos]`, the same for the decoder input ids.
        measure: the contribution measure, as in `alti` (`"l1"`: ALTI+).
        chunk_size: query rows decomposed at once, as in `alti`.
        check: the exactness check of every sub-block (spec §2.5), as in `alti`.
        check_bridge: the bridge against Hugging Face cross-check, as in `alti`.
        dtype: the decomposition's dtype, as in `alti`.
        max_new_tokens: with no target, the most tokens generated (default 64).

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
            raise InputError(
                "target_attention_mask was given without a target; expected it only with target "
                "ids. Fix: drop it (the target is generated), or pass the target too."
            )
        max_new_tokens = _inputs.check_max_new_tokens(max_new_tokens)
        tgt, tgt_mask, labels = readout.generate(model, info, src, src_mask, max_new_tokens)
    else:
        tgt, tgt_mask, labels = _inputs.prepare_target(model, info, target, target_attention_mask)
    if src.shape[0] != tgt.shape[0]:
        raise InputError(
            f"source has {src.shape[0]} sequences but target has {tgt.shape[0]}; expected one "
            "target per source. Fix: pass as many targets as sources."
        )
    dtype = _inputs.compute_dtype(info.dtype, dtype)
    request = Request(measure, dtype, chunk_size, check, check_bridge=check_bridge)
    warn_weight_processing(model, info)
    if check_bridge:
        readout.cross_check(model, info, src, src_mask, decoder_tokens=tgt)
    call = Validated(model, info, request)
    return _alti_plus(call, src, src_mask, tgt, tgt_mask, labels, target is None)


@jaxtyped(typechecker=beartype)
def _alti_plus(
    call: Validated,
    src: Int[Tensor, "batch src_pos"],
    src_mask: Int[Tensor, "batch src_pos"],
    tgt: Int[Tensor, "batch tgt_pos"],
    tgt_mask: Int[Tensor, "batch tgt_pos"],
    labels: Int[Tensor, "batch tgt_pos"],
    generated: bool,
) -> AltiPlusResult:
    """`alti_plus` on validated arguments (`generated`: the target was generated)."""
    model, info, request = call.model, call.info, call.request
    collector = _Collector(info, src.shape, tgt.shape[1], request.dtype)
    trace = pipeline.run_encoder_decoder(
        model, info, src, src_mask, tgt, tgt_mask, request, [collector]
    )
    enc_R = rollout(collector.enc_C, device=info.device)
    ext_R = torch.stack(
        [
            extended_rollout(enc_R[b, -1], collector.dec_C[b], collector.cross_C[b])
            for b in range(src.shape[0])
        ]
    )
    S = src.shape[1]
    kinds = {f"{part}.{layer}": kind for (part, layer), kind in trace.block_kinds.items()}
    metadata = run_metadata(info, request, kinds, trace.precisions, model)
    sub_blocks = pipeline.encoder_decoder_columns(info.n_layers, info.n_decoder_layers)
    metadata |= {
        "sub_blocks": sub_blocks,
        "target_generated": generated,
        "decoder_start_token_id": info.decoder_start_token_id,
    }
    return AltiPlusResult(
        encoder_contributions=collector.enc_C,
        encoder_rollout=enc_R,
        decoder_contributions=collector.dec_C,
        cross_contributions=collector.cross_C,
        rollout=ext_R,
        source_contribution=ext_R[:, -1, :, :S].sum(-1),
        source_tokens=src,
        target_tokens=tgt,
        source_str_tokens=readout.str_tokens(model, src),
        target_str_tokens=readout.str_tokens(model, tgt),
        source_attention_mask=src_mask,
        target_attention_mask=tgt_mask,
        reconstruction_error=trace.errors,
        target_labels=labels,
        source_special_mask=readout.special_tokens_mask(model, src) & src_mask.bool(),
        metadata=metadata,
    )


class _Collector:
    """Observer: the encoder, decoder self- and cross-attention matrices into padded CPU tensors
    (the cross-attention's residual column last, at index `src_pos`)."""

    def __init__(
        self, info: readout.ModelInfo, src_shape: torch.Size, n_target: int, dtype: torch.dtype
    ) -> None:
        batch, S = src_shape
        self.S = S
        self.enc_C = torch.zeros(batch, info.n_layers, S, S, dtype=dtype)
        self.dec_C = torch.zeros(batch, info.n_decoder_layers, n_target, n_target, dtype=dtype)
        self.cross_C = torch.zeros(batch, info.n_decoder_layers, n_target, S + 1, dtype=dtype)

    def __call__(self, step: pipeline.Step) -> None:
        b, layer, C = step.index, step.layer, step.contributions
        if step.part == ENCODER:
            pipeline.scatter(self.enc_C[b, layer], step.rows, step.keys, C)
        elif step.part == DECODER_SELF:
            pipeline.scatter(self.dec_C[b, layer], step.rows, step.keys, C)
        else:
            pipeline.scatter(self.cross_C[b, layer], step.rows, step.keys, C[:, :-1])
            self.cross_C[b, layer, step.rows, self.S] = C[:, -1].cpu()
