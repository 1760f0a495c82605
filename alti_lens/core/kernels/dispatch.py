"""The one choice of distance kernel, and the one place that reads the `kernel` keyword and the
environment variables that steer it.

`choose(kernel, device, dtype, pairs)` returns "reference" (the chunked PyTorch path of
`core.measures`), "fused" (the C++ CPU kernel, `fused.py`) or "triton" (the CUDA kernel,
`triton.py`):

1. The keyword wins; "auto" (the default) defers to `ALTI_LENS_KERNEL` (auto, fused, reference,
   triton; default auto). Both are validated here: a wrong value is an `InputError`.
2. "reference": the PyTorch path, always.
3. "triton", and "fused" or "auto" on a CUDA tensor (the device's fused kernel): the Triton kernel
   where it applies (`triton_applies`: CUDA tensors, or CPU tensors under `TRITON_INTERPRET=1`;
   float32 or float64; `triton` importable). Where not, "auto" is the PyTorch path and a forced
   kernel a `KernelUnavailableError`.
4. Otherwise the C++ kernel: "fused" at every size, "auto" only for layers of at least
   `CROSSOVER_PAIRS` attended (query row, key) pairs (`wants_cpu_kernel`; below, the PyTorch path
   is as fast and nothing is compiled). It runs on CPU tensors of float32 or float64 where it
   builds (compiled on first use, `fused.extension`). Where it cannot run, "auto" is the PyTorch
   path (a failed build warns) and "fused" a `KernelUnavailableError`; with
   `ALTI_LENS_REQUIRE_KERNEL=1` (CI) a failed build is an error in "auto" too.

`ALTI_LENS_TRITON_PRECISION` (tf32x3, the default, or ieee) is read here too (`triton_precision`).
"""

import os
from typing import Any, Literal

import torch

from alti_lens._types import KERNELS, Kernel
from alti_lens.errors import InputError, KernelUnavailableError

from . import fused

Choice = Literal["reference", "fused", "triton"]

# Attended (query row, key) pairs of one layer from which `auto` uses (and compiles) the C++
# kernel, ~128 causal tokens. Measured by benchmarks/bench_crossover.py (2-core Xeon, 2 threads,
# float32, one causal layer): GPT-2-small shape 14.9 ms reference against 5.3 ms kernel at 128
# tokens (2.8×), 208 against 41 ms at 512 (5×), but ≤ 1.3 ms saved per layer at ≤ 64 tokens (demo
# shape, 4 heads × 64: 2.8 against 0.8 ms at 128 tokens, ≤ 0.5 ms saved below). The ~1 s compile
# is repaid by ~9 GPT-2-small inputs of 128 tokens or one of 512; below, by hundreds.
CROSSOVER_PAIRS = 8192
_KERNEL_DTYPES = (torch.float32, torch.float64)
_TRITON_PRECISIONS = ("tf32x3", "ieee")
_FIX = 'use kernel="auto" (or unset ALTI_LENS_KERNEL) to fall back to the PyTorch path'


def requested(kernel: str = "auto") -> Kernel:
    """The kernel asked for: the keyword, or `ALTI_LENS_KERNEL` where the keyword is "auto"."""
    if kernel not in KERNELS:
        raise InputError(
            f"kernel must be one of {', '.join(KERNELS)}; got {kernel!r}. Leave it at 'auto' to "
            "let alti_lens choose by device and size."
        )
    if kernel != "auto":
        return kernel
    value = os.environ.get("ALTI_LENS_KERNEL", "auto").lower()
    for name in KERNELS:  # narrowed to the Literal by comparison
        if value == name:
            return name
    raise InputError(
        f"ALTI_LENS_KERNEL must be one of {', '.join(KERNELS)}; got {value!r}. Unset it (auto: "
        "chosen by device and size) or set one of those."
    )


def kernel_required() -> bool:
    """`ALTI_LENS_REQUIRE_KERNEL=1` (CI): a kernel that cannot be built is an error, not a skip."""
    return os.environ.get("ALTI_LENS_REQUIRE_KERNEL") == "1"


