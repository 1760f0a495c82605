"""The one driver of every entry point: read the model once; for each attention sub-block, as soon
as the model has run it, decompose → check → measure every sequence of the batch, and hand each
measured `Step` to the entry point's observers.

Only about one layer's attention is held at a time (the read-out drops each block's tensors once
handed over). Observers copy what they keep into padded CPU tensors; nothing that depends on the
previous layers is carried through the run: the rollout is taken afterwards, on the padded
matrices (`rollout`), whose padded rows and columns are exact zeros.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from . import readout
from ._measure import Request, measure_block
from ._types import Part
from .core.decompose import AttentionTerms
from .core.handover import BlockTensors, FinalTensors

LAYER: Part = "layer"
PART_NAMES: dict[Part, str] = {
    LAYER: "",
    "encoder": "encoder",
    "decoder_self": "decoder self-attention",
    "decoder_cross": "decoder cross-attention",
}


@dataclass(frozen=True)
class Step:
    """One sub-block of one sequence, decomposed, checked and measured."""

    part: Part
    layer: int
    index: int  # the sequence, in the batch
    rows: Int[Tensor, " query_pos"]  # its real query positions measured (CPU)
    keys: Int[Tensor, " key_pos"]  # its real key positions (CPU)
    contributions: Float[Tensor, "query_pos source"]  # C over rows × sources, model device
    terms: AttentionTerms
    block: BlockTensors


Observer = Callable[[Step], None]


@dataclass
class Trace:
    """What every run records besides the observers' tensors."""

    errors: Float[Tensor, "batch sub_block"]  # the exactness check's max|Δ| (NaN: not checked)
    block_kinds: dict[tuple[Part, int], str] = field(default_factory=dict)
    precisions: list[torch.dtype | None] = field(default_factory=list)
    final: FinalTensors | None = None


def real_positions(mask: Int[Tensor, "batch pos"]) -> list[Tensor]:
    """The real (unpadded) positions of each sequence (CPU)."""
    return [row.nonzero().flatten() for row in mask]


def _measurer(
    info: readout.ModelInfo,
    request: Request,
    observers: Iterable[Observer],
    trace: Trace,
    column: Callable[[Part, int], int],
    selection: Callable[[Part, int, int], tuple[Tensor, Tensor, int]],
) -> Callable[[Part, int, BlockTensors], None]:
    """The per-block step: for each sequence, the rows and keys `selection(part, layer, b)` says
    (and the key index of the first row, for last-row self-attention), measured and observed."""
    observers = list(observers)

    def on_block(part: Part, layer: int, block: BlockTensors) -> None:
        trace.block_kinds[(part, layer)] = block.kind.value
        trace.precisions.append(block.model_precision)
        # measured where the block lives: a model split over devices (`device_map`) hands each
        # layer's tensors over on that layer's device, not on the first parameter's (info.device)
        device = block.output.device
        for b in range(trace.errors.shape[0]):
            rows, keys, offset = selection(part, layer, b)
            C, error, terms = measure_block(
                block, b, rows.to(device), keys.to(device), request, info, layer,
                part=PART_NAMES[part], query_offset=offset,
            )  # fmt: skip
            trace.errors[b, column(part, layer)] = error
            step = Step(part, layer, b, rows, keys, C, terms, block)
            for observe in observers:
                observe(step)

    return on_block


def run_single(
    model: readout.HookedModel,
    info: readout.ModelInfo,
    tokens: Int[Tensor, "batch pos"],
    mask: Int[Tensor, "batch pos"],
    request: Request,
    observers: Iterable[Observer],
    *,
    final: bool = False,
) -> Trace:
    """A decoder-only or encoder model: every layer of every sequence. With `request.rows ==
    "last"` the last layer measures each sequence's last real row only. With `final`, blocks
    carry `resid_post` and the trace the final norm, unembedding and logits (ALTI-Logit)."""
    batch = tokens.shape[0]
    trace = Trace(torch.full((batch, info.n_layers), float("nan"), dtype=request.dtype))
    positions = real_positions(mask)
    last_layer = info.n_layers - 1

    def selection(part: Part, layer: int, b: int) -> tuple[Tensor, Tensor, int]:
        keep = positions[b]
        if request.rows == "last" and layer == last_layer:
            return keep[-1:], keep, len(keep) - 1
        return keep, keep, 0

    on_block = _measurer(info, request, observers, trace, lambda _, layer: layer, selection)
    # Nothing after the last block's attention is read without `final`: the forward pass stops
    # there (the last MLP, the final norm and the unembedding are not run).
    trace.final = readout.read_blocks(
        model, info, tokens, mask, lambda layer, block: on_block(LAYER, layer, block),
        final=final, stop_early=True,
    )  # fmt: skip
    return trace


def encoder_decoder_columns(n_encoder: int, n_decoder: int) -> list[str]:
    """The sub-blocks of an encoder-decoder, in the order of the trace's error columns."""
    names = [f"encoder.{i}" for i in range(n_encoder)]
    return names + [f"decoder.{i}.{p}" for i in range(n_decoder) for p in ("self", "cross")]


def run_encoder_decoder(
    model: readout.HookedModel,
    info: readout.ModelInfo,
    src: Int[Tensor, "batch src_pos"],
    src_mask: Int[Tensor, "batch src_pos"],
    tgt: Int[Tensor, "batch tgt_pos"],
    tgt_mask: Int[Tensor, "batch tgt_pos"],
    request: Request,
    observers: Iterable[Observer],
) -> Trace:
    """An encoder-decoder with teacher forcing: every encoder layer, then per decoder layer its
    self-attention and its cross-attention (queries: target rows; keys: source positions)."""
    n_enc = info.n_layers
    columns = len(encoder_decoder_columns(n_enc, info.n_decoder_layers))
    trace = Trace(torch.full((src.shape[0], columns), float("nan"), dtype=request.dtype))
    src_pos, tgt_pos = real_positions(src_mask), real_positions(tgt_mask)

    def column(part: Part, layer: int) -> int:
        return layer if part == "encoder" else n_enc + 2 * layer + (part == "decoder_cross")

    def selection(part: Part, layer: int, b: int) -> tuple[Tensor, Tensor, int]:
        rows = src_pos[b] if part == "encoder" else tgt_pos[b]
        keys = tgt_pos[b] if part == "decoder_self" else src_pos[b]
        return rows, keys, 0

    on_block = _measurer(info, request, observers, trace, column, selection)
    readout.read_encoder_decoder(model, info, src, src_mask, tgt, tgt_mask, on_block)
    return trace


def scatter(
    target: Float[Tensor, "padded_rows padded_cols"],
    rows: Int[Tensor, " query_pos"],
    cols: Int[Tensor, " key_pos"],
    values: Float[Tensor, "query_pos key_pos"],
) -> None:
    """`target[rows × cols] = values` (CPU), the real positions into a padded matrix."""
    target[rows[:, None], cols] = values.to(target.device, target.dtype)
