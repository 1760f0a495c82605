"""The one error hierarchy of `alti_lens`.

Every message says what was expected, what came, and how to fix it. The classes also derive from the
built-in exception a Python user would try first (`ValueError`, `TypeError`), so both
`except AltiLensError` and `except ValueError` work.
"""

import sys
import warnings
from pathlib import Path

_PACKAGE = str(Path(__file__).parent)
_WRAPPERS = ("jaxtyping", "beartype", "typeguard")  # runtime type checkers' frames


def warn_user(message: str, category: type[Warning]) -> None:
    """`warnings.warn` pointing at the user's line: the first frame outside alti_lens (and the
    type checkers' wrappers), however deep inside the package the warning was raised."""
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is the caller of warn_user
    while frame is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE)
        or any(f"{name}/" in frame.f_code.co_filename for name in _WRAPPERS)
    ):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)


class AltiLensError(Exception):
    """Base class of every error raised by `alti_lens`."""


class InputError(AltiLensError, ValueError):
    """The inputs, mask or options passed to an entry point are not valid."""


class UnsupportedModelError(AltiLensError, TypeError):
    """The model (or one of its blocks) is not one `alti_lens` can decompose."""


class ModelForwardError(UnsupportedModelError):
    """The model's own forward pass failed (inside TransformerLens or transformers, not in
    `alti_lens`): no decomposition can be read from a model that does not run. The original
    exception is chained as `__cause__`."""


class ModelUnavailableError(AltiLensError, OSError):
    """A model named by string could not be loaded here (not built in, not a directory, no hub)."""


class ReconstructionError(AltiLensError):
    """The exactness check failed: the decomposition does not reproduce the model's own output.

    This signals a model, block kind or weight layout that `alti_lens` does not support; the
    contributions it would return would be wrong.
    """

    def __init__(
        self, message: str, *, layer: int, error: float, tolerance: float, part: str = ""
    ) -> None:
        super().__init__(message)
        self.layer = layer
        self.part = part  # "" for a single stack; "encoder", "decoder cross-attention", ...
        self.error = error
        self.tolerance = tolerance


class NonFiniteActivationError(AltiLensError, FloatingPointError):
    """The model produced NaN or infinite activations, so no decomposition is meaningful."""


class AltiLensWarning(UserWarning):
    """Base class of every warning issued by `alti_lens`."""


class BridgeMismatchWarning(AltiLensWarning):
    """The TransformerLens bridge computes other logits than the Hugging Face model it wraps:
    ALTI is then exact for the bridge's model, not for the Hugging Face one."""


class WeightProcessingWarning(AltiLensWarning):
    """The weights were centred or had value biases folded, which changes ALTI's numbers."""


class UnknownTokenWarning(AltiLensWarning):
    """Text mapped to the tokenizer's unknown token: the model cannot read those words."""


class KernelUnavailableError(AltiLensError, RuntimeError):
    """A distance kernel was required (`kernel="fused"` / `"triton"`, `ALTI_LENS_KERNEL`,
    `ALTI_LENS_REQUIRE_KERNEL=1`) but cannot run on these tensors here."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong kind, e.g. a report item that is not a result (also a TypeError)."""


class InputIndexError(InputError, IndexError):
    """An index (sequence, layer, head, position) outside what a result holds (also an
    IndexError)."""


class MissingDependencyError(AltiLensError, ImportError):
    """An optional package a feature needs is not installed (also an ImportError): the message
    names the `pip install` that fixes it."""


class ResultFileNotFoundError(AltiLensError, FileNotFoundError):
    """A result file to load does not exist (also a FileNotFoundError)."""
