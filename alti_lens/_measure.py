"""One sub-block of one sequence: decompose, check exactness (spec §2.5), measure (spec §3)."""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from . import inputs as _inputs
from . import readout
from ._types import Measure, Rows
from ._version import __version__
from .core.decompose import AttentionTerms, decompose_block, reconstruct
from .core.handover import BlockTensors
from .core.measures import normalise, scores_and_sums
from .errors import ReconstructionError, WeightProcessingWarning, warn_user


@dataclass(frozen=True)
class Request:
    """The options of one run, validated: what every sub-block is measured with."""

    measure: Measure = "l1"
    dtype: torch.dtype = torch.float32  # the decomposition's
    chunk_size: int | None = None  # query rows per chunk (None: chosen from memory)
    check: bool = True  # the exactness check (spec §2.5)
    rows: Rows = "all"  # "last": a single stack's last layer measures the last real row only
    check_bridge: bool = False  # cross-check the bridge's logits against Hugging Face's, once


class Validated:
    """What an entry point has validated: the model, what `readout.describe` found, the options.

    The first argument of the entry points' shape-checked inner functions. It prints as the model's
    name and the options, so that a shape error (whose message lists the arguments) does not print
    the model's whole module tree.
    """

    __slots__ = ("info", "model", "request")

    def __init__(
        self, model: readout.HookedModel, info: readout.ModelInfo, request: Request
    ) -> None:
        self.model, self.info, self.request = model, info, request

    def __repr__(self) -> str:
        return f"Validated(model={self.info.name!r} ({self.info.backend}), {self.request})"


def measure_block(
    block: BlockTensors,
    index: int,
    rows: Int[Tensor, " query_pos"],
    keys: Int[Tensor, " key_pos"],
    request: Request,
    info: readout.ModelInfo,
    layer: int,
    *,
    part: str = "",
    query_offset: int = 0,
) -> tuple[Float[Tensor, "query_pos source"], float, AttentionTerms]:
    """Contribution matrix of sequence `index` over its real `rows` and `keys`, the exactness
    check's error (NaN when the check is off) and the decomposed terms. `part` names the stack in
    error messages ("encoder", "decoder self-attention", ...). `query_offset`: in
    self-attention, the index in `keys` of `rows[0]` when the rows are the last keys only."""
    dtype = request.dtype
    terms = decompose_block(block, index, rows, dtype, key_positions=keys)
    scores, sums = scores_and_sums(
        terms, request.measure, request.chunk_size, query_offset=query_offset
    )
    error = math.nan
    if request.check:
        # Prefer the sum of the very vectors the fused kernel measured; else sum them here.
        if sums is None:
            total = reconstruct(terms)
        else:
            total = sums + terms.bias + (terms.residual if terms.residual_column else 0)
        error = check_exact(total, terms.output, block, index, info, dtype, layer, part)
    # normalised only once the check has passed (a failed block is not measured at all)
    return normalise(scores, terms.residual_column, query_offset), error, terms


def check_exact(
    total: Float[Tensor, "query_pos d_model"],
    y: Float[Tensor, "query_pos d_model"],
    block: BlockTensors,
    index: int,
    info: readout.ModelInfo,
    dtype: torch.dtype,
    layer: int,
    part: str,
    *,
    step: str = "",
    precision: torch.dtype | None = None,
) -> float:
    """Spec §2.5: `max|Σ_j T_i(x_j) + bias_i − y_i| ≤ atol + rtol · max|y|`, else raise. `step`
    names a step other than the attention sub-block's ("MLP step", spec §8); `precision` a dtype
    the model computed it in beside the block's."""
    error = float((total - y).abs().max())
    computed = [p for p in (block.precision, precision) if p is not None]
    dtypes = [info.dtype, dtype, *computed]
    rtol, atol = _inputs.tolerance(dtypes)
    scale = float(y.abs().max())
    limit = atol + rtol * scale
    if not error <= limit:  # also catches NaN
        raise ReconstructionError(
            f"exactness check failed at {step + ' of ' if step else ''}"
            f"{part + ' ' if part else ''}layer {layer} "
            f"(sequence {index}, {block.kind.value} block "
            f"of {info.architecture}): the decomposition misses the model's own output by "
            f"max|Δ| = {error:.3g}, above the tolerance {limit:.3g} "
            f"(atol {atol:g} + rtol {rtol:g} · max|y| {scale:.3g}). "
            "Likely cause: a block layout alti_lens does not support, or "
            "weights or hooks changed in a way the hook points do not show (e.g. a hook that edits "
            "activations, or weights processed after loading). The contributions would be wrong, "
            "so none are returned; check=False skips this check at your own risk.",
            layer=layer,
            part=part,
            error=error,
            tolerance=limit,
        )
    return error


def warn_weight_processing(model: readout.HookedModel, info: readout.ModelInfo) -> None:
    wp = info.weight_processing
    changed = [k for k in ("center_writing_weights", "fold_value_biases") if wp.get(k)]
    if changed and readout.first_time(model):
        warn_user(
            f"the model's weights were processed by TransformerLens ({', '.join(changed)}): the "
            "decomposition is still exact, but centring and value-bias folding change ALTI's "
            "numbers (spec §6). For the model's own contributions load it unprocessed: "
            "TransformerBridge.boot_transformers(...) without enable_compatibility_mode(), or "
            "HookedTransformer.from_pretrained_no_processing(...).",
            WeightProcessingWarning,
        )


def run_metadata(
    info: readout.ModelInfo,
    request: Request,
    block_kinds: Any,
    block_precisions: Iterable[torch.dtype | None] = (),
    model: readout.HookedModel | None = None,
) -> dict[str, Any]:
    """The metadata every result records: model, versions, options, weight processing, and
    `model_precision`: the narrowest dtype the model computed in (its own dtype, or narrower where
    a block measured so, see `BlockTensors.model_precision`), which bounds how closely two runs of
    the model (a padded batch and a single text, two kernels, two backends) can agree."""
    rtol, atol = _inputs.tolerance([info.dtype, request.dtype])
    computed = [info.dtype, *(p for p in block_precisions if p is not None)]
    model_precision = max(computed, key=lambda d: torch.finfo(d).eps)
    bridge = readout.last_check(model) if request.check_bridge and model is not None else None
    return {
        "model_name": info.name,
        "architecture": info.architecture,
        "backend": info.backend,
        "transformer_lens_version": info.tl_version,
        "alti_lens_version": __version__,
        "measure": request.measure,
        "dtype": str(request.dtype).removeprefix("torch."),
        "model_dtype": str(info.dtype).removeprefix("torch."),
        "model_precision": str(model_precision).removeprefix("torch."),
        "device": str(info.device),
        "block_kinds": block_kinds,
        "weight_processing": dict(info.weight_processing),
        "check": request.check,
        "tolerance": {"rtol": rtol, "atol": atol},
        "chunk_size": request.chunk_size,
        "bridge_check": None if bridge is None else bridge.as_metadata(),
    }
