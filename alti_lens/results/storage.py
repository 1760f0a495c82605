"""Saving and loading results: one safetensors file, tensors plus JSON metadata (no pickle).

Every tensor field (and the tensors of dict fields and of a nested result) is stored under its
field name; everything else (token strings, metadata, which fields are None) goes into one JSON
document in the safetensors header. Loading rebuilds the same dataclass (a nested result, such as
`AltiLogitResult.alti`, as the class its field is declared with).
"""

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from alti_lens.errors import InputError, ResultFileNotFoundError

FORMAT = "alti_lens.result.v1"
T = TypeVar("T")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Tensor):
        return {"__tensor__": value.tolist(), "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and "__tensor__" in value:
        return torch.tensor(value["__tensor__"], dtype=getattr(torch, value["dtype"]))
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _flatten(result: Any, prefix: str, tensors: dict[str, Tensor], doc: dict[str, Any]) -> None:
    doc["__class__"] = type(result).__name__
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        key = prefix + f.name
        if isinstance(value, Tensor):
            # a copy: safetensors refuses tensors that share memory (a nested result's tokens)
            tensors[key] = value.detach().cpu().clone().contiguous()
            doc[f.name] = {"__stored__": "tensor"}
        elif dataclasses.is_dataclass(value):
            sub: dict[str, Any] = {}
            _flatten(value, key + ".", tensors, sub)
            doc[f.name] = {"__stored__": "result", "fields": sub}
        elif (
            isinstance(value, dict) and value and all(isinstance(v, Tensor) for v in value.values())
        ):
            for name, tensor in value.items():
                tensors[f"{key}.{name}"] = tensor.detach().cpu().clone().contiguous()
            doc[f.name] = {"__stored__": "tensors", "keys": list(value)}
        else:
            doc[f.name] = {"__stored__": "json", "value": _jsonable(value)}


def save(result: Any, path: str | Path) -> Path:
    """Write `result` to `path` (a `.safetensors` file)."""
    path = Path(path)
    tensors: dict[str, Tensor] = {}
    doc: dict[str, Any] = {}
    _flatten(result, "", tensors, doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": FORMAT, "result": json.dumps(doc)})
    return path


def _rebuild(cls: type, doc: dict[str, Any], prefix: str, tensors: dict[str, Tensor]) -> Any:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in doc:  # a field newer than the file: its default
            continue
        entry = doc[f.name]
        kind = entry["__stored__"]
        key = prefix + f.name
        if kind == "tensor":
            kwargs[f.name] = tensors[key]
        elif kind == "result":
            sub = entry["fields"]
            kwargs[f.name] = _rebuild(
                _nested_class(cls, f, sub["__class__"]), sub, key + ".", tensors
            )
        elif kind == "tensors":
            kwargs[f.name] = {name: tensors[f"{key}.{name}"] for name in entry["keys"]}
        else:
            kwargs[f.name] = _from_json(entry["value"])
    return cls(**kwargs)


def _nested_class(cls: type, f: dataclasses.Field, stored: str) -> type:
    """The dataclass a nested result field is declared with (its annotation, a class)."""
    declared = f.type
    if not (isinstance(declared, type) and dataclasses.is_dataclass(declared)):
        raise TypeError(f"{cls.__name__}.{f.name} is not declared as a result class: {declared!r}")
    if declared.__name__ != stored:
        raise InputError(
            f"the file's {cls.__name__}.{f.name} holds an {stored}; expected an "
            f"{declared.__name__}. Fix: load it with the class that saved it."
        )
    return declared


def load(cls: type[T], path: str | Path) -> T:
    """Read a result written by `save`; raises `InputError` if the file is not an alti_lens result
    file or holds another kind of result, `ResultFileNotFoundError` (a `FileNotFoundError`) if
    there is no such file."""
    if not Path(path).is_file():
        raise ResultFileNotFoundError(
            f"no result file at {str(path)!r}; expected a file written by a result's save(). Fix: "
            "check the path (save() returns the path it wrote)."
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except SafetensorError as err:
        raise InputError(
            f"{path} is not a safetensors file ({err}); expected a file written by a result's "
            "save(). Fix: pass the path save() returned."
        ) from err
    if header.get("format") != FORMAT:
        raise InputError(
            f"{path} is not an alti_lens result file (format {header.get('format')!r}, expected "
            f"{FORMAT!r}). Fix: pass a file written by a result's save()."
        )
    doc = json.loads(header["result"])
    if doc["__class__"] != cls.__name__:
        raise InputError(
            f"{path} holds an {doc['__class__']}, not an {cls.__name__}. "
            f"Fix: {doc['__class__']}.load({str(path)!r})."
        )
    return _rebuild(cls, doc, "", load_file(str(path)))
