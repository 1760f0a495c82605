"""What every result class shares: saving and loading, the interactive HTML report, and the check
that a result's fields describe the same sequences, layers and positions."""

from pathlib import Path
from typing import Any, TypeVar

from torch import Tensor

from alti_lens.errors import InputError
from alti_lens.render import report

from . import storage

R = TypeVar("R", bound="ResultBase")


class ResultBase:
    """`save(path)` / `load(path)`: one safetensors file with JSON metadata, no pickle;
    `to_html()` / `save_html(path)`: a self-contained interactive report (`alti_lens.report`)."""

    def save(self, path: str | Path) -> Path:
        """Save to `path` (safetensors + JSON metadata); `load` reads it back."""
        return storage.save(self, path)

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """A result saved with `save`, of this class (an `InputError` for another kind of file)."""
        return storage.load(cls, path)

    def to_html(self, *, title: str | None = None, **options: Any) -> str:
        """An interactive HTML report of this result: one offline page (inline script and
        style, data as JSON). Options as `alti_lens.report.build_report` (`batch`, ...)."""
        return report.to_html(self, title=title, **options)

    def save_html(self, path: str | Path, *, title: str | None = None, **options: Any) -> Path:
        """Write `to_html()` to `path` (parent folders created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_html(title=title, **options), encoding="utf-8")
        return path


def size(tensor: Tensor | None, axis: int, offset: int = 0) -> int | None:
    """`tensor.shape[axis] + offset`, or None for a field that is None."""
    return None if tensor is None else tensor.shape[axis] + offset


def check_sizes(owner: str, axis: str, sizes: dict[str, int | None]) -> None:
    """Every field describing one axis (the sequences, the layers, the positions) has one size
    (fields that are None are left out); else an `InputError` listing them."""
    known = {name: n for name, n in sizes.items() if n is not None}
    if len(set(known.values())) > 1:
        listing = ", ".join(f"{name} {n}" for name, n in known.items())
        raise InputError(
            f"{owner}: the fields disagree on the number of {axis} ({listing}); expected one. "
            "Fix: make results with alti(), alti_plus() or alti_logit(), and replace fields "
            "(dataclasses.replace) with tensors of the same shapes."
        )
