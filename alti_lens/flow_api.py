"""`flow_graph`: the information-flow graph of a decoder-only or encoder model (spec §8).

One forward pass (`readout.read_blocks` with the MLP steps); as each layer's block is handed over,
for every sequence: decompose its attention (`core.decompose`), check the attention step, the MLP
step and the neurons against the model's own outputs (spec §2.5), score every part (`core.heads`,
`core.flow`) and scatter the normalised weights into padded CPU tensors (`FlowCollector`).
"""

import math

import torch
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped
from torch import Tensor

from . import inputs as _inputs
from . import pipeline, readout
from ._measure import Request, Validated, check_exact, run_metadata, warn_weight_processing
from ._types import VECTOR_MEASURES, Measure
from .core import flow
from .core.decompose import AttentionTerms, decompose_block, reconstruct
from .core.handover import BlockKind, BlockTensors
from .core.heads import head_source_scores, normalise_step
from .core.measures import proximity
from .errors import InputError
from .results.flow import FlowGraph

STEPS = {BlockKind.PARALLEL: "parallel", BlockKind.ATTN_ONLY: "attention"}


@_inputs.validates_arguments
def flow_graph(
    model: readout.HookedModel,
    inputs: str | list[str] | Tensor,
    *,
    attention_mask: Tensor | None = None,
    measure: Measure = "l1",
    neurons: bool = False,
    dtype: torch.dtype | None = None,
    check: bool = True,
    chunk_size: int | None = None,
    check_bridge: bool = False,
) -> FlowGraph:
    """The information-flow graph (Ferrando & Voita 2024) of every sequence: each residual-stream
    state as a sum of parts (attention heads per source token, the residual, the MLP, its
    neurons), each weighted by ALTI's proximity measure and normalised (spec §8).

    Args:
        model: a TransformerLens `TransformerBridge`, or (3.x) a `HookedTransformer` or
            `HookedEncoder`; left as it was (no hooks remain, also after an error).
        inputs: a string, a list of strings (padded on the right), or token ids `[batch, pos]`.
        attention_mask: `[batch, pos]`, 1 = real token; only with token tensors.
        measure: `"l1"` (ALTI's, the paper's), `"l2"` or `"norm"`.
        neurons: also split each MLP's part over its neurons (`FlowGraph.neurons`).
        dtype: decomposition dtype (None: float32, or float64 for float64 models).
        check: check every step (attention, MLP, neurons) against the model's own outputs
            (spec §2.5) and raise `ReconstructionError` if one misses.
        chunk_size: query rows measured at once (None: chosen from memory).
        check_bridge: once per model object, compare the bridge's logits with the Hugging Face
            model's it wraps and warn when they differ, as `alti(check_bridge=True)` does.

    Returns:
        A `FlowGraph`: `attention [batch, layer, head, pos, pos]`, `attention_residual`, `mlp`,
        `mlp_residual` `[batch, layer, pos]`, `neurons [batch, layer, pos, d_mlp]` or None;
        `routes(position, threshold)` prunes it into the route of one prediction.
    """
    measure = _inputs.check_measure(measure)
    if measure not in VECTOR_MEASURES:
        raise InputError(
            f"flow_graph measures vectors; got measure={measure!r}, which has no MLP or "
            f"residual parts. Fix: one of {', '.join(map(repr, VECTOR_MEASURES))} ('l1': ALTI)."
        )
    if not isinstance(neurons, bool):
        raise InputError(f"neurons must be True or False; got {neurons!r}.")
    chunk_size = _inputs.check_chunk_size(chunk_size)
    info = readout.describe(model)
    tokens, mask = _inputs.prepare(model, info, inputs, attention_mask)
    dtype = _inputs.compute_dtype(info.dtype, dtype)
    request = Request(measure, dtype, chunk_size, check, check_bridge=check_bridge)
    warn_weight_processing(model, info)
    if check_bridge:
        readout.cross_check(model, info, tokens, mask)
    return _flow_graph(Validated(model, info, request), tokens, mask, neurons)


