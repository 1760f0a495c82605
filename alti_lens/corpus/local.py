"""The local corpus engine: one process, batches bucketed by length, one batch in memory at a
time, Parquet shards written as it goes, resumable.

A rerun on the same output directory skips the ids its finished shards hold; a shard is written
to a temporary name and renamed, so it is complete or absent. On Ctrl-C (or any error) the rows
already computed are written as a last shard and the manifest is marked incomplete.
"""

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import io, rows, shards
from .options import CorpusOptions

if TYPE_CHECKING:
    from alti_lens.models import HookedModel

BUCKET_BATCHES = 16  # lengths are sorted within windows of this many batches


def batches(items: list[io.Item], batch_size: int) -> Iterator[list[io.Item]]:
    """`items` in batches of similar length: each window of `BUCKET_BATCHES` batches is sorted
    by token count (stable), so padding stays small while the order stays close to the input's."""
    window = batch_size * BUCKET_BATCHES
    for start in range(0, len(items), window):
        part = sorted(items[start : start + window], key=lambda item: item.length)
        for i in range(0, len(part), batch_size):
            yield part[i : i + batch_size]


def padding_waste(groups: list[list[io.Item]]) -> float:
    """Padded positions per real token over `groups` (0: no padding)."""
    real = sum(item.length for group in groups for item in group)
    padded = sum(max(item.length for item in group) * len(group) for group in groups if group)
    return (padded - real) / real if real else 0.0


class Writer:
    """Rows buffered and written as shards of `shard_size` rows."""

    def __init__(self, out: Path, shard_size: int) -> None:
        self.out, self.shard_size = out, shard_size
        self.buffer: list[dict[str, Any]] = []
        self.written = 0

    def add(self, new: list[dict[str, Any]]) -> None:
        """Buffer `new` rows; write a shard when the buffer is full."""
        self.buffer += new
        if len(self.buffer) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows (if any) as the next shard."""
        if self.buffer:
            shards.write_shard(self.out, shards.next_index(self.out), self.buffer)
            self.written += len(self.buffer)
            self.buffer = []


def run(
    model: "HookedModel",
    corpus: io.Corpus,
    out: Path,
    options: CorpusOptions,
    manifest: dict[str, Any],
    *,
    shard_size: int = 256,
    quiet: bool = False,
) -> dict[str, Any]:
    """Compute every item of `corpus` not yet in `out`; returns the final manifest (also
    written to `out/manifest.json`)."""
    done = shards.done_ids(out)
    pending = [item for item in corpus.items if item.record["id"] not in done]
    groups = list(batches(pending, options.batch_size))
    writer = Writer(out, shard_size)
    manifest["padding_waste"] = padding_waste(groups)
    manifest["counts"].update(skipped=len(corpus.items) - len(pending), computed=0)
    start = time.perf_counter()
    try:
        _compute(model, groups, options, writer, quiet)
    except BaseException:  # Ctrl-C included: keep what was computed, say the run is incomplete
        try:
            writer.flush()
        finally:  # even when that last shard cannot be written: the manifest says incomplete
            _finish(manifest, out, writer, start, complete=False)
        raise
    writer.flush()
    return _finish(manifest, out, writer, start, complete=True)


def _compute(
    model: "HookedModel",
    groups: list[list[io.Item]],
    options: CorpusOptions,
    writer: Writer,
    quiet: bool,
) -> None:
    from tqdm.auto import tqdm

    total = sum(len(g) for g in groups)
    with tqdm(
        total=total, unit="ex", desc=options.method, disable=quiet or not total, file=sys.stderr
    ) as bar:
        for group in groups:
            writer.add(rows.process(model, options.method, [i.record for i in group], options))
            bar.update(len(group))


def _finish(
    manifest: dict[str, Any], out: Path, writer: Writer, start: float, *, complete: bool
) -> dict[str, Any]:
    seconds = time.perf_counter() - start
    manifest["complete"] = complete
    manifest["counts"]["computed"] = writer.written
    manifest["counts"]["done"] = len(shards.done_ids(out))
    manifest["timings"]["compute_s"] = seconds
    manifest["timings"]["examples_per_s"] = writer.written / seconds if seconds > 0 else None
    manifest["shards"] = sorted(p.name for p in shards.shard_paths(out).values())
    shards.write_manifest(out, manifest)
    return manifest
