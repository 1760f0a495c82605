"""`alti`: ALTI contributions of every layer and their rollout, for decoder-only and encoder models.

A composition: options → one run of the pipeline (`pipeline.run_single`), whose steps a
`Collector` scatters into padded tensors → the rollout of those tensors (`rollout`) → the result.
`alti_logit` runs the same collector beside its own, so its `.alti` is a genuine `alti()` result.
"""

import torch
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped
from torch import Tensor

from . import inputs as _inputs
from . import pipeline, readout
from ._measure import Request, Validated, run_metadata, warn_weight_processing
from ._types import Measure, Rows
from .core.heads import head_source_scores, normalise_heads
from .core.rollout import last_row_rollout, rollout
from .results import AltiResult


# The public entry point validates its arguments itself, with errors that say how to fix them (the
# test suite's runtime type checker would pre-empt those messages with generic ones); `_alti`,
# which it calls, checks the shapes.
@_inputs.validates_arguments
def alti(
    model: readout.HookedModel,
    inputs: str | list[str] | Tensor,
    *,
    attention_mask: Tensor | None = None,
    measure: Measure = "l1",
    chunk_size: int | None = None,
    check: bool = True,
    dtype: torch.dtype | None = None,
    per_head: bool = False,
    rows: Rows = "all",
    check_bridge: bool = False,
) -> AltiResult:
    """ALTI contributions of every layer, and their rollout, for a decoder-only or encoder model.

    Args:
        model: a TransformerLens `TransformerBridge`, or (TransformerLens 3.x) a
            `HookedTransformer` or `HookedEncoder`. It is left as it was: no hooks remain and its
            training flags are restored, also when an error is raised.
        inputs: a string, a list of strings (tokenized with the model's tokenizer, padded on the
            right), or an int tensor `[batch, pos]` of token ids.
        attention_mask: `[batch, pos]`, 1 = real token, 0 = padding; only with token tensors.
        measure: `"l1"` (ALTI), `"l2"`, `"norm"` (Kobayashi), `"attention"` (head mean), or
            `"attention_rollout"` (Abnar & Zuidema's `0.5·A + 0.5·I`).
        chunk_size: query rows decomposed at once (None: chosen from the cache/free memory).
        check: verify on every layer that the decomposition reproduces the model's output
            (spec §2.5) and raise `ReconstructionError` if not. With `False` the check is
            skipped and `reconstruction_error` is NaN.
        dtype: decomposition dtype (None: float32, or float64 for float64 models).
        per_head: also return `head_contributions [batch, layer, head, pos, pos]` and
            `residual_contribution [batch, layer, pos]`: each row split over (head, source)
            parts `A^h_ij v^h_j W_O^h` and the residual, measured like ALTI (an extension: the
            ALTI papers define token-level contributions only). Costs about `n_heads` times
            the time of the token-level measure.
        check_bridge: once per model object, compare the TransformerLens bridge's logits on these
            inputs with those of the plain Hugging Face model it wraps (rebuilt around the same
            weight tensors, no copy) and warn (`BridgeMismatchWarning`) with the measured
            difference when they disagree: ALTI is exact for the model the bridge computes, which
            is then not the Hugging Face one. Recorded in `metadata["bridge_check"]`.
        rows: `"all"` (default) or `"last"`, for next-token analyses that need the rollout of
            each sequence's last real token `t` only (the last position whose mask is 1). With
            `"last"`, `R^l[t] = e_t C^l ··· C^1` is computed right to left as row vectors
            (no `n³` matrix products), and the last layer measures query row `t` only:
            - `rollout` is `[batch, layer, 1, key_pos]`: `rollout[b, l, 0]` is exactly row `t_b`
              of the full computation's `rollout[b, l]` (how much each input token contributes
              to position `t_b` after layer `l`); `rollout[b, -1, 0]` is `R^L[t_b]`.
            - `contributions` keeps its shape and meaning, except that the last layer holds row
              `t_b` only: its other rows are NaN (not computed), never zeros.
            - `reconstruction_error` of the last layer covers row `t_b` only.
            - `metadata["rows"]` is `"last"` and `metadata["rollout_rows"]` lists `t_b` per
              sequence (positions in the padded `tokens`).
            Not combinable with `per_head=True`.

    Returns:
        An `AltiResult` with `contributions` and `rollout` of shape `[batch, layer, pos, pos]`
        (`rollout` `[batch, layer, 1, pos]` with `rows="last"`).
    """
    measure = _inputs.check_measure(measure)
    rows = _inputs.check_rows(rows, per_head)
    chunk_size = _inputs.check_chunk_size(chunk_size)
    info = readout.describe(model)
    tokens, mask = _inputs.prepare(model, info, inputs, attention_mask)
    dtype = _inputs.compute_dtype(info.dtype, dtype)
    request = Request(measure, dtype, chunk_size, check, rows, check_bridge)
    warn_weight_processing(model, info)
    if check_bridge:
        readout.cross_check(model, info, tokens, mask)
    return _alti(Validated(model, info, request), tokens, mask, per_head)


