"""The contracts of the entry points (`alti`, `alti_plus`, `alti_logit`): the model protocol
(`readout.HookedModel`), friendly validation first, then an inner function whose shapes are checked
at run time (jaxtyping + beartype) also without the test suite's import hook; and every user-facing
error of the entry points, the read-out, the demo data and the evaluation is an `AltiLensError`
whose message says what was expected and the fix."""

import importlib.metadata
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import bridge, encdec
from models import BRIDGE_BUILDERS, D_VOCAB, ENC_DEC_BUILDERS, N_CTX

import alti_lens
from alti_lens import (
    AltiLensError,
    InputError,
    UnsupportedModelError,
    alti,
    alti_logit,
    alti_plus,
    readout,
)
from alti_lens.demo.data import induction_sequences
from alti_lens.evaluation import metrics
from alti_lens.evaluation.runs import alignment_error_rates
from alti_lens.readout import HookedModel, patching

TL_MAJOR = int(importlib.metadata.version("transformer-lens").split(".")[0])
# Python >= 3.12 checks protocol members with `inspect.getattr_static`: each must be found so.
MEMBERS = (
    "cfg", "tokenizer", "hooks", "run_with_hooks", "to_tokens", "parameters", "modules",
    "__call__", "__getattr__",
)  # fmt: skip


def assert_is_hooked_model(model: object) -> None:
    assert isinstance(model, HookedModel)
    for name in MEMBERS:
        inspect.getattr_static(model, name)  # raises AttributeError if only found dynamically


# ---------------------------------------------------------------------------------------------
# The protocol


@pytest.mark.parametrize("name", list(BRIDGE_BUILDERS))
def test_protocol_accepts_every_bridge(name: str) -> None:
    assert_is_hooked_model(bridge(name))


@pytest.mark.parametrize("name", list(ENC_DEC_BUILDERS))
def test_protocol_accepts_encoder_decoder_bridges(name: str) -> None:
    assert_is_hooked_model(encdec(name))


def test_protocol_accepts_the_transformer_lens_3_classes() -> None:
    if TL_MAJOR != 3:
        pytest.skip("HookedTransformer / HookedEncoder / HookedEncoderDecoder: TransformerLens 3.x")
    from models_tl3 import encoder_bert, hed_t5, ht_gpt2

    for build, backend in (
        (ht_gpt2, "HookedTransformer"),
        (encoder_bert, "HookedEncoder"),
        (hed_t5, "HookedEncoderDecoder"),
    ):
        model = build()
        assert_is_hooked_model(model)
        info = readout.describe(model, encoder_decoder=backend == "HookedEncoderDecoder")
        assert info.backend == backend


def test_protocol_agrees_with_transformer_lens_own() -> None:
    """Where TransformerLens has a model protocol (4.x), the models it accepts are ours too, and
    the members both name mean the same."""
    own = pytest.importorskip("transformer_lens.model_protocol").TransformerLensModel
    model = bridge("gpt2-preLN")
    assert isinstance(model, own) and isinstance(model, HookedModel)
    shared = {"cfg", "run_with_hooks", "to_tokens"}
    assert shared <= set(MEMBERS) and all(hasattr(own, name) for name in shared)


def _hf_gpt2() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=D_VOCAB, n_positions=N_CTX)
    return GPT2LMHeadModel(config)


