"""Evaluation of customer lifetime value predictions and the Fader-Hardie BTYD diagnostics.

This module owns two things:

1. Metrics for any per-customer CLV prediction (a BTYD model or an ML regressor; spend or purchase
   counts): MAE, RMSE, the Lorenz curve and normalized Gini, Spearman's rank correlation, the
   aggregate error, the decile table, :func:`compare_models` (the one table a run logs to compare
   models) and their plots.
2. The diagnostics of Fader, Hardie & Lee (2005), "Counting your customers the easy way"
   (Figures 1-4), and lifetimes' frequency/recency matrices, for a fitted purchase model. The
   model is duck-typed: ``prob_n_purchases(n, t)`` = P(X(t) = n) for a new customer (``n`` an
   int array, ``t`` a scalar); ``expected_purchases(t)`` = E[X(t)] for a new customer (``t`` an
   array); ``predict_purchases(summary, t)`` = conditional expected purchases per customer in the
   next ``t`` periods; ``prob_alive(summary)``. ``summary`` is a
   :func:`crm_models.features.btyd_summary` frame.

Plots use matplotlib's Agg backend and return Figures; the runner logs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

import matplotlib

matplotlib.use("Agg")  # plots are files for MLflow, never windows

import ibis
import ibis.expr.types as ir
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from crm_models.errors import ConfigError, DataError
from crm_models.features.btyd import TIME_UNIT_DAYS
from crm_models.features.engine import TableLike, boundary_day, lit_ts, to_ibis

METRIC_DIRECTIONS: dict[str, str] = {
    "mae": "min",
    "rmse": "min",
    "normalized_gini": "max",
    "spearman": "max",
    "aggregate_error": "min_abs",
}
"""How :func:`compare_models` picks the best model per metric."""

_UNIT_NAMES = {"D": "day", "W": "week", "M": "month"}


class PurchaseModel(Protocol):
    """What the Fader-Hardie diagnostics need from a fitted BTYD purchase model."""

    def prob_n_purchases(self, n: Any, t: float) -> Any: ...

    def expected_purchases(self, t: Any) -> Any: ...

    def predict_purchases(self, summary: pd.DataFrame, t: Any) -> Any: ...

    def prob_alive(self, summary: pd.DataFrame) -> Any: ...


# --- inputs ----------------------------------------------------------------------------------


def _values(x: Any, name: str) -> np.ndarray:
    v = np.asarray(x, dtype=float).ravel()
    if not np.isfinite(v).all():
        i = int(np.flatnonzero(~np.isfinite(v))[0])
        raise DataError(
            f"{name}: {int((~np.isfinite(v)).sum())} NaN/inf values, e.g. position {i}: {v[i]}"
        )
    return v


def _pair(actual: Any, predicted: Any, name: str = "predicted") -> tuple[np.ndarray, np.ndarray]:
    """Actual and predicted as float arrays, aligned by index when both are pandas Series."""
    both_series = isinstance(actual, pd.Series) and isinstance(predicted, pd.Series)
    if both_series and not predicted.index.equals(actual.index):
        missing = actual.index.difference(predicted.index)
        extra = predicted.index.difference(actual.index)
        if len(missing) or len(extra) or not actual.index.is_unique:
            examples = [f"missing {missing[0]!r}"] if len(missing) else []
            examples += [f"extra {extra[0]!r}"] if len(extra) else []
            raise DataError(
                f"{name}: its index does not match the actual values' index "
                f"({len(missing)} customers missing, {len(extra)} extra"
                + (f", e.g. {' and '.join(examples)})" if examples else "; duplicated ids)")
            )
        predicted = predicted.reindex(actual.index)
    a, p = _values(actual, "actual"), _values(predicted, name)
    if len(a) != len(p):
        raise DataError(f"{name} has {len(p)} values but actual has {len(a)}")
    if len(a) == 0:
        raise DataError("actual: no customers to evaluate")
    return a, p


# --- ranking: Lorenz curve and Gini ----------------------------------------------------------


def _tie_mean(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Each value replaced by the mean over its run of equal ``keys`` (keys already sorted)."""
    new = np.r_[True, keys[1:] != keys[:-1]]
    group = np.cumsum(new) - 1
    return (np.bincount(group, weights=values) / np.bincount(group))[group]


