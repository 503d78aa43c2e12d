"""Parametric accelerated failure time models (lifelines Weibull / log-normal AFT).

An AFT model is linear in log-time: log T = b0 + x'b + sigma * eps, with eps standard extreme-value
(Weibull) or standard normal (log-normal). A positive coefficient stretches the time to churn, so
the risk score is minus the linear predictor: ``predict_risk(x) = -(b0 + x'b)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from lifelines import LogNormalAFTFitter, WeibullAFTFitter
from lifelines.fitters import ParametricRegressionFitter

from crm_models.models.survival.base import (
    LinearRiskMixin,
    SurvivalEstimator,
    clip_zero_durations,
)

_DURATION, _EVENT = "__duration", "__event"


class _LifelinesAFT(LinearRiskMixin, SurvivalEstimator):
    """Shared adapter: a lifelines AFT fitter whose location parameter is linear in the features.

    Zero durations are clipped to half the smallest positive duration (lifelines refuses
    non-positive times: log-time is undefined at 0). Constant features are dropped with a warning
    (the model has an intercept). All-event data fits normally.
    """

    _drops_constant_features = True
    _fitter: ClassVar[type[ParametricRegressionFitter]]
    _location: ClassVar[str]  # lifelines' name of the log-time location parameter

    def __init__(self, penalizer: float = 0.01, l1_ratio: float = 0.0) -> None:
        self.penalizer = penalizer
        self.l1_ratio = l1_ratio

    def _fit(self, X: pd.DataFrame, duration: np.ndarray, event: np.ndarray) -> None:
        df = X.reset_index(drop=True).copy()
        df[_DURATION] = clip_zero_durations(duration)
        df[_EVENT] = event.astype(int)
        self.lifelines_model_ = self._fitter(penalizer=self.penalizer, l1_ratio=self.l1_ratio)
        self.lifelines_model_.fit(df, duration_col=_DURATION, event_col=_EVENT)

    @property
    def coef_(self) -> pd.Series:
        """Effects on log-time per feature (exp(coef) = time ratio), without the intercept."""
        return self.lifelines_model_.params_.loc[self._location].drop("Intercept")

    @property
    def intercept_(self) -> float:
        """Intercept of the log-time location."""
        return float(self.lifelines_model_.params_.loc[(self._location, "Intercept")])

    @property
    def risk_coefficients_(self) -> pd.Series:
        """Per fitted column: d predict_risk / dx = -coef_ (0 for dropped constants)."""
        return self._risk_coefficients(-self.coef_)

    def summary(self) -> pd.DataFrame:
        """lifelines' parameter table (coef, exp(coef) = time ratio, se, CI, p)."""
        return self.lifelines_model_.summary

    def predict_log_time(self, X: pd.DataFrame) -> np.ndarray:
        """The linear predictor of log-time, b0 + x'b."""
        X = self._input(X)
        coef = self.coef_
        return X[coef.index].to_numpy(float) @ coef.to_numpy(float) + self.intercept_

    def predict_risk(self, X: pd.DataFrame) -> np.ndarray:
        """Minus the log-time linear predictor: higher = churns sooner."""
        return -self.predict_log_time(X)

    def predict_survival(self, X: pd.DataFrame, times: Any) -> np.ndarray:
        times = np.atleast_1d(np.asarray(times, dtype=float))
        sf = self.lifelines_model_.predict_survival_function(self._input(X), times=times)
        return np.asarray(sf, dtype=float).T


class WeibullAFT(_LifelinesAFT):
    """Weibull AFT: S(t|x) = exp(-(t / lambda(x))^rho), log lambda(x) = b0 + x'b (lifelines).

    Parameters
    ----------
    penalizer : elastic-net penalty strength (lifelines' ``penalizer``).
    l1_ratio : share of the L1 part of the penalty.
    """

    _fitter = WeibullAFTFitter
    _location = "lambda_"


class LogNormalAFT(_LifelinesAFT):
    """Log-normal AFT: log T ~ Normal(mu(x), sigma), mu(x) = b0 + x'b (lifelines).

    Parameters
    ----------
    penalizer : elastic-net penalty strength (lifelines' ``penalizer``).
    l1_ratio : share of the L1 part of the penalty.
    """

    _fitter = LogNormalAFTFitter
    _location = "mu_"
