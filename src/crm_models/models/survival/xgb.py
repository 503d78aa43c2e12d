"""Gradient-boosted survival trees on xgboost's native API: AFT and Cox objectives.

``objective="aft"`` (``survival:aft``): the margin m(x) is the predicted log-time and
log T = m(x) + sigma * eps with eps normal, logistic or extreme-value, so
S(t | x) = 1 - F((log t - m(x)) / sigma). Censored customers are intervals [T, +inf). Boosting
starts from the intercept-only AFT maximum likelihood (``aft_intercept_``), not xgboost's 0.5 days.

``objective="cox"`` (``survival:cox``): the margin is a log hazard ratio. xgboost learns no baseline
hazard, so Breslow's estimator is computed on the training data after boosting:
S(t | x) = exp(-H0(t) exp(m(x))), a step function in t.

The booster is kept as ``booster_``; ``risk_sign_`` (+1 cox, -1 aft) turns margin contributions
(``booster_.predict(..., pred_contribs=True)``, additive in the margin) into contributions to
``predict_risk``.

Zero durations are clipped to half the smallest positive duration before training (AFT needs
log t; for Cox a censored label of 0 would otherwise read as an event, xgboost marking censoring by
sign), which keeps every pairwise ordering.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy import stats
from scipy.optimize import minimize_scalar

from crm_models.errors import ConfigError, ModelInputError
from crm_models.models.survival.base import (
    SurvivalEstimator,
    breslow_cumulative_hazard,
    clip_zero_durations,
    evaluate_step,
)

# xgboost's AFT noise distributions; its "extreme" is the minimum Gumbel, F(z) = 1 - exp(-exp(z)),
# which makes the AFT a Weibull model
_AFT_NOISE = {"normal": stats.norm, "logistic": stats.logistic, "extreme": stats.gumbel_l}


def aft_intercept(
    duration: np.ndarray, event: np.ndarray, distribution: str, sigma: float
) -> float:
    """Maximum-likelihood log-time location of the intercept-only AFT model.

    xgboost starts AFT boosting from a fixed ``base_score`` of 0.5 days (margin log 0.5), far from
    typical log-times; starting from this MLE makes short or heavily regularized ensembles
    calibrated instead of shrunk towards half a day.
    """
    noise = _AFT_NOISE[distribution]
    log_t = np.log(np.asarray(duration, dtype=float))
    event = np.asarray(event, dtype=bool)

    def nll(mu: float) -> float:
        z = (log_t - mu) / sigma
        return -(noise.logpdf(z[event]).sum() + noise.logsf(z[~event]).sum())

    lo, hi = log_t.min() - 10 * sigma, log_t.max() + 10 * sigma
    return float(minimize_scalar(nll, bounds=(lo, hi), method="bounded").x)


def _xgb_name(name: Any) -> str:
    # xgboost refuses feature names containing [, ] or <
    return str(name).replace("[", "(").replace("]", ")").replace("<", "lt")


class _XGBSurvivalBase(SurvivalEstimator):
    """Shared implementation; the objective comes from ``self.objective``."""

    objective: str

    def __init__(
        self,
        n_estimators: int = 200,
        max_depth: int = 3,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        min_child_weight: float = 1.0,
        reg_lambda: float = 1.0,
        reg_alpha: float = 0.0,
        max_delta_step: float | None = None,
        aft_loss_distribution: Literal["normal", "logistic", "extreme"] = "normal",
        aft_loss_distribution_scale: float = 1.0,
        tree_method: str = "hist",
        n_jobs: int | None = None,
        random_state: int = 0,
        early_stopping_rounds: int | None = None,
        validation_fraction: float = 0.1,
        callbacks: list[Any] | None = None,
        distributed: Any = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.reg_alpha = reg_alpha
        self.max_delta_step = max_delta_step
        self.aft_loss_distribution = aft_loss_distribution
        self.aft_loss_distribution_scale = aft_loss_distribution_scale
        self.tree_method = tree_method
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.callbacks = callbacks
        self.distributed = distributed

    def _max_delta_step(self) -> float:
        # survival:cox takes unbounded Newton steps: with every margin at 0 the earliest churners
        # have gradient ~ -1 and a hessian ~ the share of events before them, so a leaf of them
        # gets a step of hundreds on large data (first-tree margins 6.6 / 12.6 / 21 at 30k / 100k /
        # 448k rows), exp(margin) swamps the risk sets and the margins turn NaN from ~200k rows.
        # Capping the step as xgboost does for count:poisson (0.7) keeps it stable at any size.
        if self.max_delta_step is None:
            return 0.7 if self.objective == "cox" else 0.0
        if not self.max_delta_step >= 0:
            raise ConfigError(
                f"{type(self).__name__}: max_delta_step must be >= 0 (0 = no cap), "
                f"got {self.max_delta_step!r}"
            )
        return float(self.max_delta_step)

    def _xgb_params(self) -> dict[str, Any]:
        name = type(self).__name__
        if self.objective not in ("aft", "cox"):
            raise ConfigError(f"{name}: objective must be 'aft' or 'cox', got {self.objective!r}")
        params: dict[str, Any] = {
            "objective": f"survival:{self.objective}",
            "eval_metric": f"{self.objective}-nloglik",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda,
            "alpha": self.reg_alpha,
            "max_delta_step": self._max_delta_step(),
            "tree_method": self.tree_method,
            "seed": self.random_state,
        }
        if self.n_jobs is not None:
            params["nthread"] = self.n_jobs
        if self.objective == "aft":
            if self.aft_loss_distribution not in _AFT_NOISE:
                raise ConfigError(
                    f"{name}: aft_loss_distribution must be one of {sorted(_AFT_NOISE)}, "
                    f"got {self.aft_loss_distribution!r}"
                )
            params["aft_loss_distribution"] = self.aft_loss_distribution
            params["aft_loss_distribution_scale"] = self.aft_loss_distribution_scale
        return params

    def _dmatrix(self, X: np.ndarray, duration: np.ndarray, event: np.ndarray) -> xgb.DMatrix:
        names = [_xgb_name(c) for c in self.model_features_]
        if self.objective == "aft":
            return xgb.DMatrix(
                X,
                label_lower_bound=duration,
                label_upper_bound=np.where(event, duration, np.inf),
                feature_names=names,
            )
        # survival:cox reads a negative label as censored at |label|
        return xgb.DMatrix(X, label=np.where(event, duration, -duration), feature_names=names)

    def _fit(self, X: pd.DataFrame, duration: np.ndarray, event: np.ndarray) -> None:
        params = self._xgb_params()
        d = clip_zero_durations(duration)
        if self.objective == "aft":
            self.aft_intercept_ = aft_intercept(
                d, event, self.aft_loss_distribution, self.aft_loss_distribution_scale
            )
            params["base_score"] = float(np.exp(self.aft_intercept_))  # xgboost takes its log
        Xa = X.to_numpy(np.float32)
        dtrain = self._dmatrix(Xa, d, event)
        booster = self._train_booster(params, Xa, d, event, dtrain)
        self.booster_ = booster
        self.risk_sign_ = 1.0 if self.objective == "cox" else -1.0
        if self.objective == "cox":
            margin = self.booster_.predict(dtrain, output_margin=True).astype(float)
            if not np.isfinite(margin).all():
                raise ModelInputError(
                    f"{type(self).__name__}: boosting diverged (non-finite margins for "
                    f"{int((~np.isfinite(margin)).sum())} of {margin.size} training customers); "
                    f"max_delta_step={self._max_delta_step()}: set it to e.g. 0.7 or lower "
                    "learning_rate"
                )
            # centring keeps exp(margin) in range; the same centre is used at prediction
            self.baseline_log_risk_ = float(np.mean(margin))
            self.baseline_times_, self.baseline_cumulative_hazard_ = breslow_cumulative_hazard(
                d, event, margin - self.baseline_log_risk_
            )
        else:
            self.sigma_ = float(self.aft_loss_distribution_scale)

    def _train_booster(
        self, params: dict[str, Any], Xa: np.ndarray, d: np.ndarray, event: np.ndarray,
        dtrain: xgb.DMatrix,
    ) -> xgb.Booster:
        """Boost here, or hand the rows to ``distributed`` (e.g. a Spark trainer)."""
        if self.distributed is not None:
            if self.early_stopping_rounds or self.callbacks:
                raise ConfigError(
                    f"{type(self).__name__}: distributed training takes neither "
                    "early_stopping_rounds nor callbacks"
                )
            return self.distributed.train(params, Xa, d, event, self.n_estimators)
        evals, rounds = [], None
        if self.early_stopping_rounds:
            rng = np.random.default_rng(self.random_state)
            is_val = rng.random(len(d)) < self.validation_fraction
            if not event[is_val].any() or not event[~is_val].any():
                raise ConfigError(
                    f"{type(self).__name__}: validation_fraction={self.validation_fraction} leaves "
                    "no events on one side of the early-stopping split; raise it or turn off "
                    "early_stopping_rounds"
                )
            dfit = self._dmatrix(Xa[~is_val], d[~is_val], event[~is_val])
            evals = [(self._dmatrix(Xa[is_val], d[is_val], event[is_val]), "validation")]
            rounds = self.early_stopping_rounds
        else:
            dfit = dtrain
        booster = xgb.train(
            params,
            dfit,
            num_boost_round=self.n_estimators,
            evals=evals,
            early_stopping_rounds=rounds,
            verbose_eval=False,
            callbacks=list(self.callbacks or []),
        )
        if rounds:
            self.best_iteration_ = int(booster.best_iteration)
            booster = booster[: self.best_iteration_ + 1]
        return booster

    def to_dmatrix(self, X: pd.DataFrame) -> xgb.DMatrix:
        """Features as the ``DMatrix`` ``booster_`` expects (e.g. for ``pred_contribs=True``)."""
        Xa = self._input(X).to_numpy(np.float32)
        return xgb.DMatrix(Xa, feature_names=[_xgb_name(c) for c in self.model_features_])

    def predict_margin(self, X: pd.DataFrame) -> np.ndarray:
        """The raw margin: log hazard ratio (cox) or predicted log-time (aft)."""
        margin = self.booster_.predict(self.to_dmatrix(X), output_margin=True).astype(float)
        if not np.isfinite(margin).all():
            raise ModelInputError(
                f"{type(self).__name__}: the boosted model predicts non-finite margins for "
                f"{int((~np.isfinite(margin)).sum())} of {margin.size} customers: training "
                "diverged; set max_delta_step (e.g. 0.7) or lower learning_rate"
            )
        return margin

    def predict_risk(self, X: pd.DataFrame) -> np.ndarray:
        """``risk_sign_ * margin``: log hazard ratio (cox) or minus log-time (aft)."""
        return self.risk_sign_ * self.predict_margin(X)

    def predict_survival(self, X: pd.DataFrame, times: Any) -> np.ndarray:
        times = np.atleast_1d(np.asarray(times, dtype=float))
        margin = self.predict_margin(X)
        if self.objective == "cox":
            H0 = evaluate_step(
                self.baseline_times_, self.baseline_cumulative_hazard_, times, before=0.0
            )
            return np.exp(-np.outer(np.exp(margin - self.baseline_log_risk_), H0))
        with np.errstate(divide="ignore"):  # log(0) = -inf gives S(0) = 1
            z = (np.log(times)[None, :] - margin[:, None]) / self.sigma_
        return _AFT_NOISE[self.aft_loss_distribution].sf(z)


class XGBSurvival(_XGBSurvivalBase):
    """Boosted survival trees (xgboost), ``objective="aft"`` or ``"cox"``.

    Parameters
    ----------
    objective : "aft" (accelerated failure time; margin = log-time) or "cox" (margin = log
        hazard ratio; Breslow baseline for survival curves).
    n_estimators, max_depth, learning_rate, subsample, colsample_bytree, min_child_weight,
    reg_lambda, reg_alpha, tree_method : xgboost's booster parameters.
    max_delta_step : cap on each leaf's Newton step (xgboost's ``max_delta_step``; 0 = none).
        None = 0.7 for cox, whose uncapped steps diverge on large data, and 0 for aft.
    aft_loss_distribution : "normal", "logistic" or "extreme" (AFT noise; extreme = Weibull).
    aft_loss_distribution_scale : sigma of the AFT noise, in log-time.
    n_jobs : threads (None = xgboost's default, all cores).
    random_state : seed of xgboost's row/column sampling and of the early-stopping split.
    early_stopping_rounds : if set, hold out ``validation_fraction`` of the training rows and
        stop when the validation negative log-likelihood has not improved for this many rounds;
        ``best_iteration_`` is kept and ``booster_`` is truncated to it.
    callbacks : xgboost ``TrainingCallback`` objects run during boosting (tuning uses one to
        report validation C-index and prune trials).
    distributed : an object whose ``train(params, X, duration, event, num_boost_round)``
        returns the booster, trained elsewhere (``crm_models.spark.SparkBoosterTrainer``:
        on a Spark cluster); None boosts in this process.
    """

    def __init__(
        self,
        objective: Literal["aft", "cox"] = "aft",
        n_estimators: int = 200,
        max_depth: int = 3,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        min_child_weight: float = 1.0,
        reg_lambda: float = 1.0,
        reg_alpha: float = 0.0,
        max_delta_step: float | None = None,
        aft_loss_distribution: Literal["normal", "logistic", "extreme"] = "normal",
        aft_loss_distribution_scale: float = 1.0,
        tree_method: str = "hist",
        n_jobs: int | None = None,
        random_state: int = 0,
        early_stopping_rounds: int | None = None,
        validation_fraction: float = 0.1,
        callbacks: list[Any] | None = None,
        distributed: Any = None,
    ) -> None:
        self.objective = objective
        super().__init__(
            n_estimators=n_estimators,
            max_depth=max_depth,
            learning_rate=learning_rate,
            subsample=subsample,
            colsample_bytree=colsample_bytree,
            min_child_weight=min_child_weight,
            reg_lambda=reg_lambda,
            reg_alpha=reg_alpha,
            max_delta_step=max_delta_step,
            aft_loss_distribution=aft_loss_distribution,
            aft_loss_distribution_scale=aft_loss_distribution_scale,
            tree_method=tree_method,
            n_jobs=n_jobs,
            random_state=random_state,
            early_stopping_rounds=early_stopping_rounds,
            validation_fraction=validation_fraction,
            callbacks=callbacks,
            distributed=distributed,
        )


class XGBSurvivalAFT(_XGBSurvivalBase):
    """:class:`XGBSurvival` with the objective fixed to ``"aft"`` (registry name ``xgb_aft``)."""

    objective: ClassVar[str] = "aft"  # type: ignore[misc]


class XGBSurvivalCox(_XGBSurvivalBase):
    """:class:`XGBSurvival` with the objective fixed to ``"cox"`` (registry name ``xgb_cox``)."""

    objective: ClassVar[str] = "cox"  # type: ignore[misc]
