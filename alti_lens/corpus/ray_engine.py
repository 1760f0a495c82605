"""The Ray engine of `alti_lens.corpus`: the same rows as the local engine, computed by a pool of
model-holding Ray actors, on one machine or on a multi-node cluster.

The driver reads and validates the records (the local engine's reader, so bad input fails with
its line number before any model work), drops the ids already in the output directory (resume),
orders the records by length (so that a batch pads little) and hands them to Ray Data as one
JSON string per record: Arrow never has to infer a schema from heterogeneous user fields. Each
actor loads the model once and, per batch, runs `rows.process` and writes that batch's Parquet
shard (and with save="full" its safetensors shard) itself, write-then-rename, into the output
directory, which therefore must be storage that every node sees. Ray itself is imported lazily:
it is the optional extra `alti-lens[ray]`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import pickle
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alti_lens.errors import AltiLensError, InputError, MissingDependencyError

if TYPE_CHECKING:
    from .options import CorpusOptions

Record = dict[str, Any]
RecordReader = Callable[[Path, "CorpusOptions"], Sequence[Record]]

MANIFEST = "manifest.json"
SHARD_PREFIX = "ray-"
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
    model_name_or_dir: str | os.PathLike[str],
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    options: CorpusOptions,
    *,
    workers: int = 1,
    num_gpus_per_worker: float | int | None = None,
    ray_address: str | None = None,
    read_records: RecordReader | None = None,
    dtype: str | None = None,
) -> dict[str, Any]:
    """Compute `options.method` over the records of `input_path` on Ray and write the Parquet
    dataset (+ manifest.json, + safetensors shards with save="full") into `output_dir`.

    Args:
        model_name_or_dir: what `alti_lens.load_model` loads in every actor (a built-in name, a
            checkpoint directory every node can read, or a hub name cached on every node).
        input_path: the corpus (whatever `read_records` reads).
        output_dir: the dataset directory; on a multi-node cluster a path on shared storage.
        options: the corpus options (method, fields, batch size, save).
        workers: the number of model-holding actors.
        num_gpus_per_worker: GPUs per actor (default: 1 when the cluster has GPUs, else 0).
        ray_address: the cluster to join (default: `RAY_ADDRESS`, else a local cluster started
            here and stopped afterwards). Ignored when Ray is already initialised.
        read_records: `(path, options) -> records`, each a dict with "id" and the fields
            (default: the local engine's reader, `alti_lens.corpus.io`).
        dtype: the model's dtype in the actors (`load_model`'s `dtype`).

    Returns:
        The manifest that was written to `output_dir/manifest.json`.

    Raises:
        MissingDependencyError: Ray Data is not installed.
        InputError: bad input or options, a cluster that cannot be reached or cannot host the
            requested workers.
    """
    ray = import_ray()
    if workers < 1:
        raise InputError(f"workers must be at least 1; got {workers}. Fix: --workers 1 or more.")
    started = time.perf_counter()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    reader = read_records or _default_reader()
    records = list(reader(Path(input_path), options))
    read_s = time.perf_counter() - started
    done = finished_ids(out)
    todo = sorted((r for r in records if str(r["id"]) not in done), key=_length)
    owns_cluster = _connect(ray, ray_address)
    try:
        plan = plan_resources(ray.cluster_resources(), workers, num_gpus_per_worker)
        work_started = time.perf_counter()
        written = _process(ray, str(model_name_or_dir), todo, out, options, plan, dtype)
        process_s = time.perf_counter() - work_started
    finally:
        if owns_cluster:
            ray.shutdown()
    manifest = _manifest(
        model=str(model_name_or_dir),
        options=options,
        plan=plan,
        counts={
            "examples": len(records),
            "written": written,
            "skipped_existing": len(records) - len(todo),
        },
        timings={
            "read_s": round(read_s, 3),
            "process_s": round(process_s, 3),
            "total_s": round(time.perf_counter() - started, 3),
            "examples_per_s": round(written / process_s, 3) if process_s > 0 else None,
        },
        out=out,
    )
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def _default_reader() -> RecordReader:
    """The local engine's validating reader (alti_lens.corpus.io.read_records)."""
    from . import io

    return io.read_records


def _length(record: Record) -> int:
    """A cheap length to bucket by: the characters of all text fields."""
    return sum(len(v) for k, v in record.items() if k != "id" and isinstance(v, str))


def _connect(ray: Any, address: str | None) -> bool:
    """Join `address` (else RAY_ADDRESS, else a new local cluster); True when we started Ray here
    (and so must stop it)."""
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
    cluster: dict[str, float], workers: int, num_gpus_per_worker: float | int | None
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
    per_gpu = (1.0 if gpus > 0 else 0.0) if num_gpus_per_worker is None else num_gpus_per_worker
    if per_gpu < 0:
        raise InputError(f"num_gpus_per_worker must be >= 0; got {num_gpus_per_worker}.")
    if per_gpu * workers > gpus + 1e-9:
        raise InputError(
            f"{workers} worker(s) with {per_gpu:g} GPU each need {per_gpu * workers:g} GPUs; the "
            f"Ray cluster has {gpus:g}. Fix: fewer --workers, a fraction of a GPU per worker, or "
            "--num-gpus-per-worker 0 to run on CPUs."
        )
    spare = min(1.0, cpus / 4)
    num_cpus = min(1.0, (cpus - spare) / workers)
    if num_cpus < 0.01:
        raise InputError(
            f"the Ray cluster has {cpus:g} CPUs, too few for {workers} worker(s) and Ray Data's "
            "own tasks. Fix: fewer --workers or a cluster with more CPUs."
        )
    return ResourcePlan(workers, round(num_cpus, 2), per_gpu, cpus, gpus)


