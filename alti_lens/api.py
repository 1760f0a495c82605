"""Entry points: orchestrate reading the model, decomposing each layer, measuring and rolling out.

Layers are processed while the model runs (the read-out hands over each layer as soon as it
completes): the decomposition, the exactness check, the contribution matrix and the rollout step of
layer `l` are done before layer `l + 1` runs, so only one layer's attention is ever held.
"""

from typing import Any, no_type_check

import torch
from torch import Tensor

from . import inputs as _inputs
from . import readout
from ._measure import measure_block, run_metadata, warn_weight_processing
from .decompose import BlockTensors
from .heads import head_source_scores, normalise_heads
from .results import AltiResult
from .rollout import rollout_step


# The public entry point validates its arguments itself, with errors that say how to fix them; the
# test suite's runtime type checker would pre-empt those messages with generic ones.
@no_type_check
def alti(
    model: Any,
    inputs: str | list[str] | Tensor,
    *,
    attention_mask: Tensor | None = None,
    measure: str = "l1",
    chunk_size: int | None = None,
    check: bool = True,
    dtype: torch.dtype | None = None,
    per_head: bool = False,
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

    Returns:
        An `AltiResult` with `contributions` and `rollout` of shape `[batch, layer, pos, pos]`.
    """
    measure = _inputs.check_measure(measure)
    chunk_size = _inputs.check_chunk_size(chunk_size)
    info = readout.describe(model)
    tokens, mask = _inputs.prepare(model, info, inputs, attention_mask)
    dtype = _inputs.compute_dtype(info.dtype, dtype)
    warn_weight_processing(model, info)

    batch, n = tokens.shape
    contributions = torch.zeros(batch, info.n_layers, n, n, dtype=dtype)
    rollout = torch.zeros_like(contributions)
    errors = torch.full((batch, info.n_layers), float("nan"), dtype=dtype)
    heads = residuals = None
    if per_head:
        heads = torch.zeros(batch, info.n_layers, info.n_heads, n, n, dtype=dtype)
        residuals = torch.zeros(batch, info.n_layers, n, dtype=dtype)
    kinds: list[str] = ["?"] * info.n_layers
    positions = [row.nonzero().flatten().to(info.device) for row in mask]
    previous: list[Tensor | None] = [None] * batch  # R^{l-1} of each sequence, on the model device

    def on_block(layer: int, block: BlockTensors) -> None:
        kinds[layer] = block.kind.value
        for b, keep in enumerate(positions):
            C, errors[b, layer], terms = measure_block(
                block, b, keep, keep, info, dtype, measure, chunk_size, check, layer
            )
            if heads is not None and residuals is not None:
                H, r = normalise_heads(*head_source_scores(terms, measure, chunk_size))
                where = keep.cpu()
                heads[b, layer][:, where[:, None], where] = H.cpu()
                residuals[b, layer, where] = r.cpu()
            R = previous[b] = rollout_step(C, previous[b])
            if len(keep) == n:
                contributions[b, layer] = C.cpu()
                rollout[b, layer] = R.cpu()
            else:  # scatter the real positions back into the padded matrices
                where = keep.cpu()
                contributions[b, layer, where[:, None], where] = C.cpu()
                rollout[b, layer, where[:, None], where] = R.cpu()

    readout.read_blocks(model, info, tokens, mask, on_block)
    metadata = run_metadata(
        info, measure=measure, dtype=dtype, check=check, chunk_size=chunk_size, block_kinds=kinds
    )
    return AltiResult(
        contributions=contributions,
        rollout=rollout,
        tokens=tokens,
        str_tokens=readout.str_tokens(model, tokens),
        attention_mask=mask,
        reconstruction_error=errors,
        metadata=metadata,
        head_contributions=heads,
        residual_contribution=residuals,
    )
