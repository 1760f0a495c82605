"""Every error path: a clear message (what was expected, what came, the fix), model untouched."""

import pytest
import torch
from conftest import bridge, hook_count
from models import N_CTX, bridge_mamba, bridge_t5

from alti_lens import (
    AltiLensError,
    InputError,
    NonFiniteActivationError,
    UnsupportedModelError,
    alti,
)


@pytest.fixture
def gpt2():
    model = bridge("gpt2-preLN")
    before = hook_count(model)
    yield model
    assert hook_count(model) == before  # every error left the model as it was


def test_not_a_transformer_lens_model() -> None:
    with pytest.raises(UnsupportedModelError, match=r"expected a TransformerLens model.*Linear"):
        alti(torch.nn.Linear(2, 2), "the cat")


def test_state_space_model_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match=r"block 0 has no attention.*SSM"):
        alti(bridge_mamba(), torch.tensor([[1, 2, 3]]))


def test_encoder_decoder_points_to_alti_plus() -> None:
    with pytest.raises(UnsupportedModelError, match=r"encoder-decoder.*alti_plus"):
        alti(bridge_t5(), torch.tensor([[1, 2, 3]]))


@pytest.mark.parametrize(
    ("inputs", "match"),
    [
        ("", r"inputs\[0\] is an empty string"),
        ("   ", r"inputs\[0\] is an empty string"),
        ([], r"empty list"),
        (["the cat", ""], r"inputs\[1\] is an empty string"),
        (["the cat", 3], r"inputs\[1\] is a int; expected a string"),
        (torch.zeros(1, 0, dtype=torch.long), r"shape \(1, 0\) is empty"),
        (torch.zeros(0, 3, dtype=torch.long), r"shape \(0, 3\) is empty"),
        (torch.tensor([[1.0, 2.0]]), r"dtype torch.float32; expected an integer dtype"),
        (torch.tensor([[True, False]]), r"dtype torch.bool"),
        (torch.zeros(1, 2, 3, dtype=torch.long), r"shape \(1, 2, 3\); expected \[batch, pos\]"),
        (torch.tensor([[0, 1, 999]]), r"\[0, 999\], outside the model's vocabulary \[0, 63\]"),
        (torch.tensor([[-1, 1]]), r"outside the model's vocabulary"),
        (
            torch.zeros(1, N_CTX + 1, dtype=torch.long),
            rf"{N_CTX + 1} positions.*context of {N_CTX}",
        ),
        ("the " * N_CTX, rf"longer than the model's context of {N_CTX}"),
        (3.5, r"inputs must be a string, a list of strings or an int tensor"),
    ],
)
def test_bad_inputs(gpt2, inputs, match: str) -> None:
    with pytest.raises(InputError, match=match):
        alti(gpt2, inputs)


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (torch.ones(1, 3), r"shape \(1, 3\) but the tokens have shape \(2, 3\)"),
        (torch.tensor([[1, 2, 1], [1, 1, 1]]), r"only 0 \(padding\) and 1"),
        (torch.tensor([[0, 0, 0], [1, 1, 1]]), r"sequences \[0\] have no real token"),
        ([[1, 1, 1], [1, 1, 1]], r"must be a tensor \[batch, pos\], got list"),
    ],
)
def test_bad_attention_mask(gpt2, mask, match: str) -> None:
    with pytest.raises(InputError, match=match):
        alti(gpt2, torch.tensor([[0, 3, 4], [0, 5, 6]]), attention_mask=mask)


def test_mask_with_text_is_refused(gpt2) -> None:
    with pytest.raises(InputError, match="attention_mask was given with text inputs"):
        alti(gpt2, ["the cat"], attention_mask=torch.ones(1, 3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"measure": "L1"}, r"unknown measure 'L1'; expected one of 'l1', 'l2', 'norm'"),
        ({"chunk_size": 0}, r"chunk_size must be a positive int"),
        ({"chunk_size": 2.5}, r"chunk_size must be a positive int"),
        ({"dtype": torch.float16}, r"dtype must be torch.float32 or torch.float64"),
    ],
)
def test_bad_options(gpt2, kwargs, match: str) -> None:
    with pytest.raises(InputError, match=match):
        alti(gpt2, "the cat", **kwargs)


def test_text_without_tokenizer() -> None:
    model = bridge_mamba()  # any model; the tokenizer is checked before anything runs
    model.tokenizer = None
    with pytest.raises(AltiLensError):
        alti(model, "the cat")


def test_no_tokenizer_message() -> None:
    from models import bridge_gpt2

    model = bridge_gpt2()
    model.tokenizer = None
    with pytest.raises(InputError, match=r"model has no tokenizer\. Fix: pass token ids"):
        alti(model, "the cat")


def test_non_finite_activations() -> None:
    from models import bridge_gpt2

    model = bridge_gpt2()
    model(torch.tensor([[0, 3]]))  # let the bridge add its own lazy hooks first
    before = hook_count(model)
    with torch.no_grad():
        model.blocks[1].attn.W_V[0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteActivationError, match=r"blocks\.1\.attn\.hook_v contains NaN"):
        alti(model, "the cat sat")
    assert hook_count(model) == before


def test_errors_are_also_builtin_exceptions(gpt2) -> None:
    with pytest.raises(ValueError):
        alti(gpt2, "")
    with pytest.raises(TypeError):
        alti(torch.nn.Linear(2, 2), "x")
