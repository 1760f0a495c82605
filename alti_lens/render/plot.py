"""Pictures of results (matplotlib, imported when a figure is drawn). Functions take plain tensors
and labels and return figures; they never show them, so they work the same in notebooks, scripts
and tests (the results' `plot` methods pick the numbers and call them)."""

from typing import Any

from jaxtyping import Float
from torch import Tensor

from alti_lens.errors import MissingDependencyError


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "plots need matplotlib: pip install matplotlib (alti-lens[viz])"
        ) from err
    return plt


def heatmap(
    matrix: Float[Tensor, "rows cols"],
    row_labels: list[str],
    col_labels: list[str],
    title: str = "",
    *,
    xlabel: str = "source token",
    ylabel: str = "token",
) -> Any:
    """A contribution or rollout matrix with token labels; returns the figure."""
    plt = _pyplot()
    rows, cols = matrix.shape
    fig, ax = plt.subplots(figsize=(1.5 + 0.45 * cols, 1.2 + 0.4 * rows))
    image = ax.imshow(matrix.detach().float().cpu().numpy(), cmap="Oranges", vmin=0, aspect="auto")
    ax.set_xticks(range(cols), col_labels, rotation=90)
    ax.set_yticks(range(rows), row_labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def source_target_bars(source: Float[Tensor, " steps"], labels: list[str], title: str = "") -> Any:
    """Per decoder step, the source share (bottom) and the target-prefix share (top), as in the
    ALTI+ paper's source-vs-target plots; returns the figure."""
    plt = _pyplot()
    values = source.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(max(5.5, 2.5 + 0.45 * len(values)), 3.2))
    steps = range(len(values))
    ax.bar(steps, values, color="#e6550d", label="source")
    ax.bar(steps, 1 - values, bottom=values, color="#3182bd", label="target prefix")
    ax.set_xticks(list(steps), labels, rotation=90)
    ax.set_ylim(0, 1)
    ax.set_ylabel("contribution")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
