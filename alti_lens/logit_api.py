"""`alti_logit`: explain one prediction's logit over the input tokens (spec §5).

One run of the pipeline with two observers: `alti`'s own collector (so `.alti` is a genuine
`alti()` result) and one that takes each layer's logit contributions (logit units) at the
explained position; after the run they are carried to tokens through the rollout. The final
norm's scale `s_t` is only known at the end of the forward pass; since every share is
linear in `1/s_t`, it is divided out at the end.
"""

from collections.abc import Callable
from typing import Any

import torch
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped
from torch import Tensor

from . import inputs as _inputs
from . import pipeline, readout
from ._measure import Request, Validated, run_metadata, warn_weight_processing
from .api import Collector
from .core.handover import BlockKind, BlockTensors
from .core.logit import (
    effective_direction,
    later_scales,
    residual_directions,
    roll_to_tokens,
    source_logit_parts,
)
from .errors import InputError, ReconstructionError, UnsupportedModelError
from .results import AltiLogitResult


@_inputs.validates_arguments  # then `_alti_logit` checks the shapes
def alti_logit(
    model: readout.HookedModel,
    inputs: str | list[str] | Tensor,
    target: int | str | list | Tensor,
    *,
    foil: int | str | list | Tensor | None = None,
    position: int = -1,
    attention_mask: Tensor | None = None,
    check: bool = True,
    dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
    check_bridge: bool = False,
) -> AltiLogitResult:
    """ALTI-Logit: how much each input token pushed the logit of `target` at `position`.

    Args:
        model: a decoder-only TransformerLens model (`TransformerBridge`, 3.x `HookedTransformer`).
        inputs: a string, a list of strings, or token ids `[batch, pos]`, as in `alti`.
        attention_mask: `[batch, pos]`, 1 = real token, 0 = padding; only with token ids.
        check: the exactness check of every layer and of the logit identity, as in `alti`.
        dtype: the decomposition's dtype, as in `alti`.
        chunk_size: query rows decomposed at once, as in `alti`.
        check_bridge: the bridge against Hugging Face cross-check, as in `alti`.
        target: the predicted token: an id, or a string that is one token; or one per sequence.
        foil: optional contrast token: then the logit difference `target − foil` is explained.
        position: the output position explained; -1 (default) is each sequence's own last real
            token, other negative values count back from it; non-negative values are absolute.

    Returns:
        An `AltiLogitResult`: `scores [batch, pos]`, `components` (embedding, attention biases,
        MLPs, final-norm bias, unembedding bias; each `[batch]`), `logit [batch]`, and per layer
        and head `head_scores`. `scores.sum(-1) + Σ components == logit` (checked; with
        soft-capped logits, the pre-cap logit in `metadata["pre_soft_cap_logit"]`). A constant
        output scale (Cohere's `logit_scale`, Granite's `1 / logits_scaling`) is in every score
        and component, recorded as `metadata["logit_scale"]`.
    """
    chunk_size = _inputs.check_chunk_size(chunk_size)
    info = readout.describe(model)
    if not readout.is_causal_lm(model):  # decided by the model, not by its blocks' norms
        raise UnsupportedModelError(
            "alti_logit needs a decoder-only model: it explains a next-token logit; got an encoder "
            f"({type(model).__name__}, {info.architecture}: bidirectional attention). "
            "Fix: use alti(model, inputs) for encoder contributions."
        )
    tokens, mask = _inputs.prepare(model, info, inputs, attention_mask)
    dtype = _inputs.compute_dtype(info.dtype, dtype)
    warn_weight_processing(model, info)
    batch = tokens.shape[0]
    rows = _positions(position, mask)
    targets = _token_ids(model, info, target, batch, "target")
    foils = None if foil is None else _token_ids(model, info, foil, batch, "foil")
    _check_explainable(model, targets, foils)
    request = Request("l1", dtype, chunk_size, check, check_bridge=check_bridge)
    if check_bridge:
        readout.cross_check(model, info, tokens, mask)
    return _alti_logit(Validated(model, info, request), tokens, mask, rows, targets, foils)


