"""Pure selections on results (`alti_lens.results.selections` and the results' methods): top
sources, dropping and merging sources, one head's part; out-of-range arguments say the range."""

import pytest
import torch
from conftest import bridge, encdec

from alti_lens import AltiResult, InputError, alti_logit, alti_plus
from alti_lens.errors import AltiLensError, InputIndexError
from alti_lens.results import selections
from alti_lens.results.selections import complete_spans, word_spans

TEXTS = ["the cat sat on the mat", "a big red dog"]


def test_top_sources(result: AltiResult) -> None:
    top = result.top_sources(-1, k=3, batch=1)
    row = int(result.attention_mask[1].sum()) - 1
    values = result.rollout[1, -1, row]
    assert [p for p, _, _ in top] == values.argsort(descending=True)[:3].tolist()
    assert top[0][1] == result.str_tokens[1][top[0][0]] and top[0][2] == float(values.max())
    own = result.top_sources(2, k=1, rollout=False, layer=0)
    assert own[0][2] == float(result.contributions[0, 0, 2].max())


def test_top_sources_of_alti_logit_and_alti_plus() -> None:
    logit = alti_logit(bridge("gpt2-preLN", torch.float64), TEXTS, "the")
    assert logit.top_sources(2)[0][2] == float(logit.scores[0].max())
    plus = alti_plus(encdec("bart-postLN"), TEXTS, ["le chat", "le chien est"])
    assert plus.top_sources(-1, 2)[0][1].startswith(("src:", "tgt:"))


def test_without_renormalises(result: AltiResult) -> None:
    view = result.without(tokens=["<bos>"])
    real = result.attention_mask.bool()[:, None].expand(-1, result.n_layers, -1)
    assert (view.rollout[..., 0] == 0).all()
    sums = view.rollout.sum(-1)[real]
    rows_with_mass = sums > 0
    torch.testing.assert_close(sums[rows_with_mass], torch.ones_like(sums[rows_with_mass]))
    # other columns keep their ratios
    a, b = result.rollout[0, -1, 5, 2:4], view.rollout[0, -1, 5, 2:4]
    torch.testing.assert_close(a[0] / a[1], b[0] / b[1])
    assert result.without([0]).rollout.equal(view.rollout)


def test_merge_spans_sums_sources_and_averages_rows(result: AltiResult) -> None:
    labels, C, R = result.merge([(1, 3), (4, 7)])
    assert labels == ["<bos>", "thecat", "sat", "onthemat"]
    assert C.shape == (result.n_layers, 4, 4)
    torch.testing.assert_close(R.sum(-1), torch.ones(result.n_layers, 4, dtype=torch.float64))
    full = result.rollout[0, -1]
    torch.testing.assert_close(R[-1, 1, 3], full[1:3, 4:7].sum(-1).mean())
    with pytest.raises(ValueError, match="overlaps"):
        result.merge([(1, 3), (2, 4)])


def test_word_spans() -> None:
    assert word_spans(["<|endoftext|>", "Hello", "Ġworld", "ing", "Ġ!"]) == [
        (0, 1), (1, 2), (2, 4), (4, 5),
    ]  # fmt: skip
    assert word_spans(["[CLS]", "play", "##ing", "now", "[SEP]"]) == [
        (0, 1),
        (1, 3),
        (3, 4),
        (4, 5),
    ]
    assert word_spans([" the", " cat", "s"]) == [(0, 1), (1, 3)]
    assert complete_spans([(1, 3)], 4) == [(0, 1), (1, 3), (3, 4)]


def test_head_selects_one_heads_part(heads) -> None:
    H = heads.head_contributions.shape[2]
    part = heads.head(1, 2)
    assert part.shape == heads.contributions[:, 1].shape
    assert torch.equal(part, heads.head_contributions[:, 1, 2])
    assert torch.equal(heads.head(1, -1), heads.head(1, H - 1))
    # per real row: every head's part plus the residual is the whole row
    total = sum(heads.head(0, h).sum(-1) for h in range(H)) + heads.residual_contribution[:, 0]
    real = heads.attention_mask.bool()
    torch.testing.assert_close(total[real], torch.ones_like(total[real]))
    with pytest.raises(InputError, match=f"head=7 is out of range: this model has {H} heads"):
        heads.head(0, 7)


