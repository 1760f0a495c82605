"""Corpus-scale ALTI: one row per example of a JSONL, CSV, Parquet or `datasets` input, written
as a Parquet dataset with a manifest (`run`; on the command line `alti-lens corpus`).

    import alti_lens.corpus
    manifest = alti_lens.corpus.run("demo-translator", "pairs.jsonl", "scores/", method="alti_plus")
    # also alti_lens.run_corpus(...), the same function
    table = alti_lens.corpus.read_table("scores/")  # pyarrow; .to_pandas() for a DataFrame

Modules: `options` (`CorpusOptions`), `io` (reading and validating the input), `rows` (`process`:
one batch of records through the public API into rows), `shards` (the output directory: Parquet
and safetensors shards, manifest), `local` (the default engine), `ray_engine` (`engine="ray"`).
Importing this package loads neither torch nor pyarrow.
"""

import importlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alti_lens.errors import InputError, MissingDependencyError

from .options import METHODS, SAVES, CorpusOptions

if TYPE_CHECKING:
    from alti_lens.models import HookedModel

__all__ = ["METHODS", "SAVES", "CorpusOptions", "load_tensors", "read_table", "run", "run_corpus"]

ENGINES = ("local", "ray")


def run(
    model: "HookedModel | str",
    input: str | Path,
    output: str | Path,
    *,
    method: str,
    engine: str = "local",
    workers: int = 1,
    batch_size: int = 8,
    text_field: str = "text",
    source_field: str = "source",
    target_field: str = "target",
    id_field: str = "id",
    save: str = "summary",
    skip_bad: bool = False,
    measure: str = "l1",
    threshold: float = 0.04,
    shard_size: int = 256,
    quiet: bool = False,
    device: str | None = None,
    dtype: str | None = None,
    ray_address: str | None = None,
    num_gpus: float | None = None,
) -> dict[str, Any]:
    """ALTI over a corpus: one Parquet row per input record in the directory `output`.

    Args:
        model: a loaded model, or a name `load_model` accepts (built-in, directory, hub name).
        input: a JSONL, CSV or Parquet file, or a `datasets` dataset saved to disk (directory).
        output: the dataset's directory (created if missing). Rerunning on it resumes: records
            whose id it already holds are skipped.
        method: "alti" (`rollout_last`, `top_sources`), "alti_plus" (`source_contribution` per
            step and its sentence statistics; records without a target are translated greedily
            first), "alti_logit" (the `logit` and `scores` of each record's one-token `target`)
            or "flow" (the last token's route as an edge list, edges >= `threshold`).
        engine: "local" (one process) or "ray" (`alti_lens.corpus.ray_engine`, needs ray).
        workers: model-holding Ray actors (engine "ray").
        batch_size: records per model call; batches are bucketed by length.
        text_field: the input's text column (methods "alti", "alti_logit", "flow").
        source_field: the source column (method "alti_plus").
        target_field: the target column ("alti_plus": optional; "alti_logit": the token).
        id_field: the id column. Records without an id are numbered by their line (row); ids
            must be unique.
        save: "summary" (rows only) or "full" (also the matrices, in safetensors shards next to
            the Parquet shards, as `"{id}/{name}"`).
        skip_bad: leave bad records out (listed in `output/rejects.jsonl` with their line and
            reason) instead of raising `InputError` before any computation.
        measure: the contribution measure ("l1": ALTI).
        threshold: the smallest edge weight a flow route keeps (method "flow").
        shard_size: rows per Parquet shard (engine "local").
        quiet: no progress bar.
        device: passed to `load_model` when `model` is a name.
        dtype: passed to `load_model` when `model` is a name.
        ray_address: engine "ray": the cluster to join (None: `RAY_ADDRESS` or a local one).
        num_gpus: engine "ray": GPUs per worker (None: one each where GPUs exist).

    Returns:
        The manifest (also `output/manifest.json`): model, versions, options, counts (input,
        valid, rejected, skipped: already done, computed: by this run, done: rows in `output`),
        timings, padding waste, shard files, and `complete`.
    """
    options = CorpusOptions(
        method, text_field=text_field, source_field=source_field, target_field=target_field,
        id_field=id_field, batch_size=batch_size, save=save, measure=measure, threshold=threshold,
    )  # fmt: skip
    _check_int("workers", workers)
    _check_int("shard_size", shard_size)
    if engine not in ENGINES:
        raise InputError(
            f"engine must be 'local' or 'ray'; got {engine!r}. Fix: engine='local' (one process)."
        )
    if engine == "ray":
        return _ray(**locals())
    return _local(model, input, output, options, skip_bad, shard_size, quiet, device, dtype)


