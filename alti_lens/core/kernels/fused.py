"""The fused CPU distance kernel: `||y_i − T_i(x_j)||` without writing `T` (C++, compiled on use).

`T` is `n × n × d_model` per layer; the chunked reference path writes each chunk of it and reads
it back, so it is bound by memory traffic. The kernel forms each `T_i(x_j)` in a register tile for
a block of rows and reduces it at once (see `distances.cpp` for the loop order).

When it is used is `dispatch.choose`'s decision (`ALTI_LENS_KERNEL`, `kernel=`, the size
crossover); this module only builds, loads and calls it. The short inputs of `alti-lens demo`
never compile it.

It is plain C++ behind a C ABI, loaded with ctypes: no PyTorch headers, so it compiles in about a
second (1.0 s on a 2-core Xeon; it took ~30 s there, 100 s on a 2-core EPYC, with
`<torch/extension.h>`), threaded with OpenMP where the compiler has it, else `std::thread`. The
build is cached under `$TORCH_EXTENSIONS_DIR` (default `~/.cache/torch_extensions`) in
`alti_lens/<key>/`, the key a hash of the source, the compiler and its flags, the CPU
(`-march=native`), the torch build, the Python ABI and `sys.prefix`, so environments sharing the
cache never rebuild each other's kernel and a changed source rebuilds. Compiling is said once on
the `alti_lens` logger at WARNING level (shown on stderr without any logging set up). Where it
cannot be built (no compiler), `extension` warns and returns None (the caller uses the PyTorch
path), or raises `KernelUnavailableError` when the kernel is required.
"""

import ctypes
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from alti_lens.errors import KernelUnavailableError

_SOURCE = Path(__file__).parent / "distances.cpp"
_LIBRARY = "alti_lens_distances.so"
_FLAGS = ("-O3", "-march=native", "-std=c++17", "-fPIC", "-shared", "-pthread", "-fopenmp")
_NO_OPENMP = _FLAGS[:-1]  # where the compiler has no OpenMP (Apple clang): std::thread
_state: dict[str, Any] = {}
log = logging.getLogger(__name__)


def _compiler() -> str:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or "c++"


def _cpu() -> str:
    """What `-march=native` compiles for: the machine and, on Linux, its CPU's model and flags."""
    text = platform.machine() + platform.processor()
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return text
    wanted = ("model name", "flags", "Features", "CPU part")
    return text + "".join(sorted({line for line in info if line.startswith(wanted)}))


