"""The data of one report section per result, as plain JSON-ready dicts.

Matrices are restricted to real (unpadded) positions and rounded to 4 significant digits; the page
script (`report.js`) draws whatever views a section lists, so ALTI and ALTI+ share one renderer.
"""

import warnings
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from alti_lens.errors import InputIndexError, InputTypeError

if TYPE_CHECKING:  # render reads results' fields; it never imports them at run time
    from alti_lens.results import AltiLogitResult, AltiPlusResult, AltiResult, FlowGraph


def rounded(values: Float[Tensor, "..."], digits: int = 4) -> Any:
    """Nested lists of `values` rounded to `digits` significant digits; zeros as `0` and
    non-finite values as None (JSON has no NaN), to keep the page small and valid."""
    x = values.detach().to(torch.float64).cpu()
    size = x.abs()
    exponent = torch.floor(torch.log10(torch.where(size > 0, size, torch.ones_like(size))))
    k = digits - 1 - exponent
    # one of `up`, `down` is 1: dividing an integer by an exact power of ten gives the double
    # nearest the decimal, which JSON then prints with no trailing noise
    up, down = torch.pow(10.0, k.clamp_min(0)), torch.pow(10.0, (-k).clamp_min(0))
    x = torch.round(x * up / down) / up * down
    return _clean(x.tolist())


def _clean(values: Any) -> Any:
    if isinstance(values, list):
        return [_clean(v) for v in values]
    if values != values or values in (float("inf"), float("-inf")):
        return None
    return 0 if values == 0 else values


def _real(mask: Tensor, b: int) -> list[int]:
    return mask[b].nonzero().flatten().tolist()


def _label(tokens: list[str], b: int, limit: int = 60) -> str:
    text = " ".join(t.strip() for t in tokens)
    return f"{b}: {text[: limit - 1]}…" if len(text) > limit else f"{b}: {text}"


def _info(metadata: dict[str, Any], error: Tensor, name: str) -> list[list[Any]]:
    rows = [
        ["model", metadata.get("model_name")],
        ["measure", metadata.get("measure")],
        ["dtype", metadata.get("dtype")],
        ["TransformerLens", metadata.get("transformer_lens_version")],
        ["alti_lens", metadata.get("alti_lens_version")],
    ]
    finite = error[torch.isfinite(error)]
    if finite.numel():
        rows.append([name, f"{float(finite.max()):.2e}"])
    return [r for r in rows if r[1] is not None]


