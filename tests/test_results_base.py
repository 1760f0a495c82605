"""What every result checks when it is made: its fields describe the same sequences, layers and
positions (`alti_lens.results.base.check_sizes`), so a wrongly assembled result fails at once."""

import dataclasses

import pytest
import torch
from conftest import bridge, encdec

from alti_lens import InputError, alti, alti_logit, alti_plus
from alti_lens.results.base import check_sizes

TEXTS = ["the cat sat on the mat", "a big red dog"]


def test_check_sizes_lists_the_fields_that_disagree() -> None:
    check_sizes("R", "layers", {"a": 3, "b": 3, "c": None})
    message = r"R: the fields disagree on the number of layers \(a 3, b 2\); expected one\. Fix: "
    with pytest.raises(InputError, match=message + r"make results with alti\(\)"):
        check_sizes("R", "layers", {"a": 3, "b": 2, "c": None})


def test_results_with_fields_that_disagree_are_refused() -> None:
    plain = alti(bridge("gpt2-preLN", torch.float64), TEXTS)
    plus = alti_plus(encdec("marian-postLN"), TEXTS, ["le chat", "le chien est"])
    logit = alti_logit(bridge("gpt2-preLN", torch.float64), TEXTS, "the")
    # mismatches the jaxtyping annotations cannot name (lists, dicts, free dimension names);
    # users, who run without the tests' jaxtyping hook, get these checks for every field
    R, S = plus.rollout, plus.source_tokens.shape[1]
    cases = [
        (plain, {"str_tokens": plain.str_tokens[:1]}, r"AltiResult: .* sequences .*str_tokens 1"),
        (plain, {"rollout": plain.rollout[:, :, :1]}, "AltiResult: .* positions .*rollout rows 1"),
        (plus, {"target_str_tokens": plus.target_str_tokens[:1]}, "AltiPlusResult: .* sequences"),
        (plus, {"rollout": R[..., 1:]}, f"source positions .*rollout - target positions {S - 1}"),
        (plus, {"cross_contributions": plus.cross_contributions[..., 1:]}, "cross_contributions"),
        (logit, {"components": {"bias": logit.logit[:1]}}, r"sequences .*components\['bias'\] 1"),
        (logit, {"str_tokens": logit.str_tokens * 2}, "AltiLogitResult: .* str_tokens 4"),
    ]
    for result, change, message in cases:
        with pytest.raises(InputError, match=message):
            dataclasses.replace(result, **change)
    last = alti(bridge("gpt2-preLN", torch.float64), TEXTS, rows="last")
    assert dataclasses.replace(last, metadata={}).rows == "last"  # one rollout row is consistent
