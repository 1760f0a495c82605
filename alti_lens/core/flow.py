"""The information-flow graph's steps (spec §8): every residual-stream state as a sum of parts,
each part weighted by its proximity to the state, `max(0, ||y||_1 − ||y − z||_1)`, normalised.

- attention step: the head parts and the residual of `core.heads` (identical to `alti(per_head)`);
- MLP step: `y_i = resid_post_i` from the MLP's part `M_i` and the residual part `R_i`
  (`MlpTerms`, linearised with the norm's real scale in post-norm and sandwich blocks);
- parallel step: the attention terms with `y_i = resid_post_i` and the MLP's output as one more
  part (`parallel_terms`);
- neurons: the MLP's part split over `act_ik · W_out[k]` (`neuron_scores`), measured against it
  by the token-level kernels (one "head" whose pattern is the activations).

Pure tensor code: no model classes.
"""

import dataclasses
import warnings
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .decompose import AttentionTerms, affine
from .handover import BlockKind, BlockTensors, MlpTensors
from .heads import normalise_step
from .measures import proximity, scores_and_sums


@dataclass(frozen=True)
class MlpTerms:
    """One sequence's MLP step `y_i = M_i + R_i + bias_i`, and the neurons of the MLP's own
    output `own_i` (`M_i` less a further branch, Gemma 4's per-layer input; else `M_i`):
    `own_i = row_scale_i · Σ_k acts_ik W[k] + neuron_bias_i`."""

    mlp: Float[Tensor, "query_pos d_model"]
    residual: Float[Tensor, "query_pos d_model"]
    bias: Float[Tensor, "query_pos d_model"]
    output: Float[Tensor, "query_pos d_model"]
    acts: Float[Tensor, "query_pos d_mlp"] | None = None
    row_scale: Float[Tensor, " query_pos"] | None = None
    W: Float[Tensor, "d_mlp d_model"] | None = None
    neuron_bias: Float[Tensor, "query_pos d_model"] | None = None
    own: Float[Tensor, "query_pos d_model"] | None = None  # None: `mlp`

    @property
    def neuron_output(self) -> Float[Tensor, "query_pos d_model"]:
        """What the neurons split: the MLP's own output (mapped like `M_i`)."""
        return self.mlp if self.own is None else self.own


def _mlp_of(block: BlockTensors) -> MlpTensors:
    if block.mlp is None:  # the read-out's contract, not user input
        raise ValueError("the flow graph's MLP step needs the block's MLP tensors")
    return block.mlp


def mlp_terms(
    block: BlockTensors,
    index: int,
    rows: Int[Tensor, " query_pos"],
    resid_mid: Float[Tensor, "query_pos d_model"],
    dtype: torch.dtype,
) -> MlpTerms:
    """The MLP step of sequence `index` over its real `rows` in common form. `resid_mid` is the
    attention step's real output of those rows (its `y`)."""
    mlp = _mlp_of(block)
    m = mlp.output[index, rows].to(dtype)
    y = mlp.resid_post[index, rows].to(dtype)
    x = resid_mid.to(dtype)
    norm = mlp.norm
    row_scale = weight = None
    centred = False
    bias = torch.zeros_like(y)
    if norm is not None:
        weight = None if norm.weight is None else norm.weight.to(dtype)
        centred = norm.centred
        row_scale = 1.0 / norm.scale[index, rows].to(dtype)
    if block.kind is BlockKind.POST_NORM and row_scale is not None:
        # y = LN2(resid_mid + m): both parts through LN2 linearised at its real scale, β2 apart
        m = affine(m, weight, centred) * row_scale[:, None]
        x = affine(x, weight, centred) * row_scale[:, None]
        if norm is not None and norm.bias is not None:
            bias = bias + norm.bias.to(dtype)
    own = None
    if mlp.extra is not None:  # Gemma 4's per-layer-input branch: token-wise, the MLP's part
        own, m = m, m + mlp.extra[index, rows].to(dtype)
    if mlp.output_scale is not None:  # Gemma 4: the whole block output times c
        m, x, bias = m * mlp.output_scale, x * mlp.output_scale, bias * mlp.output_scale
        own = None if own is None else own * mlp.output_scale
    terms = MlpTerms(m, x, bias, y, own=own)
    if mlp.acts is None or mlp.W_out is None:
        return terms
    # The neurons pass through the same linear map as M: the norm's γ and centring on W_out,
    # its 1/s_i as a row scale, and the sandwich norm's β or post-norm's nothing apart.
    W = affine(mlp.W_out.to(dtype), weight, centred)
    b_out = torch.zeros_like(y[0]) if mlp.b_out is None else mlp.b_out.to(dtype)
    neuron_bias = affine(b_out, weight, centred).expand_as(y)
    if row_scale is not None:
        neuron_bias = neuron_bias * row_scale[:, None]
    if block.kind is BlockKind.SANDWICH and norm is not None and norm.bias is not None:
        neuron_bias = neuron_bias + norm.bias.to(dtype)
    scale = 1.0 if mlp.output_scale is None else mlp.output_scale
    return dataclasses.replace(
        terms,
        acts=mlp.acts[index, rows].to(dtype) * scale,
        row_scale=row_scale,
        W=W,
        neuron_bias=neuron_bias * scale,
    )


