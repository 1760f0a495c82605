"""Plots (`alti_lens.render.plot`): the results' figures, returned with token labels."""

import pytest
import torch
from conftest import encdec

from alti_lens import AltiResult, MissingDependencyError, alti_plus

TEXTS = ["the cat sat on the mat", "a big red dog"]


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


def test_plot_of_one_head(heads) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is an optional dependency")
    import matplotlib.pyplot as plt

    fig = heads.plot(-1, head=1, batch=1)
    ax = fig.axes[0]
    n = int(heads.attention_mask[1].sum())
    assert ax.get_title() == f"ALTI head 1 contributions, layer {heads.n_layers - 1}"
    shown = torch.tensor(ax.images[0].get_array()).double()
    torch.testing.assert_close(shown, heads.head(-1, 1)[1, :n, :n], rtol=0, atol=1e-7)
    plt.close("all")


def test_missing_matplotlib_says_how_to_install(monkeypatch, result: AltiResult) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(MissingDependencyError, match=r"matplotlib: pip install matplotlib"):
        result.plot()
    assert issubclass(MissingDependencyError, ImportError)