def _captured(actual: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Cumulative actual value (n + 1 points from 0) when customers are ranked by ``score``, high
    first. Tied scores share their value evenly: the curve is the mean over all orders of the tie,
    so the result does not depend on row order and a constant score gives the diagonal."""
    order = np.lexsort((np.arange(len(score)), -score))
    return np.r_[0.0, np.cumsum(_tie_mean(actual[order], score[order]))]


def _gini_area(captured: np.ndarray) -> float:
    """2 x (area under the normalized Lorenz curve - 1/2), trapezoids between customers."""
    curve = captured / captured[-1]
    return float((curve[:-1] + curve[1:]).sum() / len(curve[1:]) - 1.0)


def normalized_gini(actual: Any, predicted: Any) -> float:
    """Gini of ``actual`` ranked by ``predicted`` divided by the Gini of ``actual`` ranked by itself.

    1 = the predicted ranking captures value as fast as the perfect one, 0 = no better than random
    (or a constant prediction), -1 = the reversed perfect ranking. Tied predictions count as a
    random order among themselves (their expected curve). With no ties this equals the usual
    ``gini(a, p) / gini(a, a)`` with ``gini = sum(cumulative share) / n - (n + 1) / (2 n)``.
    NaN when the actual values sum to <= 0 or are all equal (no ranking to get right).
    """
    a, p = _pair(actual, predicted)
    if a.sum() <= 0 or np.ptp(a) == 0:
        return float("nan")
    return _gini_area(_captured(a, p)) / _gini_area(_captured(a, a))


def lorenz_curve(actual: Any, predicted: Any) -> pd.DataFrame:
    """The cumulative gains (Lorenz) curve of ``actual`` when customers are ranked by ``predicted``.

    One row per rank from 0 to n: ``share_customers`` (top k / n), ``share_actual`` (share of the
    total actual value held by the k customers with the highest predictions; ties share evenly, as
    in :func:`normalized_gini`) and ``share_actual_perfect`` (customers ranked by actual value).
    Both curves go from (0, 0) to (1, 1). ``attrs["normalized_gini"]`` holds the Gini.

    Raises:
        DataError: mismatched or non-finite inputs, or actual values summing to <= 0.
    """
    a, p = _pair(actual, predicted)
    if a.sum() <= 0:
        raise DataError(
            f"actual: values sum to {a.sum():g}; the Lorenz curve needs a positive total"
        )
    model, perfect = _captured(a, p), _captured(a, a)
    out = pd.DataFrame(
        {
            "share_customers": np.arange(len(a) + 1) / len(a),
            "share_actual": model / model[-1],
            "share_actual_perfect": perfect / perfect[-1],
        }
    )
    out.attrs["normalized_gini"] = (
        _gini_area(model) / _gini_area(perfect) if np.ptp(a) > 0 else float("nan")
    )
    return out


# --- metrics ---------------------------------------------------------------------------------


def clv_metrics(actual: Any, predicted: Any) -> dict[str, float]:
    """Error, ranking and bias of per-customer predictions against the realized values.

    Returns ``mae``, ``rmse``, ``normalized_gini`` (see :func:`normalized_gini`), ``spearman``
    (rank correlation; NaN if either side is constant), ``aggregate_error`` = (sum predicted -
    sum actual) / sum actual (NaN if the actual sum is 0), ``mean_actual``, ``mean_predicted`` and
    ``n``. Series are aligned by index; arrays by position.
    """
    a, p = _pair(actual, predicted)
    err = p - a
    total = a.sum()
    spearman = (
        float(spearmanr(a, p).statistic)
        if len(a) > 1 and np.ptp(a) > 0 and np.ptp(p) > 0
        else np.nan
    )
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "normalized_gini": normalized_gini(a, p),
        "spearman": spearman,
        "aggregate_error": float((p.sum() - total) / total) if total != 0 else float("nan"),
        "mean_actual": float(a.mean()),
        "mean_predicted": float(p.mean()),
        "n": float(len(a)),
    }


def decile_table(actual: Any, predicted: Any, n_bins: int = 10) -> pd.DataFrame:
    """Mean and total predicted vs actual value per bin of predicted value (bin 1 = lowest).

    Customers are sorted by prediction and cut into ``n_bins`` groups of equal size; a run of tied
    predictions is never split: the whole run goes to the bin of its middle customer, so the table
    does not depend on row order (with many ties, e.g. zero predictions, some bins are empty and
    left out). Columns: ``n``, ``predicted_min``, ``predicted_max``, ``mean_predicted``,
    ``mean_actual``, ``sum_predicted``, ``sum_actual``, ``share_actual`` (of the total actual).
    The sums add up to the totals over all customers.
    """
    a, p = _pair(actual, predicted)
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}")
    n = len(a)
    order = np.lexsort((np.arange(n), p))
    ps = p[order]
    new = np.r_[True, ps[1:] != ps[:-1]]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], n]
    run_bin = ((starts + ends - 1) // 2) * min(n_bins, n) // n
    bins = np.empty(n, dtype=int)
    bins[order] = run_bin[np.cumsum(new) - 1] + 1
    total = a.sum()
    g = pd.DataFrame({"bin": bins, "a": a, "p": p}).groupby("bin")
    out = pd.DataFrame(
        {
            "n": g.size(),
            "predicted_min": g["p"].min(),
            "predicted_max": g["p"].max(),
            "mean_predicted": g["p"].mean(),
            "mean_actual": g["a"].mean(),
            "sum_predicted": g["p"].sum(),
            "sum_actual": g["a"].sum(),
        }
    )
    out["share_actual"] = out["sum_actual"] / total if total != 0 else np.nan
    return out


def compare_models(actual: Any, predictions: Mapping[str, Any]) -> pd.DataFrame:
    """One row per model with the :func:`clv_metrics` as columns and the winner of each metric.

    Lower ``mae``, ``rmse`` and ``|aggregate_error|`` are better, higher ``normalized_gini`` and
    ``spearman`` (see :data:`METRIC_DIRECTIONS`). Column ``best`` lists, per model, the metrics it
    wins (all tied winners are marked; NaN never wins); ``attrs["best"]`` maps each metric to the
    first winning model in the order of ``predictions``.
    """
    if not predictions:
        raise DataError("compare_models: no predictions given")
    rows = {
        str(name): clv_metrics(actual, _pair(actual, pred, f"predictions[{name!r}]")[1])
        for name, pred in predictions.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    wins: dict[str, list[str]] = {name: [] for name in table.index}
    best: dict[str, str] = {}
    for metric, direction in METRIC_DIRECTIONS.items():
        col = table[metric].abs() if direction == "min_abs" else table[metric]
        if col.isna().all():
            continue
        target = col.max() if direction == "max" else col.min()
        winners = col.index[col == target]
        best[metric] = str(winners[0])
        for name in winners:
            wins[name].append(metric)
    table["best"] = [", ".join(wins[name]) for name in table.index]
    table.attrs["best"] = best
    return table


# --- metric plots ----------------------------------------------------------------------------


def plot_lorenz(
    actual: Any, predictions: Mapping[str, Any], title: str = "Lorenz curve of actual value"
) -> plt.Figure:
    """Share of actual value captured vs share of customers ranked by each model's prediction.

    The perfect ranking (by actual value) and random targeting (the diagonal) are the references;
    the legend gives each model's normalized Gini.
    """
    if not predictions:
        raise DataError("plot_lorenz: no predictions given")
    fig, ax = plt.subplots(figsize=(6.5, 6), layout="constrained")
    perfect = None
    for name, pred in predictions.items():
        curve = lorenz_curve(actual, _pair(actual, pred, f"predictions[{name!r}]")[1])
        # ~1,000 points are enough for a line and keep the file small for 10^6 customers.
        step = max(1, len(curve) // 1000)
        pts = curve.iloc[np.unique(np.r_[np.arange(0, len(curve), step), len(curve) - 1])]
        if perfect is None:
            perfect = pts
        ax.plot(
            pts["share_customers"],
            pts["share_actual"],
            lw=1.8,
            label=f"{name} (Gini {curve.attrs['normalized_gini']:.3f})",
        )
    ax.plot(
        perfect["share_customers"],
        perfect["share_actual_perfect"],
        color="black",
        lw=1.2,
        label="perfect ranking",
    )
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="random")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("share of customers, highest predicted value first")
    ax.set_ylabel("share of actual value captured")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def plot_deciles(
    actual: Any,
    predictions: Mapping[str, Any],
    n_bins: int = 10,
    title: str = "Mean predicted vs actual value by predicted decile",
) -> plt.Figure:
    """One panel per model: mean predicted and mean actual value per bin of predicted value."""
    if not predictions:
        raise DataError("plot_deciles: no predictions given")
    k = len(predictions)
    fig, axes = plt.subplots(
        1, k, figsize=(4.2 * k + 1, 4.2), sharey=True, layout="constrained", squeeze=False
    )
    for ax, (name, pred) in zip(axes[0], predictions.items(), strict=True):
        t = decile_table(actual, _pair(actual, pred, f"predictions[{name!r}]")[1], n_bins)
        x = t.index.to_numpy()
        ax.bar(x - 0.2, t["mean_predicted"], width=0.4, label="mean predicted", color="tab:orange")
        ax.bar(x + 0.2, t["mean_actual"], width=0.4, label="mean actual", color="tab:blue")
        ax.set_xticks(x)
        ax.set_xlabel("bin of predicted value (1 = lowest)")
        ax.set_title(str(name))
        ax.grid(alpha=0.3, axis="y")
    axes[0, 0].set_ylabel("value per customer")
    axes[0, 0].legend(loc="upper left", fontsize="small")
    fig.suptitle(title)
    return fig


# --- Fader-Hardie diagnostics ----------------------------------------------------------------


def _check_summary(summary: Any, columns: tuple[str, ...], who: str) -> pd.DataFrame:
    if not isinstance(summary, pd.DataFrame):
        raise DataError(f"{who}: summary must be a pandas DataFrame, got {type(summary).__name__}")
    missing = [c for c in columns if c not in summary.columns]
    if missing:
        hint = (
            " (build it with btyd_summary(..., observation_end=...))"
            if any(c.endswith("_holdout") for c in missing)
            else ""
        )
        raise DataError(
            f"summary: missing column(s) {missing} needed by {who}{hint}; "
            f"columns present: {list(summary.columns)}"
        )
    if summary.empty:
        raise DataError(f"{who}: the summary has no customers")
    return summary


def _model_values(values: Any, n: int, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    if len(v) != n:
        raise DataError(f"{what} returned {len(v)} values; expected {n}")
    if not np.isfinite(v).all():
        raise DataError(f"{what} returned {int((~np.isfinite(v)).sum())} NaN/inf values")
    return v


def _frequency_bins(max_frequency: int) -> list[str]:
    if max_frequency < 1:
        raise ConfigError(f"max_frequency must be >= 1, got {max_frequency}")
    return [str(k) for k in range(max_frequency)] + [f"{max_frequency}+"]


def frequency_histogram_table(
    model: PurchaseModel, summary: pd.DataFrame, max_frequency: int = 7
) -> pd.DataFrame:
    """Customers by calibration repeat frequency: actual vs expected under the model (FH Fig. 2).

    Rows ``"0"`` ... ``f"{max_frequency - 1}"`` and ``f"{max_frequency}+"``. ``expected`` for k is
    the sum over customers of P(X(T_i) = k) (``model.prob_n_purchases``, called once per distinct
    T); the last bin holds the rest, so the expected counts sum to the number of customers.
    """
    s = _check_summary(summary, ("frequency", "T"), "frequency_histogram_table")
    labels = _frequency_bins(max_frequency)
    freq = s["frequency"].to_numpy(dtype=np.int64)
    actual = np.bincount(np.minimum(freq, max_frequency), minlength=max_frequency + 1)
    # T takes one value per first-purchase day, so this loops over days, not customers.
    t_values, t_index = np.unique(s["T"].to_numpy(dtype=float), return_inverse=True)
    k = np.arange(max_frequency)
    probs = np.vstack(
        [
            _model_values(model.prob_n_purchases(k, float(t)), max_frequency, "prob_n_purchases")
            for t in t_values
        ]
    )
    head = np.bincount(t_index, minlength=len(t_values)) @ probs
    expected = np.r_[head, len(s) - head.sum()]
    out = pd.DataFrame(
        {"actual": actual, "expected": expected}, index=pd.Index(labels, name="frequency")
    )
    return out


def plot_frequency_histogram(
    model: PurchaseModel,
    summary: pd.DataFrame,
    max_frequency: int = 7,
    title: str = "Frequency of repeat transactions (calibration)",
) -> plt.Figure:
    """Bars of actual vs model-expected customers per calibration repeat frequency (FH Fig. 2)."""
    t = frequency_histogram_table(model, summary, max_frequency)
    x = np.arange(len(t))
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    ax.bar(x - 0.2, t["actual"], width=0.4, label="actual", color="tab:blue")
    ax.bar(x + 0.2, t["expected"], width=0.4, label="model", color="tab:orange")
    ax.set_xticks(x, t.index)
    ax.set_xlabel("number of repeat transactions in the calibration period")
    ax.set_ylabel("customers")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper right")
    return fig


def conditional_expectations_table(
    model: PurchaseModel, summary: pd.DataFrame, max_frequency: int = 7
) -> pd.DataFrame:
    """Holdout purchases by calibration repeat frequency: actual vs conditional expectation.

    FH 2005 Figure 4. Per bin of calibration ``frequency`` (0 ... max_frequency - 1, "k+"): ``n``
    customers, ``actual`` = mean ``frequency_holdout``, ``predicted`` = mean of
    ``model.predict_purchases(summary, duration_holdout)``. Empty bins have NaN means.
    """
    s = _check_summary(
        summary,
        ("frequency", "recency", "T", "frequency_holdout", "duration_holdout"),
        "conditional_expectations_table",
    )
    labels = _frequency_bins(max_frequency)
    duration = s["duration_holdout"].to_numpy(dtype=float)
    # btyd_summary gives every customer the same holdout length: pass it as a scalar.
    t = float(duration[0]) if np.all(duration == duration[0]) else duration
    pred = _model_values(model.predict_purchases(s, t), len(s), "predict_purchases")
    bins = np.minimum(s["frequency"].to_numpy(dtype=np.int64), max_frequency)
    g = pd.DataFrame(
        {"bin": bins, "actual": s["frequency_holdout"].to_numpy(dtype=float), "predicted": pred}
    ).groupby("bin")
    out = pd.DataFrame(
        {"n": g.size(), "actual": g["actual"].mean(), "predicted": g["predicted"].mean()}
    )
    out = out.reindex(range(max_frequency + 1)).fillna({"n": 0}).astype({"n": "int64"})
    out.index = pd.Index(labels, name="frequency")
    return out


def plot_conditional_expectations(
    table: pd.DataFrame, title: str = "Conditional expectations of holdout purchases"
) -> plt.Figure:
    """Mean holdout purchases, actual vs model, by calibration frequency (FH Fig. 4).

    ``table`` is a :func:`conditional_expectations_table`.
    """
    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    ax.plot(x, table["actual"], "o-", color="tab:blue", label="actual")
    ax.plot(x, table["predicted"], "s--", color="tab:orange", label="model")
    ax.set_xticks(x, table.index)
    ax.set_xlabel("number of repeat transactions in the calibration period")
    ax.set_ylabel("mean repeat transactions in the holdout period")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return fig


def _purchase_days(
    transactions: ir.Table,
    observation_end: pd.Timestamp,
    calibration_end: pd.Timestamp,
    customer_id: str,
    ts: str,
) -> pd.DataFrame:
    """Per calendar day: customers with their first purchase that day and repeat purchase days.

    Only the cohort is counted (first purchase on or before ``calibration_end``), as in
    ``btyd_summary``; a purchase is a customer-day.
    """
    schema = transactions.schema()
    missing = [c for c in (customer_id, ts) if c not in schema]
    if missing:
        raise DataError(
            f"transactions: missing column(s) {missing} needed by tracking_table; "
            f"columns present: {list(schema.names)}"
        )
    if not (schema[ts].is_timestamp() or schema[ts].is_date()):
        raise DataError(
            f"transactions.{ts}: expected a timestamp or date column, got {schema[ts]}; "
            "parse it first (e.g. pd.to_datetime)"
        )
    t = transactions
    end_excl = observation_end + pd.Timedelta(days=1)
    bound = ibis.date(end_excl.date()) if t[ts].type().is_date() else lit_ts(end_excl)
    days = t.filter(t[ts] < bound).select(cid=t[customer_id], day=t[ts].cast("date")).distinct()
    days = days.mutate(first=days.day.min().over(group_by=days.cid))
    days = days.filter(days["first"] <= ibis.date(calibration_end.date()))
    per_day = days.group_by("day").aggregate(
        n_first=days.count(where=days.day == days["first"]),
        n_repeat=days.count(where=days.day > days["first"]),
    )
    out = per_day.order_by("day").to_pyarrow().to_pandas()
    out["day"] = pd.to_datetime(out["day"])
    return out


def tracking_table(
    model: PurchaseModel,
    transactions: TableLike,
    calibration_end: Any,
    observation_end: Any,
    time_unit: str = "W",
    customer_id: str = "customer_id",
    ts: str = "ts",
) -> pd.DataFrame:
    """Repeat purchases of the cohort per period, actual vs expected (FH 2005 Figures 1 and 3).

    The cohort is every customer with a first purchase on or before ``calibration_end`` (the
    ``btyd_summary`` customers); a purchase is a customer-day, a repeat purchase any later one.
    Periods are ``time_unit`` long (rounded to whole days), counted from the cohort's first day;
    the last ends with ``observation_end`` (and may be shorter). Each customer's clock starts at
    its first purchase, with ``btyd_summary``'s convention (a purchase on day d happens at
    (d - first) / unit), so the expected cumulative repeat purchases by the end of day D are
    ``sum_i E[X((D - first_i) / unit)]`` (``model.expected_purchases``, one call with the distinct
    times: customers are grouped by first-purchase day). At ``calibration_end`` that is
    sum_i E[X(T_i)].

    Columns: ``period_start``, ``period_end`` (last day, inclusive), ``days``, ``actual``,
    ``expected``, ``actual_cumulative``, ``expected_cumulative``, ``in_calibration`` (the period
    ends on or before ``calibration_end``). ``attrs``: ``calibration_end``, ``time_unit`` and
    ``calibration_periods`` (where the calibration period ends, in periods, for the plots).

    Raises:
        DataError: unknown ``time_unit``, missing or mistyped columns, ``observation_end`` not
            after ``calibration_end``, no customer before ``calibration_end``, or a model output
            of the wrong size.
    """
    if time_unit not in TIME_UNIT_DAYS:
        raise DataError(
            f"tracking_table: unknown time_unit {time_unit!r}; expected one of {sorted(TIME_UNIT_DAYS)}"
        )
    unit_days = TIME_UNIT_DAYS[time_unit]
    cal = boundary_day(calibration_end, "calibration_end", "tracking_table")
    obs = boundary_day(observation_end, "observation_end", "tracking_table")
    if obs <= cal:
        raise DataError(
            f"tracking_table: observation_end {obs.date()} must be after calibration_end {cal.date()}"
        )
    per_day = _purchase_days(to_ibis(transactions), obs, cal, customer_id, ts)
    if per_day.empty or per_day["n_first"].sum() == 0:
        raise DataError(f"transactions.{ts}: no purchase on or before calibration_end {cal.date()}")

    start = per_day["day"].min()
    offset = (per_day["day"] - start).dt.days.to_numpy()
    last = (obs - start).days + 1  # exclusive end, in days from start
    n_periods = int(np.ceil(last / unit_days - 1e-9))
    edges = np.unique(np.minimum(np.round(np.arange(n_periods + 1) * unit_days), last)).astype(int)
    edges[-1] = last
    period_of_day = np.searchsorted(edges, offset, side="right") - 1
    actual = np.bincount(
        period_of_day, weights=per_day["n_repeat"].to_numpy(dtype=float), minlength=len(edges) - 1
    )

    firsts = per_day["n_first"].to_numpy() > 0
    first_offset = offset[firsts]
    n_first = per_day["n_first"].to_numpy(dtype=float)[firsts]
    # model time of each (period end, first-purchase day) pair; not yet acquired = no purchases
    tau = ((edges[1:, None] - 1) - first_offset[None, :]) / unit_days
    positive = tau > 0
    times, inverse = np.unique(tau[positive], return_inverse=True)
    ex = np.zeros_like(tau)
    ex[positive] = _model_values(model.expected_purchases(times), len(times), "expected_purchases")[
        inverse
    ]
    expected_cum = ex @ n_first

    period_start = start + pd.to_timedelta(edges[:-1], unit="D")
    period_end = start + pd.to_timedelta(edges[1:] - 1, unit="D")
    out = pd.DataFrame(
        {
            "period_start": period_start,
            "period_end": period_end,
            "days": np.diff(edges),
            "actual": actual,
            "expected": np.diff(np.r_[0.0, expected_cum]),
            "actual_cumulative": np.cumsum(actual),
            "expected_cumulative": expected_cum,
            "in_calibration": period_end <= cal,
        },
        index=pd.RangeIndex(1, len(edges), name="period"),
    )
    out.attrs.update(
        calibration_end=cal,
        time_unit=time_unit,
        calibration_periods=float(np.interp((cal - start).days + 1, edges, np.arange(len(edges)))),
    )
    return out


def _plot_tracking(table: pd.DataFrame, cumulative: bool, title: str) -> plt.Figure:
    unit = _UNIT_NAMES.get(table.attrs.get("time_unit", ""), "period")
    suffix = "_cumulative" if cumulative else ""
    fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    x = table.index.to_numpy()
    ax.plot(x, table["actual" + suffix], color="tab:blue", lw=1.6, label="actual")
    ax.plot(x, table["expected" + suffix], color="tab:orange", lw=1.6, ls="--", label="model")
    cal_at = table.attrs.get("calibration_periods")
    if cal_at is not None:
        ax.axvline(cal_at, color="grey", ls=":", lw=1.2, label="end of calibration")
    ax.set_xlim(0 if cumulative else 1, x.max())
    ax.set_ylim(bottom=0)
    ax.set_xlabel(f"{unit} since the cohort's first purchase")
    ax.set_ylabel(("cumulative " if cumulative else "") + "repeat transactions")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left" if cumulative else "upper right")
    return fig


def plot_tracking_cumulative(
    table: pd.DataFrame, title: str = "Tracking cumulative repeat transactions"
) -> plt.Figure:
    """Cumulative repeat transactions, actual vs model (FH 2005 Fig. 3); ``table`` from
    :func:`tracking_table`; a dotted line marks the end of calibration."""
    return _plot_tracking(table, cumulative=True, title=title)


def plot_tracking_incremental(
    table: pd.DataFrame, title: str = "Tracking repeat transactions per period"
) -> plt.Figure:
    """Repeat transactions per period, actual vs model (FH 2005 Fig. 1); ``table`` from
    :func:`tracking_table`; a dotted line marks the end of calibration."""
    return _plot_tracking(table, cumulative=False, title=title)


def _grid(top: float, step: float, max_points: int) -> np.ndarray:
    """0, step, 2 step, ... and ``top`` itself; evenly thinned to ``max_points`` when longer."""
    grid = np.unique(np.r_[np.arange(0.0, top, step), top])
    if len(grid) > max_points:
        grid = np.unique(np.r_[np.linspace(0.0, top, max_points)])
    return grid


def frequency_recency_matrix(
    model: PurchaseModel,
    summary: pd.DataFrame,
    t: float = 1.0,
    kind: Literal["purchases", "alive"] = "purchases",
    max_points: int = 100,
) -> pd.DataFrame:
    """``predict_purchases(., t)`` or ``prob_alive`` over a frequency x recency grid at T = max T.

    Rows are frequencies 0 ... max frequency, columns recencies 0, 1, ... max T (in the summary's
    time unit); each axis is thinned to at most ``max_points`` values. Impossible cells (frequency
    0 with recency > 0, repeat purchases at recency 0) are NaN. As lifetimes'
    ``plot_frequency_recency_matrix`` / ``plot_probability_alive_matrix``.
    """
    if kind not in ("purchases", "alive"):
        raise ConfigError(f"kind must be 'purchases' or 'alive', got {kind!r}")
    if max_points < 2:
        raise ConfigError(f"max_points must be >= 2, got {max_points}")
    s = _check_summary(summary, ("frequency", "recency", "T"), "frequency_recency_matrix")
    t_max = float(s["T"].max())
    freqs = np.unique(np.round(_grid(float(s["frequency"].max()), 1.0, max_points)))
    recs = _grid(t_max, 1.0, max_points)
    f, r = np.meshgrid(freqs, recs, indexing="ij")
    valid = (f == 0) == (r == 0)
    cells = pd.DataFrame({"frequency": f[valid], "recency": r[valid], "T": t_max})
    values = model.predict_purchases(cells, t) if kind == "purchases" else model.prob_alive(cells)
    what = "predict_purchases" if kind == "purchases" else "prob_alive"
    matrix = np.full(f.shape, np.nan)
    matrix[valid] = _model_values(values, len(cells), what)
    out = pd.DataFrame(
        matrix, index=pd.Index(freqs, name="frequency"), columns=pd.Index(recs, name="recency")
    )
    out.attrs.update(kind=kind, t=float(t), T=t_max)
    return out


def plot_frequency_recency_matrix(
    model: PurchaseModel,
    summary: pd.DataFrame,
    t: float = 1.0,
    kind: Literal["purchases", "alive"] = "purchases",
    max_points: int = 100,
    title: str | None = None,
) -> plt.Figure:
    """Heat map of :func:`frequency_recency_matrix` (impossible cells blank)."""
    m = frequency_recency_matrix(model, summary, t, kind, max_points)
    fig, ax = plt.subplots(figsize=(7.5, 6), layout="constrained")
    mesh = ax.pcolormesh(
        m.columns.to_numpy(),
        m.index.to_numpy(),
        np.ma.masked_invalid(m.to_numpy()),
        shading="nearest",
        cmap="viridis",
    )
    label = (
        f"expected purchases in the next {t:g} periods"
        if kind == "purchases"
        else "probability alive"
    )
    fig.colorbar(mesh, ax=ax, label=label)
    ax.set_xlabel(f"recency (time of last purchase; T = {m.attrs['T']:.4g})")
    ax.set_ylabel("frequency (repeat purchases)")
    ax.set_title(title or f"{label[0].upper()}{label[1:]} by frequency and recency")
    return fig
