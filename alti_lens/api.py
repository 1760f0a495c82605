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
from .errors import InputError
from .heads import head_source_scores, normalise_heads
from .results import AltiResult
from .rollout import last_row_rollout, rollout_step


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
    rows: str = "all",
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
    if rows not in ("all", "last"):
        raise InputError(
            f'rows must be "all" (every query position) or "last" (the rollout of each '
            f"sequence's last real token only), got {rows!r}"
        )
    last_only = rows == "last"
    if last_only and per_head:
        raise InputError(
            'rows="last" does not compute the last layer\'s other rows, which per_head=True '
            'needs; use rows="all" with per_head=True'
        )
    chunk_size = _inputs.check_chunk_size(chunk_size)
    info = readout.describe(model)
    tokens, mask = _inputs.prepare(model, info, inputs, attention_mask)
    dtype = _inputs.compute_dtype(info.dtype, dtype)
    warn_weight_processing(model, info)

    batch, n = tokens.shape
    contributions = torch.zeros(batch, info.n_layers, n, n, dtype=dtype)
    rollout = torch.zeros(batch, info.n_layers, 1 if last_only else n, n, dtype=dtype)
    errors = torch.full((batch, info.n_layers), float("nan"), dtype=dtype)
    heads = residuals = None
    if per_head:
        heads = torch.zeros(batch, info.n_layers, info.n_heads, n, n, dtype=dtype)
        residuals = torch.zeros(batch, info.n_layers, n, dtype=dtype)
    kinds: list[str] = ["?"] * info.n_layers
    precisions: list[torch.dtype | None] = [None] * info.n_layers
    positions = [row.nonzero().flatten().to(info.device) for row in mask]
    previous: list[Tensor | None] = [None] * batch  # R^{l-1} of each sequence, on the model device

    def on_block(layer: int, block: BlockTensors) -> None:
        kinds[layer] = block.kind.value
        precisions[layer] = block.model_precision
        if last_only and layer == info.n_layers - 1:
            # Only row t of the last layer's C enters R^L[t]; its other rows are not computed.
            contributions[:, layer] = float("nan")
            for b, keep in enumerate(positions):
                C, errors[b, layer], _ = measure_block(
                    block, b, keep[-1:], keep, info, dtype, measure, chunk_size, check, layer,
                    query_offset=len(keep) - 1,
                )  # fmt: skip
                contributions[b, layer, int(keep[-1])] = 0.0
                contributions[b, layer, int(keep[-1]), keep.cpu()] = C[0].cpu()
            return
        for b, keep in enumerate(positions):
            C, errors[b, layer], terms = measure_block(
                block, b, keep, keep, info, dtype, measure, chunk_size, check, layer
            )
            if heads is not None and residuals is not None:
                H, r = normalise_heads(*head_source_scores(terms, measure, chunk_size))
                where = keep.cpu()
                heads[b, layer][:, where[:, None], where] = H.cpu()
                residuals[b, layer, where] = r.cpu()
            if last_only:  # the rollout is formed right to left once all layers are known
                R = None
            else:
                R = previous[b] = rollout_step(C, previous[b])
            if len(keep) == n:
                contributions[b, layer] = C.cpu()
                if R is not None:
                    rollout[b, layer] = R.cpu()
            else:  # scatter the real positions back into the padded matrices
                where = keep.cpu()
                contributions[b, layer, where[:, None], where] = C.cpu()
                if R is not None:
                    rollout[b, layer, where[:, None], where] = R.cpu()

    readout.read_blocks(model, info, tokens, mask, on_block)
    metadata = run_metadata(
        info,
        measure=measure,
        dtype=dtype,
        check=check,
        chunk_size=chunk_size,
        block_kinds=kinds,
        block_precisions=precisions,
    )
    metadata["rows"] = rows
    if last_only:
        last_rows = [int(keep[-1]) for keep in positions]
        metadata["rollout_rows"] = last_rows
        for b, keep in enumerate(positions):
            where = keep.cpu()
            C = contributions[b] if len(keep) == n else contributions[b][:, where[:, None], where]
            rollout[b, :, 0, where] = last_row_rollout(C, len(keep) - 1)
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
