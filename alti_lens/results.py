"""Result containers: tensors, token strings and metadata of one `alti` call.

All tensors live on the CPU, detached, in the computation dtype (float32, or float64).
"""

from dataclasses import dataclass, field
from typing import Any

from jaxtyping import Float, Int
from torch import Tensor


@dataclass(frozen=True, repr=False)
class AltiResult:
    """Per-layer ALTI contributions `C^l` and their rollout `R^l = C^l ··· C^1` (spec §3–4).

    Row `i` of a matrix is query (output) position `i`, column `j` source position `j`; every real
    row sums to 1. Padded positions are exact zeros in every matrix.
    """

    contributions: Float[Tensor, "batch layer query_pos key_pos"]
    rollout: Float[Tensor, "batch layer query_pos key_pos"]
    tokens: Int[Tensor, "batch pos"]
    str_tokens: list[list[str]]
    attention_mask: Int[Tensor, "batch pos"]
    reconstruction_error: Float[Tensor, "batch layer"]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return self.contributions.shape[1]

    def __len__(self) -> int:
        return self.contributions.shape[0]

    def __repr__(self) -> str:
        batch, layers, pos, _ = self.contributions.shape
        return (
            f"AltiResult(batch={batch}, layers={layers}, pos={pos}, "
            f"measure={self.metadata.get('measure')!r}, model={self.metadata.get('model_name')!r}, "
            f"max_reconstruction_error={float(self.reconstruction_error.max()):.2e})"
        )
