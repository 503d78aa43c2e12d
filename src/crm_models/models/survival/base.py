"""The survival estimator interface every churn model implements, and the machinery they share.

``fit(X, duration, event)``; ``predict_risk`` (higher = leaves sooner); ``predict_survival(X, times)``;
``predict_churn_probability(X, horizon)``; ``predict_expected_lifetime(X, horizon)`` (restricted mean
survival time). Subclasses implement ``_fit``, ``predict_risk`` and ``predict_survival``; they read
prediction inputs through ``_input(X)``.

Shared numerics: the Breslow baseline cumulative hazard (for Cox-type models whose library has
none), right-continuous step-function evaluation, and clipping zero durations for log-time models.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from crm_models.errors import ModelInputError
from crm_models.models.preprocessing import select_model_input


def check_survival_data(
    X: pd.DataFrame, duration: Any, event: Any
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Validate survival training data; raise ``ModelInputError`` with a clear message."""
    if not isinstance(X, pd.DataFrame):
        X = pd.DataFrame(X)
    d = np.asarray(duration, dtype=float)
    e = np.asarray(event)
    if len(X) != len(d) or len(d) != len(e):
        raise ModelInputError(
            f"X has {len(X)} rows but duration has {len(d)} and event has {len(e)}"
        )
    if len(d) < 2:
        raise ModelInputError(f"need at least 2 customers to fit a survival model, got {len(d)}")
    if np.isnan(d).any():
        i = int(np.flatnonzero(np.isnan(d))[0])
        raise ModelInputError(f"duration has {int(np.isnan(d).sum())} NaN values, e.g. row {i}")
    if (d < 0).any():
        i = int(np.flatnonzero(d < 0)[0])
        raise ModelInputError(
            f"duration has {int((d < 0).sum())} negative values, e.g. row {i}: {d[i]}"
        )
    if np.isinf(d).any():
        i = int(np.flatnonzero(np.isinf(d))[0])
        raise ModelInputError(
            f"duration has {int(np.isinf(d).sum())} infinite values, e.g. row {i}; "
            "a censored customer gets its observed follow-up time and event=0"
        )
    if not np.isin(e, [0, 1, True, False]).all():
        raise ModelInputError("event must be 0/1 (1 = churned, 0 = censored)")
    e = e.astype(bool)
    if not e.any():
        raise ModelInputError("no events (every customer is censored): nothing to learn churn from")
    if X.isna().any().any():
        cols = X.columns[X.isna().any()].tolist()
        raise ModelInputError(f"features contain NaN in columns {cols}; impute them first")
    return X, d, e


def clip_zero_durations(duration: np.ndarray) -> np.ndarray:
    """Durations for log-time models: zeros become half the smallest positive duration.

    log(0) is undefined for AFT likelihoods; a customer who left on day 0 is read as having left
    before the first positive time observed, which keeps the ordering of every pair of customers.
    """
    positive = duration[duration > 0]
    if positive.size == 0:
        raise ModelInputError("every duration is 0: there is no time scale to learn from")
    return np.where(duration > 0, duration, 0.5 * positive.min())


