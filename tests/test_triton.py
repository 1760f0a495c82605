"""The Triton kernel (alti_lens.core.kernels.triton) against the chunked PyTorch reference path.

With a CUDA device the compiled kernel runs on CUDA tensors. Without one it runs on CPU tensors
under Triton's interpreter: `TRITON_INTERPRET=1` is set here, at collection, because Triton reads
it when it is imported (its library functions are decorated then). Skipped where `triton` is not
installed.
"""

import functools
import os
import sys

import torch

if not torch.cuda.is_available() and "triton" not in sys.modules:
    os.environ["TRITON_INTERPRET"] = "1"

import models
import pytest
from conftest import bridge
from terms import CASES, random_terms, window

from alti_lens import _measure, alti
from alti_lens.core.decompose import AttentionTerms
from alti_lens.core.kernels import dispatch
from alti_lens.core.kernels import triton as triton_kernel
from alti_lens.core.measures import scores_and_sums, source_scores

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
pytestmark = [
    pytest.mark.skipif(not dispatch.triton_available(), reason="triton is not installed"),
    pytest.mark.skipif(
        DEVICE.type == "cpu" and not dispatch.triton_interpreting(),
        reason="no CUDA device, and triton was imported before TRITON_INTERPRET could be set "
        "(run this file on its own, or with TRITON_INTERPRET=1)",
    ),
]


def on_device(terms: AttentionTerms) -> AttentionTerms:
    """The same terms on the device the kernel runs on (CUDA, or the CPU under the interpreter)."""
    scale = None if terms.row_scale is None else terms.row_scale.to(DEVICE)
    return AttentionTerms(
        terms.pattern.to(DEVICE), scale, terms.values.to(DEVICE), terms.residual.to(DEVICE),
        terms.bias.to(DEVICE), terms.output.to(DEVICE), terms.residual_column,
    )  # fmt: skip


