"""Evaluation of ALTI against ground truth and other attribution methods (docs/EVALUATION.md).

`metrics` is pure tensor code (AER, top-source accuracy, deletion curves, correlations); `runs`
runs the experiments on any model `alti_lens` supports, so they can be repeated on your own models
(the word-alignment experiment lives in `alignment`, and `runs` re-exports it). `hallucination`
builds and scores the hallucination-detection test set (tutorial 06).
The report itself is written by `benchmarks/evaluation/run_evaluation.py`.
"""

from .metrics import (
    alignment_error_interval,
    alignment_error_rate,
    argmax_alignment,
    auroc,
    auroc_interval,
    deletion_auc,
    deletion_order,
    mean_interval,
    pearson,
    random_orders,
    resample_curve,
    spearman,
    top_source,
    word_level,
)

__all__ = [
    "alignment_error_interval",
    "alignment_error_rate",
    "argmax_alignment",
    "auroc",
    "auroc_interval",
    "deletion_auc",
    "deletion_order",
    "mean_interval",
    "pearson",
    "random_orders",
    "resample_curve",
    "spearman",
    "top_source",
    "word_level",
]