def breslow_cumulative_hazard(
    duration: np.ndarray, event: np.ndarray, log_risk: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Breslow's baseline cumulative hazard H0 at the distinct event times.

    H0(t) = sum over event times s <= t of d(s) / sum_{j: T_j >= s} exp(log_risk_j), so that
    S(t | x) = exp(-H0(t) exp(log_risk(x))). Returns ``(event_times, H0)``. The caller should
    centre ``log_risk`` (and use the same centre at prediction) to keep exp() in range.
    """
    event = event.astype(bool)
    order = np.argsort(duration, kind="stable")
    t_sorted = duration[order]
    # risk-set sums: suffix sums of exp(log_risk) over customers ordered by duration
    at_risk = np.cumsum(np.exp(log_risk[order])[::-1])[::-1]
    event_times, n_events = np.unique(duration[event], return_counts=True)
    first_at_risk = np.searchsorted(t_sorted, event_times, side="left")
    return event_times, np.cumsum(n_events / at_risk[first_at_risk])


def evaluate_step(
    grid: np.ndarray, values: np.ndarray, times: np.ndarray, before: float
) -> np.ndarray:
    """Right-continuous step function through ``(grid, values)`` at ``times``.

    ``values`` is (len(grid),) or (n, len(grid)); times before ``grid[0]`` get ``before``, times
    after ``grid[-1]`` hold the last value.
    """
    idx = np.searchsorted(grid, times, side="right") - 1
    out = np.take(values, np.clip(idx, 0, None), axis=-1)
    return np.where(idx >= 0, out, before)


class SurvivalEstimator(BaseEstimator):
    """Common interface of the survival churn models (scikit-learn conventions).

    ``fit`` validates the data (see :func:`check_survival_data`), requires numeric features, and,
    for models that set ``_drops_constant_features`` (the linear ones, where a constant column is
    not identifiable), drops constant columns with a warning. Fitted attributes:
    ``feature_names_in_`` (all columns seen) and ``model_features_`` (the ones the model uses).
    Prediction takes the same columns as ``fit``.
    """

    _drops_constant_features: ClassVar[bool] = False

    def fit(self, X: pd.DataFrame, duration: Any, event: Any) -> SurvivalEstimator:
        """Fit on features ``X``, durations (days) and event indicators (1 = churned)."""
        X, d, e = check_survival_data(X, duration, event)
        non_numeric = [
            c
            for c in X.columns
            if not (pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))
        ]
        if non_numeric:
            raise ModelInputError(
                f"features {non_numeric} are not numeric (e.g. {X[non_numeric[0]].iloc[0]!r}); "
                "encode them first (SurvivalPipeline one-hot encodes categories)"
            )
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        constant = self._constant_features(X)
        if constant:
            warnings.warn(
                f"{type(self).__name__}: dropping constant feature(s) {constant}; "
                "a constant has no effect a model can estimate",
                UserWarning,
                stacklevel=2,
            )
        self.model_features_ = [c for c in X.columns if c not in constant]
        if not self.model_features_:
            raise ModelInputError(f"every feature is constant ({constant}): nothing to fit on")
        self._fit(X[self.model_features_].astype(float), d, e)
        return self

    def _constant_features(self, X: pd.DataFrame) -> list[str]:
        if not self._drops_constant_features:
            return []
        return X.columns[X.nunique(dropna=False).to_numpy() <= 1].tolist()

    def _input(self, X: Any) -> pd.DataFrame:
        """The prediction frame: the fitted model's columns as floats, or a clear error."""
        out = select_model_input(X, self.feature_names_in_, self.model_features_)
        if out.isna().to_numpy().any():
            cols = out.columns[out.isna().any()].tolist()
            raise ModelInputError(f"features contain NaN in columns {cols}; impute them first")
        return out

    @abstractmethod
    def _fit(self, X: pd.DataFrame, duration: np.ndarray, event: np.ndarray) -> None: ...

    @abstractmethod
    def predict_risk(self, X: pd.DataFrame) -> np.ndarray:
        """A score per customer; higher means churns sooner."""

    @abstractmethod
    def predict_survival(self, X: pd.DataFrame, times: Any) -> np.ndarray:
        """S(t | x) as an array of shape (n_customers, len(times))."""

    def predict_churn_probability(self, X: pd.DataFrame, horizon: float) -> np.ndarray:
        """P(churn within ``horizon`` days) = 1 - S(horizon)."""
        return 1.0 - self.predict_survival(X, [horizon])[:, 0]

    def predict_expected_lifetime(
        self, X: pd.DataFrame, horizon: float, n_points: int = 200
    ) -> np.ndarray:
        """Restricted mean survival time: the integral of S(t) over [0, horizon], in days."""
        grid = np.linspace(0.0, float(horizon), n_points)
        surv = self.predict_survival(X, grid)
        return np.trapezoid(surv, grid, axis=1)


class LinearRiskMixin:
    """Linear models: ``predict_risk(X) == X @ risk_coefficients_ + risk_intercept_``.

    ``risk_coefficients_`` is indexed by every fitted column (0 for dropped constants and strata),
    which gives exact linear SHAP values ``coef * (x - mean(x))``.
    """

    feature_names_in_: np.ndarray

    @property
    def risk_intercept_(self) -> float:
        """The constant of the linear risk: the risk of an all-zero feature row."""
        zero = pd.DataFrame(
            np.zeros((1, len(self.feature_names_in_))), columns=self.feature_names_in_
        )
        return float(self.predict_risk(zero)[0])  # type: ignore[attr-defined]

    def _risk_coefficients(self, coef: pd.Series) -> pd.Series:
        out = pd.Series(
            0.0, index=pd.Index(self.feature_names_in_, name="feature"), name="risk_coef"
        )
        out.loc[coef.index] = coef.to_numpy(float)
        return out