def _layers(n_layers: int, per_layer: int, max_values: int, what: str) -> list[int]:
    """The layers that fit in `max_values` numbers: all, or the last ones (with a warning)."""
    keep = max(1, min(n_layers, max_values // max(per_layer, 1)))
    if keep < n_layers:
        warnings.warn(
            f"the report of {what} would hold {n_layers * per_layer:,} numbers (limit "
            f"max_values={max_values:,}); it shows the last {keep} of {n_layers} layers only. "
            "Fix: pass fewer sequences (batch=...), or a larger max_values.",
            stacklevel=4,
        )
    return list(range(n_layers - keep, n_layers))


def _batches(batch: int | list[int] | None, size: int) -> list[int]:
    if batch is None:
        return list(range(size))
    chosen = [batch] if isinstance(batch, int) else list(batch)
    for b in chosen:
        if not -size <= b < size:
            raise InputIndexError(
                f"batch={b} is out of range for a result of {size} sequences; expected an index "
                f"in 0..{size - 1} (or -{size}..-1), a list of them, or None (all). "
                "Fix: pass batch=None or indices within that range."
            )
    return [b % size for b in chosen]


# One plain-language sentence per figure: what its numbers mean (docs/ALTI_SPEC.md, sections 3-5).
EXPLAIN = {
    "rollout": "Each row shows how much every input token (column) contributes to the "
    "representation of the row's token after the chosen layer, counting all layers up to it; "
    "a row sums to 1 (100%).",
    "rollout last": "The row shows how much every input token (column) contributes to the "
    "representation of the last token after the chosen layer, counting all layers up to it; "
    "it sums to 1 (100%).",
    "contributions": "Each row shows how much every token's input to the chosen layer "
    "(column) contributes to the row token's output of that layer's attention block, this "
    "layer alone (the token's own residual stream is on the diagonal); a row sums to 1 (100%).",
    "heads": "Each row shows how much every token (column) contributes, through the chosen "
    "head alone, to the row token's output of the chosen layer's attention block; over all "
    "heads together with the residual stream, a row sums to 1 (100%).",
    "extended rollout": "Each row is one decoder step, labelled with its decoder input token "
    "(it predicts the next target token): how much every source token and every target-prefix "
    "token contributes to that step's representation after the chosen decoder layer, through "
    "the encoder and the decoder's cross- and self-attention; a row sums to 1 (100%).",
    "cross-attention": "Each row shows, for one decoder step, how much the encoder's output "
    "at every source position and the decoder's own residual stream (last column) contribute "
    "to the output of the chosen layer's cross-attention block, this layer alone; a row sums to "
    "1 (100%).",
    "decoder self-attention": "Each row shows how much every target-prefix token up to the "
    "step (column) contributes to the step's output of the chosen layer's decoder "
    "self-attention block, this layer alone; a row sums to 1 (100%).",
    "encoder rollout": "Each row shows how much every source token (column) contributes to "
    "the encoder's representation of the row's source token after the chosen encoder layer, "
    "counting all encoder layers up to it; a row sums to 1 (100%).",
    "bars": "Each bar is one decoder step, labelled with its decoder input token: orange is the "
    "share of the step's final representation (after the last decoder layer, the one the next "
    "token is predicted from) that comes from the source sentence, blue the share that comes "
    "from the target prefix (the target tokens given to the decoder so far); together 100%.",
}


def _view(name: str, rows: list[str], cols: list[str], data: Any, layers: list[int], **extra: Any):
    view = {"name": name, "rows": rows, "cols": cols, "data": data, "layers": layers, **extra}
    return {"explain": EXPLAIN[name], **view}


def alti_section(
    result: "AltiResult", title: str, batch: int | list[int] | None, max_values: int
) -> dict[str, Any]:
    """The report's data of an `AltiResult`: rollout and per-layer matrices (and heads), for the
    chosen sequences, within `max_values` numbers."""
    seqs = _batches(batch, len(result))
    heads = result.head_contributions
    n_heads = 0 if heads is None else heads.shape[2]
    per_layer = sum(len(_real(result.attention_mask, b)) ** 2 for b in seqs) * (2 + n_heads)
    layers = _layers(result.n_layers, per_layer, max_values, title)
    common = {"rowTitle": "query token", "colTitle": "source token", "diag": 0, "groups": None}
    sequences = []
    for b in seqs:
        idx = torch.tensor(_real(result.attention_mask, b))
        toks = [result.str_tokens[b][i] for i in idx.tolist()]
        pick = idx[:, None], idx

        def matrices(m: Tensor, b: int = b, pick: Any = pick) -> Any:
            return rounded(torch.stack([m[b, layer][pick] for layer in layers]))

        note = "rollout R = C\u02e1 \u00b7\u00b7\u00b7 C\u00b9: rows sum to 1"
        if result.rollout_rows is not None:  # alti(rows="last"): one rollout row
            last = int(result.rollout_rows[b])
            one = torch.stack([result.rollout[b, layer][:1, idx] for layer in layers])
            row_labels, data = [result.str_tokens[b][last]], rounded(one)
            diag = {**common, "diag": idx.tolist().index(last), "explain": EXPLAIN["rollout last"]}
        else:
            row_labels, data, diag = toks, matrices(result.rollout), common
        rollout_view = _view("rollout", row_labels, toks, data, layers, **diag, note=note)
        views = [
            rollout_view,
            _view("contributions", toks, toks, matrices(result.contributions), layers, **common,
                  note="the layer's own contributions C\u02e1: rows sum to 1"),
        ]  # fmt: skip
        if heads is not None:
            per_head = torch.stack([heads[b, layer][:, idx[:, None], idx] for layer in layers])
            views.append(
                _view("heads", toks, toks, rounded(per_head), layers, **common,
                      sub=[f"{h}" for h in range(n_heads)],
                      note="one head's part of C\u02e1 (a row's heads and residual sum to 1)")
            )  # fmt: skip
        sequences.append({"label": _label(toks, b), "views": views})
    info = _info(result.metadata, result.reconstruction_error, "max reconstruction error")
    return {"kind": "matrix", "title": title, "info": info, "sequences": sequences}


def alti_plus_section(
    result: "AltiPlusResult", title: str, batch: int | list[int] | None, max_values: int
) -> dict[str, Any]:
    """The report's data of an `AltiPlusResult`: encoder, decoder and extended rollouts and the
    per-step source shares, for the chosen sequences, within `max_values` numbers."""
    seqs = _batches(batch, len(result))
    S = result.source_tokens.shape[1]
    n_dec, n_enc = result.rollout.shape[1], result.encoder_rollout.shape[1]
    sizes = [
        (len(_real(result.source_attention_mask, b)), len(_real(result.target_attention_mask, b)))
        for b in seqs
    ]
    dec_values = sum(t * (s + t) + t * (s + 1) + t * t for s, t in sizes)
    enc_values = sum(2 * s * s for s, _ in sizes)
    dec_layers = _layers(n_dec, dec_values, max_values // 2, title)
    enc_layers = _layers(n_enc, enc_values, max_values // 2, title + " (encoder)")
    sequences = []
    for b in seqs:
        src = torch.tensor(_real(result.source_attention_mask, b))
        tgt = torch.tensor(_real(result.target_attention_mask, b))
        s, t = len(src), len(tgt)
        src_toks = [result.source_str_tokens[b][i] for i in src.tolist()]
        tgt_toks = [result.target_str_tokens[b][i] for i in tgt.tolist()]
        ext_cols = torch.cat([src, S + tgt])
        dec = {"rowTitle": "decoder input token", "rowsAreSteps": True}

        def stack(m: Tensor, rows: Tensor, cols: Tensor, layers: list[int], b: int = b) -> Any:
            return rounded(torch.stack([m[b, layer][rows[:, None], cols] for layer in layers]))

        views = [
            _view("extended rollout", tgt_toks, src_toks + tgt_toks,
                  stack(result.rollout, tgt, ext_cols, dec_layers), dec_layers, **dec,
                  colTitle="source / target-prefix token", diag=s,
                  groups=[["source", 0, s], ["target prefix", s, s + t]],
                  note="ALTI+ rollout through encoder, cross- and self-attention: rows sum to 1"),
            _view("cross-attention", tgt_toks, [*src_toks, "(residual)"],
                  stack(result.cross_contributions, tgt, torch.cat([src, torch.tensor([S])]),
                        dec_layers), dec_layers, **dec,
                  colTitle="encoder output token", diag=None,
                  groups=[["source", 0, s], ["residual", s, s + 1]],
                  note="the cross-attention sub-block's contributions; last column: its residual"),
            _view("decoder self-attention", tgt_toks, tgt_toks,
                  stack(result.decoder_contributions, tgt, tgt, dec_layers), dec_layers, **dec,
                  colTitle="target-prefix token", diag=0, groups=None,
                  note="the decoder self-attention sub-block's contributions"),
            _view("encoder rollout", src_toks, src_toks,
                  stack(result.encoder_rollout, src, src, enc_layers), enc_layers,
                  rowTitle="source token", colTitle="source token", diag=0, groups=None,
                  note="rollout over the encoder layers"),
        ]  # fmt: skip
        bars = {
            "title": "source and target-prefix shares of each decoder step (after the last "
            "decoder layer)",
            "labels": tgt_toks,
            "values": rounded(result.source_contribution[b, tgt]),
            "explain": EXPLAIN["bars"],
            "note": "labels: each step's decoder input token \u00b7 click a bar to inspect its row",
        }
        sequences.append({"label": _label(src_toks, b), "views": views, "bars": bars})
    info = _info(result.metadata, result.reconstruction_error, "max reconstruction error")
    return {"kind": "matrix", "title": title, "info": info, "sequences": sequences}


def _token_name(result: "AltiLogitResult", token: int, b: int = 0, key: str = "target_str") -> str:
    """`“mat” (id 9)`: from the names `alti_logit` records, else from the inputs when the token
    occurs there, else `token id 9`."""
    names = result.metadata.get(key)
    if isinstance(names, list) and b < len(names):
        return f"\u201c{names[b]}\u201d (id {token})"
    where = (result.tokens == token).nonzero()
    if len(where):
        b, j = (int(i) for i in where[0])
        return f"\u201c{result.str_tokens[b][j]}\u201d (id {token})"
    return f"token id {token}"


def alti_logit_section(
    result: "AltiLogitResult", title: str, batch: int | list[int] | None, max_values: int
) -> dict[str, Any]:
    """The report's data of an `AltiLogitResult`: token scores, components and the head grid,
    for the chosen sequences, within `max_values` numbers."""
    seqs = _batches(batch, len(result))
    _, n_layers, n_heads, _ = result.head_scores.shape
    sequences = []
    for b in seqs:
        idx = torch.tensor(_real(result.attention_mask, b))
        toks = [result.str_tokens[b][i] for i in idx.tolist()]
        position = int(result.position[b])
        target = _token_name(result, int(result.target[b]), b)
        if result.foil is not None:
            foil = _token_name(result, int(result.foil[b]), b, "foil_str")
            quantity = f"logit difference between {target} and {foil}"
            target += f" minus {foil}"
        else:
            quantity = f"logit of {target}"
        quantity += f" predicted at position {position}"
        parts = [["input tokens (sum of scores)", float(result.scores[b].sum())]]
        parts += [[name.replace("_", " "), float(v[b])] for name, v in result.components.items()]
        parts += [
            ["sum of the parts", float(result.scores[b].sum())
             + sum(float(v[b]) for v in result.components.values())],
            ["model logit" + (" difference" if result.foil is not None else ""),
             float(result.logit[b])],
        ]  # fmt: skip
        head_tokens = result.head_scores[b][:, :, idx]
        # too large: the head totals still show, but not each head's scores per token
        per_token = rounded(head_tokens) if head_tokens.numel() <= max_values else None
        sequences.append(
            {
                "label": _label(toks, b),
                "tokens": toks,
                "scores": rounded(result.scores[b, idx]),
                "position": idx.tolist().index(position) if position in idx.tolist() else -1,
                "summary": f"explains {target} at position {position} "
                f"(\u201c{result.str_tokens[b][position]}\u201d): "
                f"logit {float(result.logit[b]):.4g}",
                "parts": [[name, float(f"{value:.6g}")] for name, value in parts],
                "heads": {
                    "rows": [f"layer {layer}" for layer in range(n_layers)],
                    "cols": [f"head {h}" for h in range(n_heads)],
                    "data": rounded(result.head_scores[b].sum(-1)),
                },
                "headTokens": per_token,
                "explain": {
                    "scores": "Each input token's score is how much it raises (positive, red) "
                    f"or lowers (negative, blue) the {quantity}, in logit units: what the "
                    "attention blocks write into that position, handed back to the input tokens "
                    "by the ALTI rollout; the scores and the parts that belong to no token "
                    "(table below) add up to the model's logit.",
                    "head": "Each token's value is the part of its score that passes through "
                    "the chosen head, in logit units (positive raises the logit, negative lowers "
                    "it); over all heads of all layers these parts add up to the token's score.",
                    "heads": "Each cell is how much that attention head (row: layer, column: "
                    "head) adds to the logit, summed over the input tokens, in logit units: "
                    "positive raises the logit, negative lowers it; all cells together add up "
                    "to the sum of the token scores.",
                    "parts": "The model's logit split into the input tokens' total (the sum of "
                    "their scores) and the pieces the scores leave out (the position's own "
                    "embedding, biases, MLP outputs); the parts add up to the logit.",
                },
            }
        )
    info = _info(result.metadata, result.logit_error, "|parts − logit|")
    return {"kind": "logit", "title": title, "info": info, "sequences": sequences}


# The information-flow graph (spec §8): its edges at or above a floor, sparse, so that the page
# draws the route of any position at any threshold at or above the floor exactly as
# `FlowGraph.routes` does. The floor rises (with a warning) when the edges would not fit.
FLOW_FLOORS = (0.01, 0.02, 0.04, 0.1, 0.2)
FLOW_THRESHOLDS = (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5)
FLOW_DEFAULT = 0.04  # the paper's


def floored(values: Float[Tensor, "..."], digits: int = 4) -> Any:
    """Like `rounded`, but never above the value: the largest number of `digits` significant
    digits `≤ value`. So `shown ≥ t` exactly when `value ≥ t`, for any threshold `t` of at most
    `digits` significant digits: the page's routes keep the same edges as Python's."""
    x = values.detach().to(torch.float64).cpu()
    size = x.abs()
    exponent = torch.floor(torch.log10(torch.where(size > 0, size, torch.ones_like(size))))
    k = digits - 1 - exponent
    up, down = torch.pow(10.0, k.clamp_min(0)), torch.pow(10.0, (-k).clamp_min(0))
    n = torch.round(x * up / down)
    n = torch.where(n / up * down > x, n - 1, n)  # rounded up: one unit down
    return _clean((n / up * down).tolist())


def _sparse(values: Tensor, floor: float) -> list[Any]:
    """The entries `≥ floor` of `values` as one flat list: each entry's indices, then its value."""
    where = (values.double() >= floor).nonzero()
    if not len(where):
        return []
    shown = floored(values[tuple(where.T)])
    return [x for index, v in zip(where.tolist(), shown, strict=True) for x in (*index, v)]


def _flow_sequence(graph: "FlowGraph", b: int, floor: float) -> dict[str, Any]:
    """One sequence's real positions and edges `≥ floor`, layer by layer: attention as flat
    `[query, head, key, weight, ...]`, neurons as `[position, neuron, share, ...]`, positions
    counted over the real tokens."""
    idx = torch.tensor(_real(graph.attention_mask, b))
    toks = [graph.str_tokens[b][i] for i in idx.tolist()]
    attention = graph.attention[b][:, :, idx[:, None], idx]  # [layer, head, q, k]
    layers = []
    for layer in range(graph.n_layers):
        entry = {
            "att": _sparse(attention[layer].permute(1, 0, 2), floor),
            "res": floored(graph.attention_residual[b, layer, idx]),
            "mlp": floored(graph.mlp[b, layer, idx]),
            "mlpres": floored(graph.mlp_residual[b, layer, idx]),
        }
        if graph.neurons is not None:
            entry["neu"] = _sparse(graph.neurons[b, layer, idx], floor)
        layers.append(entry)
    return {"label": _label(toks, b), "tokens": toks, "positions": idx.tolist(), "layers": layers}


def _flow_size(graph: "FlowGraph", seqs: list[int], floor: float) -> int:
    """The numbers a section with this floor embeds."""
    total = 0
    for b in seqs:
        idx = torch.tensor(_real(graph.attention_mask, b))
        attention = graph.attention[b][:, :, idx[:, None], idx]
        total += 4 * int((attention.double() >= floor).sum()) + 3 * graph.n_layers * len(idx)
        if graph.neurons is not None:
            total += 3 * int((graph.neurons[b][:, idx].double() >= floor).sum())
    return total


def _flow_floor(graph: "FlowGraph", seqs: list[int], max_values: int, what: str) -> float:
    for floor in FLOW_FLOORS:
        if _flow_size(graph, seqs, floor) <= max_values:
            break
    if floor > FLOW_FLOORS[0]:
        warnings.warn(
            f"the report of {what} would hold more than max_values={max_values:,} numbers with "
            f"every edge of weight \u2265 {FLOW_FLOORS[0]}; it keeps the edges \u2265 {floor} "
            "(the threshold control starts there). Fix: pass fewer sequences (batch=...), or a "
            "larger max_values.",
            stacklevel=4,
        )
    return floor


FLOW_EXPLAIN = {
    "route": "The route that carried the chosen token's state after the last layer (the ringed "
    "node at the top): each node is the residual stream of one token (column) at one depth "
    "(row, embeddings at the bottom), each edge a part of the node above it, weighted by its "
    "share of that node (a node's incoming edges over the whole graph sum to 1). Starting from "
    "the top, every edge whose share is at least the threshold is kept and its source followed "
    "down (Ferrando & Voita 2024).",
    "heads": "Each cell is the sum of the shares of that attention head's edges (row: layer, "
    "column: head) in the route shown; 0 where the head is not in the route.",
}


def flow_section(
    result: "FlowGraph",
    title: str,
    batch: int | list[int] | None,
    max_values: int,
    position: int | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """The report's data of a `FlowGraph`: every chosen sequence's edges at or above a floor,
    from which the page draws the route of any position and threshold. `position` (a real
    token's index, negative from the last) and `threshold` are the route the page opens with
    (default: the last token, 0.04); a threshold the page cannot offer exactly (below the floor,
    or finer than 4 significant digits) is not offered."""
    seqs = _batches(batch, result.tokens.shape[0])
    floor = _flow_floor(result, seqs, max_values, title)
    info = _info(result.metadata, result.reconstruction_error, "max reconstruction error")
    offered = set(FLOW_THRESHOLDS)
    if threshold is not None and float(f"{threshold:.4g}") == threshold and threshold <= 1:
        offered.add(threshold)
    thresholds = sorted(t for t in offered if t >= floor)
    start = threshold if threshold in thresholds else FLOW_DEFAULT
    return {
        "kind": "flow",
        "title": title,
        "info": [*info, ["edges kept", f"\u2265 {floor:g}"]],
        "nLayers": result.n_layers,
        "nHeads": result.n_heads,
        "steps": result.steps,
        "floor": floor,
        "thresholds": thresholds,
        "threshold": max(start, floor),
        "position": position,
        "neurons": result.neurons is not None,
        "explain": FLOW_EXPLAIN,
        "sequences": [_flow_sequence(result, b, floor) for b in seqs],
    }


SECTIONS = {
    "AltiResult": alti_section,
    "AltiPlusResult": alti_plus_section,
    "AltiLogitResult": alti_logit_section,
    "FlowGraph": flow_section,
}


def section(
    result: Any,
    title: str,
    batch: int | list[int] | None,
    max_values: int,
    view: dict[str, Any] | None = None,
):
    """The report's data of any result, by its class (an `InputTypeError` for anything else).
    `view`: where a `FlowGraph`'s page opens (`position`, `threshold`; see `flow_section`)."""
    # by class name (subclasses included), so that render needs the result classes for type
    # checking only; `alti_lens.results` reports its classes under that module name
    for cls in type(result).__mro__:
        build = SECTIONS.get(cls.__name__)
        if build is not None and cls.__module__ == "alti_lens.results":
            if build is flow_section:
                return flow_section(result, title, batch, max_values, **(view or {}))
            return build(result, title, batch, max_values)
    raise InputTypeError(
        f"a report shows AltiResult, AltiPlusResult, AltiLogitResult or FlowGraph objects; got "
        f"{type(result).__name__}. Fix: pass the result of alti(), alti_plus(), alti_logit() "
        "or flow_graph()."
    )
