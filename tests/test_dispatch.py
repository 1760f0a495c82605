"""The one kernel choice (`alti_lens.core.kernels.dispatch`): every rule, the environment, the
errors. Nothing here compiles or runs a kernel: `fused.extension` and Triton's availability are
replaced where a branch needs them (test_fused.py and test_triton.py run the kernels)."""

from pathlib import Path

import pytest
import torch

from alti_lens.core.kernels import dispatch, fused
from alti_lens.errors import AltiLensError, InputError, KernelUnavailableError

CPU, CUDA, META = torch.device("cpu"), torch.device("cuda"), torch.device("meta")
F32, F64, F16 = torch.float32, torch.float64, torch.float16
BIG = 10**9


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALTI_LENS_KERNEL", "ALTI_LENS_REQUIRE_KERNEL", "ALTI_LENS_TRITON_PRECISION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "0")


def fake_extension(monkeypatch: pytest.MonkeyPatch, builds: bool) -> list[bool]:
    """`fused.extension` that records its `required` argument and builds or not."""
    calls: list[bool] = []

    def extension(required: bool = False) -> object | None:
        calls.append(required)
        if not builds and required:
            raise KernelUnavailableError("the fused ALTI kernel could not be built: (test)")
        return object() if builds else None

    monkeypatch.setattr(fused, "extension", extension)
    return calls


def triton_present(monkeypatch: pytest.MonkeyPatch, present: bool) -> None:
    monkeypatch.setattr(dispatch, "triton_available", lambda: present)


def test_auto_uses_the_kernel_from_the_crossover_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The size rule, both ways: auto below the crossover is the PyTorch path (no compile), from
    it the kernel; the environment and the caller's `kernel` override it."""
    assert not dispatch.wants_cpu_kernel(dispatch.CROSSOVER_PAIRS - 1)
    assert dispatch.wants_cpu_kernel(dispatch.CROSSOVER_PAIRS)
    assert dispatch.wants_cpu_kernel(1, kernel="fused")
    assert not dispatch.wants_cpu_kernel(10**9, kernel="reference")
    assert not dispatch.wants_cpu_kernel(10**9, kernel="triton")
    monkeypatch.setenv("ALTI_LENS_KERNEL", "fused")
    assert dispatch.wants_cpu_kernel(1)
    monkeypatch.setenv("ALTI_LENS_KERNEL", "reference")
    assert not dispatch.wants_cpu_kernel(10**9)
    assert dispatch.wants_cpu_kernel(1, kernel="fused")


def test_the_keyword_wins_and_auto_defers_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert dispatch.requested() == "auto"
    for value in ("auto", "fused", "reference", "triton", "FUSED"):
        monkeypatch.setenv("ALTI_LENS_KERNEL", value)
        assert dispatch.requested("auto") == value.lower()
        assert dispatch.requested("reference") == "reference"


def test_wrong_values_are_input_errors_naming_the_valid_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(InputError, match=r"kernel must be one of auto, fused, reference, triton"):
        dispatch.choose("cuda", CPU, F64, BIG)
    monkeypatch.setenv("ALTI_LENS_KERNEL", "fast")
    with pytest.raises(ValueError, match=r"ALTI_LENS_KERNEL must be one of .*got 'fast'.*Unset"):
        dispatch.choose("auto", CPU, F64, BIG)
    assert dispatch.choose("reference", CPU, F64, BIG) == "reference"  # the keyword wins


def test_reference_never_looks_for_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_extension(monkeypatch, builds=True)
    triton_present(monkeypatch, True)
    for device in (CPU, CUDA):
        assert dispatch.choose("reference", device, F32, BIG) == "reference"
    monkeypatch.setenv("ALTI_LENS_KERNEL", "reference")
    assert dispatch.choose("auto", CPU, F32, BIG) == "reference"
    assert dispatch.choose("auto", CUDA, F32, BIG) == "reference"
    assert calls == []


