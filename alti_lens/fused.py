"""The fused CPU distance kernel: `||y_i − T_i(x_j)||` without writing `T` (C++, compiled on use).

`T` is `n × n × d_model` per layer; the chunked reference path writes each chunk of it and reads
it back, so it is bound by memory traffic. The kernel forms each `T_i(x_j)` in a
register tile for a block of rows and reduces it at once (measured on a 2-core CPU, GPT-2-small
shape, one causal layer at 512 tokens, 2 threads: 0.04–0.09 s against 0.25–0.30 s for the
reference path; see `_kernels/distances.cpp` for the loop order).

It is compiled with the machine's C++ compiler the first time it is needed (~20 s, then cached
by PyTorch). Where that fails (no compiler), or with `ALTI_LENS_KERNEL=reference`, the pure
PyTorch path is used; `ALTI_LENS_KERNEL=fused` makes a failed build an error instead.
"""

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

_SOURCE = Path(__file__).parent / "_kernels" / "distances.cpp"
_state: dict[str, Any] = {}
log = logging.getLogger(__name__)


def mode() -> str:
    """`ALTI_LENS_KERNEL`: auto (default), fused or reference."""
    value = os.environ.get("ALTI_LENS_KERNEL", "auto").lower()
    if value not in ("auto", "fused", "reference"):
        raise ValueError(f"ALTI_LENS_KERNEL must be auto, fused or reference, got {value!r}")
    return value


def extension() -> Any | None:
    """The compiled kernel module, or None where the reference path should be used."""
    if mode() == "reference":
        return None
    if "module" not in _state:
        try:
            from torch.utils.cpp_extension import load

            log.info("compiling the fused ALTI kernel (once per machine)")
            _state["module"] = load(
                name="alti_lens_distances_v3",
                sources=[str(_SOURCE)],
                extra_cflags=["-O3", "-march=native", "-fopenmp"],
                extra_ldflags=["-fopenmp"],
                verbose=False,
            )
        except Exception as err:  # no compiler, missing headers, ...
            if mode() == "fused":
                raise
            warnings.warn(
                f"the fused ALTI kernel could not be compiled ({type(err).__name__}: {err}); "
                "using the slower PyTorch path. Set ALTI_LENS_KERNEL=reference to silence this.",
                stacklevel=2,
            )
            _state["module"] = None
    return _state["module"]


def distances(
    pattern: Float[Tensor, "head_index query_pos key_pos"],
    values: Float[Tensor, "key_pos head_index d_model"],
    residual: Float[Tensor, "query_pos d_model"],
    output: Float[Tensor, "query_pos d_model"],
    key_start: Int[Tensor, " query_pos"],
    key_stop: Int[Tensor, " query_pos"],
    p: int,
    diagonal: bool,
    offset: int = 0,
) -> (
    tuple[
        Float[Tensor, "query_pos key_pos"],
        Float[Tensor, "query_pos d_model"],
        Float[Tensor, " query_pos"],
    ]
    | None
):
    """`||y_i − T_ij||_p` (p = 1, 2) or `||T_ij||_2` (p = 0) for keys `key_start ≤ j < key_stop`,
    and `Σ_j T_ij` per row (for the exactness check); None where the kernel does not apply (not
    compiled, not a CPU tensor). With `diagonal`, row `i`'s residual is added to key
    `i + offset`. Also `||y_i||_p` (p = 1, 2), summed in the order of the distances, so that a
    source with `T_ij = 0` scores exactly 0."""
    if pattern.device.type != "cpu" or pattern.dtype not in (torch.float32, torch.float64):
        return None
    module = extension()
    if module is None:
        return None
    dist, sums, y_norm = module.distances(
        pattern, values, residual, output, key_start, key_stop, p, offset if diagonal else -1
    )
    return dist, sums, y_norm
