"""The Ray engine of `alti_lens.corpus` (`engine="ray"`): the local engine's rows, computed by a
pool of model-holding Ray actors, on one machine or on a multi-node cluster.

The driver does what the local engine does before computing: it checks the output directory and
the model, reads and validates the input (`io.load`: bad records fail with their line numbers
before any model work, or go to rejects.jsonl), skips the ids already written (resume) and cuts
the rest into the local engine's length-bucketed batches (`local.batches`), so both engines
compute the same batches and write the same rows. Each batch becomes one Ray Data row (its
records as JSON, so Arrow never infers a schema from user fields) with its shard index, fixed by
the driver. Each actor loads the model once and, per batch, runs `rows.process` and writes shard
`part-<index>` itself (`shards.write_shard`: write-then-rename) into the output directory, which
therefore must be storage that every node sees. Ray is imported lazily: it is the optional extra
`alti-lens[ray]`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import pickle
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alti_lens.errors import AltiLensError, InputError, MissingDependencyError

if TYPE_CHECKING:
    from . import io
    from .options import CorpusOptions

_INSTALL = 'pip install "alti-lens[ray]"'


def import_ray() -> Any:
    """The `ray` module with Ray Data, or a MissingDependencyError naming the install."""
    try:
        import ray
        import ray.data  # (Ray Data is the `ray[data]` extra, not plain `ray`)
    except ImportError as err:
        raise MissingDependencyError(
            f"the Ray engine needs Ray Data, which is not installed ({err}). Fix: {_INSTALL}, "
            "or use the local engine (engine='local', the default)."
        ) from err
    return ray


def run(
    model: object,
    input: str | Path,
    output: str | Path,
    options: CorpusOptions,
    *,
    workers: int = 1,
    num_gpus: float | int | None = None,
    ray_address: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    skip_bad: bool = False,
    quiet: bool = False,
    **same_as_options: Any,
) -> dict[str, Any]:
    """Compute `options.method` over the records of `input` on Ray; the Parquet dataset (+
    safetensors shards with save="full", + rejects.jsonl) and manifest.json go to `output`, as
    the local engine writes them (one shard per batch here).

    Args:
        model: what `alti_lens.load_model` loads in every actor: a built-in name, a checkpoint
            directory every node can read, or a hub name every node can load (a model already
            loaded is refused with InputError: it cannot be shipped to the actors).
        input: the corpus, read and validated here on the driver (`io.load`).
        output: the dataset directory; on a multi-node cluster a path on shared storage.
        options: the corpus options (method, fields, batch size, save).
        workers: the number of model-holding actors.
        num_gpus: GPUs per actor (default: 1 when the cluster has GPUs, else 0).
        ray_address: the cluster to join (default: `RAY_ADDRESS`, else a local cluster started
            here and stopped afterwards). Ignored when Ray is already initialised.
        device: where the actors put the model (default: "cuda" when they hold a GPU).
        dtype: the model's dtype (`load_model`'s).
        skip_bad: leave bad records out (rejects.jsonl) instead of raising InputError.
        quiet: no progress bar.
        same_as_options: what `alti_lens.corpus.run` passes besides (method, batch_size, the
            fields, save, measure, threshold: must agree with `options`; shard_size: unused,
            one shard per batch).

    Returns:
        The manifest (also `output/manifest.json`), the local engine's plus "workers" and
        "resources" (what each actor claimed).

    Raises:
        MissingDependencyError: Ray Data is not installed.
        InputError: bad input, options or model name; a cluster that cannot be reached or cannot
            host the requested workers. Errors alti_lens raises in the actors come back as
            themselves.
    """
    ray = import_ray()
    _check_arguments(model, workers, options, same_as_options)
    from . import io, local, shards

    start = time.perf_counter()
    name = os.fspath(model)  # type: ignore[arg-type]  # checked by _check_arguments
    out = shards.prepare(output)
    io.read(input)  # an unreadable input fails before the model is loaded
    shards.check_compatible(shards.read_manifest(out), options.to_dict(), name)
    corpus = _validate(name, input, options, dtype, skip_bad, quiet)
    if corpus.rejects:
        io.write_rejects(out / shards.REJECTS, corpus.rejects)
    manifest = _manifest(name, input, options, corpus)
    manifest["timings"] = {"validate_s": time.perf_counter() - start}
    done = shards.done_ids(out)
    pending = [item for item in corpus.items if item.record["id"] not in done]
    groups = list(local.batches(pending, options.batch_size))
    manifest["padding_waste"] = local.padding_waste(groups)
    manifest["counts"].update(skipped=len(corpus.items) - len(pending), computed=0)
    owns_cluster = _connect(ray, ray_address)
    try:
        plan = plan_resources(ray.cluster_resources(), workers, num_gpus)
        manifest.update(workers=workers, resources=dataclasses.asdict(plan))
        job = Job(name, out, options, plan, device, dtype)
        return _compute(ray, job, groups, manifest, quiet)
    finally:
        if owns_cluster:
            ray.shutdown()


def _check_arguments(
    model: object, workers: object, options: CorpusOptions, same: dict[str, Any]
) -> None:
    """Refuse what the actors cannot do, and options given twice that disagree."""
    if not isinstance(model, str | os.PathLike):
        raise InputError(
            f"engine='ray' loads the model in every worker, so it needs the model's name or "
            f"checkpoint directory; got a {type(model).__name__}. Fix: pass the name or the "
            "directory (model.save_pretrained(dir) and its tokenizer), or engine='local'."
        )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be an int >= 1; got {workers!r}. Fix: e.g. workers=2.")
    fields = {f.name for f in dataclasses.fields(options)}
    unknown = set(same) - fields - {"shard_size"}
    if unknown:
        raise TypeError(f"ray_engine.run() got unexpected arguments {sorted(unknown)}")
    for key in set(same) & fields:
        if same[key] != getattr(options, key):
            raise InputError(
                f"{key}={same[key]!r} disagrees with options.{key}={getattr(options, key)!r}. "
                "Fix: give it once (in the options)."
            )


def _validate(
    name: str,
    input: str | Path,
    options: CorpusOptions,
    dtype: str | None,
    skip_bad: bool,
    quiet: bool,
) -> io.Corpus:
    """The validated input, as the local engine validates it: the model is loaded here once
    (on the CPU) to check the method and measure token counts, then released."""
    from alti_lens import load_model

    from . import check_model, io

    model = load_model(name, device="cpu", dtype=dtype, progress=not quiet)
    check_model(model, options.method, name)
    corpus = io.load(input, options, model, skip_bad=skip_bad)
    del model
    return corpus


def _manifest(
    name: str, input: str | Path, options: CorpusOptions, corpus: io.Corpus
) -> dict[str, Any]:
    """The manifest's fields known before computing: the local engine's, engine "ray", and
    Ray's version."""
    from . import base_manifest

    manifest = base_manifest(name, input, options, corpus, engine="ray")
    manifest["versions"]["ray"] = _version("ray")
    return manifest


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _connect(ray: Any, address: str | None) -> bool:
    """Join `address` (else RAY_ADDRESS, else a new local cluster); True when Ray was started
    here (and so must be stopped here)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise InputError(
            f"could not connect to the Ray cluster at {address!r}: {err}. Fix: start it "
            "(`ray start --head` on the head node) and pass its address (--ray-address HOST:6379 "
            "or RAY_ADDRESS), or pass no address to start a local cluster."
        ) from err
    return True


@dataclasses.dataclass(frozen=True)
class ResourcePlan:
    """What each model-holding actor claims from the cluster."""

    workers: int
    num_cpus: float
    num_gpus: float
    cluster_cpus: float
    cluster_gpus: float


def plan_resources(
    cluster: dict[str, float], workers: int, num_gpus: float | int | None
) -> ResourcePlan:
    """Size the actors from the cluster's resources.

    The actors must not claim every CPU: Ray Data's own tasks (reading, splitting blocks) need a
    CPU too, and an actor pool holding all of them waits for those tasks forever (seen: two
    one-CPU actors on a two-CPU cluster hung silently). So at most 1 CPU per actor and a
    quarter of the cluster's CPUs (at most one CPU) stays free. GPUs: one per actor when the
    cluster has any, unless told; more than the cluster has would wait forever too, so that is
    an error.
    """
    cpus = float(cluster.get("CPU", 0.0))
    gpus = float(cluster.get("GPU", 0.0))
    per_gpu = (1.0 if gpus > 0 else 0.0) if num_gpus is None else num_gpus
    if per_gpu < 0:
        raise InputError(f"num_gpus (per worker) must be >= 0; got {num_gpus}.")
    if per_gpu * workers > gpus + 1e-9:
        raise InputError(
            f"{workers} worker(s) with {per_gpu:g} GPU each need {per_gpu * workers:g} GPUs; the "
            f"Ray cluster has {gpus:g}. Fix: fewer --workers, a fraction of a GPU per worker, or "
            "--num-gpus 0 to run on CPUs."
        )
    spare = min(1.0, cpus / 4)
    num_cpus = min(1.0, (cpus - spare) / workers)
    if num_cpus < 0.01:
        raise InputError(
            f"the Ray cluster has {cpus:g} CPUs, too few for {workers} worker(s) and Ray Data's "
            "own tasks. Fix: fewer --workers or a cluster with more CPUs."
        )
    return ResourcePlan(workers, round(num_cpus, 2), float(per_gpu), cpus, gpus)


@dataclasses.dataclass(frozen=True)
class Job:
    """What every actor needs (picklable plain values)."""

    model: str
    out: Path
    options: CorpusOptions
    plan: ResourcePlan
    device: str | None
    dtype: str | None


class CorpusWorker:
    """A Ray actor: loads the model once, then turns batches into written shards."""

    def __init__(self, job: Job) -> None:
        from alti_lens import load_model

        self.job = job
        device = job.device or ("cuda" if job.plan.num_gpus > 0 else None)
        # An error raised here kills the actor, and Ray's ActorDiedError keeps only its text; kept
        # and reported by the first batch instead, it reaches the driver as itself.
        self.failed: AltiLensError | None = None
        try:
            self.model = load_model(job.model, device=device, dtype=job.dtype, progress=False)
        except AltiLensError as err:
            self.failed = err

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        """Ray Data rows (one batch of records each: "index", "records" as JSON) → their shards,
        written; per row: index, rows written, seconds and "" (or the alti_lens error that
        refused the batch, encoded: Ray's wrappers would keep only its text)."""
        from . import rows, shards

        result: dict[str, list[Any]] = {"index": [], "n": [], "seconds": [], "error": []}
        for index, text in zip(batch["index"], batch["records"], strict=True):
            started = time.perf_counter()
            records = json.loads(text)
            try:
                if self.failed is not None:
                    raise self.failed
                computed = rows.process(
                    self.model, self.job.options.method, records, self.job.options
                )
                shards.write_shard(self.job.out, int(index), computed)
                error = ""
            except AltiLensError as err:
                error = encode_error(err)
            result["index"].append(int(index))
            result["n"].append(0 if error else len(records))
            result["seconds"].append(time.perf_counter() - started)
            result["error"].append(error)
        return result


def encode_error(err: AltiLensError) -> str:
    """An alti_lens error as text that survives Ray Data's columns: its class, arguments and
    attributes, pickled and base64-encoded (the exception itself may not unpickle: some classes,
    ReconstructionError, take keyword-only arguments)."""
    cls = type(err)
    payload = (cls.__module__, cls.__qualname__, err.args, dict(vars(err)))
    return base64.b64encode(pickle.dumps(payload)).decode("ascii")


def decode_error(text: str) -> BaseException:
    """The error `encode_error` encoded (an AltiLensError with its text if the class is gone)."""
    import importlib

    module, name, args, attrs = pickle.loads(base64.b64decode(text))
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, AltiLensError)):
        return AltiLensError(*args)
    err = cls.__new__(cls)
    err.args = args
    vars(err).update(attrs)
    return err


