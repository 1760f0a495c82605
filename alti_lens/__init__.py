"""ALTI token-contribution attributions for TransformerLens models.

`alti(model, "The cat sat on the mat").rollout[0, -1]` is how much each input token contributes to
each token's representation after the last layer (Ferrando et al. 2022).
"""

from ._version import __version__
from .api import alti
from .contributions import MEASURES
from .errors import (
    AltiLensError,
    AltiLensWarning,
    InputError,
    ModelUnavailableError,
    NonFiniteActivationError,
    ReconstructionError,
    UnknownTokenWarning,
    UnsupportedModelError,
    WeightProcessingWarning,
)
from .logit_api import alti_logit
from .plus import alti_plus
from .readout.boot import load_model
from .results import AltiLogitResult, AltiPlusResult, AltiResult

__all__ = [
    "MEASURES",
    "AltiLensError",
    "AltiLensWarning",
    "AltiLogitResult",
    "AltiPlusResult",
    "AltiResult",
    "InputError",
    "ModelUnavailableError",
    "NonFiniteActivationError",
    "ReconstructionError",
    "UnknownTokenWarning",
    "UnsupportedModelError",
    "WeightProcessingWarning",
    "__version__",
    "alti",
    "alti_logit",
    "alti_plus",
    "load_model",
]
