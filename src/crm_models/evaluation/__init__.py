"""Metrics and plots per task."""

from __future__ import annotations

from crm_models.evaluation.survival import harrell_c_index, plot_km_by_segment, plot_risk_distribution

__all__ = ["harrell_c_index", "plot_km_by_segment", "plot_risk_distribution"]
