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
