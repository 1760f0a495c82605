"""The output directory of a corpus run: Parquet shards (and safetensors shards with
`save="full"`), each written to a temporary name then renamed, so a shard is either complete
or absent; the ids already written (for resuming); `manifest.json`.

Layout of DIR: `part-00000.parquet`, `part-00001.parquet`, ... (one row per example),
`part-00000.safetensors`, ... next to them with `save="full"` (tensor `"{id}/{name}"`),
`manifest.json`, and `rejects.jsonl` when records were left out.
"""

import json
import os
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from alti_lens.errors import InputError

from .io import pyarrow_parquet

MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"
SHARD = re.compile(r"^part-(\d{5,})\.parquet$")
FORMAT = "alti-lens-corpus/1"
# the Arrow type of a column that holds only nulls in one shard (every shard must agree)
NULL_TYPES = {"head": "int64"}


def prepare(output: str | Path) -> Path:
    """The output directory, created if missing and checked writable; stale temporary files of
    an interrupted run removed. Raises `InputError` when it cannot be used."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise InputError(
            f"output {out} is a file; expected a directory (created if missing). "
            "Fix: pass a directory path."
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise InputError(
            f"cannot write to output directory {out}: {err.strerror}. "
            "Fix: choose a directory you can write to."
        ) from err
    for stale in out.glob(".part-*.tmp"):
        stale.unlink()  # a shard being written when the last run stopped: never visible
    return out


def shard_paths(out: Path) -> dict[int, Path]:
    """The finished Parquet shards of `out`, by index."""
    return {
        int(m.group(1)): p
        for p in out.iterdir()
        if (m := SHARD.match(p.name)) is not None
    }  # fmt: skip


def done_ids(out: Path) -> set[str]:
    """The ids of every row already written to `out`'s shards."""
    pq = pyarrow_parquet()
    ids: set[str] = set()
    for path in shard_paths(out).values():
        try:
            ids.update(pq.read_table(path, columns=["id"]).column("id").to_pylist())
        except (OSError, ValueError, KeyError) as err:
            raise InputError(
                f"the shard {path} cannot be read ({err}); expected a Parquet file with an `id` "
                "column written by alti-lens corpus. Fix: move it out of the output directory."
            ) from err
    return ids


def next_index(out: Path) -> int:
    """The index of the next shard (after every finished one)."""
    return max(shard_paths(out), default=-1) + 1


def write_shard(out: Path, index: int, rows: list[dict[str, Any]]) -> Path:
    """Write `rows` as shard `index` (its tensors first, then the Parquet file whose presence
    marks the shard done); each file is written to a temporary name and renamed."""
    name = f"part-{index:05d}"
    tensors = {
        f"{row['id']}/{key}": value
        for row in rows
        for key, value in row.get("_tensors", {}).items()
    }  # fmt: skip
    if tensors:
        from safetensors.torch import save_file

        tmp = out / f".{name}.safetensors.tmp"
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
        os.replace(tmp, out / f"{name}.safetensors")
    table = to_table([{k: v for k, v in row.items() if k != "_tensors"} for row in rows])
    tmp = out / f".{name}.parquet.tmp"
    pyarrow_parquet().write_table(table, tmp)
    path = out / f"{name}.parquet"
    os.replace(tmp, path)
    return path


def to_table(rows: list[dict[str, Any]]) -> Any:
    """The rows as an Arrow table; columns that are all null in these rows get the type they
    have elsewhere (so the shards of one dataset share one schema)."""
    import pyarrow as pa

    table = pa.Table.from_pylist(rows)
    schema = pa.schema([_typed(f, pa) for f in table.schema])
    return table.cast(schema)


def _typed(f: Any, pa: Any) -> Any:
    """A field with null types replaced (recursively through lists and structs)."""
    kind = f.type
    if pa.types.is_null(kind):
        return pa.field(f.name, getattr(pa, NULL_TYPES.get(f.name, "string"))())
    if pa.types.is_list(kind):
        item = _typed(kind.value_field, pa)
        return pa.field(f.name, pa.list_(item))
    if pa.types.is_struct(kind):
        return pa.field(
            f.name, pa.struct([_typed(kind.field(i), pa) for i in range(kind.num_fields)])
        )
    return f


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest of an earlier run in `out`, or None."""
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(
            f"{path} cannot be read ({err}); expected the manifest of an earlier corpus run. "
            "Fix: remove it, or choose another output directory."
        ) from err


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """`manifest.json`, written then renamed."""
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out / MANIFEST)


def check_compatible(previous: dict[str, Any] | None, options: dict[str, Any], model: str) -> None:
    """Refuse to add rows computed otherwise to an earlier run's dataset."""
    if previous is None:
        return
    keys = ("method", "save", "measure", "threshold")
    before = {k: previous.get("options", {}).get(k) for k in keys}
    now = {k: options[k] for k in keys}
    if before != now or previous.get("model") != model:
        raise InputError(
            f"the output directory holds a dataset computed with model {previous.get('model')!r} "
            f"and {before}; this run is model {model!r} with {now}. Expected the same, to resume "
            "it. Fix: choose another output directory."
        )


def versions() -> dict[str, str | None]:
    """The versions that computed the rows."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("alti-lens", "torch", "transformer-lens", "transformers", "pyarrow"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    from alti_lens import __version__

    found["alti-lens"] = __version__  # the running code's (a checkout may differ from its install)
    return found


def read_table(output: str | Path, columns: list[str] | None = None) -> Any:
    """Every row of the corpus dataset in `output` as one Arrow table (`.to_pandas()` for a
    DataFrame). The directory also holds the manifest and tensors, which a plain
    `pandas.read_parquet(output)` would try to read: this reads the Parquet shards only."""
    import pyarrow.dataset as ds

    out = Path(output)
    if not out.is_dir():
        raise InputError(f"{out} is not a directory; expected the output of a corpus run.")
    paths = [str(p) for _, p in sorted(shard_paths(out).items())]
    return ds.dataset(paths, format="parquet").to_table(columns=columns)


def load_tensors(output: str | Path, example_id: str) -> dict[str, Any]:
    """The tensors saved (`save="full"`) for the example `example_id`: name → tensor."""
    from safetensors import safe_open

    out, prefix = Path(output), f"{example_id}/"
    for path in sorted(out.glob("part-*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            names = [k for k in f.keys() if k.startswith(prefix)]  # noqa: SIM118 (not a dict)
            if names:
                return {k.removeprefix(prefix): f.get_tensor(k) for k in names}
    raise InputError(
        f"no tensors for id {example_id!r} in {out}; expected a run with save='full' that "
        "computed it. Fix: check the id, or rerun with save='full'."
    )