def gqa(n: int, heads: int, kv_heads: int, d: int, seed: int) -> AttentionTerms:
    """Grouped-query attention as `decompose_block` expands it: query heads of one group read
    the same value vectors (times their own W_O, here the identity per group)."""
    terms = random_terms(n=n, heads=heads, d=d, causal=True, seed=seed)
    shared = terms.values[:, :kv_heads].repeat_interleave(heads // kv_heads, dim=1)
    output = torch.einsum("hqk,khd->qd", terms.pattern, shared) + terms.residual + terms.bias
    return AttentionTerms(terms.pattern, None, shared, terms.residual, terms.bias, output)


def scaled(terms: AttentionTerms, seed: int) -> AttentionTerms:
    """Row scales (post-norm / sandwich blocks): `T_i(x_j) = r_i Σ_h A^h_ij V[j,h] + δ_ij R_j`."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.rand(terms.pattern.shape[1], generator=gen, dtype=torch.float64) + 0.5
    return AttentionTerms(
        terms.pattern, scale, terms.values, terms.residual, terms.bias, terms.output
    )


TRITON_CASES = {
    **CASES,
    "causal-70": lambda: random_terms(n=70, heads=3, d=8, causal=True, seed=11),  # 2 row blocks
    "gqa-8-to-2": lambda: gqa(n=19, heads=8, kv_heads=2, d=12, seed=12),
    "row-scale": lambda: scaled(random_terms(n=21, heads=4, d=16, causal=True, seed=13), 14),
    "window-row-scale": lambda: scaled(window(random_terms(n=40, heads=2, d=8, seed=15), 7), 16),
    "bidirectional-heads-17": lambda: random_terms(n=5, heads=17, d=3, causal=False, seed=17),
}


@pytest.mark.parametrize("measure", ["l1", "l2", "norm"])
@pytest.mark.parametrize("case", list(TRITON_CASES))
def test_triton_equals_reference(case: str, measure: str) -> None:
    terms = TRITON_CASES[case]()
    ref = source_scores(terms, measure, kernel="reference")
    got = source_scores(on_device(terms), measure, kernel="triton").cpu()
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    assert torch.equal(got == 0, ref == 0)  # the same exact zeros


@pytest.mark.parametrize(("n", "d"), [(1, 5), (37, 40), (16, 16), (33, 17)])
@pytest.mark.parametrize("diagonal", [True, False])
def test_small_blocks_and_odd_sizes(n: int, d: int, diagonal: bool) -> None:
    """Blocks far smaller than the defaults: n and d_model not multiples of any block, several
    row, key and d_model blocks per call, rows whose key range starts inside a block."""
    terms = random_terms(n=n, heads=3, d=d, causal=True, seed=n + d)
    gen = torch.Generator().manual_seed(0)
    start = torch.randint(0, n, (n,), generator=gen).minimum(torch.arange(n))
    stop = torch.arange(1, n + 1)
    args = (terms.pattern, terms.values, terms.residual, terms.output, start, stop)
    pattern, values, residual, output = (t.to(DEVICE) for t in args[:4])
    from alti_lens.core.kernels import fused

    if fused.extension() is None:
        pytest.skip("the C++ kernel (the comparison here) could not be compiled")
    for p in (0, 1, 2):
        ref = fused.distances(*args, p, diagonal)
        assert ref is not None
        got = triton_kernel.distances(
            pattern, values, residual, output, start.to(DEVICE), stop.to(DEVICE), p, diagonal,
            block_rows=16, block_keys=4, block_dims=16,
        ).cpu()  # fmt: skip
        torch.testing.assert_close(got, ref[0], rtol=0, atol=1e-12)
        assert (got[torch.arange(n)[None, :] < start[:, None]] == 0).all()


def test_float32_is_within_the_exactness_target() -> None:
    terms = random_terms(n=45, heads=4, d=64, causal=True, seed=21)
    f32 = AttentionTerms(
        terms.pattern.float(), None, terms.values.float(), terms.residual.float(),
        terms.bias.float(), terms.output.float(),
    )  # fmt: skip
    ref = source_scores(terms, "l1", kernel="reference")
    got = source_scores(on_device(f32), "l1", kernel="triton").cpu()
    assert got.dtype == torch.float32
    # relative to the scale of the scores: ||y||_1 − ||y − T||_1 loses digits to cancellation
    assert float((got.double() - ref).abs().max()) <= 2e-5 * float(ref.abs().max())


def test_no_sums_so_the_check_forms_them_itself() -> None:
    terms = random_terms(n=6, seed=22)
    _, sums = scores_and_sums(on_device(terms), "l1", kernel="triton")
    assert sums is None


@pytest.mark.parametrize("name", ["llama-RMS-rotary-GQA", "bert-postLN", "gemma2-sandwich"])
def test_models_give_the_same_result_with_triton(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = bridge(name, torch.float64)
    texts = ["the cat sat on the mat and it", "a big red dog"]  # padding in the second row
    with_reference = alti(model, texts)  # the CPU's path, float64
    if DEVICE.type == "cuda":  # its own copy on the GPU (the shared test models stay on the CPU)
        model = models.BRIDGE_BUILDERS[name](dtype=torch.float64).to(DEVICE)
    triton_scores = functools.partial(scores_and_sums, kernel="triton")
    monkeypatch.setattr(_measure, "scores_and_sums", triton_scores)
    with_triton = alti(model, texts)
    torch.testing.assert_close(
        with_triton.contributions, with_reference.contributions, rtol=0, atol=1e-12
    )
    torch.testing.assert_close(with_triton.rollout, with_reference.rollout, rtol=0, atol=1e-12)


def test_cpu_tensors_without_the_interpreter_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    terms = random_terms(n=4, seed=23)
    assert not dispatch.triton_applies(terms.pattern.device, terms.pattern.dtype)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        source_scores(terms, "l1", kernel="triton")
    # "auto" on CPU tensors never picks Triton
    torch.testing.assert_close(
        source_scores(terms, "l1"), source_scores(terms, "l1", kernel="reference"),
        rtol=0, atol=1e-12,
    )  # fmt: skip


@pytest.mark.parametrize("measure", ["l1", "norm"])
def test_last_rows_with_a_query_offset(measure: str) -> None:
    """`alti(rows="last")`: the last rows alone, their residual on keys `i + query_offset`."""
    terms = random_terms(n=70, heads=3, d=8, causal=True, seed=24)
    full = source_scores(terms, measure, kernel="reference")
    rows = slice(66, 70)
    tail = AttentionTerms(
        terms.pattern[:, rows], None, terms.values, terms.residual[rows], terms.bias[rows],
        terms.output[rows],
    )  # fmt: skip
    got = source_scores(on_device(tail), measure, kernel="triton", query_offset=66).cpu()
    torch.testing.assert_close(got, full[rows], rtol=0, atol=1e-12)
