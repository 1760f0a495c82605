"""Shared fixtures: offline models of every block kind, built once per session."""

import functools
import importlib.metadata
import json
import os
import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

# The Triton kernel's tests run under Triton's interpreter where there is no CUDA device, and Triton
# reads TRITON_INTERPRET once, when it is first imported. Importing TransformerLens' adapter factory
# (the architecture matrix's keys, at collection) imports Triton through some adapters, so the
# variable is set here, before any test module is collected (tests/test_triton.py).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import models


@functools.cache
def bridge(name: str, dtype: torch.dtype = torch.float32):
    """A cached model: building costs 0.1–1 s and tests never modify the models they share.

    One plain forward pass first: the bridge registers its own internal hooks lazily on its first
    run, which would otherwise look like hooks left behind by `alti`.
    """
    model = models.BRIDGE_BUILDERS[name](dtype=dtype)
    with torch.no_grad():
        model(torch.tensor([[0, 3, 4]]))
    return model


# Test modules whose outcome cannot depend on the TransformerLens version: pure tensor code, the
# kernels, rendering, the command line's own behaviour and the tutorials (all through the public
# API). .ci/run's 3.x environment runs only what differs on 3.x: `-m "not tl_independent"`.
TL_INDEPENDENT = {
    "test_cli", "test_core_flow", "test_corpus", "test_corpus_cli", "test_corpus_ray",
    "test_decompose", "test_dispatch", "test_fused", "test_measures",
    "test_readme", "test_render_circuitsvis", "test_render_flow", "test_render_flow_browser",
    "test_render_html", "test_render_plot", "test_render_report", "test_render_report_browser",
    "test_render_tables", "test_render_text", "test_results_base", "test_results_selections",
    "test_results_storage", "test_rollout", "test_rollout_plus", "test_support", "test_triton",
    "test_tutorials", "test_hallucination",
}  # fmt: skip


# Test modules over TransformerLens 4.x's architecture adapters (tests/architectures.py: the keys
# and expected outcomes are 4.x's). .ci/run's 3.x environment deselects them: 3.x's bridge is
# covered by the test_tl3* modules and by every model test that runs there.
TL4_ARCHITECTURES = {
    "test_architectures", "test_long_encdec", "test_mla", "test_model_guards",
    "test_post_norm_decoders", "test_scaled_models",
}  # fmt: skip


