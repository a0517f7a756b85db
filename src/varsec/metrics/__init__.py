"""varsec.metrics (see DESIGN.md section 1): ranking metrics, CHR@K and paired statistics."""

from varsec.metrics.ranking import (
    DEFAULT_KS,
    RankingResult,
    UserItems,
    build_exclusion,
    chr_at_k,
    evaluate_full,
    evaluate_lists,
    evaluate_sampled,
    sample_negatives,
    sampled_lists,
    topk,
)
from varsec.metrics.stats import (
    PairedTestResult,
    bootstrap_ci,
    paired_bootstrap_ci,
    paired_test,
)

__all__ = [
    "DEFAULT_KS",
    "PairedTestResult",
    "RankingResult",
    "UserItems",
    "bootstrap_ci",
    "build_exclusion",
    "chr_at_k",
    "evaluate_full",
    "evaluate_lists",
    "evaluate_sampled",
    "paired_bootstrap_ci",
    "paired_test",
    "sample_negatives",
    "sampled_lists",
    "topk",
]
