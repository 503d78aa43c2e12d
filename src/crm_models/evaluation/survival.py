"""Metrics and plots for survival churn models, computed on held-out customers.

Owns discrimination (Harrell's and Uno's C, time-dependent AUC), accuracy (Brier score, integrated
Brier score), calibration at a horizon (predicted churn vs Kaplan-Meier observed per decile) and the
plots logged with each run. Metrics are scikit-survival's; this module makes their inputs valid
(structured arrays, evaluation times inside the follow-up, truncation where the censoring
distribution is undefined) and names the results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # plots are files for MLflow, never windows

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index
from sksurv.exceptions import NoComparablePairException
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.nonparametric import CensoringDistributionEstimator, kaplan_meier_estimator
from sksurv.util import Surv

from crm_models.errors import ConfigError, DataError

SurvivalPredictor = Callable[[np.ndarray], np.ndarray]
"""``predict_survival(times) -> S``, ``S[i, j]`` = P(customer i still active at ``times[j]``)."""


def harrell_c_index(duration: Any, event: Any, risk: Any) -> float:
    """Harrell's concordance: the share of comparable pairs ordered correctly by ``risk``.

    lifelines' ``concordance_index`` expects predicted *times* (higher = later), so minus the risk.
    """
    return float(concordance_index(np.asarray(duration), -np.asarray(risk), np.asarray(event)))


def survival_target(duration: Any, event: Any, name: str = "survival data") -> np.ndarray:
    """Validated durations (days) and events (1 = churned) as scikit-survival's structured array."""
    d, e = _check_survival(duration, event, name)
    return Surv.from_arrays(event=e, time=d)


