"""The survival estimator interface every churn model implements.

``fit(X, duration, event)``; ``predict_risk`` (higher = leaves sooner); ``predict_survival(X, times)``;
``predict_churn_probability(X, horizon)``; ``predict_expected_lifetime(X, horizon)`` (restricted mean
survival time). Subclasses implement ``_fit``, ``predict_risk`` and ``predict_survival``.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from crm_models.errors import ModelInputError


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
    if not np.isin(e, [0, 1, True, False]).all():
        raise ModelInputError("event must be 0/1 (1 = churned, 0 = censored)")
    e = e.astype(bool)
    if not e.any():
        raise ModelInputError("no events (every customer is censored): nothing to learn churn from")
    if X.isna().any().any():
        cols = X.columns[X.isna().any()].tolist()
        raise ModelInputError(f"features contain NaN in columns {cols}; impute them first")
    return X, d, e


class SurvivalEstimator(BaseEstimator):
    """Common interface of the survival churn models (scikit-learn conventions)."""

    def fit(self, X: pd.DataFrame, duration: Any, event: Any) -> SurvivalEstimator:
        """Fit on features ``X``, durations (days) and event indicators (1 = churned)."""
        X, d, e = check_survival_data(X, duration, event)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self._fit(X, d, e)
        return self

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