@jaxtyped(typechecker=beartype)
def _alti_logit(
    call: Validated,
    tokens: Int[Tensor, "batch pos"],
    mask: Int[Tensor, "batch pos"],
    rows: Int[Tensor, " batch"],
    targets: Int[Tensor, " batch"],
    foils: Int[Tensor, " batch"] | None,
) -> AltiLogitResult:
    """`alti_logit` on validated arguments: `rows` are the explained positions."""
    model, info, request = call.model, call.info, call.request
    batch, dtype = tokens.shape[0], request.dtype
    W_U, _ = readout.unembedding(model)
    direction = W_U[:, targets.to(W_U.device)].T.to(dtype)
    if foils is not None:
        direction = direction - W_U[:, foils.to(W_U.device)].T.to(dtype)
    affine = readout.final_norm_affine(model, info)
    gamma = None if affine is None or affine[0] is None else affine[0].to(dtype)
    centred = affine is not None and affine[2]
    # g' = centre(γ ⊙ u); the 1/s_t of g = g' / s_t is applied after the run
    g = torch.stack([effective_direction(d, gamma, None, centred) for d in direction])

    alti_collector = Collector(info, tokens.shape, request)
    logit_collector = _LogitCollector(
        info, tokens.shape, dtype, rows, g, lambda: readout.block_norm_affines(model, info)
    )
    trace = pipeline.run_single(
        model, info, tokens, mask, request, [logit_collector, alti_collector], final=True
    )
    logit_collector.finish()
    final = trace.final
    assert final is not None  # run_single(final=True) returns the final tensors
    alti_result = alti_collector.result(model, tokens, mask, trace)
    idx = torch.arange(batch)
    # every part is linear in u: the final norm's 1/s_t and the output scale are applied here
    scale = torch.ones(batch, dtype=dtype)
    if final.norm is not None:
        scale = final.norm.scale.cpu()[idx, rows].to(dtype)
    scale = scale / final.logit_scale
    head_scores = logit_collector.head_scores(alti_result.rollout) / scale[:, None, None, None]
    layer_parts = {k: v / scale[:, None] for k, v in logit_collector.layer_parts.items()}
    embedding = logit_collector.embedding / scale
    direction = direction.cpu()
    beta = None if final.norm is None or final.norm.bias is None else final.norm.bias.cpu()
    components = {
        "embedding": embedding,
        "attention_biases": layer_parts["attention_biases"].sum(-1),
        "mlps": layer_parts["mlps"].sum(-1),
        "final_norm_bias": torch.zeros(batch, dtype=dtype)
        if beta is None
        else final.logit_scale * (direction @ beta.to(dtype)),
        "unembedding_bias": final.logit_scale * _pick(final.b_U, targets, foils, dtype),
    }
    logits = final.logits.cpu().to(torch.float64)[idx, rows]
    real = logits[idx, targets] - (0 if foils is None else logits[idx, foils])
    raw = _uncap(logits, targets, foils, final.soft_cap) if final.soft_cap else real
    scores = head_scores.sum(dim=(1, 2))
    total = scores.double().sum(-1) + sum(c.double() for c in components.values())
    logit_error = (total - raw).abs()
    if request.check:
        _check_identity(logit_error, raw, scores, components, info, dtype, final.precision)
    kinds = alti_result.metadata["block_kinds"]
    metadata = run_metadata(info, request, kinds, [*trace.precisions, final.precision], model)
    metadata |= {
        # readable names of the explained tokens (the result holds ids only)
        "target_str": [row[0] for row in readout.str_tokens(model, targets[:, None])],
        "foil_str": None
        if foils is None
        else [row[0] for row in readout.str_tokens(model, foils[:, None])],
        "logit_soft_cap": final.soft_cap,
        "logit_scale": final.logit_scale,
        "pre_soft_cap_logit": raw.to(dtype) if final.soft_cap else None,
    }
    return AltiLogitResult(
        scores=scores,
        components=components,
        logit=real.to(dtype),
        head_scores=head_scores,
        layer_components=dict(layer_parts),
        tokens=tokens,
        str_tokens=alti_result.str_tokens,
        attention_mask=mask,
        position=rows,
        target=targets,
        foil=foils,
        logit_error=logit_error.to(dtype),
        alti=alti_result,
        metadata=metadata,
    )


