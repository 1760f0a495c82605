"""Evaluation of ALTI against ground truth and other attribution methods (docs/EVALUATION.md).

`metrics` is pure tensor code (AER, top-source accuracy, deletion curves, correlations); `runs`
runs the experiments on any model `alti_lens` supports, so they can be repeated on your own models
(the word-alignment experiment lives in `alignment`, and `runs` re-exports it). `hallucination`
builds and scores the hallucination-detection test set (tutorial 06). `yardsticks` holds the
trivial baselines and causal references of the alignment and induction experiments. The tasks
with models of their own, each with its data, known answers and experiment functions: `agreement`
(translator v2: agreement needs a second source word), `prefix` (source vs target-prefix steps),
`contrastive` (the ALTI-Logit paper's contrastive protocol) and `aupc` (the ALTI paper's
token-removal comprehensiveness and sufficiency).
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
