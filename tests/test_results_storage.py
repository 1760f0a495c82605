"""Saving and loading results (`alti_lens.results.storage`): one safetensors file, no pickle;
every field back exactly; wrong files rejected with an `InputError` that says the fix."""

import dataclasses
from typing import Any

import pytest
import torch
from conftest import bridge, encdec
from safetensors.torch import save_file

from alti_lens import AltiLogitResult, AltiPlusResult, AltiResult, alti, alti_logit, alti_plus
from alti_lens.errors import AltiLensError, InputError, ResultFileNotFoundError

TEXTS = ["the cat sat on the mat", "a big red dog"]


def _json_form(value: Any) -> Any:
    """What a JSON round trip legitimately makes of a value: tuples become lists, dict keys
    strings. Nothing else may change."""
    if isinstance(value, dict):
        return {str(k): _json_form(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_form(v) for v in value]
    return value


def _assert_same(a, b) -> None:
    """Every field of a loaded result equals the saved one's: tensors exactly (and their dtype),
    nested results and tensor dicts field by field, metadata up to `_json_form`."""
    for name, value in vars(a).items():
        other = getattr(b, name)
        if isinstance(value, torch.Tensor):  # exactly; NaN where rows="last" computed nothing
            torch.testing.assert_close(other, value, rtol=0, atol=0, equal_nan=True, msg=name)
        elif isinstance(value, (AltiResult,)):
            _assert_same(value, other)
        elif name == "metadata":
            assert value, "a result always records its metadata"
            assert other.keys() == value.keys(), set(other.keys()) ^ set(value.keys())
            for key in value:
                assert _json_form(other[key]) == _json_form(value[key]), key
        elif (
            isinstance(value, dict)
            and value
            and isinstance(next(iter(value.values())), torch.Tensor)
        ):
            assert value.keys() == other.keys() and all(
                torch.equal(value[k], other[k]) and value[k].dtype == other[k].dtype for k in value
            )
        else:
            assert value == other, name


def test_save_and_load_round_trip(tmp_path, result: AltiResult) -> None:
    path = result.save(tmp_path / "r.safetensors")
    loaded = AltiResult.load(path)
    _assert_same(result, loaded)
    assert loaded.metadata["weight_processing"] == result.metadata["weight_processing"]
    assert loaded.metadata["block_kinds"] == result.metadata["block_kinds"]
    with pytest.raises(ValueError, match="holds an AltiResult, not an AltiPlusResult"):
        AltiPlusResult.load(path)


def test_save_and_load_every_result_kind(tmp_path) -> None:
    plus = alti_plus(encdec("marian-postLN"), TEXTS, ["le chat", "le chien est"])
    plus2 = AltiPlusResult.load(plus.save(tmp_path / "plus.safetensors"))
    _assert_same(plus, plus2)
    torch.testing.assert_close(
        plus2.sentence_statistics()["mean"], plus.sentence_statistics()["mean"]
    )
    logit = alti_logit(bridge("llama-RMS-rotary-GQA", torch.float64), TEXTS, "the", foil="a")
    logit2 = AltiLogitResult.load(logit.save(tmp_path / "logit.safetensors"))
    _assert_same(logit, logit2)
    assert logit2.components.keys() == logit.components.keys()
    per_head = alti(bridge("llama-RMS-rotary-GQA"), TEXTS, per_head=True)
    _assert_same(per_head, AltiResult.load(per_head.save(tmp_path / "heads.safetensors")))
    last = alti(bridge("gpt2-preLN", torch.float64), TEXTS, rows="last")  # metadata["rollout_rows"]
    _assert_same(last, AltiResult.load(last.save(tmp_path / "last.safetensors")))


def test_round_trip_comparison_sees_metadata(result: AltiResult) -> None:
    """The teeth of `_assert_same`: one changed, lost or added metadata key fails it."""
    changed = {**result.metadata, "block_kinds": ["post_norm"] * result.n_layers}
    lost = {k: v for k, v in result.metadata.items() if k != "weight_processing"}
    added = {**result.metadata, "extra": 1}
    for metadata in (changed, lost, added):
        with pytest.raises(AssertionError):
            _assert_same(result, dataclasses.replace(result, metadata=metadata))
    _assert_same(result, dataclasses.replace(result, metadata=_json_form(result.metadata)))


def test_the_file_holds_no_pickle(tmp_path, result: AltiResult) -> None:
    path = result.save(tmp_path / "r.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert set(f.keys()) >= {"contributions", "rollout", "tokens", "attention_mask"}
        assert f.metadata()["format"] == "alti_lens.result.v1"


def test_wrong_files_are_input_errors_with_the_fix(tmp_path, result: AltiResult) -> None:
    path = result.save(tmp_path / "r.safetensors")
    with pytest.raises(InputError, match=r"not an AltiPlusResult\. Fix: AltiResult\.load\(") as err:
        AltiPlusResult.load(path)
    assert isinstance(err.value, ValueError) and isinstance(err.value, AltiLensError)
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other), metadata={"format": "something else"})
    with pytest.raises(InputError, match=r"is not an alti_lens result file .*Fix: pass a file"):
        AltiResult.load(other)
    text = tmp_path / "notes.txt"
    text.write_text("not a tensor file")
    with pytest.raises(InputError, match=r"is not a safetensors file .*Fix: pass the path save"):
        AltiResult.load(text)
    with pytest.raises(ResultFileNotFoundError, match=r"no result file at .*Fix: check the path"):
        AltiResult.load(tmp_path / "missing.safetensors")
    assert issubclass(ResultFileNotFoundError, FileNotFoundError)  # what callers caught before
