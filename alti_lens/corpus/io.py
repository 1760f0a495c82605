"""Reading a corpus: JSONL, CSV, Parquet or a Hugging Face `datasets` dataset saved to disk, into
validated records, each with its line (or row) number.

Everything is checked before any model work: malformed lines, missing fields, empty texts,
texts longer than the model's context, duplicate ids. The first problems are raised as one
`InputError` naming the lines; with `skip_bad=True` they become rejects (line, reason) instead.
"""

import csv
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alti_lens.errors import InputError, MissingDependencyError, UnknownTokenWarning

from .options import CorpusOptions

if TYPE_CHECKING:
    from alti_lens.models import HookedModel

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")
SHOWN = 5  # bad lines named in an error message
TOKENIZE_CHUNK = 256  # texts tokenized at once when measuring lengths


@dataclass(frozen=True)
class Item:
    """One valid input record: `record` is what `rows.process` takes ("id" and the method's
    fields under their canonical names), `line` where it came from, `length` its token count."""

    line: int
    record: dict[str, Any]
    length: int = 0


@dataclass(frozen=True)
class Reject:
    """One input record left out: its line (or row) number, id where known, and why."""

    line: int
    reason: str
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The reject as a JSON-able dict (a line of the rejects file)."""
        return {"line": self.line, "id": self.id, "reason": self.reason}


@dataclass
class Corpus:
    """The validated input: the items in input order, the rejects, and what the lines are
    called ("line" in text files, "row" in Parquet and `datasets`)."""

    items: list[Item]
    rejects: list[Reject] = field(default_factory=list)
    unit: str = "line"


def read(path: str | Path) -> tuple[Iterator[tuple[int, Any]], str]:
    """The raw records of `path` as (line or row number, value) pairs, and the unit's name.

    A value is a dict, or an `Exception` for a line that could not be parsed. Unreadable paths
    and unknown formats raise `InputError`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"input {path} does not exist; expected a JSONL, CSV or Parquet file or a `datasets` "
            "dataset saved to disk (a directory). Fix: check the path."
        )
    if path.is_dir():
        return _read_directory(path), "row"
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path), "line"
    if suffix == ".csv":
        return _read_csv(path), "line"
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(path), "row"
    raise InputError(
        f"input {path} has the suffix {suffix!r}; expected .jsonl, .csv, .parquet or a directory "
        "written by datasets' save_to_disk. Fix: convert the input to one of them."
    )


def _open(path: Path) -> Any:
    try:
        return path.open(encoding="utf-8", newline="")
    except OSError as err:
        raise InputError(f"cannot read input {path}: {err.strerror}. Fix: check the path.") from err


def _read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with _open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue  # blank lines (a trailing newline) hold no record
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                yield number, ValueError(f"malformed JSON ({err.msg} at column {err.colno})")


def _read_csv(path: Path) -> Iterator[tuple[int, Any]]:
    with _open(path) as f:
        reader = csv.DictReader(f)
        try:
            for record in reader:
                # a short row has None for its missing columns: those fields are missing
                yield reader.line_num, {k: v for k, v in record.items() if v is not None}
        except (csv.Error, UnicodeDecodeError) as err:
            yield reader.line_num, ValueError(f"malformed CSV ({err})")


def _read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    pq = pyarrow_parquet()
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read Parquet input {path}: {err}. Fix: check the file.") from err
    yield from enumerate(table.to_pylist(), start=1)


def _read_directory(path: Path) -> Iterator[tuple[int, Any]]:
    if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
        yield from enumerate(_load_dataset(path), start=1)
        return
    files = sorted(path.glob("*.parquet"))
    if not files:
        raise InputError(
            f"input directory {path} is neither a `datasets` dataset saved to disk (no state.json) "
            "nor a folder of .parquet files. Fix: pass the file, or datasets' save_to_disk output."
        )
    number = 0
    for file in files:
        for _, record in _read_parquet(file):
            number += 1
            yield number, record


def _load_dataset(path: Path) -> Any:
    try:
        import datasets
    except ImportError as err:
        raise MissingDependencyError(
            f"reading {path} (a `datasets` dataset) needs the datasets package. "
            "Fix: pip install datasets"
        ) from err
    try:
        data = datasets.load_from_disk(str(path))
    except (OSError, ValueError, FileNotFoundError) as err:
        raise InputError(f"cannot read the dataset at {path}: {err}. Fix: check it.") from err
    if isinstance(data, datasets.DatasetDict):
        if len(data) != 1:
            raise InputError(
                f"{path} is a DatasetDict with splits {sorted(data)}; expected one dataset. "
                f"Fix: save one split (e.g. data['test'].save_to_disk(...)) and pass that."
            )
        data = next(iter(data.values()))
    return data


def pyarrow_parquet() -> Any:
    """`pyarrow.parquet`, or `MissingDependencyError` saying how to install it."""
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise MissingDependencyError(
            "corpus runs read and write Parquet with pyarrow. Fix: pip install 'alti-lens[corpus]'"
        ) from err
    return pq


