"""`process`: one batch of corpus records through the public API, one Parquet row per record.

The contract of the corpus engines (`local`, `ray_engine`): both call `process(model, method,
records, options)` on batches and write what it returns, so both write the same rows. Records are
dicts with "id" (str) and the method's fields under their canonical names: "text"; or "source"
and optionally "target" (`alti_plus`); "text" and "target", the one token whose logit is explained
(`alti_logit`). Each returned row holds JSON-able values only: "id", "n_tokens", "tokens", the
method's columns and "max_reconstruction_error"; with `save="full"` also "_tensors" (name →
tensor, padding removed) for the engine's safetensors shards.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from alti_lens.errors import InputError

from .options import METHODS, CorpusOptions

if TYPE_CHECKING:
    from torch import Tensor

    from alti_lens.models import HookedModel

Row = dict[str, Any]
TOP_K = 5  # sources listed per row


def process(
    model: "HookedModel", method: str, records: list[dict[str, Any]], options: CorpusOptions
) -> list[Row]:
    """The rows of `records` (in their order) computed with `method` on `model`."""
    if method not in METHODS:
        raise InputError(
            f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}. "
            'Fix: e.g. method="alti".'
        )
    if not records:
        return []
    return _METHODS[method](model, records, options)


def _tensors(**named: "Tensor") -> dict[str, "Tensor"]:
    """Tensors detached, on the CPU and contiguous, as safetensors stores them."""
    return {k: v.detach().cpu().contiguous() for k, v in named.items()}


def _sources(top: Callable[[int], list[tuple[int, str, float]]], n: int, padded: int) -> list[Row]:
    """The `TOP_K` real sources of a row: `top(k)` ranks padded positions too (their values are
    0, above negative scores), so it is asked for the padding's worth more and they are dropped."""
    real = [(p, t, v) for p, t, v in top(TOP_K + padded - n) if p < n][:TOP_K]
    return [{"position": p, "token": t, "value": float(v)} for p, t, v in real]


def _alti(model: "HookedModel", records: list[dict[str, Any]], options: CorpusOptions) -> list[Row]:
    from alti_lens import alti

    full = options.save == "full"
    result = alti(
        model,
        [r["text"] for r in records],
        measure=options.measure,  # type: ignore[arg-type]  # validated by CorpusOptions
        rows="all" if full else "last",  # the summary needs the last row only
    )
    rows = []
    for b, record in enumerate(records):
        n = int(result.attention_mask[b].sum())
        last = n - 1 if full else 0  # rows="last" keeps row t_b alone, as row 0
        row: Row = {
            "id": record["id"],
            "n_tokens": n,
            "tokens": result.str_tokens[b][:n],
            "rollout_last": result.rollout[b, -1, last, :n].tolist(),
            "top_sources": _sources(
                lambda k, b=b: result.top_sources(-1, k, batch=b), n, result.tokens.shape[1]
            ),
            "max_reconstruction_error": float(result.reconstruction_error[b].max()),
        }
        if full:
            row["_tensors"] = _tensors(
                contributions=result.contributions[b, :, :n, :n],
                rollout=result.rollout[b, :, :n, :n],
            )
        rows.append(row)
    return rows


def _alti_plus(
    model: "HookedModel", records: list[dict[str, Any]], options: CorpusOptions
) -> list[Row]:
    """Records with a target are explained with it; those without, after greedy translation
    (`alti_plus` takes targets for all sequences of a call or for none)."""
    given = [i for i, r in enumerate(records) if r.get("target") is not None]
    generated = [i for i, r in enumerate(records) if r.get("target") is None]
    rows: dict[int, Row] = {}
    for group, with_target in ((given, True), (generated, False)):
        if group:
            part = _alti_plus_group(model, [records[i] for i in group], options, with_target)
            rows.update(zip(group, part, strict=True))
    return [rows[i] for i in range(len(records))]