def _check_survival(duration: Any, event: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(duration, dtype=float).ravel()
    e_raw = np.asarray(event).ravel()
    if len(d) != len(e_raw):
        raise DataError(f"{name}: duration has {len(d)} values but event has {len(e_raw)}")
    if len(d) < 2:
        raise DataError(f"{name}: need at least 2 customers to evaluate, got {len(d)}")
    if not np.isfinite(d).all():
        i = int(np.flatnonzero(~np.isfinite(d))[0])
        raise DataError(
            f"{name}: duration has {int((~np.isfinite(d)).sum())} NaN/inf values, e.g. row {i}"
        )
    if (d < 0).any():
        i = int(np.flatnonzero(d < 0)[0])
        raise DataError(
            f"{name}: duration has {int((d < 0).sum())} negative values, e.g. row {i}: {d[i]}"
        )
    if not np.isin(e_raw, [0, 1]).all():
        i = int(np.flatnonzero(~np.isin(e_raw, [0, 1]))[0])
        raise DataError(f"{name}: event must be 0/1 (1 = churned), e.g. row {i} has {e_raw[i]!r}")
    return d, e_raw.astype(bool)


def _horizon_key(h: float) -> str:
    return f"{float(h):g}d"


def _ipcw_limit(train: np.ndarray) -> float:
    """First time at which the training censoring distribution G stops being usable.

    G is the reverse Kaplan-Meier of the training data. Past the last training time it is
    undefined while positive; where it drops to 0 (administrative censoring at H: everyone still
    at risk is censored), inverse weights 1/G blow up. Evaluation times must stay below this.
    """
    cens = CensoringDistributionEstimator().fit(train)
    zero = np.flatnonzero(cens.prob_ <= 0.0)
    return float(cens.unique_time_[zero[0]] if len(zero) else cens.unique_time_[-1])


def _truncate(test: np.ndarray, limit: float) -> np.ndarray:
    """Administratively censor the test follow-up at ``limit``.

    For every time t < ``limit`` the IPCW metrics are unchanged (cases are events at <= t, controls
    are anyone observed past t; both sides keep their role), but scikit-survival no longer asks for
    1/G where G is zero or undefined.
    """
    time = np.minimum(test["time"], limit)
    event = test["event"] & (test["time"] < limit)
    return Surv.from_arrays(event=event, time=time)


def evaluation_times(
    train_duration: Any,
    train_event: Any,
    test_duration: Any,
    test_event: Any,
    horizons: Sequence[float],
) -> np.ndarray:
    """The time at which each horizon is evaluated: the horizon, clipped into the defined window.

    The window is [min test time, T) with T = min(largest test time, the time the training
    censoring distribution becomes zero or undefined); a horizon at or beyond T (e.g. the
    administrative censoring horizon H itself) is evaluated just below T, a horizon before the
    first test time at that time.
    """
    train = survival_target(train_duration, train_event, "train")
    test = survival_target(test_duration, test_event, "test")
    lo, hi = _window(train, test)
    return _clip_horizons(horizons, lo, hi)


def _window(train: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    hi = min(_ipcw_limit(train), float(test["time"].max()))
    lo = float(test["time"].min())
    if not hi > lo:
        raise DataError(
            f"test follow-up [{lo:g}, {float(test['time'].max()):g}] days leaves no time at which "
            f"the training censoring distribution is defined (it ends at {_ipcw_limit(train):g})"
        )
    return lo, hi


def _clip_horizons(horizons: Sequence[float], lo: float, hi: float) -> np.ndarray:
    h = np.asarray(list(horizons), dtype=float)
    if h.size == 0 or not (np.isfinite(h) & (h > 0)).all():
        raise ConfigError(f"evaluation horizons must be positive days, got {list(horizons)}")
    # sksurv needs times strictly below the largest observed test time
    return np.clip(h, lo, np.nextafter(hi, -np.inf))


def survival_metrics(
    train_duration: Any,
    train_event: Any,
    test_duration: Any,
    test_event: Any,
    risk: Any,
    predict_survival: SurvivalPredictor,
    horizons: Sequence[float],
    *,
    n_grid: int = 50,
    n_bins: int = 10,
) -> dict[str, float]:
    """Discrimination, accuracy and calibration of a survival model on held-out customers.

    ``risk`` is one score per test customer (higher = churns sooner); ``predict_survival`` is
    called once with a sorted time grid (days) and must return S(t) for every test customer,
    shape (n_test, len(times)) — e.g. ``lambda t: model.predict_survival(X_test, t)``. The
    training durations/events only estimate the censoring distribution for the IPCW metrics.

    Returns (``{h}`` is each horizon formatted with ``:g``, e.g. ``auc_90d``):

    - ``c_index``: Harrell's C on all test customers (``concordance_index_censored``).
    - ``uno_c_index``: Uno's IPCW C truncated at ``uno_tau`` = the largest evaluated horizon.
    - ``auc_{h}d``: cumulative/dynamic AUC at h, scoring customers by their predicted cumulative
      hazard at h (the same ranking as P(churn by h), so non-proportional models are judged on
      the horizon); NaN if no test customer churned by h. ``mean_auc``: its S-weighted mean over
      the grid below (``cumulative_dynamic_auc``).
    - ``brier_{h}d`` and ``integrated_brier_score`` over ``n_grid`` equally spaced days from the
      first test event to the largest evaluated horizon.
    - ``calibration_error_{h}d``: see :func:`calibration_table` (deciles when ``n_bins=10``).
    - ``eval_time_{h}d``: the day h was actually evaluated at. scikit-survival needs times inside
      the test follow-up and below the time T where the training censoring distribution becomes
      zero or undefined, so horizons are clipped into [first test time, T); a horizon equal to the
      administrative censoring horizon (everyone still at risk censored there) is evaluated just
      below it, which changes nothing when nobody churns exactly at H. Test follow-up beyond T is
      censored at T for the IPCW metrics, which leaves every metric below T unchanged.
    """
    train = survival_target(train_duration, train_event, "train")
    test = survival_target(test_duration, test_event, "test")
    risk = np.asarray(risk, dtype=float).ravel()
    if len(risk) != len(test):
        raise DataError(f"risk has {len(risk)} values but the test data has {len(test)} customers")
    if not np.isfinite(risk).all():
        raise DataError(f"risk has {int((~np.isfinite(risk)).sum())} NaN/inf values")
    if not test["event"].any():
        raise DataError(
            "test: no customer churned (every one is censored); concordance is undefined"
        )

    lo, hi = _window(train, test)
    eval_t = _clip_horizons(horizons, lo, hi)
    test_t = _truncate(test, hi)
    events = test_t["time"][test_t["event"]]
    if events.size == 0:
        raise DataError(
            f"test: no customer churned before day {hi:g}, where the metrics are defined"
        )
    first_event, t_max = float(events.min()), float(eval_t.max())

    grid = (
        np.unique(np.linspace(first_event, t_max, n_grid)) if t_max > first_event else np.array([])
    )
    times = np.unique(np.r_[grid, eval_t])
    surv = _predicted_survival(predict_survival, times, len(test))

    out: dict[str, float] = {
        "c_index": _nan_without_pairs(
            concordance_index_censored, test["event"], test["time"], risk
        ),
        "uno_c_index": (
            _nan_without_pairs(concordance_index_ipcw, train, test_t, risk, tau=t_max)
            if first_event < t_max  # sksurv raises when nobody churned before tau
            else float("nan")
        ),
        "uno_tau": t_max,
    }

    # log cumulative hazard ranks like 1 - S(t) but keeps early, tiny differences apart:
    # sksurv treats scores within 1e-8 (absolute) as ties.
    log_cumhaz = np.log(np.maximum(-np.log(np.clip(surv, 1e-300, 1.0)), 1e-300))
    has_case = times >= first_event
    auc, mean_auc = np.full(len(times), np.nan), float("nan")
    if has_case.any():
        auc[has_case], mean_auc = cumulative_dynamic_auc(
            train, test_t, log_cumhaz[:, has_case], times[has_case]
        )
    out["mean_auc"] = float(mean_auc)

    _, brier = brier_score(train, test_t, surv, times)
    on_grid = np.isin(times, grid)
    out["integrated_brier_score"] = (
        float(integrated_brier_score(train, test_t, surv[:, on_grid], grid))
        if len(grid) >= 2
        else np.nan
    )

    for h, t in zip(horizons, eval_t, strict=True):
        j = int(np.searchsorted(times, t))
        key = _horizon_key(h)
        out[f"auc_{key}"] = float(auc[j])
        out[f"brier_{key}"] = float(brier[j])
        table = calibration_table(test["time"], test["event"], 1.0 - surv[:, j], t, n_bins=n_bins)
        out[f"calibration_error_{key}"] = calibration_error(table)
        out[f"eval_time_{key}"] = float(t)
    return out


def _nan_without_pairs(c_index: Callable[..., tuple], *args: Any, **kwargs: Any) -> float:
    """A concordance, or NaN when no pair is comparable (e.g. no churn before ``tau``)."""
    try:
        return float(c_index(*args, **kwargs)[0])
    except NoComparablePairException:
        return float("nan")


def _predicted_survival(
    predict_survival: SurvivalPredictor, times: np.ndarray, n: int
) -> np.ndarray:
    surv = np.asarray(predict_survival(times), dtype=float)
    if surv.shape != (n, len(times)):
        raise DataError(
            f"predict_survival returned shape {surv.shape}; expected (n_test, n_times) = "
            f"{(n, len(times))}"
        )
    if not np.isfinite(surv).all():
        raise DataError(
            f"predict_survival returned {int((~np.isfinite(surv)).sum())} NaN/inf values"
        )
    if surv.min() < -1e-9 or surv.max() > 1 + 1e-9:
        raise DataError(
            f"predict_survival returned values outside [0, 1]: [{surv.min():g}, {surv.max():g}]"
        )
    return np.clip(surv, 0.0, 1.0)


def calibration_table(
    duration: Any, event: Any, churn_probability: Any, horizon: float, n_bins: int = 10
) -> pd.DataFrame:
    """Predicted vs observed churn by ``horizon`` for customers binned by predicted probability.

    Customers are sorted by ``churn_probability`` (predicted P(churn by ``horizon``)) and cut into
    ``n_bins`` groups of equal size (deciles by default; tied predictions may straddle a cut).
    Per bin: ``n``, ``predicted`` (mean predicted probability), ``observed`` = 1 - Kaplan-Meier
    S(horizon) of the bin, and its 95% log-log confidence interval ``observed_lower`` /
    ``observed_upper``. ``observed`` is NaN where the bin's follow-up ends before ``horizon``
    with survivors left (Kaplan-Meier is undefined there).
    """
    d, e = _check_survival(duration, event, "calibration data")
    p = np.asarray(churn_probability, dtype=float).ravel()
    if len(p) != len(d):
        raise DataError(f"churn_probability has {len(p)} values but there are {len(d)} customers")
    if not (np.isfinite(p) & (p >= -1e-9) & (p <= 1 + 1e-9)).all():
        raise DataError("churn_probability must be finite and within [0, 1]")
    if not horizon > 0 or n_bins < 1:
        raise ConfigError(f"horizon must be > 0 and n_bins >= 1, got {horizon}, {n_bins}")
    n_bins = min(int(n_bins), len(d))
    order = np.argsort(p, kind="stable")
    bin_of = np.empty(len(d), dtype=int)
    bin_of[order] = np.arange(len(d)) * n_bins // len(d)

    rows = []
    for b in range(n_bins):  # one Kaplan-Meier per bin, not per customer
        m = bin_of == b
        t, s, ci = kaplan_meier_estimator(e[m], d[m], conf_type="log-log")
        k = int(np.searchsorted(t, horizon, side="right")) - 1
        surv, lower, upper = (1.0, 1.0, 1.0) if k < 0 else (s[k], ci[0, k], ci[1, k])
        if horizon > d[m].max() and s[-1] > 0:
            surv = lower = upper = np.nan
        rows.append(
            {
                "bin": b + 1,
                "n": int(m.sum()),
                "events": int((e[m] & (d[m] <= horizon)).sum()),
                "p_min": p[m].min(),
                "p_max": p[m].max(),
                "predicted": p[m].mean(),
                "observed": 1.0 - surv,
                "observed_lower": 1.0 - upper,
                "observed_upper": 1.0 - lower,
            }
        )
    table = pd.DataFrame(rows).set_index("bin")
    table.attrs["horizon"] = float(horizon)
    return table


def calibration_error(table: pd.DataFrame) -> float:
    """The n-weighted mean |predicted - observed| over the bins of a :func:`calibration_table`."""
    ok = table["observed"].notna()
    if not ok.any():
        return float("nan")
    gap = (table.loc[ok, "predicted"] - table.loc[ok, "observed"]).abs()
    return float(np.average(gap, weights=table.loc[ok, "n"]))


def select_customers_by_risk(risk: Any, n: int = 8) -> np.ndarray:
    """Positions of ``n`` customers spread evenly over the risk ranking (lowest to highest risk)."""
    risk = np.asarray(risk, dtype=float).ravel()
    order = np.argsort(risk, kind="stable")
    picks = np.round(np.linspace(0, len(risk) - 1, min(n, len(risk)))).astype(int)
    return order[np.unique(picks)]


def plot_calibration(table: pd.DataFrame, horizon: float, title: str | None = None) -> plt.Figure:
    """Observed (Kaplan-Meier, 95% CI) vs predicted churn by ``horizon`` per bin; the diagonal."""
    ok = table["observed"].notna()
    t = table[ok]
    fig, ax = plt.subplots(figsize=(6, 6), layout="constrained")
    top = (
        float(np.nanmax([t["predicted"].max(), t["observed_upper"].max(), 0.05])) if len(t) else 1.0
    )
    lim = min(1.0, top * 1.08)
    ax.plot([0, lim], [0, lim], ls="--", color="grey", lw=1, label="perfectly calibrated")
    ax.errorbar(
        t["predicted"],
        t["observed"],
        yerr=[t["observed"] - t["observed_lower"], t["observed_upper"] - t["observed"]],
        fmt="o",
        ms=6,
        capsize=3,
        color="tab:blue",
        label=f"{len(table)} bins by predicted risk (95% CI)",
    )
    ax.set_xlim(0, lim)
    ax.set_ylim(0, lim)
    ax.set_aspect("equal")
    ax.set_xlabel(f"predicted churn probability within {horizon:g} days")
    ax.set_ylabel("observed churn (1 - Kaplan-Meier)")
    ax.set_title(title or f"Calibration at {horizon:g} days (error {calibration_error(table):.3f})")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left" if _below_diagonal(t) else "lower right", fontsize="small")
    return fig


def _below_diagonal(t: pd.DataFrame) -> bool:
    """Whether most points sit below the diagonal, leaving the upper-left corner to a legend."""
    return bool((t["observed"] <= t["predicted"]).mean() >= 0.5) if len(t) else True


def plot_survival_curves(
    times: Any,
    survival: Any,
    labels: Sequence[str] | None = None,
    title: str = "Predicted survival of sample customers",
) -> plt.Figure:
    """Predicted S(t) curves, one per row of ``survival`` (shape (n_customers, len(times))).

    Rows are coloured in order (e.g. pass customers sorted by risk, from
    :func:`select_customers_by_risk`); the legend sits outside the axes.
    """
    times = np.asarray(times, dtype=float)
    survival = np.atleast_2d(np.asarray(survival, dtype=float))
    if survival.shape[1] != len(times):
        raise DataError(
            f"survival has {survival.shape[1]} columns but there are {len(times)} times"
        )
    labels = (
        list(labels) if labels is not None else [f"customer {i + 1}" for i in range(len(survival))]
    )
    if len(labels) != len(survival):
        raise DataError(f"{len(labels)} labels for {len(survival)} survival curves")
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(survival)))
    fig, ax = plt.subplots(figsize=(8.5, 5), layout="constrained")
    for s, label, c in zip(survival, labels, colors, strict=True):
        ax.plot(times, s, color=c, lw=1.8, label=label)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(times.min(), times.max())
    ax.set_xlabel("days since cutoff")
    ax.set_ylabel("predicted probability still active, S(t)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right center", fontsize="small")
    return fig