@pytest.mark.parametrize("kernel", ["auto", "fused"])
def test_cpu_kernel_by_size_in_auto_and_always_when_forced(
    kernel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_extension(monkeypatch, builds=True)
    below = dispatch.CROSSOVER_PAIRS - 1
    assert dispatch.choose(kernel, CPU, F64, below) == (
        "reference" if kernel == "auto" else "fused"
    )
    assert calls == ([] if kernel == "auto" else [True])  # auto below: nothing compiled
    assert dispatch.choose(kernel, CPU, F32, dispatch.CROSSOVER_PAIRS) == "fused"
    monkeypatch.setenv("ALTI_LENS_KERNEL", "fused")
    assert dispatch.choose(kernel, CPU, F32, 1) == "fused"


def test_where_the_cpu_kernel_cannot_run_auto_falls_back_and_fused_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = fake_extension(monkeypatch, builds=False)
    assert dispatch.choose("auto", CPU, F64, BIG) == "reference"  # failed build: PyTorch path
    assert calls == [False]
    with pytest.raises(KernelUnavailableError, match="could not be built"):
        dispatch.choose("fused", CPU, F64, BIG)
    assert calls[-1] is True
    fake_extension(monkeypatch, builds=True)
    for device, dtype in ((CPU, F16), (META, F32)):
        assert dispatch.choose("auto", device, dtype, BIG) == "reference"
        with pytest.raises(KernelUnavailableError, match=r"CPU tensors of float32 or float64"):
            dispatch.choose("fused", device, dtype, BIG)


@pytest.mark.parametrize(("name", "value"), [("ALTI_LENS_REQUIRE_KERNEL", "1"),
                                             ("ALTI_LENS_KERNEL", "fused")])  # fmt: skip
def test_required_makes_a_failed_build_an_error(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_extension(monkeypatch, builds=False)
    monkeypatch.setenv(name, value)
    assert dispatch.kernel_required() == (name == "ALTI_LENS_REQUIRE_KERNEL")
    with pytest.raises(RuntimeError, match="could not be built"):
        dispatch.choose("auto", CPU, F64, BIG)
    assert calls == [True]


def test_a_failed_build_warns_in_auto_and_raises_when_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real loader with no compiler: a warning and the PyTorch path, or an error where the
    kernel is required (by the keyword or either environment variable, which `dispatch.cpu_kernel`
    reads)."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(fused, "_state", {})
    with pytest.warns(UserWarning, match="could not be compiled"):
        assert fused.extension() is None
    monkeypatch.setattr(fused, "_state", {})
    with pytest.raises(KernelUnavailableError, match=r"could not be built.*C\+\+ compiler"):
        fused.extension(required=True)
    for name, value in (("ALTI_LENS_REQUIRE_KERNEL", "1"), ("ALTI_LENS_KERNEL", "fused")):
        with monkeypatch.context() as m:
            m.setenv(name, value)
            assert dispatch.build_required()
            for build in (dispatch.cpu_kernel, lambda: dispatch.choose("auto", CPU, F64, BIG)):
                monkeypatch.setattr(fused, "_state", {})
                with pytest.raises(RuntimeError, match="could not be built"):
                    build()
    assert not dispatch.build_required() and dispatch.build_required("fused")


@pytest.mark.parametrize("kernel", ["auto", "fused", "triton"])
def test_cuda_tensors_go_to_triton(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_extension(monkeypatch, builds=True)
    triton_present(monkeypatch, True)
    assert dispatch.choose(kernel, CUDA, F32, 1) == "triton"
    assert dispatch.choose(kernel, CUDA, F64, BIG) == "triton"
    assert calls == []  # the C++ kernel is never a CUDA tensor's
    # Triton cannot run: no Triton, or a dtype it does not take
    for present, dtype in ((False, F32), (True, F16)):
        triton_present(monkeypatch, present)
        if kernel == "auto":
            assert dispatch.choose(kernel, CUDA, dtype, BIG) == "reference"
        else:
            with pytest.raises(KernelUnavailableError, match=r"CUDA tensors .* float32 or float64"):
                dispatch.choose(kernel, CUDA, dtype, BIG)


def test_triton_on_cpu_tensors_only_under_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_extension(monkeypatch, builds=True)
    triton_present(monkeypatch, True)
    assert not dispatch.triton_applies(CPU, F64)
    with pytest.raises(KernelUnavailableError, match="TRITON_INTERPRET=1") as raised:
        dispatch.choose("triton", CPU, F64, BIG)
    assert isinstance(raised.value, AltiLensError) and 'kernel="auto"' in str(raised.value)
    monkeypatch.setenv("ALTI_LENS_KERNEL", "triton")  # the environment forces it the same way
    with pytest.raises(KernelUnavailableError, match="TRITON_INTERPRET=1"):
        dispatch.choose("auto", CPU, F64, BIG)
    for value in ("1", "true", "ON", "yes"):
        monkeypatch.setenv("TRITON_INTERPRET", value)
        assert dispatch.triton_interpreting() and dispatch.triton_applies(CPU, F64)
        assert dispatch.choose("triton", CPU, F32, 1) == "triton"
        assert dispatch.choose("auto", CPU, F32, BIG) == "triton"  # ALTI_LENS_KERNEL=triton
    monkeypatch.delenv("ALTI_LENS_KERNEL")
    assert dispatch.choose("auto", CPU, F32, BIG) == "fused"  # auto never picks Triton on a CPU


def test_triton_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    assert dispatch.triton_precision(F64) == "ieee64"
    assert dispatch.triton_precision(F32) == "tf32x3"
    monkeypatch.setenv("ALTI_LENS_TRITON_PRECISION", "IEEE")
    assert dispatch.triton_precision(F32) == "ieee"
    assert dispatch.triton_precision(F64) == "ieee64"
    monkeypatch.setenv("ALTI_LENS_TRITON_PRECISION", "tf32")
    with pytest.raises(InputError, match=r"must be one of tf32x3, ieee; got 'tf32'"):
        dispatch.triton_precision(F32)
