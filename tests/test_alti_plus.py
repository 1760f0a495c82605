"""`alti_plus` on encoder-decoder bridges of every family: invariants, padding, generation,
statistics, errors (spec §2.4, §4, §7)."""

import pytest
import torch
from conftest import assert_plus_row_equals_single, bridge, encdec, hook_count
from models import ENC_DEC_BUILDERS, EOS
from naive_plus import assert_rollout_matches_naive

from alti_lens import InputError, UnsupportedModelError, alti_plus

SOURCES = ["the cat sat on the mat", "a big dog", "the red house was very small and green"]
TARGETS = ["le chat est sur la", "le chien", "la"]
KINDS = {
    "t5-preRMS": "pre_norm",
    "marian-postLN": "post_norm",
    "bart-postLN": "post_norm",
    "m2m100-preLN": "pre_norm",
}


@pytest.fixture(params=list(ENC_DEC_BUILDERS), ids=list(ENC_DEC_BUILDERS))
def family(request: pytest.FixtureRequest) -> str:
    return request.param


def _rows_sum_to_one(M: torch.Tensor, real_rows: torch.Tensor, atol: float) -> None:
    sums = M.sum(-1)[real_rows]
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=atol)


def test_invariants(family: str) -> None:
    result = alti_plus(encdec(family), SOURCES, TARGETS)
    S, T = result.source_tokens.shape[1], result.target_tokens.shape[1]
    src, tgt = result.source_attention_mask.bool(), result.target_attention_mask.bool()
    assert float(result.reconstruction_error.max()) <= 1e-9
    assert set(result.metadata["block_kinds"].values()) == {KINDS[family]}
    assert len(result.metadata["sub_blocks"]) == result.reconstruction_error.shape[1]
    for name in ("encoder_contributions", "encoder_rollout"):
        M = getattr(result, name)
        rows = src[:, None].expand(-1, M.shape[1], -1)
        _rows_sum_to_one(M, rows, 1e-12)
        assert (M[~rows] == 0).all() and (M.transpose(-1, -2)[~rows] == 0).all()
    dec_rows = tgt[:, None].expand(-1, result.decoder_contributions.shape[1], -1)
    for M in (result.decoder_contributions, result.cross_contributions, result.rollout):
        assert (M >= 0).all() and not M.isnan().any()
        _rows_sum_to_one(M, dec_rows, 1e-12)
        assert (M[~dec_rows] == 0).all()
    assert (result.decoder_contributions.triu(1) == 0).all()  # causal zeros
    assert (result.rollout[..., S:].triu(1) == 0).all()  # no step draws on later target tokens
    # padded source columns are zero in the cross matrices and the rollout
    pad_src = ~src[:, None, None, :].expand(-1, *result.cross_contributions.shape[1:3], -1)
    assert (result.cross_contributions[..., :S][pad_src] == 0).all()
    assert (result.rollout[..., :S][pad_src] == 0).all()
    sc = result.source_contribution
    torch.testing.assert_close(sc, result.rollout[:, -1, :, :S].sum(-1))
    assert ((sc >= 0) & (sc <= 1 + 1e-12)).all() and (sc[~tgt] == 0).all()
    assert result.rollout.shape == (3, result.decoder_contributions.shape[1], T, S + T)


def test_extended_rollout_matches_naive_loops(family: str) -> None:
    result = alti_plus(encdec(family), SOURCES[:2], TARGETS[:2])
    for b in range(2):
        assert_rollout_matches_naive(result, b)


def test_padded_batch_equals_single_runs(family: str) -> None:
    model = encdec(family)
    batch = alti_plus(model, SOURCES, TARGETS)
    for b, (source, target) in enumerate(zip(SOURCES, TARGETS, strict=True)):
        assert_plus_row_equals_single(batch, b, alti_plus(model, source, target))


def test_ids_with_masks_equal_text(family: str) -> None:
    model = encdec(family)
    text = alti_plus(model, SOURCES[:2], TARGETS[:2])
    ids = alti_plus(
        model,
        text.source_tokens,
        text.target_tokens,
        source_attention_mask=text.source_attention_mask,
        target_attention_mask=text.target_attention_mask,
    )
    assert torch.equal(ids.rollout, text.rollout)
    # text targets are shifted right by the library: row t predicts label t
    assert int(text.target_tokens[0, 0]) == model.cfg.decoder_start_token_id
    labels = text.target_labels[0]
    assert int(labels[int(text.target_attention_mask[0].sum()) - 1]) == EOS
    assert torch.equal(text.target_tokens[0, 1:5], labels[:4])


def test_zero_cross_attention_output_gives_no_source_contribution() -> None:
    model = ENC_DEC_BUILDERS["marian-postLN"](dtype=torch.float64, seed=5)
    with torch.no_grad():
        for block in model.decoder_blocks:
            for p in block.cross_attn.o.parameters():
                p.zero_()
    result = alti_plus(model, SOURCES, TARGETS)
    assert float(result.reconstruction_error.max()) <= 1e-9
    assert (result.source_contribution == 0).all()
    assert (result.cross_contributions[..., :-1] == 0).all()


def test_float32_agrees_with_float64(family: str) -> None:
    r64 = alti_plus(encdec(family), SOURCES, TARGETS)
    r32 = alti_plus(encdec(family), SOURCES, TARGETS, dtype=torch.float32)
    assert r32.rollout.dtype == torch.float32
    torch.testing.assert_close(r32.rollout.double(), r64.rollout, rtol=0, atol=2e-5)


