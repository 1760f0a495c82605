"""The CircuitsVis hand-off (`alti_lens.render.circuitsvis`)."""

import sys

import pytest
import torch

from alti_lens import MissingDependencyError


def test_circuitsvis_missing_says_how_to_install(monkeypatch, heads) -> None:
    monkeypatch.setitem(sys.modules, "circuitsvis", None)
    monkeypatch.setitem(sys.modules, "circuitsvis.attention", None)
    with pytest.raises(MissingDependencyError, match="pip install circuitsvis"):
        heads.show_circuitsvis()


def test_circuitsvis_widget(heads) -> None:
    pytest.importorskip("circuitsvis", reason="circuitsvis is optional")
    import json

    widget = heads.show_circuitsvis(layer=1, batch=1)
    code = widget.cdn_src  # only read: rendering it would fetch CircuitsVis's script from a CDN
    props = json.loads(code[code.index("{", code.index("AttentionHeads,")) : code.rindex("}") + 1])
    n = int(heads.attention_mask[1].sum())
    H = heads.head_contributions.shape[2]
    assert props["tokens"] == heads.str_tokens[1][:n]
    assert props["attentionHeadNames"] == ["rollout", "C"] + [f"head {h}" for h in range(H)]
    shown = torch.tensor(props["attention"], dtype=torch.float64)
    torch.testing.assert_close(shown[0], heads.rollout[1, 1, :n, :n], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(shown[3], heads.head(1, 1)[1, :n, :n], rtol=1e-6, atol=1e-7)
