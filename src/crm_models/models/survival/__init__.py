"""Survival-analysis churn models behind one sklearn-style interface, and their registry."""

from __future__ import annotations

from crm_models.models.survival.aft import LogNormalAFT, WeibullAFT
from crm_models.models.survival.base import SurvivalEstimator, check_survival_data
from crm_models.models.survival.cox import CoxPH
from crm_models.models.survival.pipeline import SurvivalPipeline
from crm_models.models.survival.sksurv_models import GradientBoostingSurvival, RandomSurvivalForest
from crm_models.models.survival.xgb import XGBSurvival, XGBSurvivalAFT, XGBSurvivalCox

MODELS: dict[str, type[SurvivalEstimator]] = {
    "cox_ph": CoxPH,
    "weibull_aft": WeibullAFT,
    "lognormal_aft": LogNormalAFT,
    "xgb_aft": XGBSurvivalAFT,
    "xgb_cox": XGBSurvivalCox,
    "rsf": RandomSurvivalForest,
    "gbsa": GradientBoostingSurvival,
}
"""Model names a config may use under ``model.name``."""

__all__ = [
    "MODELS",
    "CoxPH",
    "GradientBoostingSurvival",
    "LogNormalAFT",
    "RandomSurvivalForest",
    "SurvivalEstimator",
    "SurvivalPipeline",
    "WeibullAFT",
    "XGBSurvival",
    "XGBSurvivalAFT",
    "XGBSurvivalCox",
    "check_survival_data",
]
