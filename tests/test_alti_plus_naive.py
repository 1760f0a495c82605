"""`alti_plus` against an independent naive float64 loop reference (tests/naive_encdec.py).

For one unpadded (source, decoder input) pair per encoder-decoder family, every encoder
self-attention, decoder self-attention and cross-attention matrix must agree to 1e-9, for the
ALTI measure ("l1") and Kobayashi's "norm"; the naive reference reads the raw hooks itself and
checks its own reconstruction against the model's outputs first. A last test shows the comparison
has teeth: plausible mistakes (residual column first, the wrong norm's scale) fail it by far.
"""

import functools

import models
import naive_encdec
import pytest
import torch
from conftest import encdec

from alti_lens import alti_plus

FAMILIES = list(models.ENC_DEC_BUILDERS)
MEASURES = ("l1", "norm")
S, T = 6, 5
TOL = 1e-9
FIELDS = ("encoder_contributions", "decoder_contributions", "cross_contributions")


def model64(family: str):
    return encdec(family, torch.float64)


@functools.cache
def pair(family: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """S source ids ending with EOS, T decoder input ids starting with the decoder start id."""
    gen = torch.Generator().manual_seed(seed)
    start = model64(family).cfg.decoder_start_token_id
    assert start is not None
    src = torch.randint(3, models.EOS, (S - 1,), generator=gen)
    src = torch.cat([src, torch.tensor([models.EOS])])
    tgt = torch.cat([torch.tensor([start]), torch.randint(3, models.EOS, (T - 1,), generator=gen)])
    return src, tgt


@functools.cache
def naive(family: str, measure: str, **variant):
    src, tgt = pair(family)
    return naive_encdec.naive_alti_plus(model64(family), src, tgt, measure, **variant)


@functools.cache
def fast(family: str, measure: str):
    src, tgt = pair(family)
    return alti_plus(model64(family), src[None], tgt[None], measure=measure)


def max_diffs(result, reference) -> dict[str, float]:
    out = {}
    for field in (*FIELDS, "encoder_rollout", "rollout"):
        got = getattr(result, field)[0].to(torch.float64)
        want = reference[field]
        assert got.shape == want.shape, (field, got.shape, want.shape)
        out[field] = float((got - want).abs().max())
    return out


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("family", FAMILIES, ids=FAMILIES)
def test_naive_reconstruction_is_exact(family: str, measure: str) -> None:
    """The naive decomposition itself reproduces every sub-block's real output (spec §2.5)."""
    ref = naive(family, measure)
    enc, dec, cross = ref["sub_blocks"]
    model = model64(family)
    assert len(enc) == len(model.encoder_blocks) and len(dec) == len(cross)
    assert len(dec) == len(model.decoder_blocks)
    assert ref["reconstruction_error"] <= 1e-12  # absolute; rtol 1e-9 checked per sub-block
    for sb in cross:
        assert sb.T.shape[:2] == (T, S + 1)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("family", FAMILIES, ids=FAMILIES)
def test_alti_plus_matches_naive(family: str, measure: str) -> None:
    result, ref = fast(family, measure), naive(family, measure)
    diffs = max_diffs(result, ref)
    bad = {k: v for k, v in diffs.items() if not v <= TOL}
    assert not bad, f"{family}/{measure}: alti_plus differs from the naive reference: {bad}"


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILIES)
def test_naive_matrices_are_proper(family: str) -> None:
    """Sanity of the reference itself: C ≥ 0, rows sum to 1, causal zeros, rollout rows sum to 1."""
    ref = naive(family, "l1")
    for field in FIELDS:
        C = ref[field]
        assert float(C.min()) >= 0.0
        assert torch.allclose(C.sum(-1), torch.ones(C.shape[:-1], dtype=torch.float64))
    dec = ref["decoder_contributions"]
    assert torch.equal(dec, dec.tril())
    R = ref["rollout"]
    assert torch.allclose(R.sum(-1), torch.ones(R.shape[:-1], dtype=torch.float64))


# A wrong naive variant per family, and a clean check that it would have been caught.
POST_NORM_FAMILIES = ("marian-postLN", "bart-postLN")
WRONG_VARIANTS = [(family, "residual_first") for family in FAMILIES] + [
    (family, "cross_scale_from_ln1") for family in POST_NORM_FAMILIES
]


@pytest.mark.parametrize(
    ("family", "mistake"), WRONG_VARIANTS, ids=[f"{f}-{m}" for f, m in WRONG_VARIANTS]
)
def test_comparison_has_teeth(family: str, mistake: str) -> None:
    """Putting the residual column first, or linearising the post-norm cross block with the
    self-attention norm's scale (ln1 instead of ln2), is caught by a wide margin."""
    if mistake == "residual_first":
        wrong = naive(family, "l1", check=True, residual_first=True)
    else:
        # the wrong scale does not even reconstruct y: the exactness check must refuse it ...
        with pytest.raises(AssertionError, match="misses y"):
            naive(family, "l1", cross_scale_from="ln1")
        wrong = naive(family, "l1", check=False, cross_scale_from="ln1")
    # ... and without the check, the contributions it gives are far from alti_plus's
    diff = float(
        (fast(family, "l1").cross_contributions[0] - wrong["cross_contributions"]).abs().max()
    )
    assert diff > 1e-3, (
        f"{family}: mistake {mistake!r} changes cross contributions by only {diff:.2e}"
    )