def plot_km_by_segment(
    duration: Any,
    event: Any,
    segment: Any,
    title: str = "Kaplan-Meier by segment",
    max_segments: int = 8,
) -> plt.Figure:
    """Kaplan-Meier survival curves with 95% confidence bands, one per segment."""
    df = pd.DataFrame({"d": np.asarray(duration), "e": np.asarray(event), "s": np.asarray(segment)})
    top = df["s"].value_counts().index[:max_segments]
    fig, ax = plt.subplots(figsize=(9, 5), layout="constrained")
    for name in sorted(top, key=str):
        part = df[df["s"] == name]
        KaplanMeierFitter(label=f"{name} (n={len(part):,})").fit(
            part["d"], part["e"]
        ).plot_survival_function(ax=ax, ci_show=True)
    ax.set_xlabel("days since cutoff")
    ax.set_ylabel("share not churned")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    # outside the axes: curves can pass through any corner
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right center", fontsize="small")
    return fig


def plot_risk_distribution(
    risk: Any, event: Any, title: str = "Predicted risk", xlabel: str = "risk (log partial hazard)"
) -> plt.Figure:
    """Histogram of predicted risk for customers who churned vs were censored."""
    risk, event = np.asarray(risk, dtype=float), np.asarray(event).astype(bool)
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.histogram_bin_edges(risk, bins=40)
    ax.hist(risk[~event], bins=bins, alpha=0.6, label=f"censored (n={(~event).sum():,})")
    ax.hist(risk[event], bins=bins, alpha=0.6, label=f"churned (n={event.sum():,})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("customers")
    ax.set_title(title)
    ax.legend(loc="best")
    fig.tight_layout()
    return fig