def test_no_per_head_data_says_how_to_get_it(result: AltiResult) -> None:
    with pytest.raises(InputError, match=r"alti\(model, inputs, per_head=True\)"):
        result.head(0, 0)
    with pytest.raises(InputError, match="no per-head data"):
        result.coloured_text(head=0)
    pytest.importorskip("matplotlib", reason="matplotlib is an optional dependency")
    with pytest.raises(InputError, match="per_head=True"):
        result.plot(0, head=1)


def test_alti_logit_head_parts_add_up_to_the_scores() -> None:
    logit = alti_logit(bridge("gpt2-preLN", torch.float64), TEXTS, "the")
    L, H = logit.head_scores.shape[1:3]
    total = sum(logit.head(layer, h) for layer in range(L) for h in range(H))
    torch.testing.assert_close(total, logit.scores)
    best = logit.top_heads(3, batch=1)
    sums = logit.head_scores[1].sum(-1)
    assert best[0][2] == pytest.approx(float(sums.max()))
    assert sums[best[0][0], best[0][1]] == sums.max() and len(best) == 3
    with pytest.raises(InputIndexError, match=f"head={H} is out of range: this model has {H} "):
        logit.head(0, H)
    with pytest.raises(InputIndexError, match=f"layer={L} is out of range: this result has {L} "):
        logit.head(L, 0)


def test_spans_outside_the_sequence_are_input_errors() -> None:
    with pytest.raises(InputError, match=r"span \(2, 9\) is not within 0..4: expected .* Fix:"):
        complete_spans([(2, 9)], 4)
    with pytest.raises(InputError, match=r"span \(1, 3\) overlaps another span: .* Fix:") as err:
        complete_spans([(0, 2), (1, 3)], 4)
    assert isinstance(err.value, ValueError) and isinstance(err.value, AltiLensError)


def test_out_of_range_arguments_name_the_range(result: AltiResult) -> None:
    n = int(result.attention_mask[1].sum())
    cases = [
        (lambda: result.top_sources(batch=2), r"batch=2 is out of range: this result holds 2 "
         r"sequences; expected 0..1 \(or -2..-1 from the end\)\. Fix: pass a batch"),
        (lambda: result.top_sources(layer=3), "layer=3 is out of range: this result has 3 layers"),
        (lambda: result.top_sources(-9, batch=1),
         f"position=-9 is out of range: sequence 1 has {n} real tokens"),
        (lambda: result.top_sources(99), "position=99 is out of range: the sequences have 7 "),
        (lambda: result.coloured_text(layer=-4), "layer=-4 is out of range"),
        (lambda: result.layer(5), "layer=5 is out of range"),
        (lambda: result.merge(batch=-3), "batch=-3 is out of range"),
        (lambda: result.show_circuitsvis(layer=7), "layer=7 is out of range"),
    ]  # fmt: skip
    for call, message in cases:
        with pytest.raises(InputIndexError, match=message) as err:
            call()
        assert isinstance(err.value, IndexError) and isinstance(err.value, InputError)
    assert result.top_sources(-1, batch=-1) == result.top_sources(n - 1, batch=1)
    with pytest.raises(InputError, match="k=-1: expected"):
        result.top_sources(k=-1)


def test_top_lists_real_positions_only() -> None:
    """Padding (value 0) never outranks a real position, even a negative one."""
    values = torch.tensor([-0.5, -0.25, 0.0, 0.0])
    tokens = ["a", "b", "<pad>", "<pad>"]
    real = torch.tensor([1, 1, 0, 0])
    assert selections.top(values, tokens, 3, real) == [(1, "b", -0.25), (0, "a", -0.5)]
    assert selections.top(values, tokens, 1)[0][1] == "<pad>"  # without the mask it would
