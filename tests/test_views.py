"""Result views and storage: top sources, dropping tokens, merging, tables, HTML, save/load."""

import dataclasses
from typing import Any

import pytest
import torch
from conftest import bridge, encdec

from alti_lens import AltiLogitResult, AltiPlusResult, AltiResult, alti, alti_logit, alti_plus
from alti_lens.results.selections import complete_spans, word_spans

TEXTS = ["the cat sat on the mat", "a big red dog"]


@pytest.fixture(scope="module")
def result() -> AltiResult:
    return alti(bridge("gpt2-preLN", torch.float64), TEXTS)


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


def test_top_sources(result: AltiResult) -> None:
    top = result.top_sources(-1, k=3, batch=1)
    row = int(result.attention_mask[1].sum()) - 1
    values = result.rollout[1, -1, row]
    assert [p for p, _, _ in top] == values.argsort(descending=True)[:3].tolist()
    assert top[0][1] == result.str_tokens[1][top[0][0]] and top[0][2] == float(values.max())
    own = result.top_sources(2, k=1, rollout=False, layer=0)
    assert own[0][2] == float(result.contributions[0, 0, 2].max())


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


def test_tables_and_html(result: AltiResult) -> None:
    pytest.importorskip("pandas", reason="pandas is an optional dependency")
    frame = result.to_dataframe()
    n0, n1 = (int(m.sum()) for m in result.attention_mask)
    assert len(frame) == result.n_layers * (n0 * n0 + n1 * n1)
    last = frame[(frame.batch == 0) & (frame.layer == 2) & (frame.query_pos == 6)]
    assert abs(last.rollout.sum() - 1) < 1e-12
    html = result._repr_html_()
    assert "AltiResult(batch=2" in html and "&lt;bos&gt;" in html
    logit = alti_logit(bridge("gpt2-preLN", torch.float64), TEXTS, "the")
    assert len(logit.to_dataframe()) == n0 + n1 and "ALTI-Logit" in logit._repr_html_()
    assert logit.top_sources(2)[0][2] == float(logit.scores[0].max())
    plus = alti_plus(encdec("bart-postLN"), TEXTS, ["le chat", "le chien est"])
    assert len(plus.to_dataframe()) == int(plus.target_attention_mask.sum())
    assert plus.top_sources(-1, 2)[0][1].startswith(("src:", "tgt:"))
    assert "source contribution" in plus._repr_html_()


def test_plots_return_figures_with_token_labels(tmp_path, result: AltiResult) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is an optional dependency")
    import matplotlib.pyplot as plt

    fig = result.plot(batch=0)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == result.str_tokens[0]
    assert ax.get_title() == "ALTI rollout, layer 2"
    fig.savefig(tmp_path / "heatmap.png")
    plus = alti_plus(encdec("marian-postLN"), TEXTS, ["le chat", "le chien est"])
    bars = plus.plot(batch=1)
    heights = [p.get_height() for p in bars.axes[0].patches]
    n = int(plus.target_attention_mask[1].sum())
    torch.testing.assert_close(
        torch.tensor(heights[:n], dtype=torch.float64), plus.source_contribution[1, :n].double(),
        rtol=0, atol=1e-6,
    )  # fmt: skip
    grid = plus.plot_rollout(batch=0)
    labels = [t.get_text() for t in grid.axes[0].get_xticklabels()]
    assert labels[0].startswith("src:") and labels[-1].startswith("tgt:")
    grid.savefig(tmp_path / "rollout.png")
    assert (tmp_path / "heatmap.png").stat().st_size > 1000
    plt.close("all")
