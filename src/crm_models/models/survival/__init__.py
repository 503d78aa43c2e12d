"""Survival-analysis churn models behind one sklearn-style interface."""

from __future__ import annotations

from crm_models.models.survival.base import SurvivalEstimator, check_survival_data
from crm_models.models.survival.cox import CoxPH
from crm_models.models.survival.pipeline import SurvivalPipeline

MODELS: dict[str, type[SurvivalEstimator]] = {"cox_ph": CoxPH}
"""Model names a config may use under ``model.name``."""

__all__ = ["MODELS", "CoxPH", "SurvivalEstimator", "SurvivalPipeline", "check_survival_data"]