# The evaluation's experiments (docs/EVALUATION.md): they measure the methods on the evaluation's
# own trained models through the current bridge; alti's behaviour on 3.x is covered by the model
# tests that run there. .ci/run's 3.x environment deselects them (`-m "not evaluation"`).
EVALUATION = {
    "test_evaluation", "test_eval_agreement", "test_eval_aupc", "test_eval_logit",
    "test_eval_prefix",
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        name = item.module.__name__ if item.module is not None else ""
        if name in TL_INDEPENDENT:
            item.add_marker(pytest.mark.tl_independent)
        if name in TL4_ARCHITECTURES:
            item.add_marker(pytest.mark.tl4_architectures)
        if name in EVALUATION:
            item.add_marker(pytest.mark.evaluation)


TL_MAJOR = int(importlib.metadata.version("transformer-lens").split(".")[0])


@functools.cache
def encdec(name: str, dtype: torch.dtype = torch.float64):
    """A cached encoder-decoder bridge (skipped where this TransformerLens cannot run it)."""
    if name == "t5-preRMS" and TL_MAJOR < 4:
        pytest.skip("TransformerLens 3.x's bridge cannot run T5 (ValueError inside HF's T5Stack)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return models.ENC_DEC_BUILDERS[name](dtype=dtype)


@pytest.fixture(params=list(models.BRIDGE_BUILDERS), ids=list(models.BRIDGE_BUILDERS))
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


# Two runs of one model (a padded batch and single texts, two backends) agree to a few rounding
# errors of the narrowest dtype the model computed in (measured: ≤ 12 epsilons on AVX2 and
# AVX-512 machines); 500 leaves room for deeper models without hiding a real difference.
RUN_EPSILONS = 500


def between_runs(*results: object) -> float:
    """atol for comparing two runs of a model, from the precision it really computed in.

    `metadata["model_precision"]` is the narrowest dtype the model computed in (float32 for the
    float32 softmax of Hugging Face's eager attention and for its RMSNorms, even in float64
    models); `metadata["dtype"]` that of the decomposition. A float64-throughout model gets
    ~1e-13, one that computes attention in float32 ~6e-5.
    """
    names = [r.metadata[k] for r in results for k in ("model_precision", "dtype")]  # type: ignore[attr-defined]
    eps = max(torch.finfo(getattr(torch, name)).eps for name in names)
    return RUN_EPSILONS * eps


def hook_count(model: torch.nn.Module) -> int:
    """Every PyTorch hook on the model's modules (TransformerLens and plain ones)."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


# The HTML report's tests (test_render_report, test_render_report_browser).


def report_data(page: str) -> dict:
    """The JSON document a report page embeds."""
    marker = '<script type="application/json" id="alti-data">'
    start = page.index(marker) + len(marker)
    return json.loads(page[start : page.index("</script>", start)])


def assert_report_close(shown: list, expected: torch.Tensor, atol: float = 0.0) -> None:
    """Equal up to the report's rounding to 4 significant digits."""
    torch.testing.assert_close(
        torch.tensor(shown, dtype=torch.float64), expected.double(), rtol=6e-4, atol=atol
    )


# --- results shared by the results / render tests (module-scoped: built once per test module) ---

REPORT_TEXTS = ["the cat sat on the mat", "a big red dog"]


@pytest.fixture(scope="module")
def result():
    """ALTI of the GPT-2 bridge (float64) on two texts."""
    from alti_lens import alti

    return alti(bridge("gpt2-preLN", torch.float64), REPORT_TEXTS)


@pytest.fixture(scope="module")
def heads():
    """Per-head ALTI of the Llama bridge (float64, grouped-query attention) on two texts."""
    from alti_lens import alti

    return alti(bridge("llama-RMS-rotary-GQA", torch.float64), REPORT_TEXTS, per_head=True)


# strings that would break out of a <script> element or an attribute if not escaped
EVIL = ["</script><script>alert(1)</script>", "<s>", '"quoted"', "a & b", "\u2028", "<!--"]


@pytest.fixture(scope="module")
def decoder():
    """ALTI of the GPT-2 bridge on two texts."""
    from alti_lens import alti

    return alti(bridge("gpt2-preLN"), REPORT_TEXTS)


@pytest.fixture(scope="module")
def translator():
    """ALTI+ of the Marian bridge on two pairs."""
    from alti_lens import alti_plus

    return alti_plus(encdec("marian-postLN"), REPORT_TEXTS, ["le chat", "le chien est"])


@pytest.fixture(scope="module")
def logit():
    """ALTI-Logit of the GPT-2 bridge, "the" against "a"."""
    from alti_lens import alti_logit

    return alti_logit(bridge("gpt2-preLN"), REPORT_TEXTS, "the", foil="a")


def assert_plus_row_equals_single(batch, b: int, one) -> None:
    """Sequence `b` of a padded `alti_plus` batch equals the single run `one` on its real
    positions (every matrix, the residual column, the extended rollout's two sides), to
    `between_runs`."""
    S_b = batch.source_tokens.shape[1]
    s, t = one.source_tokens.shape[1], one.target_tokens.shape[1]
    assert torch.equal(batch.source_tokens[b, :s], one.source_tokens[0])
    assert torch.equal(batch.target_tokens[b, :t], one.target_tokens[0])
    pairs = [
        (batch.encoder_contributions[b, :, :s, :s], one.encoder_contributions[0]),
        (batch.encoder_rollout[b, :, :s, :s], one.encoder_rollout[0]),
        (batch.decoder_contributions[b, :, :t, :t], one.decoder_contributions[0]),
        (batch.cross_contributions[b, :, :t, :s], one.cross_contributions[0, :, :, :s]),
        (batch.cross_contributions[b, :, :t, S_b], one.cross_contributions[0, :, :, s]),
        (batch.rollout[b, :, :t, :s], one.rollout[0, :, :, :s]),
        (batch.rollout[b, :, :t, S_b : S_b + t], one.rollout[0, :, :, s:]),
        (batch.source_contribution[b, :t], one.source_contribution[0]),
    ]
    atol = between_runs(batch, one)
    for got, expected in pairs:
        torch.testing.assert_close(got, expected, rtol=0, atol=atol)