def cache_key(
    *,
    source: bytes | None = None,
    compiler: str | None = None,
    flags: tuple[str, ...] = _FLAGS,
    cpu: str | None = None,
    torch_build: str | None = None,
    python: str | None = None,
    prefix: str | None = None,
) -> str:
    """The build's cache key: a hash of everything that could make one build wrong for another
    environment; each part defaults to this process's (the arguments are for tests)."""
    parts = {
        "source": hashlib.sha256(
            source if source is not None else _SOURCE.read_bytes()
        ).hexdigest(),
        "compiler": compiler if compiler is not None else os.path.realpath(_compiler()),
        "flags": list(flags),
        "cpu": cpu if cpu is not None else _cpu(),
        "torch": torch_build
        if torch_build is not None
        else f"{torch.__version__} {torch.version.git_version}",
        "python": python
        if python is not None
        else f"{sys.implementation.cache_tag} {sysconfig.get_config_var('SOABI')}",
        "prefix": prefix if prefix is not None else os.path.realpath(sys.prefix),
    }
    blob = json.dumps(parts, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_dir() -> Path:
    """Where this environment's build lives: `$TORCH_EXTENSIONS_DIR/alti_lens/<cache_key()>`."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if not root:
        from torch.utils.cpp_extension import get_default_build_root

        root = get_default_build_root()
    return Path(root) / "alti_lens" / cache_key()


def _open(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    for fn in (lib.alti_distances_f32, lib.alti_distances_f64):
        fn.argtypes = [ctypes.c_void_p] * 9 + [ctypes.c_int64] * 7
        fn.restype = ctypes.c_int
    return lib


def _build(directory: Path) -> Path:
    """Compile the kernel into `directory` (atomically: concurrent builds do not clash)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / _LIBRARY
    partial = directory / f"{_LIBRARY}.{os.getpid()}.tmp"
    log.warning(
        "compiling the fused ALTI kernel for this environment (one time, ~1-3 s) into %s", directory
    )
    began = time.perf_counter()
    try:
        for flags in (_FLAGS, _NO_OPENMP):
            command = [_compiler(), *flags, str(_SOURCE), "-o", str(partial)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode == 0:
                break
        else:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    log.warning("compiled in %.1f s; cached in %s", time.perf_counter() - began, directory)
    return target


def extension(required: bool = False) -> Any | None:
    """The kernel library (loaded from this environment's cache, else compiled), or None where it
    cannot be built (warns): then the PyTorch path must be used. Where the kernel is `required` a
    failed build raises `KernelUnavailableError` instead (`dispatch.cpu_kernel` says whether the
    keyword and the environment require it)."""
    if "module" not in _state:
        try:
            directory = cache_dir()
            target = directory / _LIBRARY
            try:
                _state["module"] = _open(target)
                log.info("loaded cached fused ALTI kernel from %s", directory)
            except OSError:  # not built yet (or a damaged file): build it
                _state["module"] = _open(_build(directory))
        except Exception as err:  # no compiler, read-only cache, ...
            if required:
                raise KernelUnavailableError(
                    f"the fused ALTI kernel could not be built: {type(err).__name__}: {err}. It "
                    "needs a C++ compiler (`c++`, `g++` or $CXX) and a writable "
                    '$TORCH_EXTENSIONS_DIR; install one, or use kernel="auto" / unset '
                    "ALTI_LENS_KERNEL and ALTI_LENS_REQUIRE_KERNEL to use the PyTorch path."
                ) from err
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
    source with `T_ij = 0` scores exactly 0. Always the kernel (compiling it if need be): when to
    use it is `dispatch.choose`'s decision."""
    dtype = pattern.dtype
    if pattern.device.type != "cpu" or dtype not in (torch.float32, torch.float64):
        return None
    lib = extension()
    if lib is None:
        return None
    H, nq, nk = pattern.shape
    d = values.shape[-1]
    # The C code trusts its buffers: check every shape, dtype and key range here.
    tensors = (pattern, values, residual, output)
    shapes = ((H, nq, nk), (nk, H, d), (nq, d), (nq, d))
    if any(t.dtype != dtype or t.device.type != "cpu" for t in tensors) or any(
        tuple(t.shape) != s for t, s in zip(tensors, shapes, strict=True)
    ):
        raise ValueError(
            f"inconsistent kernel inputs: {[(t.dtype, tuple(t.shape)) for t in tensors]}"
        )
    starts = key_start.to(torch.int64).contiguous()
    stops = key_stop.to(torch.int64).clamp(max=nk).contiguous()
    if starts.shape != (nq,) or stops.shape != (nq,) or (nq and int(starts.min()) < 0):
        raise ValueError("key_start and key_stop must be one non-negative index per query row")
    A, V, R, Y = (t.contiguous() for t in tensors)
    dist = torch.zeros(nq, nk, dtype=dtype)
    sums = torch.zeros(nq, d, dtype=dtype)
    y_norm = torch.zeros(nq, dtype=dtype)
    fn = lib.alti_distances_f32 if dtype == torch.float32 else lib.alti_distances_f64
    buffers = (A, V, R, Y, starts, stops, dist, sums, y_norm)
    status = fn(
        *(t.data_ptr() for t in buffers),
        H, nq, nk, d, p, offset if diagonal else -1, torch.get_num_threads(),
    )  # fmt: skip
    if status != 0:
        raise MemoryError("the fused ALTI kernel failed (out of memory in a worker thread?)")
    return dist, sums, y_norm