class CorpusWorker:
    """A Ray actor: loads the model once, then turns batches of records into written shards."""

    def __init__(
        self, model: str, options: CorpusOptions, output_dir: str, device: str | None, dtype: str
    ) -> None:
        from alti_lens import load_model

        self.options = options
        self.output_dir = Path(output_dir)
        # An error raised here kills the actor, and Ray's ActorDiedError keeps only its text; kept
        # and reported by the first batch instead, it reaches the driver as itself.
        self.failed: AltiLensError | None = None
        try:
            self.model = load_model(model, device=device, dtype=dtype, progress=False)
        except AltiLensError as err:
            self.failed = err

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        """One batch (a "record" column of JSON strings) → its shard, written; per record: its id,
        the shard's name, the batch's seconds and "" (or, when alti_lens refused the batch, the
        error, pickled and base64-encoded: Ray's wrappers keep only an error's text)."""
        from .rows import process

        started = time.perf_counter()
        records = [json.loads(r) for r in batch["record"]]
        ids = [str(r["id"]) for r in records]
        try:
            if self.failed is not None:
                raise self.failed
            rows = process(self.model, self.options.method, records, self.options)
            shard, error = write_shard(rows, self.output_dir), ""
        except AltiLensError as err:
            shard, error = "", encode_error(err)
        seconds = time.perf_counter() - started
        return {
            "id": ids,
            "shard": [shard] * len(ids),
            "seconds": [seconds] * len(ids),
            "error": [error] * len(ids),
        }


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


def write_shard(rows: list[dict[str, Any]], output_dir: Path) -> str:
    """Write one batch's rows as a Parquet shard (and its "_tensors" as a safetensors shard of
    the same name, keys "<id>/<name>"), each write-then-rename so that a shard on disk is always
    complete; the Parquet file is renamed last, so its presence means the batch is done. The name
    is the hash of the batch's ids: a batch redone after a crash replaces, never duplicates."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = SHARD_PREFIX + hashlib.sha1("\0".join(r["id"] for r in rows).encode()).hexdigest()[:16]
    tensors = {
        f"{row['id']}/{key}": t.detach().to("cpu").contiguous()
        for row in rows
        for key, t in row.get("_tensors", {}).items()
    }
    if tensors:
        from safetensors.torch import save_file

        tmp = output_dir / f".{name}.safetensors.tmp"
        save_file(tensors, str(tmp))
        tmp.replace(output_dir / f"{name}.safetensors")
    table = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "_tensors"} for r in rows])
    tmp = output_dir / f".{name}.parquet.tmp"
    pq.write_table(table, tmp)
    tmp.replace(output_dir / f"{name}.parquet")
    return name


def finished_ids(output_dir: Path) -> set[str]:
    """The ids of every finished Parquet shard in `output_dir` (any engine's)."""
    import pyarrow.parquet as pq

    done: set[str] = set()
    for shard in sorted(output_dir.glob("*.parquet")):
        done.update(str(i) for i in pq.read_table(shard, columns=["id"]).column("id").to_pylist())
    return done


def _process(
    ray: Any,
    model: str,
    records: list[Record],
    out: Path,
    options: CorpusOptions,
    plan: ResourcePlan,
    dtype: str | None,
) -> int:
    """Run the actor pool over `records`; the number of rows written."""
    if not records:
        return 0
    items = [{"record": json.dumps(r)} for r in records]
    dataset = ray.data.from_items(items).map_batches(
        CorpusWorker,
        fn_constructor_kwargs={
            "model": model,
            "options": options,
            "output_dir": str(out.resolve()),
            "device": "cuda" if plan.num_gpus > 0 else None,
            "dtype": dtype or "float32",
        },
        batch_size=options.batch_size,
        batch_format="numpy",
        concurrency=plan.workers,
        num_cpus=plan.num_cpus,
        num_gpus=plan.num_gpus,
    )
    written = 0
    for row in dataset.select_columns(["error"]).iter_rows():
        if row["error"]:
            raise decode_error(row["error"])  # the first refused batch stops the run
        written += 1
    return written


def _manifest(
    *,
    model: str,
    options: CorpusOptions,
    plan: ResourcePlan,
    counts: dict[str, int],
    timings: dict[str, float | None],
    out: Path,
) -> dict[str, Any]:
    """The manifest.json of a Ray run (the local engine's fields, plus the Ray resources)."""
    return {
        "engine": "ray",
        "model": model,
        "method": options.method,
        "options": dataclasses.asdict(options),
        "versions": _versions(),
        "workers": plan.workers,
        "resources": dataclasses.asdict(plan),
        "counts": {**counts, "shards": len(list(out.glob("*.parquet")))},
        "timings": timings,
    }


def _versions() -> dict[str, str]:
    """The versions that decide the numbers (and Ray's)."""
    from importlib.metadata import PackageNotFoundError, version

    from alti_lens._version import __version__

    found = {"alti_lens": __version__}
    for package in ("torch", "transformer-lens", "transformers", "ray"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found
