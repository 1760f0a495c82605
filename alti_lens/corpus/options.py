"""`CorpusOptions`: what a corpus run computes and how it reads its records (validated once).

The contract shared by the engines (`local`, `ray_engine`) and `rows.process`: a frozen,
picklable dataclass of plain values, so Ray actors receive it as it is.
"""

from dataclasses import asdict, dataclass
from typing import Any

from alti_lens._types import MEASURES, VECTOR_MEASURES
from alti_lens.errors import InputError

METHODS = ("alti", "alti_plus", "alti_logit", "flow")
SAVES = ("summary", "full")


@dataclass(frozen=True)
class CorpusOptions:
    """Options of a corpus run.

    Attributes:
        method: "alti" (decoder-only/encoder models), "alti_plus" (encoder-decoder),
            "alti_logit" (decoder-only: the logit of each record's `target` token) or "flow"
            (the route of the last token).
        text_field, source_field, target_field, id_field: the input's column names.
        batch_size: records per model call.
        save: "summary" (Parquet rows only) or "full" (also the matrices, in safetensors).
        measure: the contribution measure ("l1" is ALTI); not used by "alti_logit".
        threshold: the edge weight a flow route keeps (method "flow").
    """

    method: str
    text_field: str = "text"
    source_field: str = "source"
    target_field: str = "target"
    id_field: str = "id"
    batch_size: int = 8
    save: str = "summary"
    measure: str = "l1"
    threshold: float = 0.04

    def __post_init__(self) -> None:
        _choice("method", self.method, METHODS, 'method="alti"')
        _choice("save", self.save, SAVES, 'save="summary"')
        measures = VECTOR_MEASURES if self.method == "flow" else MEASURES
        _choice("measure", self.measure, tuple(measures), 'measure="l1" (ALTI)')
        for name in ("text_field", "source_field", "target_field", "id_field"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InputError(
                    f"{name} must be a non-empty column name; got {value!r}. "
                    f'Fix: e.g. {name}="{name.removesuffix("_field")}".'
                )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise InputError(f"batch_size must be an int >= 1; got {self.batch_size!r}.")
        if self.batch_size < 1:
            raise InputError(
                f"batch_size must be >= 1; got {self.batch_size}. Fix: e.g. batch_size=8."
            )
        if not isinstance(self.threshold, (int, float)) or not 0 <= self.threshold <= 1:
            raise InputError(
                f"threshold is an edge weight; expected a number in [0, 1], got "
                f"{self.threshold!r}. Fix: e.g. threshold=0.04 (the paper's)."
            )

    def fields(self) -> tuple[str, ...]:
        """The input columns each record must have (besides the id)."""
        if self.method == "alti_plus":
            return (self.source_field,)  # the target is optional: generated when absent
        if self.method == "alti_logit":
            return (self.text_field, self.target_field)
        return (self.text_field,)

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-able dict (for the manifest)."""
        return asdict(self)


def _choice(name: str, value: object, allowed: tuple[str, ...], example: str) -> None:
    if value not in allowed:
        raise InputError(
            f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}. "
            f"Fix: e.g. {example}."
        )