def build_required(kernel: str = "auto") -> bool:
    """Whether a C++ kernel that cannot be built is an error: it is asked for (`kernel="fused"`,
    `ALTI_LENS_KERNEL=fused`) or `ALTI_LENS_REQUIRE_KERNEL=1`."""
    return requested(kernel) == "fused" or kernel_required()


def cpu_kernel(kernel: str = "auto") -> Any | None:
    """The C++ kernel library, or None where it cannot be built (warns); a failed build raises
    `KernelUnavailableError` where `build_required(kernel)` (tests skip with this, so that CI's
    `ALTI_LENS_REQUIRE_KERNEL=1` turns their skips into failures)."""
    return fused.extension(required=build_required(kernel))


def triton_interpreting() -> bool:
    """`TRITON_INTERPRET`: Triton's interpreter runs its kernels on CPU tensors (tests)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def triton_available() -> bool:
    """Whether Triton can be imported (no GPU is needed for the interpreter)."""
    try:
        import triton  # noqa: F401  # pyright: ignore[reportMissingImports]
    except ImportError:
        return False
    return True


def triton_applies(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the Triton kernel can run on such tensors here: CUDA tensors, or CPU tensors under
    the interpreter; float32 or float64; Triton importable."""
    if dtype not in _KERNEL_DTYPES or not triton_available():
        return False
    return device.type == "cuda" or (device.type == "cpu" and triton_interpreting())


def triton_precision(dtype: torch.dtype) -> str:
    """The Triton kernel's products: IEEE float64 for float64, else `ALTI_LENS_TRITON_PRECISION`
    (tf32x3, three TF32 products at fp32 accuracy, the default; or ieee)."""
    if dtype == torch.float64:
        return "ieee64"
    value = os.environ.get("ALTI_LENS_TRITON_PRECISION", "tf32x3").lower()
    if value not in _TRITON_PRECISIONS:
        raise InputError(
            f"ALTI_LENS_TRITON_PRECISION must be one of {', '.join(_TRITON_PRECISIONS)}; got "
            f"{value!r}. Unset it (tf32x3: fp32 accuracy on tensor cores) or set ieee."
        )
    return value


def wants_cpu_kernel(pairs: int, kernel: str = "auto") -> bool:
    """Whether a non-CUDA layer of `pairs` attended (query row, key) pairs is meant for the C++
    kernel (rule 4): "fused" at every size, "reference" and "triton" never, "auto" from
    `CROSSOVER_PAIRS` on. Deciding says nothing about whether it compiles."""
    wanted = requested(kernel)
    return wanted == "fused" or (wanted == "auto" and pairs >= CROSSOVER_PAIRS)


def choose(kernel: str, device: torch.device, dtype: torch.dtype, pairs: int) -> Choice:
    """The distance kernel for one layer's tensors (`device`, `dtype`) of `pairs` attended
    (query row, key) pairs; see the module docstring for the rules."""
    wanted = requested(kernel)
    if wanted == "reference":
        return "reference"
    if wanted == "triton" or device.type == "cuda":
        if triton_applies(device, dtype):
            return "triton"
        if wanted == "auto":
            return "reference"
        raise KernelUnavailableError(
            f"the {wanted} kernel cannot run on {dtype} tensors on {device}: the Triton kernel "
            "runs on CUDA tensors (or CPU tensors with TRITON_INTERPRET=1) of float32 or float64 "
            f"where `triton` is installed{'' if triton_available() else ' (it is not)'}; {_FIX}"
        )
    if not wants_cpu_kernel(pairs, wanted):
        return "reference"  # a small layer in auto mode: nothing is compiled
    runs = device.type == "cpu" and dtype in _KERNEL_DTYPES
    if runs and cpu_kernel(wanted) is not None:
        return "fused"
    if wanted == "auto":
        return "reference"
    raise KernelUnavailableError(
        f"the fused kernel cannot run on {dtype} tensors on {device}: the C++ kernel runs on CPU "
        "tensors of float32 or float64 where it compiles (a C++ compiler, `c++`/`g++` or $CXX); "
        f"{_FIX}"
    )