class _LogitCollector:
    """Observer: at each sequence's explained row `t`, the logit parts of every (head, source)
    along `g` (spec §5), the attention biases, the MLPs and the embedding, all before the final
    norm's `1/s_t`; the parts are carried to tokens through the rollout after the run.

    Post-norm stacks (every block normalises the residual stream: GPT-1, OPT-350m) read each
    layer along its own direction (`residual_directions`); the later rows' `1/s` are applied by
    `finish` after the run. A block's LN2 bias goes into its `mlps` part."""

    def __init__(
        self,
        info: readout.ModelInfo,
        shape: torch.Size,
        dtype: torch.dtype,
        rows: Int[Tensor, " batch"],
        g: Float[Tensor, "batch d_model"],
        norms: Callable[[], list[tuple[Any, Any]]],
    ) -> None:
        batch, n = shape
        self.rows, self.g, self.norms = rows, g, norms
        self.parts = torch.zeros(batch, info.n_layers, info.n_heads, n, dtype=dtype)
        self.layer_parts = {
            key: torch.zeros(batch, info.n_layers, dtype=dtype)
            for key in ("attention_biases", "mlps")
        }
        self.embedding = torch.zeros(batch, dtype=dtype)
        self.architecture = info.architecture
        # per layer: the direction its output is read along (None: `g` for every layer) ...
        self.directions: list[Tensor] | None = None
        # ... and the 1/(s1·s2) its post-norms multiply the residual stream by at row t
        self.inverse_scales = torch.ones(batch, info.n_layers, dtype=dtype)
        self.post_norm: bool | None = None  # decided by layer 0

    def __call__(self, step: pipeline.Step) -> None:
        block, b, layer = step.block, step.index, step.layer
        self._check_layout(block, layer)
        terms, t_pos = step.terms, int(self.rows[b])
        t = int((step.rows == t_pos).nonzero())  # the explained row among the real ones
        dtype = self.parts.dtype
        d_post = self._direction(b, layer).to(terms.values.device)
        e = self._through_block_output(block, b, layer, t_pos, d_post)
        self.parts[b, layer][:, step.keys] = source_logit_parts(terms, t, e).cpu()
        self.layer_parts["attention_biases"][b, layer] = float(e @ terms.bias[t])
        y_t = block.output[b, t_pos].to(dtype)
        resid_post = block.resid_post
        assert resid_post is not None  # run_single(final=True) reads every block's resid_post
        post = resid_post[b, t_pos].to(dtype)
        # the MLP's part: what the block's output has beyond its attention sub-block's output
        self.layer_parts["mlps"][b, layer] = float(d_post @ post - e @ y_t)
        if layer == 0:  # the residual: x_t itself, or N1_t(x_t) in a post-norm block
            self.embedding[b] = float(e @ terms.residual[t])

    def _check_layout(self, block: BlockTensors, layer: int) -> None:
        """Post-norm blocks only in a stack of post-norm blocks whose LN2 was read."""
        post = block.kind is BlockKind.POST_NORM
        if self.post_norm is None:
            self.post_norm = post
        if post != self.post_norm or (post and block.mlp_norm is None):
            raise UnsupportedModelError(
                f"alti_logit needs every block of a post-norm model ({self.architecture}) to be "
                f"post-norm with a readable second norm (`ln2.hook_scale`); layer {layer} is a "
                f"{block.kind.value} block. The residual stream's path to the logit is not "
                "modelled for such a mix. Fix: use alti(model, inputs)."
            )

    def _direction(self, b: int, layer: int) -> Tensor:
        """The direction layer `layer`'s output is read along (before later norms' `1/s`)."""
        if not self.post_norm:
            return self.g[b]
        if self.directions is None:
            dtype, device = self.g.dtype, self.g.device
            norms = [
                (_cast(w1, dtype, device), c1, _cast(w2, dtype, device), c2)
                for (w1, _, c1), (w2, _, c2) in self.norms()
            ]
            self.directions = residual_directions(self.g, norms)
        return self.directions[layer][b]

    def _through_block_output(
        self, block: BlockTensors, b: int, layer: int, t_pos: int, d_post: Tensor
    ) -> Tensor:
        """The direction the block's attention output `y` is read along, given the one its
        output is read along: `d_post` itself; through a post-norm block's LN2 at its real scale,
        `centre(γ2 ⊙ d_post) / s2_t`; times a constant output scale `c` (Gemma 4). Records what
        the block multiplies the residual stream by (`1/(s1·s2)`, `c`) for the earlier layers."""
        dtype, e, inverse = self.parts.dtype, d_post, 1.0
        norm = block.mlp_norm
        if block.kind is BlockKind.POST_NORM and norm is not None and block.norm is not None:
            s1 = float(block.norm.scale[b, t_pos].to(dtype))
            s2 = norm.scale[b, t_pos].to(dtype)
            inverse = 1.0 / (s1 * float(s2))
            weight = _cast(norm.weight, dtype, d_post.device)
            e = effective_direction(d_post, weight, s2.to(d_post.device), norm.centred)
        if block.output_scale is not None:
            e, inverse = e * block.output_scale, inverse * block.output_scale
        self.inverse_scales[b, layer] = inverse
        return e

    def finish(self) -> None:
        """Apply every layer's later norms' `1/s` (post-norm stacks; 1 otherwise). Once."""
        factor = later_scales(self.inverse_scales)
        self.parts *= factor[:, :, None, None]
        for part in self.layer_parts.values():
            part *= factor
        self.embedding *= factor[:, 0]

    def head_scores(
        self, rollout: Float[Tensor, "batch layer pos pos"]
    ) -> Float[Tensor, "batch layer head_index pos"]:
        """`Σ_j Δ^{l,h}(j) · R^{l−1}[j, k]` (`R^0 = I`) of every layer, from the padded rollout."""
        out = torch.empty_like(self.parts)
        for layer in range(self.parts.shape[1]):
            previous = None if layer == 0 else rollout[:, layer - 1]
            out[:, layer] = roll_to_tokens(self.parts[:, layer], previous)
        return out


