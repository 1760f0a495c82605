"""`model_precision`: the narrowest dtype a model really computed in, measured on its tensors."""

import torch

from alti_lens import alti_plus
from alti_lens.readout.run import computed_precision, float32_scores


def test_a_float64_tensor_of_float32_values_was_computed_in_float32() -> None:
    torch.manual_seed(0)
    scores = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    pattern = torch.softmax(scores, dim=-1)
    assert computed_precision(None, pattern) is None  # a genuine float64 softmax
    cast_up = torch.softmax(scores.float(), dim=-1).double()  # HF eager attention's way
    assert computed_precision(None, cast_up) == torch.float32
    # exact zeros (masked keys) and ones (one-key rows) are float32s of every dtype: no evidence
    causal = torch.ones(6, 6).tril().double() / torch.arange(1, 7).double()[:, None]
    assert computed_precision(None, torch.eye(6, dtype=torch.float64)) is None
    assert computed_precision(None, causal) is None
    # what the exactness check already knows wins; float32 models have nothing narrower to say
    assert computed_precision(torch.float32, pattern) == torch.float32
    assert computed_precision(None, pattern.float()) is None


def test_architectures_whose_scores_run_in_float32() -> None:
    assert float32_scores("GPTJForCausalLM") and not float32_scores("GPT2LMHeadModel")
    assert computed_precision(None, torch.rand(3).double(), float32_scores=True) == torch.float32


def test_bridged_rms_norms_compute_in_float32() -> None:
    """HF's RMSNorms take their variance in float32 even in float64 models, pre-norm ones too
    (measured: T5 differs by 1e-7 between TL 3.x and the bridge); LayerNorm models stay float64."""
    from conftest import encdec

    SOURCES, TARGETS = ["the cat sat"], ["the cat"]

    assert alti_plus(encdec("t5-preRMS"), SOURCES, TARGETS).metadata["model_precision"] == (
        "float32"
    )
    assert alti_plus(encdec("bart-postLN"), SOURCES, TARGETS).metadata["model_precision"] == (
        "float64"
    )
