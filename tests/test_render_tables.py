"""Tables (`alti_lens.render.tables`): the results' `to_dataframe` and ALTI+'s statistics frame."""

import pytest
import torch
from conftest import bridge, encdec

from alti_lens import MissingDependencyError, alti, alti_logit, alti_plus

TEXTS = ["the cat sat on the mat", "a big red dog"]


def test_tables() -> None:
    pytest.importorskip("pandas", reason="pandas is an optional dependency")
    result = alti(bridge("gpt2-preLN", torch.float64), TEXTS)
    frame = result.to_dataframe()
    n0, n1 = (int(m.sum()) for m in result.attention_mask)
    assert len(frame) == result.n_layers * (n0 * n0 + n1 * n1)
    last = frame[(frame.batch == 0) & (frame.layer == 2) & (frame.query_pos == 6)]
    assert abs(last.rollout.sum() - 1) < 1e-12
    logit = alti_logit(bridge("gpt2-preLN", torch.float64), TEXTS, "the")
    assert len(logit.to_dataframe()) == n0 + n1
    plus = alti_plus(encdec("bart-postLN"), TEXTS, ["le chat", "le chien est"])
    assert len(plus.to_dataframe()) == int(plus.target_attention_mask.sum())
    stats = plus.sentence_statistics_frame()
    assert len(stats) == len(plus) and list(stats.columns) == list(plus.sentence_statistics())
    torch.testing.assert_close(
        torch.tensor(stats["mean"].tolist(), dtype=plus.source_contribution.dtype),
        plus.sentence_statistics()["mean"],
    )


def test_missing_pandas_says_how_to_install(monkeypatch) -> None:
    import sys

    from alti_lens.render import tables

    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependencyError, match=r"to_dataframe\(\) needs pandas: pip install"):
        tables.table(("a",), [(1,)])
    with pytest.raises(MissingDependencyError, match="sentence_statistics"):
        tables.dataframe({"a": [1]}, missing="sentence_statistics_frame() needs pandas")