def mlp_step(
    terms: MlpTerms, measure: str
) -> tuple[Float[Tensor, " query_pos"], Float[Tensor, " query_pos"]]:
    """The MLP's and the residual's weights in `y_i` (each row: they sum to 1; a row where both
    score 0 goes to the residual, and warns)."""
    y = terms.output
    y_norm = torch.linalg.vector_norm(y, ord=1 if measure == "l1" else 2, dim=-1)
    parts = torch.stack([terms.mlp, terms.residual], dim=1)  # [rows, 2, d_model]
    scores = proximity(parts, y[:, None], y_norm[:, None], measure)
    no_heads = scores.new_zeros(0, scores.shape[0], 0)
    _, residual, mlp = normalise_step(no_heads, scores[:, 1], scores[:, 0])
    assert mlp is not None
    return mlp, residual


def mlp_total(terms: MlpTerms) -> Float[Tensor, "query_pos d_model"]:
    """`M_i + R_i + bias_i`: the MLP step's sum, to check against `y_i` (spec §2.5, §8)."""
    return terms.mlp + terms.residual + terms.bias


def parallel_terms(
    terms: AttentionTerms,
    block: BlockTensors,
    index: int,
    rows: Int[Tensor, " query_pos"],
) -> tuple[AttentionTerms, Float[Tensor, "query_pos d_model"]]:
    """A parallel block's one step: its attention terms with `y_i = resid_post_i` and the MLP's
    output in the bias (so that `reconstruct` checks the whole block), and that output apart (the
    step's one more part)."""
    mlp = _mlp_of(block)
    dtype = terms.output.dtype
    m = mlp.output[index, rows].to(dtype)
    y = mlp.resid_post[index, rows].to(dtype)
    return dataclasses.replace(terms, output=y, bias=terms.bias + m), m


def neuron_terms(terms: MlpTerms) -> AttentionTerms:
    """The neurons of the MLP's part as attention terms the token-level kernels measure: one
    "head" whose pattern is the activations (`[1, rows, d_mlp]`), sources the neurons (values
    `W[k]`), a zero residual column, `y` the MLP's part `M_i`."""
    if terms.acts is None or terms.W is None or terms.neuron_bias is None:
        raise ValueError("these MLP terms carry no neurons")
    zeros = torch.zeros_like(terms.mlp)
    return AttentionTerms(
        pattern=terms.acts[None],
        row_scale=terms.row_scale,
        values=terms.W[:, None],
        residual=zeros,
        bias=terms.neuron_bias,
        output=terms.neuron_output,
        residual_column=True,
    )


def neuron_scores(
    terms: MlpTerms, measure: str, chunk_size: int | None = None
) -> tuple[Float[Tensor, "query_pos d_mlp"], Float[Tensor, "query_pos d_model"]]:
    """Neuron `k`'s share of the MLP's part in row `i` (spec §8), and `Σ_k n_ik + bias_i` (the
    neurons' sum, to check against `terms.neuron_output`). Rows are chunked like the token-level
    measure."""
    as_attention = neuron_terms(terms)
    scores, sums = scores_and_sums(as_attention, measure, chunk_size)
    scores = scores[:, :-1]  # the zero residual column scores 0
    if sums is None:
        sums = _neuron_sums(as_attention)
    totals = scores.sum(dim=-1, keepdim=True)
    empty = totals.squeeze(-1) == 0
    if bool(empty.any()):
        warnings.warn(
            f"rows {empty.nonzero().flatten().tolist()}: no neuron is closer to the MLP's output "
            "than its own norm; their neuron shares are 0",
            stacklevel=3,
        )
    return scores / torch.where(empty[:, None], 1.0, totals), sums + as_attention.bias


def _neuron_sums(terms: AttentionTerms) -> Float[Tensor, "query_pos d_model"]:
    acts = terms.pattern[0]
    if terms.row_scale is not None:
        acts = acts * terms.row_scale[:, None]
    return acts @ terms.values[:, 0]