def _cast(weight: Tensor | None, dtype: torch.dtype, device: torch.device) -> Tensor | None:
    return None if weight is None else weight.to(device=device, dtype=dtype)


def _positions(position: object, mask: Tensor) -> Tensor:
    """Absolute explained position of each sequence."""
    if isinstance(position, bool) or not isinstance(position, int):
        raise InputError(
            f"position must be an int, got {position!r}. Fix: -1 (the default) explains each "
            "sequence's last real token."
        )
    lengths = mask.sum(-1)
    last = torch.tensor([int(row.nonzero().max()) for row in mask])
    if position < 0:
        rows = last + 1 + position
        if bool((rows < 0).any()):
            raise InputError(
                f"position {position} counts back past the start of a sequence of "
                f"{int(lengths.min())} tokens; expected -{int(lengths.min())} <= position. "
                "Fix: use -1 for each sequence's last real token."
            )
    else:
        rows = torch.full_like(last, position)
    if not bool(mask[torch.arange(len(mask)), rows.clamp_max(mask.shape[1] - 1)].bool().all()) or (
        position >= mask.shape[1]
    ):
        raise InputError(
            f"position {position} is padding or beyond the end in some sequence (real lengths "
            f"{lengths.tolist()}); expected a real token's position in every sequence. Fix: use "
            "-1 for each sequence's last real token."
        )
    return rows