def _alti_plus_group(
    model: "HookedModel", records: list[dict[str, Any]], options: CorpusOptions, with_target: bool
) -> list[Row]:
    from alti_lens import alti_plus

    result = alti_plus(
        model,
        [r["source"] for r in records],
        [r["target"] for r in records] if with_target else None,
        measure=options.measure,  # type: ignore[arg-type]  # validated by CorpusOptions
    )
    stats = result.sentence_statistics()
    n_source = result.source_tokens.shape[1]
    rows = []
    for b, record in enumerate(records):
        s = int(result.source_attention_mask[b].sum())
        t = int(result.target_attention_mask[b].sum())
        row: Row = {
            "id": record["id"],
            "n_tokens": s,
            "tokens": result.source_str_tokens[b][:s],
            "target": record.get("target"),
            "n_target_tokens": t,
            "target_tokens": result.target_str_tokens[b][:t],
            "source_contribution": result.source_contribution[b, :t].tolist(),
            **{f"source_contribution_{k}": float(v[b]) for k, v in stats.items()},
            "max_reconstruction_error": float(result.reconstruction_error[b].max()),
        }
        if options.save == "full":
            columns = [*range(s), *range(n_source, n_source + t)]  # real source, then target
            row["_tensors"] = _tensors(
                encoder_contributions=result.encoder_contributions[b, :, :s, :s],
                encoder_rollout=result.encoder_rollout[b, :, :s, :s],
                decoder_contributions=result.decoder_contributions[b, :, :t, :t],
                rollout=result.rollout[b, :, :t][..., columns],
            )
        rows.append(row)
    return rows


def _alti_logit(
    model: "HookedModel", records: list[dict[str, Any]], options: CorpusOptions
) -> list[Row]:
    from alti_lens import alti_logit

    result = alti_logit(model, [r["text"] for r in records], [r["target"] for r in records])
    rows = []
    for b, record in enumerate(records):
        n = int(result.attention_mask[b].sum())
        row: Row = {
            "id": record["id"],
            "n_tokens": n,
            "tokens": result.str_tokens[b][:n],
            "target": record["target"],
            "target_id": int(result.target[b]),
            "logit": float(result.logit[b]),
            "scores": result.scores[b, :n].tolist(),
            "top_sources": _sources(
                lambda k, b=b: result.top_sources(k, batch=b), n, result.tokens.shape[1]
            ),
            "logit_error": float(result.logit_error[b]),
            "max_reconstruction_error": float(result.alti.reconstruction_error[b].max()),
        }
        if options.save == "full":
            row["_tensors"] = _tensors(
                scores=result.scores[b, :n], head_scores=result.head_scores[b, ..., :n]
            )
        rows.append(row)
    return rows


def _flow(model: "HookedModel", records: list[dict[str, Any]], options: CorpusOptions) -> list[Row]:
    from alti_lens import flow_graph

    graph = flow_graph(
        model,
        [r["text"] for r in records],
        measure=options.measure,  # type: ignore[arg-type]  # validated by CorpusOptions
    )
    rows = []
    for b, record in enumerate(records):
        n = int(graph.attention_mask[b].sum())
        route = graph.routes(-1, options.threshold, b)
        row: Row = {
            "id": record["id"],
            "n_tokens": n,
            "tokens": graph.str_tokens[b][:n],
            "route_sink": str(route.graph["sink"]),
            "route": _edges(route),
            "max_reconstruction_error": float(graph.reconstruction_error[b].max()),
        }
        if options.save == "full":
            row["_tensors"] = _tensors(
                attention=graph.attention[b, :, :, :n, :n],
                attention_residual=graph.attention_residual[b, :, :n],
                mlp=graph.mlp[b, :, :n],
                mlp_residual=graph.mlp_residual[b, :, :n],
            )
        rows.append(row)
    return rows


def _edges(route: Any) -> list[Row]:
    """The route's edges (`FlowGraph.routes`), strongest first, with JSON-able values."""
    edges = [
        {
            "source": str(source), "target": str(target), "key": str(key),
            "kind": str(attrs["kind"]), "layer": int(attrs["layer"]),
            "head": None if attrs.get("head") is None else int(attrs["head"]),
            "weight": float(attrs["weight"]),
        }
        for source, target, key, attrs in route.edges(keys=True, data=True)
    ]  # fmt: skip
    return sorted(edges, key=lambda e: (-e["weight"], e["source"], e["target"], e["key"]))


_METHODS: dict[str, Callable[..., list[Row]]] = {
    "alti": _alti,
    "alti_plus": _alti_plus,
    "alti_logit": _alti_logit,
    "flow": _flow,
}
