"""ALTI token-contribution attributions for TransformerLens models.

`alti(model, "The cat sat on the mat").rollout[0, -1]` is how much each input token contributes to
each token's representation after the last layer (Ferrando et al. 2022).

`import alti_lens` is light: the version and the error classes are loaded at once, everything that
needs torch or TransformerLens (`alti`, `load_model`, the result classes, `MEASURES`, the
submodules) on first use (PEP 562), so the command line answers `--help` without loading torch.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._types import Measure, Rows
from ._version import __version__
from .errors import (
    AltiLensError,
    AltiLensWarning,
    BridgeMismatchWarning,
    InputError,
    InputIndexError,
    InputTypeError,
    KernelUnavailableError,
    MissingDependencyError,
    ModelForwardError,
    ModelUnavailableError,
    NonFiniteActivationError,
    ReconstructionError,
    ResultFileNotFoundError,
    UnknownTokenWarning,
    UnsupportedModelError,
    WeightProcessingWarning,
)

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time `__getattr__` loads these
    from ._types import MEASURES
    from .api import alti
    from .corpus import run as run_corpus
    from .flow_api import flow_graph
    from .logit_api import alti_logit
    from .plus import alti_plus
    from .readout.boot import load_model
    from .results import AltiLogitResult, AltiPlusResult, AltiResult, FlowGraph

# public name → the module that defines it (imported on first access)
_LAZY = {
    "MEASURES": "._types",
    "AltiLogitResult": ".results",
    "AltiPlusResult": ".results",
    "AltiResult": ".results",
    "FlowGraph": ".results",
    "alti": ".api",
    "flow_graph": ".flow_api",
    "alti_logit": ".logit_api",
    "alti_plus": ".plus",
    "load_model": ".readout.boot",
    "run_corpus": ".corpus",
}
# submodules reachable as attributes of the package without importing them first, as they were
# when `import alti_lens` imported everything
_SUBMODULES = frozenset(
    {
        "api",
        "cli",
        "core",
        "corpus",
        "demo",
        "evaluation",
        "flow_api",
        "inputs",
        "logit_api",
        "models",
        "plus",
        "readout",
        "render",
        "report",
        "results",
    }
)

__all__ = [
    "MEASURES",
    "AltiLensError",
    "AltiLensWarning",
    "AltiLogitResult",
    "AltiPlusResult",
    "AltiResult",
    "BridgeMismatchWarning",
    "FlowGraph",
    "InputError",
    "InputIndexError",
    "InputTypeError",
    "KernelUnavailableError",
    "Measure",
    "MissingDependencyError",
    "ModelForwardError",
    "ModelUnavailableError",
    "NonFiniteActivationError",
    "ReconstructionError",
    "ResultFileNotFoundError",
    "Rows",
    "UnknownTokenWarning",
    "UnsupportedModelError",
    "WeightProcessingWarning",
    "__version__",
    "alti",
    "alti_logit",
    "alti_plus",
    "flow_graph",
    "load_model",
    "run_corpus",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups are plain attribute reads
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)