run_corpus = run


def read_table(output: str | Path, columns: list[str] | None = None) -> Any:
    """The rows of the corpus dataset in `output` as an Arrow table (`.to_pandas()`)."""
    from .shards import read_table as read

    return read(output, columns)


def load_tensors(output: str | Path, example_id: str) -> dict[str, Any]:
    """The matrices a `save="full"` run stored for one example: name → tensor."""
    from .shards import load_tensors as load

    return load(output, example_id)


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be an int >= 1; got {value!r}. Fix: e.g. {name}=1.")


def _ray(**arguments: Any) -> dict[str, Any]:
    """`ray_engine.run(**arguments)`: every argument of `run` but `engine`, by keyword, plus
    `options` (the validated `CorpusOptions`)."""
    try:
        ray_engine = importlib.import_module(".ray_engine", __name__)
    except ImportError as err:
        if getattr(err, "name", None) not in ("alti_lens.corpus.ray_engine", "ray"):
            raise
        raise MissingDependencyError(
            f"engine='ray' is not available here ({err}). Fix: pip install 'alti-lens[ray]', "
            "or engine='local'."
        ) from err
    arguments.pop("engine")
    return ray_engine.run(**arguments)


def _local(
    model: "HookedModel | str",
    input: str | Path,
    output: str | Path,
    options: CorpusOptions,
    skip_bad: bool,
    shard_size: int,
    quiet: bool,
    device: str | None,
    dtype: str | None,
) -> dict[str, Any]:
    from . import io, local, shards

    start = time.perf_counter()
    out = shards.prepare(output)
    io.read(input)  # an unreadable input fails before the model is loaded
    name = model if isinstance(model, str) else _model_name(model)
    shards.check_compatible(shards.read_manifest(out), options.to_dict(), name)
    if isinstance(model, str):
        from alti_lens import load_model

        model = load_model(model, device=device, dtype=dtype, progress=not quiet)  # type: ignore[arg-type]
    check_model(model, options.method, name)
    loaded = time.perf_counter()
    corpus = io.load(input, options, model, skip_bad=skip_bad)
    if corpus.rejects:
        io.write_rejects(out / shards.REJECTS, corpus.rejects)
    manifest = base_manifest(name, input, options, corpus)
    manifest["timings"] = {"load_s": loaded - start, "validate_s": time.perf_counter() - loaded}
    return local.run(model, corpus, out, options, manifest, shard_size=shard_size, quiet=quiet)


def check_model(model: "HookedModel", method: str, name: str) -> None:
    """Refuse, before any work, a method the model cannot answer (`InputError`)."""
    from alti_lens import models

    encdec = models.is_encoder_decoder(model)
    if method == "alti_plus" and not encdec:
        raise InputError(
            f"method 'alti_plus' needs an encoder-decoder model; {name} is not one. "
            "Fix: method='alti' (or 'alti_logit', 'flow') for this model."
        )
    if method != "alti_plus" and encdec:
        raise InputError(
            f"method {method!r} takes decoder-only and encoder models; {name} is an "
            "encoder-decoder. Fix: method='alti_plus' with source (and target) fields."
        )
    if method == "alti_logit" and not models.is_causal_lm(model):
        raise InputError(
            f"method 'alti_logit' explains a next-token logit; {name} is not a decoder-only "
            "language model. Fix: method='alti'."
        )


def _model_name(model: "HookedModel") -> str:
    cfg = getattr(model, "cfg", None)
    return str(getattr(cfg, "model_name", None) or type(model).__name__)


def base_manifest(
    name: str, input: str | Path, options: CorpusOptions, corpus: Any, engine: str = "local"
) -> dict[str, Any]:
    """The manifest's fields known before computing (the engine adds the rest)."""
    from . import shards

    return {
        "format": shards.FORMAT,
        "engine": engine,
        "model": name,
        "input": str(input),
        "options": options.to_dict(),
        "versions": shards.versions(),
        "counts": {
            "input": len(corpus.items) + len(corpus.rejects),
            "valid": len(corpus.items),
            "rejected": len(corpus.rejects),
        },
        "rejects": shards.REJECTS if corpus.rejects else None,
        "complete": False,
    }
