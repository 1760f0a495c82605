"""Input the model cannot read: words that become the unknown token are named in one warning;
`alti_logit` refuses an unknown target or foil, and a target equal to its foil."""

import warnings

import pytest
from conftest import bridge

from alti_lens import InputError, UnknownTokenWarning, alti, alti_logit, alti_plus, load_model


@pytest.fixture(scope="module")
def induction():
    return load_model("demo-induction")


def test_unknown_words_are_named_once(induction) -> None:
    with pytest.warns(UnknownTokenWarning) as record:
        alti(induction, ["king zebra river", "quokka king zebra"])
    assert len(record) == 1
    message = str(record[0].message)
    assert "2 word(s) of the inputs" in message and "'zebra', 'quokka'" in message
    assert "<unk>" in message
    assert record[0].filename == __file__  # points at the caller's line


def test_known_words_do_not_warn(induction) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownTokenWarning)
        alti(induction, "king river music window king river")


def test_gpt2_style_tokenizers_have_no_unknown_token() -> None:
    """GPT-2's `unk_token` is its BOS/EOS token, which text never becomes: no warning."""
    model = bridge("gpt2-preLN")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownTokenWarning)
        alti(model, "the cat sat")


def test_alti_logit_refuses_unknown_targets_and_foils(induction) -> None:
    text = "king river music window king river"
    with pytest.raises(InputError, match=r"the target is the tokenizer's unknown token '<unk>'"):
        alti_logit(induction, text, " Mary")
    with pytest.raises(InputError, match=r"the foil is the tokenizer's unknown token"):
        alti_logit(induction, text, "music", foil="John")
    unk = induction.tokenizer.unk_token_id
    with pytest.raises(InputError, match=r"unknown token"):
        alti_logit(induction, text, unk)


def test_alti_logit_refuses_a_target_equal_to_its_foil(induction) -> None:
    text = "king river music window king river"
    with pytest.raises(InputError, match=r"target and foil are the same token 'music'"):
        alti_logit(induction, text, "music", foil=" music")
    ok = alti_logit(induction, text, "music", foil="king")
    assert float(ok.scores.abs().sum()) > 0


def test_translation_sources_and_targets_are_checked() -> None:
    translator = load_model("demo-translator")
    with pytest.warns(UnknownTokenWarning, match=r"of the source.*'zebra'"):
        alti_plus(translator, "the old zebra sees a dog")