def load(
    path: str | Path,
    options: CorpusOptions,
    model: "HookedModel | None" = None,
    *,
    skip_bad: bool = False,
) -> Corpus:
    """Read and validate `path`: the valid items, and the rejects (only with `skip_bad`;
    otherwise the first problems raise `InputError`). With `model`, token counts are measured
    and texts longer than its context rejected."""
    raw, unit = read(path)
    items: list[Item] = []
    rejects: list[Reject] = []
    seen: set[str] = set()
    for line, value in raw:
        item = _record(line, value, options)
        if isinstance(item, Reject):
            rejects.append(item)
        elif item.record["id"] in seen:
            rejects.append(Reject(line, f"duplicate id {item.record['id']!r}", item.record["id"]))
        else:
            seen.add(item.record["id"])
            items.append(item)
    if model is not None:
        items, too_long = _measure(model, items, options)
        rejects += too_long
    rejects.sort(key=lambda r: r.line)
    if rejects and not skip_bad:
        raise InputError(_message(path, rejects, unit))
    return Corpus(items, rejects, unit)


def _record(line: int, value: Any, options: CorpusOptions) -> Item | Reject:
    """One raw value as a valid item (canonical field names), or why it is not one."""
    if isinstance(value, Exception):
        return Reject(line, str(value))
    if not isinstance(value, dict):
        return Reject(line, f"expected a JSON object (a record), got {type(value).__name__}")
    raw_id = value.get(options.id_field)
    if isinstance(raw_id, (bool, float, list, dict)):
        return Reject(line, f"id field {options.id_field!r} must be a string or an integer")
    record_id = str(line) if raw_id is None or raw_id == "" else str(raw_id)
    record: dict[str, Any] = {"id": record_id}
    canonical = {
        options.text_field: "text", options.source_field: "source",
        options.target_field: "target",
    }  # fmt: skip
    for name in options.fields():
        text = value.get(name)
        if text is None:
            return Reject(line, f"missing field {name!r}", record_id)
        if not isinstance(text, str):
            return Reject(
                line, f"field {name!r} must be text, got {type(text).__name__}", record_id
            )
        if not text.strip():
            return Reject(line, f"empty text in field {name!r}", record_id)
        record[canonical[name]] = text
    if options.method == "alti_plus":
        target = value.get(options.target_field)
        if target is not None and (not isinstance(target, str) or not target.strip()):
            return Reject(line, f"field {options.target_field!r} must be non-empty text", record_id)
        record["target"] = target
    return Item(line, record)


def _measure(
    model: "HookedModel", items: list[Item], options: CorpusOptions
) -> tuple[list[Item], list[Reject]]:
    """Items with their token counts; those longer than the model's context as rejects."""
    from alti_lens import models

    limit = models.n_ctx(model)
    key = "source" if options.method == "alti_plus" else "text"
    lengths = _lengths(model, [item.record[key] for item in items])
    if options.method == "alti_plus":
        # the decoder input is the tokenized target shifted right, as long as it: a target of
        # n_ctx tokens is explained, one of n_ctx + 1 refused (as alti_plus does)
        targets = [(i, item.record["target"]) for i, item in enumerate(items)]
        targets = [(i, t) for i, t in targets if t is not None]
        target_lengths = dict(
            zip([i for i, _ in targets], _lengths(model, [t for _, t in targets]), strict=True)
        )
    else:
        target_lengths = {}
    kept, rejects = [], []
    for i, (item, n) in enumerate(zip(items, lengths, strict=True)):
        longest = max(n, target_lengths.get(i, 0))
        if longest > limit:
            what = key if n > limit else "target"
            reason = f"{what} is {longest} tokens, longer than the model's context of {limit}"
            rejects.append(Reject(item.line, reason, item.record["id"]))
        else:
            kept.append(Item(item.line, item.record, n))
    return kept, rejects


def _lengths(model: "HookedModel", texts: list[str]) -> list[int]:
    """Token counts of `texts`, tokenized exactly as the API does."""
    from alti_lens import models

    counts: list[int] = []
    with warnings.catch_warnings():
        # unknown words are warned of once more when the batch is computed
        warnings.simplefilter("ignore", UnknownTokenWarning)
        for start in range(0, len(texts), TOKENIZE_CHUNK):
            _, mask = models.tokenize(model, texts[start : start + TOKENIZE_CHUNK])
            counts += [int(n) for n in mask.sum(-1).tolist()]
    return counts


def _message(path: str | Path, rejects: list[Reject], unit: str) -> str:
    shown = "; ".join(f"{unit} {r.line}: {r.reason}" for r in rejects[:SHOWN])
    more = f" (and {len(rejects) - SHOWN} more)" if len(rejects) > SHOWN else ""
    return (
        f"{len(rejects)} bad record(s) in {path}: {shown}{more}. Nothing was computed. "
        "Fix: correct those records, or pass skip_bad=True (--skip-bad) to leave them out and "
        "list them in rejects.jsonl."
    )


def write_rejects(path: Path, rejects: list[Reject]) -> None:
    """The rejects as JSON lines (line, id, reason) at `path`, written then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for reject in rejects:
            f.write(json.dumps(reject.to_dict()) + "\n")
    tmp.replace(path)