@pytest.mark.parametrize("measure", ["l2", "norm", "attention", "attention_rollout"])
def test_other_measures(measure: str) -> None:
    result = alti_plus(encdec("t5-preRMS"), SOURCES, TARGETS, measure=measure)
    rows = result.target_attention_mask.bool()[:, None].expand(-1, 2, -1)
    _rows_sum_to_one(result.rollout, rows, 1e-12)
    if measure == "attention":  # head-mean attention has no residual: all mass from the source
        assert (result.cross_contributions[..., -1] == 0).all()


def test_generation_then_explanation(family: str) -> None:
    model = encdec(family)
    result = alti_plus(model, SOURCES[:2], max_new_tokens=6)
    assert result.metadata["target_generated"] is True
    tgt, mask, labels = result.target_tokens, result.target_attention_mask, result.target_labels
    assert (tgt[:, 0] == model.cfg.decoder_start_token_id).all()
    assert ((labels == -1) == (mask == 0)).all()
    # teacher forcing reproduces the greedy choices: the model's argmax at row t is label t
    with torch.no_grad():
        logits = model(
            result.source_tokens,
            decoder_input=tgt,
            attention_mask=result.source_attention_mask,
            decoder_attention_mask=mask,
        )
    real = mask.bool()
    forced = labels == EOS  # Marian/BART force EOS at the length limit
    agree = (logits.argmax(-1) == labels) | forced
    assert agree[real].all()
    assert float(result.reconstruction_error.max()) <= 1e-9


def test_sentence_statistics() -> None:
    result = alti_plus(encdec("m2m100-preLN"), SOURCES, TARGETS)
    stats = result.sentence_statistics(thresholds=(0.1, 0.5))
    mask = result.target_attention_mask.bool()
    sc = result.source_contribution
    for b in range(3):
        steps = sc[b][mask[b]]
        torch.testing.assert_close(stats["mean"][b], steps.mean())
        torch.testing.assert_close(stats["min"][b], steps.min())
        torch.testing.assert_close(stats["share_above_0.1"][b], (steps > 0.1).double().mean())
        if len(steps) > 1:
            torch.testing.assert_close(stats["mean_skip_first"][b], steps[1:].mean())
        else:
            assert stats["mean_skip_first"][b].isnan()
    # without the special (EOS) source columns, the source contribution can only shrink
    assert result.source_special_mask is not None
    assert result.source_special_mask[0].tolist() == [False] * 6 + [True] + [False] * 2
    assert (stats["mean_no_special"] <= stats["mean"] + 1e-12).all()
    assert (stats["mean_no_special"] < stats["mean"]).any()
    pd = pytest.importorskip("pandas", reason="pandas is an optional dependency")
    frame = result.sentence_statistics_frame(thresholds=(0.1, 0.5))
    assert isinstance(frame, pd.DataFrame) and len(frame) == 3
    assert list(frame.columns) == list(stats)


def test_no_hooks_left_behind(family: str) -> None:
    model = encdec(family)
    model(torch.tensor([[3, EOS]]), decoder_input=torch.tensor([[1]]))  # lazy bridge hooks
    before = hook_count(model)
    alti_plus(model, SOURCES[:1], TARGETS[:1])
    assert hook_count(model) == before


@pytest.mark.parametrize(
    ("source", "target", "kwargs", "match"),
    [
        ("", "le chat", {}, r"source\[0\] is an empty string"),
        ("the cat", "", {}, r"target\[0\] is an empty string"),
        (["the cat", "a dog"], ["le chat"], {}, r"source has 2 sequences but target has 1"),
        ("the cat", torch.tensor([[3, 4]]), {}, r"must be the decoder input.*start token 1"),
        (
            torch.tensor([[3, 4, EOS]]),
            torch.tensor([[1, 3]]),
            {"source_attention_mask": torch.ones(1, 2)},
            r"source_attention_mask has shape \(1, 2\) but the tokens have shape \(1, 3\)",
        ),
        (
            torch.tensor([[3, 4, EOS]]),
            torch.tensor([[1, 3]]),
            {"target_attention_mask": torch.tensor([[0, 1]])},
            r"must mark the decoder start token",
        ),
        ("the cat", "le chat", {"measure": "ALTI"}, r"unknown measure 'ALTI'"),
        ("the cat", None, {"target_attention_mask": torch.ones(1, 2)}, r"without a target"),
    ],
)
def test_bad_inputs(source, target, kwargs, match: str) -> None:
    with pytest.raises(InputError, match=match):
        alti_plus(encdec("t5-preRMS"), source, target, **kwargs)


def test_too_long_source() -> None:
    model = encdec("marian-postLN")
    with pytest.raises(InputError, match=r"source have 40 positions.*context of 32"):
        alti_plus(model, torch.full((1, 40), 3), torch.tensor([[1, 3]]))


def test_single_stack_models_point_to_alti() -> None:
    with pytest.raises(
        UnsupportedModelError, match=r"not an encoder-decoder.*alti\(model, inputs\)"
    ):
        alti_plus(bridge("gpt2-preLN"), "the cat", "the dog")
    with pytest.raises(UnsupportedModelError, match=r"not an encoder-decoder"):
        alti_plus(bridge("bert-postLN"), "the cat", "the dog")
