"""Penalized Cox proportional hazards (lifelines ``CoxPHFitter``) behind the survival interface."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter

from crm_models.models.survival.base import LinearRiskMixin, SurvivalEstimator

_DURATION, _EVENT = "__duration", "__event"


class CoxPH(LinearRiskMixin, SurvivalEstimator):
    """Cox model h(t|x) = h0(t) exp(x'beta) with an elastic-net penalty (lifelines).

    Parameters
    ----------
    penalizer : L2/L1 penalty strength (lifelines' ``penalizer``).
    l1_ratio : share of the L1 part of the penalty.
    strata : optional column names to stratify the baseline hazard on.

    Constant features (other than strata) are dropped with a warning: Cox has no intercept, so a
    constant column is not identifiable. All-event data (no censoring) fits normally.
    """

    _drops_constant_features = True

    def __init__(
        self, penalizer: float = 0.01, l1_ratio: float = 0.0, strata: list[str] | None = None
    ) -> None:
        self.penalizer = penalizer
        self.l1_ratio = l1_ratio
        self.strata = strata

    def _constant_features(self, X: pd.DataFrame) -> list[str]:
        return [c for c in super()._constant_features(X) if c not in (self.strata or [])]

    def _fit(self, X: pd.DataFrame, duration: np.ndarray, event: np.ndarray) -> None:
        df = X.reset_index(drop=True).copy()
        df[_DURATION] = duration
        df[_EVENT] = event.astype(int)
        self.lifelines_model_ = CoxPHFitter(penalizer=self.penalizer, l1_ratio=self.l1_ratio)
        self.lifelines_model_.fit(
            df, duration_col=_DURATION, event_col=_EVENT, strata=self.strata
        )

    @property
    def coef_(self) -> pd.Series:
        """Log hazard ratios per feature."""
        return self.lifelines_model_.params_

    @property
    def risk_coefficients_(self) -> pd.Series:
        """Per fitted column: d predict_risk / dx (= coef_, 0 for dropped constants and strata)."""
        return self._risk_coefficients(self.lifelines_model_.params_)

    def summary(self) -> pd.DataFrame:
        """lifelines' coefficient table (coef, exp(coef), se, CI, p)."""
        return self.lifelines_model_.summary

    def predict_risk(self, X: pd.DataFrame) -> np.ndarray:
        """Log partial hazard x'beta (centred); higher = churns sooner."""
        return np.asarray(
            self.lifelines_model_.predict_log_partial_hazard(self._input(X)), dtype=float
        )

    def predict_survival(self, X: pd.DataFrame, times: Any) -> np.ndarray:
        times = np.atleast_1d(np.asarray(times, dtype=float))
        sf = self.lifelines_model_.predict_survival_function(self._input(X), times=times)
        return np.asarray(sf, dtype=float).T
