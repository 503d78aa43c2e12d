"""Tree ensembles from scikit-survival behind the survival interface: random survival forest and
gradient-boosted Cox trees.

Survival curves are step functions on the training times, evaluated at any requested time:
before the first training time S = 1, after the last the final value is held.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sksurv.ensemble import GradientBoostingSurvivalAnalysis as _SkGBSA
from sksurv.ensemble import RandomSurvivalForest as _SkRSF
from sksurv.util import Surv

from crm_models.models.survival.base import (
    SurvivalEstimator,
    breslow_cumulative_hazard,
    evaluate_step,
)

# RSF survival arrays are (rows x training times): predict in row chunks of about this many cells
_CELLS_PER_CHUNK = 20_000_000


class RandomSurvivalForest(SurvivalEstimator):
    """Random survival forest (Ishwaran et al. 2008; scikit-survival).

    ``predict_risk`` is sksurv's ensemble risk: the predicted cumulative hazard summed over the
    training event times (expected number of events). Survival comes from the forest's
    Kaplan-Meier-type leaf estimates.

    Parameters
    ----------
    n_estimators, max_depth, min_samples_split, min_samples_leaf, max_features, max_samples :
        scikit-survival's forest parameters.
    n_jobs : worker processes for fit and predict (None = 1).
    random_state : seed of the bootstrap and feature sampling.
    time_resolution : if set, durations are rounded up to multiples of this (e.g. 1.0 day) before
        fitting. The forest's split search and leaf curves cost grows with the number of distinct
        event times: on 9k churn durations in fractional days (3.4k distinct) a 100-tree fit took
        133 s; at day resolution there are at most ``horizon`` distinct times.
    """

    def __init__(
        self,
        n_estimators: int = 100,
        max_depth: int | None = None,
        min_samples_split: int = 6,
        min_samples_leaf: int = 3,
        max_features: str | float | None = "sqrt",
        max_samples: float | None = None,
        n_jobs: int | None = None,
        random_state: int = 0,
        time_resolution: float | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_samples = max_samples
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.time_resolution = time_resolution

    def _fit(self, X: pd.DataFrame, duration: np.ndarray, event: np.ndarray) -> None:
        if self.time_resolution:
            step = float(self.time_resolution)
            duration = np.maximum(np.ceil(duration / step), 1.0) * step
        self.sksurv_model_ = _SkRSF(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            min_samples_split=self.min_samples_split,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            max_samples=self.max_samples,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        ).fit(X.to_numpy(float), Surv.from_arrays(event=event, time=duration))

    def predict_risk(self, X: pd.DataFrame) -> np.ndarray:
        return self.sksurv_model_.predict(self._input(X).to_numpy(float))

    def predict_survival(self, X: pd.DataFrame, times: Any) -> np.ndarray:
        times = np.atleast_1d(np.asarray(times, dtype=float))
        Xa = self._input(X).to_numpy(float)
        grid = self.sksurv_model_.unique_times_
        chunk = max(1, _CELLS_PER_CHUNK // len(grid))
        out = np.empty((len(Xa), len(times)))
        for start in range(0, len(Xa), chunk):  # row chunks bound memory, not a per-customer loop
            arr = self.sksurv_model_.predict_survival_function(
                Xa[start : start + chunk], return_array=True
            )
            out[start : start + chunk] = evaluate_step(grid, arr, times, before=1.0)
        return out


class GradientBoostingSurvival(SurvivalEstimator):
    """Gradient-boosted regression trees on the Cox partial likelihood (scikit-survival).

    ``predict_risk`` is the ensemble's log hazard ratio (sksurv's ``predict``); survival is
    exp(-H0(t) exp(risk)) with Breslow's H0 from the training data, computed here in vectorized
    form (scikit-survival builds one Python step function per customer).

    Parameters
    ----------
    n_estimators, learning_rate, max_depth, subsample, min_samples_split, min_samples_leaf,
    max_features, dropout_rate : scikit-survival's boosting parameters (loss is fixed to
        ``"coxph"``, the one with survival curves).
    random_state : seed of row subsampling and feature sampling.
    """

    def __init__(
        self,
        n_estimators: int = 100,
        learning_rate: float = 0.1,
        max_depth: int = 3,
        subsample: float = 1.0,
        min_samples_split: int = 2,
        min_samples_leaf: int = 1,
        max_features: str | float | None = None,
        dropout_rate: float = 0.0,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.dropout_rate = dropout_rate
        self.random_state = random_state

    def _fit(self, X: pd.DataFrame, duration: np.ndarray, event: np.ndarray) -> None:
        Xa = X.to_numpy(float)
        self.sksurv_model_ = _SkGBSA(
            loss="coxph",
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            subsample=self.subsample,
            min_samples_split=self.min_samples_split,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            dropout_rate=self.dropout_rate,
            random_state=self.random_state,
        ).fit(Xa, Surv.from_arrays(event=event, time=duration))
        log_risk = self.sksurv_model_.predict(Xa)
        self.baseline_log_risk_ = float(np.mean(log_risk))
        self.baseline_times_, self.baseline_cumulative_hazard_ = breslow_cumulative_hazard(
            duration, event, log_risk - self.baseline_log_risk_
        )

    def predict_risk(self, X: pd.DataFrame) -> np.ndarray:
        """Log hazard ratio f(x); higher = churns sooner."""
        return self.sksurv_model_.predict(self._input(X).to_numpy(float))

    def predict_survival(self, X: pd.DataFrame, times: Any) -> np.ndarray:
        times = np.atleast_1d(np.asarray(times, dtype=float))
        H0 = evaluate_step(
            self.baseline_times_, self.baseline_cumulative_hazard_, times, before=0.0
        )
        return np.exp(-np.outer(np.exp(self.predict_risk(X) - self.baseline_log_risk_), H0))