ENTRY_POINTS = {
    "alti": lambda model: alti(model, "the cat"),
    "alti_plus": lambda model: alti_plus(model, "the cat", "le chat"),
    "alti_logit": lambda model: alti_logit(model, "the cat", 3),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_plain_module_is_refused(entry: str) -> None:
    model = torch.nn.Linear(2, 2)
    assert not isinstance(model, HookedModel)
    with pytest.raises(
        UnsupportedModelError,
        match=r"expected a TransformerLens model: TransformerBridge.*HookedEncoderDecoder; got "
        r"torch\.nn\.modules\.linear\.Linear \(it has no cfg, tokenizer, hooks, "
        r"run_with_hooks, to_tokens\)\. Fix: wrap a Hugging Face model with "
        r"TransformerBridge\.boot_transformers",
    ):
        ENTRY_POINTS[entry](model)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_hugging_face_model_is_refused_with_how_to_wrap_it(entry: str) -> None:
    model = _hf_gpt2()
    assert not isinstance(model, HookedModel)
    with pytest.raises(
        UnsupportedModelError,
        match=r"expected a TransformerLens model.*got transformers\.models\.gpt2\.modeling_gpt2\."
        r"GPT2LMHeadModel \(it has no cfg.*\)\. Fix: this looks like a Hugging Face model; wrap "
        r"it: TransformerBridge\.boot_transformers\(name_or_dir, hf_model=model",
    ):
        ENTRY_POINTS[entry](model)


def test_refusal_is_a_type_error_too() -> None:
    with pytest.raises(TypeError):
        readout.describe(object())


# ---------------------------------------------------------------------------------------------
# Friendly validation first, shapes checked after it


def test_entry_points_keep_their_annotations_and_skip_runtime_checkers() -> None:
    """Static checkers see the signatures (unlike `typing.no_type_check`); the import hook's
    runtime checker passes the public functions by, so that their own messages come first (the
    same functions without the hook: `SHAPE_PROBE`)."""
    for function in (alti, alti_plus, alti_logit):
        assert function.__annotations__["model"] is HookedModel
        assert function.__no_type_check__  # type: ignore[attr-defined]  # set under the hook


SHAPE_PROBE = """
import sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {tests!r})
import jaxtyping, torch
assert not [f for f in sys.meta_path if "jaxtyping" in type(f).__module__], "import hook is on"
from models import bridge_gpt2, bridge_marian
from alti_lens import api, logit_api, plus, readout
from alti_lens._measure import Request, Validated

def shape_error(call):
    try:
        call()
    except jaxtyping.TypeCheckError as error:
        text = str(error)
        assert "batch=2" in text, text
        assert "Validated(model=" in text and "HookPoint" not in text, text  # no module tree
        assert len(text) < 4000, len(text)
        return "shape error"
    return "no error"

gpt2 = bridge_gpt2()
call = Validated(gpt2, readout.describe(gpt2), Request())
two = torch.tensor([[0, 3, 4], [0, 5, 6]])
one = torch.ones(1, 3, dtype=torch.long)
print("alti", shape_error(lambda: api._alti(call, two, one, False)))
rows = targets = torch.tensor([2, 2])
print("alti_logit", shape_error(
    lambda: logit_api._alti_logit(call, two, two * 0 + 1, rows, targets[:1], None)
))
marian = bridge_marian()
plus_call = Validated(marian, readout.describe(marian, encoder_decoder=True), Request())
src, tgt = torch.tensor([[3, 4, 31], [5, 6, 31]]), torch.tensor([[1, 25], [1, 26]])
print("alti_plus", shape_error(lambda: plus._alti_plus(
    plus_call, src, src * 0 + 1, tgt, tgt * 0 + 1, tgt[:1], False
)))
print("valid", type(api._alti(call, two, two * 0 + 1, False)))
# without the hook the public functions are plain, fully annotated functions
import typing
for function in (api.alti, plus.alti_plus, logit_api.alti_logit):
    assert typing.get_type_hints(function)["model"] is readout.HookedModel
    assert not hasattr(function, "__no_type_check__")
print("annotated")
"""


def test_shape_mismatch_past_validation_is_a_shape_error_without_the_import_hook() -> None:
    """Plain Python (no pytest, no import hook): the inner functions check their shapes."""
    tests = str(Path(__file__).parent)
    out = subprocess.run(
        [sys.executable, "-c", SHAPE_PROBE.format(tests=tests)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.split(" ")[0] in ENTRY_POINTS]
    assert lines == [f"{name} shape error" for name in ("alti", "alti_logit", "alti_plus")]
    assert "valid <class 'alti_lens.results.AltiResult'>" in out.stdout
    assert "annotated" in out.stdout


# ---------------------------------------------------------------------------------------------
# Every user-facing bad input: an AltiLensError that says what was expected and the fix


def _gpt2():
    return bridge("gpt2-preLN")


def _marian():
    return encdec("marian-postLN", torch.float32)


TWO = torch.tensor([[0, 3, 4], [0, 5, 6]])
BAD = {
    # alti: options
    "measure": (lambda: alti(_gpt2(), "the cat", measure="L1"), r"expected one of"),
    "rows": (lambda: alti(_gpt2(), "the cat", rows="first"), r"got 'first'"),
    "rows+per_head": (lambda: alti(_gpt2(), "the cat", rows="last", per_head=True), r"per_head"),
    "chunk_size": (lambda: alti(_gpt2(), "the cat", chunk_size=-1), r"got -1"),
    "dtype": (lambda: alti(_gpt2(), "the cat", dtype=torch.int64), r"got torch\.int64"),
    "dtype-str": (lambda: alti(_gpt2(), "the cat", dtype="float32"), r"got 'float32'"),  # type: ignore[arg-type]
    # inputs
    "inputs-type": (lambda: alti(_gpt2(), 3.5), r"got float"),  # type: ignore[arg-type]
    "inputs-empty-list": (lambda: alti(_gpt2(), []), r"empty list"),
    "inputs-item": (lambda: alti(_gpt2(), ["the cat", 3]), r"is a int"),  # type: ignore[list-item]
    "inputs-blank": (lambda: alti(_gpt2(), " "), r"empty string"),
    "tokens-float": (lambda: alti(_gpt2(), TWO.float()), r"dtype torch\.float32"),
    "tokens-3d": (lambda: alti(_gpt2(), TWO[None]), r"shape \(1, 2, 3\)"),
    "tokens-empty": (lambda: alti(_gpt2(), TWO[:, :0]), r"shape \(2, 0\) is empty"),
    "tokens-vocab": (lambda: alti(_gpt2(), TWO + 100), r"outside the model's vocabulary"),
    "tokens-long": (lambda: alti(_gpt2(), torch.zeros(1, N_CTX + 1).long()), r"context of"),
    "mask-type": (lambda: alti(_gpt2(), TWO, attention_mask=[[1, 1, 1]]), r"got list"),  # type: ignore[arg-type]
    "mask-shape": (lambda: alti(_gpt2(), TWO, attention_mask=torch.ones(1, 3)), r"\(1, 3\)"),
    "mask-values": (lambda: alti(_gpt2(), TWO, attention_mask=TWO), r"only 0 \(padding\)"),
    "mask-zeros": (lambda: alti(_gpt2(), TWO, attention_mask=TWO * 0), r"sequences \[0, 1\]"),
    "mask-with-text": (lambda: alti(_gpt2(), "the cat", attention_mask=TWO), r"with text"),
    "no-tokenizer": (lambda: alti(_no_tokenizer(), "the cat"), r"has no tokenizer"),
    # models
    "alti-on-encdec": (lambda: alti(_marian(), "the cat"), r"alti_plus"),
    "plus-on-decoder": (lambda: alti_plus(_gpt2(), "the cat", "the cat"), r"not an encoder-dec"),
    "logit-on-encoder": (lambda: alti_logit(bridge("bert-postLN"), "the cat", 3), r"an encoder"),
    # alti_logit
    "position-type": (lambda: alti_logit(_gpt2(), "the cat", 3, position=1.0), r"got 1\.0"),  # type: ignore[arg-type]
    "position-before": (lambda: alti_logit(_gpt2(), "the cat", 3, position=-9), r"past the st"),
    "position-pad": (lambda: alti_logit(_gpt2(), ["the", "the cat"], 3, position=2), r"padding"),
    "target-count": (lambda: alti_logit(_gpt2(), "the cat", [3, 4]), r"2 entries for 1"),
    "target-type": (lambda: alti_logit(_gpt2(), "the cat", 2.5), r"got 2\.5"),  # type: ignore[arg-type]
    "target-vocab": (lambda: alti_logit(_gpt2(), "the cat", 999), r"\[999\] are outside"),
    "target-two-tokens": (lambda: alti_logit(_gpt2(), "the cat", "the cat"), r"2 tokens"),
    "target-unknown": (lambda: alti_logit(_gpt2(), "the cat", 2), r"unknown token"),
    "foil-same": (lambda: alti_logit(_gpt2(), "the cat", 3, foil=3), r"the same token"),
    # alti_plus
    "target-mask-alone": (
        lambda: alti_plus(_marian(), "the cat", target_attention_mask=TWO),
        r"without a target",
    ),
    "max-new-tokens": (lambda: alti_plus(_marian(), "the cat", max_new_tokens=0), r"got 0"),
    "plus-batch": (lambda: alti_plus(_marian(), ["the", "a"], "le chat"), r"2 sequences but"),
    "target-start": (
        lambda: alti_plus(_marian(), TWO, torch.tensor([[5, 6]])),
        r"decoder start token",
    ),
    "target-mask-start": (
        lambda: alti_plus(
            _marian(), TWO[:1], torch.tensor([[1, 6]]), target_attention_mask=torch.tensor([[0, 1]])
        ),
        r"position 0",
    ),
    # the read-out, the demo data, the evaluation
    "load-dtype": (lambda: alti_lens.load_model("demo-induction", dtype="int8"), r"got 'int8'"),
    "load-path": (lambda: alti_lens.load_model("./no/such/dir"), r"neither a built-in"),
    "load-type": (lambda: alti_lens.load_model(3), r"a str or a path\); got int"),  # type: ignore[arg-type]
    "patching-part": (
        lambda: patching.value_zeroing_encoder_decoder(
            _marian(), TWO[:1], torch.tensor([[1, 6]]), "decoder_self", 0
        ),
        r"got 'decoder_self'",
    ),
    "induction-lengths": (lambda: induction_sequences(2, 0, min_len=9, max_len=3), r"min_len=9"),
    "aer-row": (lambda: alignment_error_rates(_marian(), [], row="output"), r"got 'output'"),
    "word-level": (lambda: metrics.word_level(torch.ones(2, 2), [0], [0, 1]), r"1 target"),
    "word-gap": (lambda: metrics.word_level(torch.ones(2, 2), [0, 2], [0, 1]), r"\[1\]"),
    "argmax": (lambda: metrics.argmax_alignment(torch.ones(1, 2), torch.zeros(2).bool()), "all"),
    "aer-lengths": (lambda: metrics.alignment_error_rate([set()], []), r"1 predicted, 0 sure"),
    "aer-empty": (lambda: metrics.alignment_error_rate([set()], [set()]), r"no links"),
    "auc": (lambda: metrics.deletion_auc(torch.ones(1)), r"got \(1,\)"),
    "pearson": (lambda: metrics.pearson(torch.ones(3), torch.ones(2)), r"\(3,\) and \(2,\)"),
    "spearman": (lambda: metrics.spearman(torch.ones(3), torch.ones(2)), r"\(3,\) and \(2,\)"),
}


def _no_tokenizer():
    from models import bridge_gpt2

    model = bridge_gpt2()
    model.tokenizer = None
    return model


@pytest.mark.parametrize("case", list(BAD))
def test_every_bad_input_is_an_alti_lens_error_with_expectation_and_fix(case: str) -> None:
    call, came = BAD[case]
    with pytest.raises(AltiLensError, match=came) as caught:
        call()
    message = str(caught.value)
    assert isinstance(caught.value, (InputError, UnsupportedModelError)), type(caught.value)
    assert any(word in message for word in ("expect", "must", "needs", "is not")), message
    assert "Fix:" in message or "use " in message.lower(), message