def _token_ids(
    model: readout.HookedModel, info: readout.ModelInfo, value: object, batch: int, name: str
) -> Tensor:
    """One token id per sequence from an id, a one-token string, or one of them per sequence."""
    if isinstance(value, Tensor):
        value = value.flatten().tolist()
    items = list(value) if isinstance(value, (list, tuple)) else [value] * batch
    if len(items) != batch:
        raise InputError(
            f"{name} has {len(items)} entries for {batch} sequences; expected one per sequence. "
            f"Fix: pass one {name} for all sequences, or a list of {batch}."
        )
    ids = []
    for item in items:
        if isinstance(item, str):
            ids.append(readout.single_token_id(model, item, name))
        elif isinstance(item, int) and not isinstance(item, bool):
            ids.append(item)
        else:
            raise InputError(
                f"{name} must be a token id or a one-token string, got {item!r}. "
                f"Fix: pass an int, or the string of one token (e.g. ' Paris')."
            )
    out = torch.tensor(ids, dtype=torch.long)
    if bool((out < 0).any()) or bool((out >= info.d_vocab).any()):
        raise InputError(
            f"{name} ids {ids} are outside the vocabulary [0, {info.d_vocab - 1}]; expected ids "
            "within it. "
            "Fix: take ids from this model's tokenizer (model.to_single_token)."
        )
    return out


def _check_explainable(model: readout.HookedModel, targets: Tensor, foils: Tensor | None) -> None:
    """Refuse what has no answer: the unknown token (its logit says nothing about a word), and a
    target equal to its foil (every score would be exactly 0)."""
    unk = readout.unknown_token_id(model)
    for name, ids in (("target", targets), ("foil", foils)):
        if unk is not None and ids is not None and bool((ids == unk).any()):
            token = model.tokenizer.unk_token
            raise InputError(
                f"the {name} is the tokenizer's unknown token {token!r} (id {unk}) in sequences "
                f"{(ids == unk).nonzero().flatten().tolist()}: the word is not in the model's "
                f"vocabulary, so its logit explains nothing about it. Fix: choose a {name} the "
                "tokenizer knows."
            )
    if foils is not None and bool((targets == foils).any()):
        same = (targets == foils).nonzero().flatten().tolist()
        pieces = readout.str_tokens(model, targets[same][None])[0]
        raise InputError(
            f"target and foil are the same token {pieces[0]!r} (id {int(targets[same[0]])}) in "
            f"sequences {same} after tokenization: their logit difference is 0 by definition and "
            "every score would be 0; expected a foil other than the target. Fix: pick a foil that "
            "differs from the target."
        )


def _pick(b_U: Tensor | None, targets: Tensor, foils: Tensor | None, dtype: torch.dtype) -> Tensor:
    if b_U is None:
        return torch.zeros(len(targets), dtype=dtype)
    b_U = b_U.cpu().to(dtype)
    return b_U[targets] - (0 if foils is None else b_U[foils])


def _uncap(logits: Tensor, targets: Tensor, foils: Tensor | None, cap: float) -> Tensor:
    """Pre-soft-cap logits (`cap · atanh(logit / cap)`): what the decomposition adds up to."""
    idx = torch.arange(len(targets))
    raw = cap * torch.atanh(logits / cap)
    return raw[idx, targets] - (0 if foils is None else raw[idx, foils])


def _check_identity(
    error: Tensor,
    logit: Tensor,
    scores: Tensor,
    components: dict[str, Tensor],
    info: readout.ModelInfo,
    dtype: torch.dtype,
    precision: torch.dtype | None,
) -> None:
    dtypes = [info.dtype, dtype] + ([precision] if precision is not None else [])
    rtol, atol = _inputs.tolerance(dtypes)
    magnitude = scores.abs().sum(-1).double() + sum(c.abs().double() for c in components.values())
    limit = atol + rtol * torch.maximum(magnitude, logit.abs())
    bad = (~(error <= limit)).nonzero().flatten().tolist()  # NaN errors fail too
    if bad:
        b = bad[0]
        raise ReconstructionError(
            f"logit identity failed for sequence {b}: scores.sum + components misses the model's "
            f"logit {float(logit[b]):.6g} by {float(error[b]):.3g}, above the tolerance "
            f"{float(limit[b]):.3g}. Likely cause: a final norm, unembedding or output "
            "transformation alti_lens does not model (one the bridge's adapter does not declare "
            "in apply_output_logits_transform). check=False skips it.",
            layer=-1,
            error=float(error[b]),
            tolerance=float(limit[b]),
            part="logit",
        )
