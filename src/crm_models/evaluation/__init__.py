"""Metrics and plots per task."""

from __future__ import annotations

from crm_models.evaluation.survival import (
    calibration_error,
    calibration_table,
    evaluation_times,
    harrell_c_index,
    plot_calibration,
    plot_km_by_segment,
    plot_risk_distribution,
    plot_survival_curves,
    select_customers_by_risk,
    survival_metrics,
    survival_target,
)

__all__ = [
    "calibration_error",
    "calibration_table",
    "evaluation_times",
    "harrell_c_index",
    "plot_calibration",
    "plot_km_by_segment",
    "plot_risk_distribution",
    "plot_survival_curves",
    "select_customers_by_risk",
    "survival_metrics",
    "survival_target",
]

# --- CLV metrics and Fader-Hardie diagnostics (clv.py) ---
from crm_models.evaluation.clv import (
    clv_metrics,
    compare_models,
    conditional_expectations_table,
    decile_table,
    frequency_histogram_table,
    frequency_recency_matrix,
    lorenz_curve,
    normalized_gini,
    plot_conditional_expectations,
    plot_deciles,
    plot_frequency_histogram,
    plot_frequency_recency_matrix,
    plot_lorenz,
    plot_tracking_cumulative,
    plot_tracking_incremental,
    tracking_table,
)

__all__ += [
    "clv_metrics",
    "compare_models",
    "conditional_expectations_table",
    "decile_table",
    "frequency_histogram_table",
    "frequency_recency_matrix",
    "lorenz_curve",
    "normalized_gini",
    "plot_conditional_expectations",
    "plot_deciles",
    "plot_frequency_histogram",
    "plot_frequency_recency_matrix",
    "plot_lorenz",
    "plot_tracking_cumulative",
    "plot_tracking_incremental",
    "tracking_table",
]

# --- Attribution truth, errors and plots (attribution.py) ---
from crm_models.evaluation.attribution import (
    attribution_errors,
    plot_budget,
    plot_roi,
    plot_shares_by_method,
    plot_transition_heatmap,
    shapley_logistic,
    true_channel_shares,
)

__all__ += [
    "attribution_errors",
    "plot_budget",
    "plot_roi",
    "plot_shares_by_method",
    "plot_transition_heatmap",
    "shapley_logistic",
    "true_channel_shares",
]