def _compute(
    ray: Any, job: Job, groups: list[list[io.Item]], manifest: dict[str, Any], quiet: bool
) -> dict[str, Any]:
    """Run the actor pool over the batches, a progress bar on the driver; the final manifest.
    On an error or Ctrl-C the shards already written stay (each complete) and the manifest says
    the run is incomplete; a rerun resumes."""
    from tqdm.auto import tqdm

    from . import shards

    start = time.perf_counter()
    computed, busy = 0, 0.0
    total = sum(len(g) for g in groups)
    bar = tqdm(total=total, unit="ex", desc="ray", disable=quiet or not total, file=sys.stderr)
    try:
        for row in _dataset(ray, job, groups, shards.next_index(job.out), quiet):
            if row["error"]:
                raise decode_error(row["error"])  # the first refused batch stops the run
            computed += int(row["n"])
            busy += float(row["seconds"])
            bar.update(int(row["n"]))
    except BaseException:
        _finish(manifest, job.out, computed, start, complete=False)
        raise
    finally:
        bar.close()
        # the actors' seconds in batches, summed: what the run cost without starting actors
        manifest["timings"]["batches_s"] = busy
    return _finish(manifest, job.out, computed, start, complete=True)


def _dataset(ray: Any, job: Job, groups: list[list[io.Item]], first: int, quiet: bool) -> Any:
    """The rows (one per batch) the actor pool returns, as they finish."""
    if not groups:
        return iter(())
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver's bar counts examples instead
    if quiet:  # Ray Data also logs its progress when stderr is not a terminal
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    items = [
        {"index": first + k, "records": json.dumps([item.record for item in group])}
        for k, group in enumerate(groups)
    ]
    dataset = ray.data.from_items(items).map_batches(
        CorpusWorker,
        fn_constructor_kwargs={"job": job},
        batch_size=1,  # one Ray Data row is one batch of records
        batch_format="numpy",
        concurrency=job.plan.workers,
        num_cpus=job.plan.num_cpus,
        num_gpus=job.plan.num_gpus,
    )
    return dataset.iter_rows()


def _finish(
    manifest: dict[str, Any], out: Path, computed: int, start: float, *, complete: bool
) -> dict[str, Any]:
    """The manifest completed with counts and timings, written (as the local engine's)."""
    from . import shards

    seconds = time.perf_counter() - start
    manifest["complete"] = complete
    manifest["counts"]["computed"] = computed
    manifest["counts"]["done"] = len(shards.done_ids(out))
    manifest["timings"]["compute_s"] = seconds
    manifest["timings"]["examples_per_s"] = computed / seconds if seconds > 0 else None
    manifest["shards"] = sorted(p.name for p in shards.shard_paths(out).values())
    shards.write_manifest(out, manifest)
    return manifest
