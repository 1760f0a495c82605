"""What every result class shares: saving and loading, and the interactive HTML report."""

from pathlib import Path
from typing import Any, TypeVar

from alti_lens.render import report

from . import storage

R = TypeVar("R", bound="ResultBase")


class ResultBase:
    """`save(path)` / `load(path)`: one safetensors file with JSON metadata, no pickle;
    `to_html()` / `save_html(path)`: a self-contained interactive report (`alti_lens.report`)."""

    def save(self, path: str | Path) -> Path:
        return storage.save(self, path)

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
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