@jaxtyped(typechecker=beartype)
def _alti(
    call: Validated,
    tokens: Int[Tensor, "batch pos"],
    mask: Int[Tensor, "batch pos"],
    per_head: bool,
) -> AltiResult:
    """`alti` on validated arguments."""
    model, info, request = call.model, call.info, call.request
    collector = Collector(info, tokens.shape, request, per_head)
    trace = pipeline.run_single(model, info, tokens, mask, request, [collector])
    return collector.result(model, tokens, mask, trace)


class Collector:
    """Observer: each step's contribution matrix (and per-head split) into padded CPU tensors;
    `result` then rolls them out. Padded rows and columns stay exact zeros."""

    def __init__(
        self, info: readout.ModelInfo, shape: torch.Size, request: Request, per_head: bool = False
    ) -> None:
        batch, n = shape
        self.info, self.request = info, request
        self.contributions = torch.zeros(batch, info.n_layers, n, n, dtype=request.dtype)
        if request.rows == "last":  # only row t of the last layer is computed: the rest is NaN
            self.contributions[:, -1] = float("nan")
        self.heads = self.residuals = None
        if per_head:
            self.heads = torch.zeros(batch, info.n_layers, info.n_heads, n, n, dtype=request.dtype)
            self.residuals = torch.zeros(batch, info.n_layers, n, dtype=request.dtype)

    def __call__(self, step: pipeline.Step) -> None:
        """Scatter one measured step into the padded tensors (and its heads, if asked)."""
        b, layer = step.index, step.layer
        if self.request.rows == "last" and layer == self.info.n_layers - 1:
            self.contributions[b, layer, step.rows] = 0.0  # row t: its padded columns are zeros
        pipeline.scatter(self.contributions[b, layer], step.rows, step.keys, step.contributions)
        if self.heads is not None and self.residuals is not None:
            request = self.request
            H, r = normalise_heads(
                *head_source_scores(step.terms, request.measure, request.chunk_size)
            )
            keep = step.keys
            self.heads[b, layer][:, keep[:, None], keep] = H.cpu()
            self.residuals[b, layer, keep] = r.cpu()

    def result(
        self,
        model: readout.HookedModel,
        tokens: Int[Tensor, "batch pos"],
        mask: Int[Tensor, "batch pos"],
        trace: pipeline.Trace,
    ) -> AltiResult:
        """The rollout of the collected matrices (on the model's device), and the result."""
        C, info = self.contributions, self.info
        last_rows = None
        if self.request.rows == "last":
            last_rows = torch.tensor([int(keep[-1]) for keep in pipeline.real_positions(mask)])
            R = _last_rows(C, last_rows)
        else:
            R = rollout(C, device=info.device)
        kinds = [trace.block_kinds[(pipeline.LAYER, layer)] for layer in range(info.n_layers)]
        metadata = run_metadata(info, self.request, kinds, trace.precisions, model)
        metadata["rows"] = self.request.rows
        if last_rows is not None:
            metadata["rollout_rows"] = last_rows.tolist()
        return AltiResult(
            contributions=C,
            rollout=R,
            tokens=tokens,
            str_tokens=readout.str_tokens(model, tokens),
            attention_mask=mask,
            reconstruction_error=trace.errors,
            metadata=metadata,
            head_contributions=self.heads,
            residual_contribution=self.residuals,
            rollout_rows=last_rows,
        )


def _last_rows(
    contributions: Float[Tensor, "batch layer pos pos"], rows: Int[Tensor, " batch"]
) -> Float[Tensor, "batch layer 1 pos"]:
    """`R^l[t_b]` of every layer, right to left (spec §4), from the padded matrices: only row
    `t_b` of the last layer is read, and padded columns are zeros."""
    rolled = [last_row_rollout(C, int(t)) for C, t in zip(contributions, rows, strict=True)]
    return torch.stack(rolled)[:, :, None]
