"""jaxtyping aliases with TransformerLens' dimension names.

`batch pos head_index kv_head d_model d_head query_pos key_pos layer` as in TransformerLens. Shapes
are checked at run time in the test suite (jaxtyping's pytest import hook with beartype), not in
production, where the check would cost time on every call.
"""

from jaxtyping import Bool, Float, Int
from torch import Tensor

Pattern = Float[Tensor, "head_index query_pos key_pos"]
BatchPattern = Float[Tensor, "batch head_index query_pos key_pos"]
Residual = Float[Tensor, "pos d_model"]
BatchResidual = Float[Tensor, "batch pos d_model"]
SourceVectors = Float[Tensor, "key_pos head_index d_model"]
Contributions = Float[Tensor, "query_pos key_pos"]
LayerContributions = Float[Tensor, "layer query_pos key_pos"]
BatchLayerContributions = Float[Tensor, "batch layer query_pos key_pos"]
Tokens = Int[Tensor, "batch pos"]
Mask = Int[Tensor, "batch pos"]
BoolMask = Bool[Tensor, "batch pos"]

__all__ = [
    "BatchLayerContributions",
    "BatchPattern",
    "BatchResidual",
    "BoolMask",
    "Contributions",
    "LayerContributions",
    "Mask",
    "Pattern",
    "Residual",
    "SourceVectors",
    "Tokens",
]
