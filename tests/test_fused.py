"""The fused CPU kernel (alti_lens.core.kernels.fused) against the chunked PyTorch reference
path; its size policy, cache key, cache and compile messages.

These tests skip where the kernel cannot be built (no C++ compiler), unless
ALTI_LENS_REQUIRE_KERNEL=1 (CI), under which a kernel that does not build fails them."""

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import bridge
from terms import CASES, random_terms

from alti_lens import alti
from alti_lens.core.decompose import AttentionTerms
from alti_lens.core.kernels import dispatch, fused
from alti_lens.core.measures import source_scores

if dispatch.kernel_required():
    assert fused.extension(required=True) is not None  # raises where it cannot be built
needs_kernel = pytest.mark.skipif(
    dispatch.cpu_kernel() is None, reason="the C++ kernel could not be compiled on this machine"
)


@needs_kernel
@pytest.mark.parametrize("measure", ["l1", "l2", "norm"])
@pytest.mark.parametrize("case", list(CASES))
def test_fused_equals_reference(case: str, measure: str) -> None:
    terms = CASES[case]()
    ref = source_scores(terms, measure, kernel="reference")
    got = source_scores(terms, measure, kernel="fused")
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    assert torch.equal(got == 0, ref == 0)  # the same exact zeros


@needs_kernel
def test_row_scale_and_float32() -> None:
    terms = random_terms(n=33, heads=4, d=16, causal=True, seed=7)
    scale = torch.rand(33, dtype=torch.float64) + 0.5
    scaled = AttentionTerms(
        terms.pattern, scale, terms.values, terms.residual, terms.bias, terms.output
    )
    torch.testing.assert_close(
        source_scores(scaled, "l1", kernel="fused"),
        source_scores(scaled, "l1", kernel="reference"),
        rtol=0,
        atol=1e-12,
    )
    f32 = AttentionTerms(
        terms.pattern.float(),
        None,
        terms.values.float(),
        terms.residual.float(),
        terms.bias.float(),
        terms.output.float(),
    )
    torch.testing.assert_close(
        source_scores(f32, "l1", kernel="fused"),
        source_scores(f32, "l1", kernel="reference"),
        rtol=1e-5,
        atol=1e-4,
    )


@needs_kernel
@pytest.mark.parametrize("name", ["llama-RMS-rotary-GQA", "bert-postLN", "gemma2-sandwich"])
def test_models_give_the_same_result_with_either_kernel(name: str, monkeypatch) -> None:
    model = bridge(name, torch.float64)
    texts = ["the cat sat on the mat and it", "a big red dog"]
    monkeypatch.setenv("ALTI_LENS_KERNEL", "fused")  # these inputs are below the auto crossover
    with_fused = alti(model, texts)
    monkeypatch.setenv("ALTI_LENS_KERNEL", "reference")
    with_reference = alti(model, texts)
    torch.testing.assert_close(
        with_fused.contributions, with_reference.contributions, rtol=0, atol=1e-12
    )


@needs_kernel
@pytest.mark.parametrize(
    ("n", "heads", "d", "causal"),
    [(75, 3, 40, True), (50, 5, 33, False), (33, 12, 64, True), (97, 2, 7, True)],
)
@pytest.mark.parametrize("measure", ["l1", "l2", "norm"])
def test_several_row_blocks_and_partial_tiles(
    n: int, heads: int, d: int, causal: bool, measure: str
) -> None:
    """Sizes that cross the kernel's row blocks (32 rows), leave partial register tiles (8 rows)
    and partial feature chunks (32 floats / 16 doubles), in float64 and float32."""
    terms = random_terms(n=n, heads=heads, d=d, causal=causal, seed=n + d)
    ref = source_scores(terms, measure, kernel="reference")
    got = source_scores(terms, measure, kernel="fused")
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    assert torch.equal(got == 0, ref == 0)
    f32 = AttentionTerms(
        terms.pattern.float(), None, terms.values.float(), terms.residual.float(),
        terms.bias.float(), terms.output.float(),
    )  # fmt: skip
    got32 = source_scores(f32, measure, kernel="fused").double()
    assert float((got32 - ref).abs().max()) <= 2e-5 * float(ref.abs().max())