@jaxtyped(typechecker=beartype)
def _flow_graph(
    call: Validated, tokens: Int[Tensor, "batch pos"], mask: Int[Tensor, "batch pos"], neurons: bool
) -> FlowGraph:
    """`flow_graph` on validated arguments."""
    model, info = call.model, call.info
    collector = FlowCollector(call, tokens.shape, neurons)
    positions = pipeline.real_positions(mask)

    def on_block(layer: int, block: BlockTensors) -> None:
        for b, keep in enumerate(positions):
            collector.measure(layer, block, b, keep)

    readout.read_blocks(
        model, info, tokens, mask, on_block, stop_early=True, mlp=(True, neurons)
    )  # fmt: skip
    return collector.result(tokens, mask)


class FlowCollector:
    """Each layer's steps of each sequence, checked, measured and scattered into padded CPU
    tensors (padded positions: zeros; steps a block does not have: NaN)."""

    def __init__(self, call: Validated, shape: torch.Size, neurons: bool) -> None:
        batch, n = shape
        self.call, self.neurons_asked = call, neurons
        info, dtype = call.info, call.request.dtype
        L, H = info.n_layers, info.n_heads
        self.attention = torch.zeros(batch, L, H, n, n, dtype=dtype)
        self.residual = torch.zeros(batch, L, n, dtype=dtype)
        self.mlp = torch.zeros(batch, L, n, dtype=dtype)
        self.mlp_residual = torch.zeros(batch, L, n, dtype=dtype)
        self.neurons: Tensor | None = None
        self.errors = torch.full((batch, L), math.nan, dtype=dtype)
        self.steps: list[str] = ["attention+mlp"] * L
        self.kinds: list[str] = [""] * L
        self.precisions: list[torch.dtype | None] = []

    def _check(
        self, total: Tensor, y: Tensor, block: BlockTensors, b: int, layer: int, step: str
    ) -> float:
        call = self.call
        if not call.request.check:
            return math.nan
        precision = None if block.mlp is None else block.mlp.precision
        return check_exact(
            total, y, block, b, call.info, call.request.dtype, layer, "", step=step,
            precision=precision if step != "attention step" else None,
        )  # fmt: skip

    def measure(self, layer: int, block: BlockTensors, b: int, keep: Tensor) -> None:
        """Sequence `b` of layer `layer`'s block, over its real positions `keep` (CPU)."""
        request = self.call.request
        rows = keep.to(block.output.device)  # where the layer lives (models split over devices)
        terms = decompose_block(block, b, rows, request.dtype)
        self.kinds[layer] = block.kind.value
        if b == 0:
            self.precisions.append(block.model_precision)
        if block.mlp is None and block.kind is not BlockKind.ATTN_ONLY:
            raise ValueError(f"layer {layer}: the block's MLP was not read")  # read-out contract
        if block.kind in STEPS:
            errors = self._one_step(layer, block, b, terms, rows, keep)
        else:
            errors = self._two_steps(layer, block, b, terms, rows, keep)
        self.errors[b, layer] = max(errors) if errors else math.nan

    def _one_step(
        self, layer: int, block: BlockTensors, b: int, terms: AttentionTerms, rows: Tensor,
        keep: Tensor,
    ) -> list[float]:  # fmt: skip
        """A parallel block (heads, residual and MLP as parts of `resid_post`), or an
        attention-only one (heads and residual)."""
        self.steps[layer] = STEPS[block.kind]
        mlp_part = None
        if block.kind is BlockKind.PARALLEL:
            terms, mlp_part = flow.parallel_terms(terms, block, b, rows)
        error = self._check(reconstruct(terms), terms.output, block, b, layer, "attention step")
        request = self.call.request
        heads, residual = head_source_scores(terms, request.measure, request.chunk_size)
        mlp_score = None
        if mlp_part is not None:
            y = terms.output
            y_norm = torch.linalg.vector_norm(y, ord=1 if request.measure == "l1" else 2, dim=-1)
            mlp_score = proximity(mlp_part.clone(), y, y_norm, request.measure)
        H, r, m = normalise_step(heads, residual, mlp_score)
        self._scatter_heads(b, layer, keep, H, r)
        # a step the block does not have is NaN at every position, padded ones too (spec §8)
        if m is None:
            self.mlp[b, layer] = math.nan
        else:
            self.mlp[b, layer, keep] = m.cpu().to(self.mlp.dtype)
        self.mlp_residual[b, layer] = math.nan
        if self.neurons_asked and block.kind is BlockKind.PARALLEL:
            return [error, self._neurons(layer, block, b, rows, keep, None)]
        return [error]

    def _two_steps(
        self, layer: int, block: BlockTensors, b: int, terms: AttentionTerms, rows: Tensor,
        keep: Tensor,
    ) -> list[float]:  # fmt: skip
        """A sequential block: the attention step (`alti(per_head=True)`'s), then the MLP's."""
        request = self.call.request
        errors = [self._check(reconstruct(terms), terms.output, block, b, layer, "attention step")]
        H, r, _ = normalise_step(*head_source_scores(terms, request.measure, request.chunk_size))
        self._scatter_heads(b, layer, keep, H, r)
        mlp_terms = flow.mlp_terms(block, b, rows, terms.output, request.dtype)
        total = flow.mlp_total(mlp_terms)
        errors.append(self._check(total, mlp_terms.output, block, b, layer, "MLP step"))
        m, res = flow.mlp_step(mlp_terms, request.measure)
        self.mlp[b, layer, keep] = m.cpu().to(self.mlp.dtype)
        self.mlp_residual[b, layer, keep] = res.cpu().to(self.mlp.dtype)
        if self.neurons_asked:
            errors.append(self._neurons(layer, block, b, rows, keep, mlp_terms))
        return errors

    def _neurons(
        self, layer: int, block: BlockTensors, b: int, rows: Tensor, keep: Tensor,
        mlp_terms: flow.MlpTerms | None,
    ) -> float:  # fmt: skip
        """Neuron shares of the MLP's part of sequence `b`, checked against that part."""
        request = self.call.request
        if mlp_terms is None:  # a parallel block: the MLP's part is its raw output
            no_residual = torch.zeros(len(rows), self.call.info.d_model, device=rows.device)
            mlp_terms = flow.mlp_terms(block, b, rows, no_residual, request.dtype)
        shares, total = flow.neuron_scores(mlp_terms, request.measure, request.chunk_size)
        if self.neurons is None:
            batch, L, n = self.mlp.shape
            self.neurons = torch.zeros(batch, L, n, shares.shape[-1], dtype=self.mlp.dtype)
        self.neurons[b, layer, keep] = shares.cpu().to(self.neurons.dtype)
        return self._check(total, mlp_terms.neuron_output, block, b, layer, "MLP neurons")

    def _scatter_heads(
        self,
        b: int,
        layer: int,
        keep: Tensor,
        heads: Float[Tensor, "head_index query_pos key_pos"],
        residual: Float[Tensor, " query_pos"],
    ) -> None:
        self.attention[b, layer][:, keep[:, None], keep] = heads.cpu().to(self.attention.dtype)
        self.residual[b, layer, keep] = residual.cpu().to(self.residual.dtype)

    def result(self, tokens: Tensor, mask: Tensor) -> FlowGraph:
        """The collected weights as a `FlowGraph`, with the run's metadata."""
        call = self.call
        metadata = run_metadata(call.info, call.request, self.kinds, self.precisions, call.model)
        metadata["steps"] = self.steps
        metadata["neurons"] = self.neurons_asked
        return FlowGraph(
            attention=self.attention,
            attention_residual=self.residual,
            mlp=self.mlp,
            mlp_residual=self.mlp_residual,
            tokens=tokens,
            str_tokens=readout.str_tokens(call.model, tokens),
            attention_mask=mask,
            reconstruction_error=self.errors,
            metadata=metadata,
            neurons=self.neurons,
        )