@needs_kernel
def test_auto_dispatch_follows_the_crossover(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through `scores_and_sums`: the kernel (which returns the sums) only from the crossover on."""
    from alti_lens.core.measures import scores_and_sums

    monkeypatch.delenv("ALTI_LENS_KERNEL", raising=False)
    terms = random_terms(n=9, heads=3, d=8, causal=True, seed=1)  # 45 attended pairs
    assert scores_and_sums(terms, "l1")[1] is None  # the PyTorch path
    monkeypatch.setattr(dispatch, "CROSSOVER_PAIRS", 45)
    assert scores_and_sums(terms, "l1")[1] is not None  # the kernel
    monkeypatch.setattr(dispatch, "CROSSOVER_PAIRS", 46)
    assert scores_and_sums(terms, "l1")[1] is None
    monkeypatch.setenv("ALTI_LENS_KERNEL", "fused")
    assert scores_and_sums(terms, "l1")[1] is not None


def test_small_inputs_never_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below the crossover `auto` does not even look for the kernel (the demo never compiles)."""
    from alti_lens.core.measures import source_scores

    monkeypatch.delenv("ALTI_LENS_KERNEL", raising=False)

    def refuse(required: bool = False) -> None:
        raise AssertionError("the kernel was asked for")

    monkeypatch.setattr(fused, "extension", refuse)
    source_scores(random_terms(n=9, heads=3, d=8, causal=True, seed=1), "l1")


def test_the_cache_key_follows_the_environment() -> None:
    key = fused.cache_key()
    assert key == fused.cache_key()
    assert fused.cache_key(prefix="/elsewhere/venv") != key
    assert fused.cache_key(torch_build="9.9.9 0123abc") != key
    assert fused.cache_key(python="cpython-312 cpython-312-x86_64-linux-gnu") != key
    assert fused.cache_key(source=b"// another kernel") != key
    assert fused.cache_key(flags=("-O2",)) != key
    assert fused.cache_key(cpu="another cpu") != key
    assert fused.cache_dir().name == key


_CHILD = textwrap.dedent(
    """
    import logging
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from alti_lens.core.kernels import dispatch, fused
    assert fused.extension() is not None
    print(fused.cache_dir())
    """
)


def _child(cache: Path) -> subprocess.CompletedProcess:
    root = str(Path(__file__).parents[1])
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(cache), "ALTI_LENS_KERNEL": "auto"}
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True
    )


@needs_kernel
def test_a_fresh_process_loads_the_cached_build(tmp_path: Path) -> None:
    """Compiled once (said at WARNING level), then loaded from the cache by a new process."""
    first = _child(tmp_path)
    assert "WARNING compiling the fused ALTI kernel" in first.stderr
    assert "WARNING compiled in" in first.stderr
    library = Path(first.stdout.strip()) / "alti_lens_distances.so"
    built = library.stat().st_mtime_ns
    second = _child(tmp_path)
    assert "compiling" not in second.stderr
    assert "loaded cached fused ALTI kernel" in second.stderr
    assert library.stat().st_mtime_ns == built
    assert second.stdout == first.stdout


@needs_kernel
def test_compiling_is_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(fused, "_state", {})
    with caplog.at_level(logging.INFO, logger="alti_lens"):
        assert fused.extension() is not None
        assert fused.extension() is not None
    messages = [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "alti_lens.core.kernels.fused"
    ]
    assert [level for level, _ in messages] == [logging.WARNING, logging.WARNING]
    assert messages[0][1].startswith("compiling the fused ALTI kernel for this environment")
    assert messages[1][1].startswith("compiled in ") and str(fused.cache_dir()) in messages[1][1]
