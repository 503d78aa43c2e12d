"""ROI per channel, diminishing-returns response curves and budget reallocation.

Owns the money side of attribution: what each channel cost per attributed conversion and returned
per unit spend (:func:`roi_table`), how a channel's outcome per period responds to its spend per
period (:func:`outcomes_per_period`, :func:`fit_response_curves`) and the spend split that
maximizes the total expected outcome under a budget (:func:`reallocate_budget`).

Response curves (outcome per period as a function of spend ``s`` per period, all concave so
returns diminish and the optimum is global):

- ``power``: ``f(s) = a * s**b``, ``0 < b <= 1`` (``b`` is the constant spend elasticity; fitted
  by least squares on ``log f = log a + b log s``).
- ``hill``: ``f(s) = a * s**b / (k**b + s**b)``, ``0 < b <= 1`` (saturates at ``a``; half of it
  at ``s = k``).
- ``exponential``: ``f(s) = a * (1 - exp(-s / k))`` (saturates at ``a``).

Hill and exponential are fitted by nonlinear least squares on the outcome scale
(``scipy.optimize.curve_fit``). The shape parameter is bounded to ``(0, 1]`` because a shape
above 1 makes the curve S-shaped (increasing returns at low spend): the reallocation would then
have local optima and no closed-form optimality condition.

Reallocation solves ``max sum_c f_c(s_c)`` s.t. ``sum_c s_c = B``, ``lo_c <= s_c <= hi_c``
exactly through its KKT conditions rather than with a general solver (SLSQP): for concave
``f_c`` the optimum equalizes marginal returns, ``f_c'(s_c) = λ`` for every channel strictly
inside its bounds (``f_c'(lo_c) <= λ`` at the lower bound, ``>= λ`` at the upper), so
``s_c(λ) = clip(f_c'^{-1}(λ), lo_c, hi_c)``, in closed form for power curves
(``(λ / (a b))**(1 / (b - 1))``), and ``λ`` is found by bisection on ``sum_c s_c(λ) = B``. This
is the global optimum to machine precision, deterministic, needs no starting point or gradient
scaling, and copes with the infinite marginal return at zero spend of ``b < 1`` curves, where
SLSQP's finite-difference steps misbehave.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.optimize import OptimizeWarning, curve_fit

from crm_models.errors import ConfigError, DataError, ModelInputError

ResponseModel = Literal["power", "hill", "exponential"]
RESPONSE_MODELS: tuple[str, ...] = ("power", "hill", "exponential")
B_MIN = 0.01
"""Smallest shape (elasticity) a curve may take: a fitted ``b <= 0`` is clipped here and flagged."""

_HILL_K_MAX = 100.0
"""Largest half-saturation ``k`` of the saturating fits, in units of the median spend."""

CURVE_COLUMNS = [
    "channel",
    "model",
    "a",
    "b",
    "k",
    "r2",
    "r2_log",
    "n_periods",
    "mean_spend",
    "mean_outcome",
    "spend_min",
    "spend_max",
    "constrained",
    "converged",
]


# --------------------------------------------------------------------------- helpers


def _require(df: pd.DataFrame, columns: list[str], table: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{table}: missing column(s) {missing}; columns are {list(df.columns)}")


def _spend_table(channel_spend: pd.DataFrame) -> pd.DataFrame:
    _require(channel_spend, ["channel", "period_start", "spend"], "channel_spend")
    cs = channel_spend.copy()
    cs["channel"] = cs["channel"].astype(str)
    cs["period_start"] = pd.to_datetime(cs["period_start"])
    cs["spend"] = cs["spend"].astype(float)
    bad = ~np.isfinite(cs["spend"].to_numpy()) | (cs["spend"].to_numpy() < 0)
    if bad.any():
        row = cs[bad].iloc[0]
        raise DataError(
            f"channel_spend: column 'spend' must be finite and >= 0 (example row: "
            f"channel={row['channel']!r}, period_start={row['period_start']}, "
            f"spend={row['spend']})"
        )
    return cs


# --------------------------------------------------------------------------- curve math


def _curve_arrays(
    model: str | np.ndarray, a: ArrayLike, b: ArrayLike, k: ArrayLike, spend: ArrayLike
) -> tuple[np.ndarray, ...]:
    model, a, b, k, s = np.broadcast_arrays(
        np.asarray(model, object), *(np.asarray(x, float) for x in (a, b, k, spend))
    )
    unknown = set(np.unique(model.astype(str))) - set(RESPONSE_MODELS)
    if unknown:
        raise ConfigError(
            f"unknown response model {min(unknown)!r}; expected one of {RESPONSE_MODELS}"
        )
    return model, a, b, k, np.maximum(s, 0.0)


def response(
    model: str | np.ndarray, a: ArrayLike, b: ArrayLike, k: ArrayLike, spend: ArrayLike
) -> np.ndarray:
    """Expected outcome per period of a curve at ``spend`` per period (all arguments broadcast)."""
    model, a, b, k, s = _curve_arrays(model, a, b, k, spend)
    out = np.full(s.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        m = model == "power"
        out[m] = a[m] * s[m] ** b[m]
        m = model == "hill"
        kb, sb = k[m] ** b[m], s[m] ** b[m]
        out[m] = a[m] * sb / (kb + sb)
        m = model == "exponential"
        out[m] = a[m] * -np.expm1(-s[m] / k[m])
    return out


def marginal_response(
    model: str | np.ndarray, a: ArrayLike, b: ArrayLike, k: ArrayLike, spend: ArrayLike
) -> np.ndarray:
    """``f'(spend)``: the extra outcome per extra unit of spend (``inf`` at 0 when ``b < 1``)."""
    return _marginal(*_curve_arrays(model, a, b, k, spend))


def _marginal(
    model: np.ndarray, a: np.ndarray, b: np.ndarray, k: np.ndarray, s: np.ndarray
) -> np.ndarray:
    """:func:`marginal_response` on validated, same-shape arrays (the solver's inner loop)."""
    out = np.full(s.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        m = model == "power"
        d = a[m] * b[m] * s[m] ** (b[m] - 1.0)
        out[m] = np.where(s[m] > 0, d, np.where(b[m] < 1, np.inf, a[m]))
        m = model == "hill"
        kb = k[m] ** b[m]
        d = a[m] * b[m] * kb * s[m] ** (b[m] - 1.0) / (kb + s[m] ** b[m]) ** 2
        out[m] = np.where(s[m] > 0, d, np.where(b[m] < 1, np.inf, a[m] / k[m]))
        m = model == "exponential"
        out[m] = a[m] / k[m] * np.exp(-s[m] / k[m])
    return out


def curve_elasticity(
    model: str | np.ndarray, a: ArrayLike, b: ArrayLike, k: ArrayLike, spend: ArrayLike
) -> np.ndarray:
    """``s f'(s) / f(s)``: the % change of outcome per % change of spend (``b`` for power)."""
    f = response(model, a, b, k, spend)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.asarray(spend, float) * marginal_response(model, a, b, k, spend) / f
    e = np.where(f > 0, e, np.nan)
    return np.where(np.asarray(model, object) == "power", np.asarray(b, float) + 0 * e, e)


# --------------------------------------------------------------------------- outcomes per period


def outcomes_per_period(
    touchpoints: pd.DataFrame,
    channel_spend: pd.DataFrame,
    outcome: Literal["touches", "conversions"] = "touches",
    credit: Literal["linear", "last_touch"] = "linear",
    attribution: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Each channel's outcome in each spend period, the ``y`` of :func:`fit_response_curves`.

    Touches are assigned to their channel's spend period (``period_start <= ts < period_end``;
    without ``period_end`` a period ends at the channel's next ``period_start``, the last one
    after the median period length); touches outside every period are dropped.

    - ``outcome="touches"``: touches per channel-period, the reach the spend bought.
    - ``outcome="conversions"``: conversions credited to the period of the touch that earned them,
      ``credit="linear"`` (each touch of a converting journey gets ``1 / touches``) or
      ``"last_touch"`` (the touch with ``converted`` true). Needs the ``converted`` column.
    - ``attribution`` (``channel, conversions[, method]``, an attribution method's table): each
      channel's per-period outcome is rescaled so that its total equals the method's attributed
      conversions (one block of rows per method). The level then comes from the method, the
      response to spend from the observed periods.

    What the runner should pass: ``outcome="touches"`` with ``attribution=`` the method's table
    (computed on the same time window as ``touchpoints``). Touches are the low-noise signal of
    how reach responds to spend (in the simulator: b = 0.70 +- 0.01 per channel at 20,000
    customers). Conversions per channel-week are a thinning of the touches (each touched prospect
    converts with a probability set by its whole journey), so they follow spend with about the
    same elasticity but far more noise, and in the simulator also with the ramp-up and ramp-down
    of journeys at the ends of the signup window (b = 0.65-0.75 with linear credit, 0.60-0.79
    with last touch, same data); and their split across channels is exactly what the
    attribution method estimates. A journey here is all touches of one ``customer_id``.
    Returns ``[method,] channel, period_start, outcome``.
    """
    _require(touchpoints, ["customer_id", "ts", "channel"], "touchpoints")
    if outcome not in ("touches", "conversions"):
        raise ConfigError(f"outcome must be 'touches' or 'conversions', got {outcome!r}")
    if credit not in ("linear", "last_touch"):
        raise ConfigError(f"credit must be 'linear' or 'last_touch', got {credit!r}")
    cs = _spend_table(channel_spend)
    periods = cs[["channel", "period_start"]].drop_duplicates().sort_values("period_start")
    if "period_end" in cs.columns:
        ends = cs.groupby(["channel", "period_start"])["period_end"].first()
        periods["period_end"] = pd.to_datetime(
            ends.reindex(pd.MultiIndex.from_frame(periods[["channel", "period_start"]])).to_numpy()
        )
    else:
        periods = periods.sort_values(["channel", "period_start"])
        nxt = periods.groupby("channel")["period_start"].shift(-1)
        gap = (nxt - periods["period_start"]).median()
        periods["period_end"] = nxt.fillna(periods["period_start"] + gap)
    periods = periods.sort_values("period_start")

    tp = touchpoints[
        ["customer_id", "ts", "channel"] + (["converted"] if "converted" in touchpoints else [])
    ].copy()
    tp["channel"] = tp["channel"].astype(str)
    tp["ts"] = pd.to_datetime(tp["ts"])
    if outcome == "touches":
        tp["credit"] = 1.0
    else:
        if "converted" not in tp.columns:
            raise DataError("touchpoints: outcome='conversions' needs the 'converted' column")
        conv = tp["converted"].fillna(False).astype(bool)
        if credit == "last_touch":
            tp["credit"] = conv.astype(float)
        else:
            journey_converted = conv.groupby(tp["customer_id"]).transform("any")
            n_touches = tp.groupby("customer_id")["ts"].transform("size")
            tp["credit"] = np.where(journey_converted, 1.0 / n_touches, 0.0)
    tp = tp.sort_values("ts")
    tp = pd.merge_asof(
        tp, periods, left_on="ts", right_on="period_start", by="channel", direction="backward"
    )
    tp = tp[tp["period_start"].notna() & (tp["ts"] < tp["period_end"])]
    out = tp.groupby(["channel", "period_start"])["credit"].sum().rename("outcome").reset_index()
    # periods with spend but nothing credited are observations too (outcome 0)
    out = periods[["channel", "period_start"]].merge(out, how="left").fillna({"outcome": 0.0})
    out = out.sort_values(["channel", "period_start"]).reset_index(drop=True)
    if attribution is None:
        return out

    _require(attribution, ["channel", "conversions"], "attribution")
    attr = attribution.copy()
    attr["channel"] = attr["channel"].astype(str)
    if "method" not in attr.columns:
        attr["method"] = "attribution"
    totals = out.groupby("channel")["outcome"].sum()
    attr = attr[attr["channel"].isin(totals.index)]  # channels without spend periods get no curve
    empty = attr[(totals.reindex(attr["channel"]).to_numpy() <= 0) & (attr["conversions"] > 0)]
    if len(empty):
        row = empty.iloc[0]
        raise DataError(
            f"attribution: channel {row['channel']!r} has {row['conversions']} attributed "
            f"conversions (method {row['method']!r}) but no {outcome} in any spend period to "
            "spread them over"
        )
    scaled = attr[["method", "channel", "conversions"]].merge(out, on="channel")
    factor = scaled["conversions"] / scaled["channel"].map(totals)
    scaled["outcome"] = scaled["outcome"] * factor.fillna(0.0)
    return scaled[["method", "channel", "period_start", "outcome"]].reset_index(drop=True)


# --------------------------------------------------------------------------- fitting


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    sst = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / sst if sst > 0 else np.nan


def _fit_power(s: np.ndarray, y: np.ndarray) -> tuple[float, float, bool, bool]:
    pos = (s > 0) & (y > 0)  # log-log: zero periods carry no information on the log scale
    x, z = np.log(s[pos]), np.log(y[pos])
    if pos.sum() < 2 or np.ptp(x) == 0:
        return np.nan, np.nan, False, False
    b, log_a = np.polyfit(x, z, 1)
    constrained = not (0 < b <= 1)
    if constrained:
        b = float(np.clip(b, B_MIN, 1.0))
        log_a = float(np.mean(z - b * x))  # least squares intercept given the clipped slope
    return float(np.exp(log_a)), float(b), constrained, True


def _fit_saturating(
    model: str, s: np.ndarray, y: np.ndarray
) -> tuple[float, float, float, bool, bool]:
    scale_s, scale_y = float(np.median(s[s > 0])) if (s > 0).any() else 1.0, max(y.max(), 1e-12)
    u, v = s / scale_s, y / scale_y  # unit-free fit; parameters mapped back below
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            if model == "hill":
                (a, b, k), _ = curve_fit(
                    lambda x, a, b, k: a * x**b / (k**b + x**b),
                    u,
                    v,
                    p0=[2.0, 0.8, 1.0],
                    # k beyond ~100x the typical spend is a power curve (no saturation in the
                    # data); capping it keeps the fit identifiable and fast
                    bounds=([1e-9, B_MIN, 1e-3], [np.inf, 1.0, _HILL_K_MAX]),
                    maxfev=5_000,
                )
            else:
                (a, k), _ = curve_fit(
                    lambda x, a, k: a * -np.expm1(-x / k),
                    u,
                    v,
                    p0=[2.0, 2.0],
                    bounds=([1e-9, 1e-3], [np.inf, _HILL_K_MAX]),
                    maxfev=5_000,
                )
                b = np.nan
    except (RuntimeError, ValueError):
        return np.nan, np.nan, np.nan, False, False
    constrained = bool(k >= _HILL_K_MAX * (1 - 1e-6)) or (
        model == "hill" and (b >= 1.0 - 1e-9 or b <= B_MIN + 1e-9)
    )
    return float(a * scale_y), float(b), float(k * scale_s), bool(constrained), True


def fit_response_curves(
    channel_spend: pd.DataFrame,
    outcomes_per_period: pd.DataFrame,
    model: ResponseModel = "power",
    min_periods: int = 3,
) -> pd.DataFrame:
    """Fit one diminishing-returns curve per channel (and per method): outcome = f(spend).

    ``outcomes_per_period`` has ``channel, period_start, outcome`` (and optionally ``method``),
    e.g. from :func:`outcomes_per_period`; it is matched to ``channel_spend`` on ``channel,
    period_start``. Spend and outcome are per period, so the curves are too. Periods with zero
    spend or outcome are dropped by the log-log power fit (their log is undefined) and kept by
    the saturating fits.

    Returns ``[method,] channel, model, a, b, k, r2, r2_log, n_periods, mean_spend, mean_outcome,
    spend_min, spend_max, constrained, converged`` (see the module docstring for the formulas;
    unused parameters are NaN). ``r2`` is on the outcome scale, ``r2_log`` on the log-log scale
    (positive periods); ``mean_spend`` is the current spend per period used by :func:`roi_table`
    and, by default, :func:`reallocate_budget`; ``[spend_min, spend_max]`` is the range the curve
    was fitted on (extrapolate beyond it with care). ``constrained`` flags a parameter at a
    bound: power ``b`` clipped into ``[B_MIN, 1]`` (intercept refitted given it), Hill ``b`` at
    ``B_MIN`` or 1, or a saturating ``k`` at its cap of 100x the median spend (no saturation in
    the data: the curve is effectively a power curve there); ``converged`` is false when too few
    periods (< ``min_periods``) or the optimizer failed, with NaN parameters.
    """
    if model not in RESPONSE_MODELS:
        raise ConfigError(f"unknown response model {model!r}; expected one of {RESPONSE_MODELS}")
    cs = _spend_table(channel_spend)
    _require(outcomes_per_period, ["channel", "period_start", "outcome"], "outcomes_per_period")
    out = outcomes_per_period[
        [c for c in ("method", "channel", "period_start", "outcome") if c in outcomes_per_period]
    ].copy()
    out["channel"] = out["channel"].astype(str)
    out["period_start"] = pd.to_datetime(out["period_start"])
    spend = cs.groupby(["channel", "period_start"], as_index=False)["spend"].sum()
    data = out.merge(spend, on=["channel", "period_start"], how="inner")
    keys = ["method", "channel"] if "method" in data.columns else ["channel"]
    rows = []
    for key, g in data.groupby(keys, sort=False):  # channels x methods, a handful
        s, y = g["spend"].to_numpy(float), g["outcome"].to_numpy(float)
        a = b = k = np.nan
        constrained = converged = False
        if len(g) >= min_periods:
            if model == "power":
                a, b, constrained, converged = _fit_power(s, y)
            else:
                a, b, k, constrained, converged = _fit_saturating(model, s, y)
        pred = response(model, a, b, k, s) if converged else np.full(len(s), np.nan)
        pos = (s > 0) & (y > 0) & (pred > 0)
        rows.append(
            dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
            | {
                "model": model,
                "a": a,
                "b": b,
                "k": k,
                "r2": _r2(y, pred) if converged else np.nan,
                "r2_log": _r2(np.log(y[pos]), np.log(pred[pos])) if pos.sum() > 1 else np.nan,
                "n_periods": len(g) if model != "power" else int(((s > 0) & (y > 0)).sum()),
                "mean_spend": float(s.mean()),
                "mean_outcome": float(y.mean()),
                "spend_min": float(s.min()),
                "spend_max": float(s.max()),
                "constrained": bool(constrained),
                "converged": bool(converged),
            }
        )
    cols = (["method"] if "method" in keys else []) + CURVE_COLUMNS
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- ROI


def roi_table(
    attribution: pd.DataFrame,
    channel_spend: pd.DataFrame,
    curves: pd.DataFrame | None = None,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Spend, attributed conversions and value, CPA, ROAS and marginal ROAS per channel (method).

    ``attribution`` has ``channel, conversions, value`` and optionally ``method`` (several
    methods' tables concatenated). Spend is summed over ``channel_spend`` periods with
    ``start <= period_start < end`` (pass the window the attribution covered). Every channel with
    spend appears for every method (no attribution = 0 conversions); a channel attributed but
    without spend rows has spend 0.

    - ``cpa = spend / conversions``: ``inf`` with spend but no conversions, NaN when both are 0,
      0 for conversions without spend.
    - ``roas = value / spend``: ``inf`` with value but no spend, NaN when both are 0.
    - ``elasticity``: ``s f'(s) / f(s)`` of the channel's curve (from :func:`fit_response_curves`;
      matched on ``method, channel`` when both tables have ``method``, else on ``channel``) at its
      current spend per period (``mean_spend``); ``b`` for a power curve.
    - ``marginal_roas = elasticity * roas``: the value of the next unit of spend, ``d value / d
      spend``. With the curve scaled through the current point (spend, attributed value),
      ``f'(s) = elasticity * f(s) / s``, so this holds whatever unit the curve was fitted in
      (touches or conversions). NaN without ``curves``.
    """
    _require(attribution, ["channel", "conversions", "value"], "attribution")
    attr = attribution.copy()
    attr["channel"] = attr["channel"].astype(str)
    has_method = "method" in attr.columns
    if not has_method:
        attr["method"] = ""
    attr = attr.groupby(["method", "channel"], sort=False, as_index=False)[
        ["conversions", "value"]
    ].sum()

    cs = _spend_table(channel_spend)
    lo, hi = (
        pd.Timestamp(start) if start is not None else None,
        pd.Timestamp(end) if end is not None else None,
    )
    if lo is not None:
        cs = cs[cs["period_start"] >= lo]
    if hi is not None:
        cs = cs[cs["period_start"] < hi]
    spend = cs.groupby("channel", sort=False)["spend"].sum()

    methods = list(dict.fromkeys(attr["method"]))
    grid = pd.DataFrame(
        [(m, c) for m in methods for c in dict.fromkeys([*spend.index, *attr["channel"]])],
        columns=["method", "channel"],
    )
    grid = grid.merge(attr, on=["method", "channel"], how="left")
    grid[["conversions", "value"]] = grid[["conversions", "value"]].fillna(0.0)
    grid["spend"] = grid["channel"].map(spend).fillna(0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        grid["cpa"] = grid["spend"] / grid["conversions"]
        grid["roas"] = grid["value"] / grid["spend"]

    grid["elasticity"] = np.nan
    if curves is not None:
        _require(curves, ["channel", "model", "a", "b", "k", "mean_spend"], "curves")
        cv = curves.copy()
        cv["channel"] = cv["channel"].astype(str)
        cv["elasticity"] = curve_elasticity(
            cv["model"].astype(str).to_numpy(object), cv["a"], cv["b"], cv["k"], cv["mean_spend"]
        )
        on = ["method", "channel"] if (has_method and "method" in cv.columns) else ["channel"]
        if cv.duplicated(on).any():
            raise DataError(
                f"curves: several rows per {on} (curves of several methods? pass the method "
                "column in both tables)"
            )
        grid = grid.drop(columns="elasticity").merge(cv[[*on, "elasticity"]], on=on, how="left")
    grid["marginal_roas"] = grid["elasticity"] * grid["roas"]
    cols = [
        "channel",
        "spend",
        "conversions",
        "value",
        "cpa",
        "roas",
        "elasticity",
        "marginal_roas",
    ]
    return grid[(["method"] if has_method else []) + cols].reset_index(drop=True)


# --------------------------------------------------------------------------- reallocation


def _hill_marginal(a: np.ndarray, b: np.ndarray, k: np.ndarray, s: np.ndarray) -> np.ndarray:
    kb = k**b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            s > 0, a * b * kb * s ** (b - 1.0) / (kb + s**b) ** 2, np.where(b < 1, np.inf, a / k)
        )


def _spend_at_marginal(
    lam: float,
    model: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    k: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> np.ndarray:
    """``clip(f_c'^{-1}(λ), lo_c, hi_c)`` per channel: the spend whose marginal return is ``λ``.

    Closed forms: power ``(λ / (a b))^(1 / (b - 1))`` (a step at ``λ = a`` when ``b = 1``),
    exponential ``k log(a / (k λ))``; Hill by bisection on ``[lo, hi]`` (its ``f'`` decreases).
    """
    s = np.empty(a.size)
    power, hill, expo = model == "power", model == "hill", model == "exponential"
    linear = power & (b >= 1.0)
    curved = power & ~linear
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        s[curved] = (lam / (a[curved] * b[curved])) ** (1.0 / (b[curved] - 1.0))
        s[expo] = np.maximum(k[expo] * np.log(a[expo] / (k[expo] * lam)), 0.0)
    s[linear] = np.where(a[linear] > lam, hi[linear], lo[linear])
    if hill.any():
        ah, bh, kh = a[hill], b[hill], k[hill]
        left, right = lo[hill].copy(), hi[hill].copy()
        for _ in range(64):  # halves [lo, hi] to below double precision
            mid = 0.5 * (left + right)
            up = _hill_marginal(ah, bh, kh, mid) > lam
            left, right = np.where(up, mid, left), np.where(up, right, mid)
        s[hill] = 0.5 * (left + right)
    return np.clip(s, lo, hi)


def reallocate_budget(
    curves: pd.DataFrame,
    total_budget: float,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    current: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """The spend per channel that maximizes the total expected outcome for ``total_budget``.

    ``curves`` is one method's :func:`fit_response_curves` table (one row per channel); spend and
    budget are per period, like the curves. ``bounds`` maps a channel to ``(lo, hi)`` spend per
    period (``hi`` may be ``inf``; unlisted channels get ``(0, total_budget)``). ``current``
    maps every channel to its current spend per period (default: the curves' ``mean_spend``);
    it need not sum to ``total_budget`` (a budget increase, say).

    Solved exactly by equalizing marginal returns (KKT with bisection on the common marginal
    return; see the module docstring for why not SLSQP). Returns ``channel, current_spend,
    proposed_spend, expected_before, expected_after, change, marginal_after, extrapolated``:
    expected outcomes per period at current and proposed spend, ``change = proposed - current``,
    the proposed marginal return (equal across channels strictly inside their bounds) and whether
    the proposed spend lies outside the range the curve was fitted on (``spend_min`` ..
    ``spend_max``; a curve is a guess there: bound such channels, e.g. to 0.5-2x current). When
    ``current`` is feasible (within bounds, summing to the budget), ``expected_after`` sums to at
    least ``expected_before``.

    Raises :class:`ConfigError` for a negative or non-finite budget, unknown channels in
    ``bounds`` / ``current``, bounds with ``lo < 0`` or ``lo > hi``, or infeasible bounds (lows
    summing above the budget, highs below it); :class:`ModelInputError` for unusable curves.
    """
    _require(curves, ["channel", "model", "a", "b", "k"], "curves")
    if "method" in curves.columns and curves["method"].nunique() > 1:
        raise ModelInputError(
            f"curves hold {curves['method'].nunique()} methods "
            f"({sorted(curves['method'].astype(str).unique())}); pass one method's rows"
        )
    cv = curves.reset_index(drop=True)
    channels = cv["channel"].astype(str).tolist()
    if len(set(channels)) != len(channels):
        raise ModelInputError("curves: one row per channel expected; some channels repeat")
    unusable = ~(np.isfinite(cv["a"].astype(float)) & (cv["a"].astype(float) > 0))
    if unusable.any():
        raise ModelInputError(
            f"curves: channel {channels[int(np.flatnonzero(unusable)[0])]!r} has no usable "
            "fitted curve (a is NaN or <= 0: too few periods or a failed fit); drop it or give "
            "it fixed spend"
        )
    try:
        total = float(total_budget)
    except (TypeError, ValueError):
        raise ConfigError(f"total_budget must be a number, got {total_budget!r}") from None
    if not (np.isfinite(total) and total >= 0):
        raise ConfigError(f"total_budget must be finite and >= 0, got {total_budget}")

    lo, hi = np.zeros(len(channels)), np.full(len(channels), total)
    for ch, bound in (bounds or {}).items():
        if str(ch) not in channels:
            raise ConfigError(f"bounds: unknown channel {ch!r}; channels are {channels}")
        i = channels.index(str(ch))
        try:
            lo[i], hi[i] = float(bound[0]), float(bound[1])
        except (TypeError, ValueError, IndexError):
            raise ConfigError(f"bounds[{ch!r}] must be (lo, hi), got {bound!r}") from None
        if not (lo[i] >= 0 and hi[i] >= lo[i]):
            raise ConfigError(f"bounds[{ch!r}] = {bound!r}: need 0 <= lo <= hi")
    hi = np.minimum(hi, total)  # no channel can take more than the whole budget
    if lo.sum() > total * (1 + 1e-12):
        raise ConfigError(
            f"infeasible bounds: the lower bounds sum to {lo.sum():g} > total budget {total:g}"
        )
    if hi.sum() < total * (1 - 1e-12):
        raise ConfigError(
            f"infeasible bounds: the upper bounds sum to {hi.sum():g} < total budget {total:g}"
        )

    if current is None:
        if "mean_spend" not in cv.columns:
            raise ConfigError("current spend not given and curves have no 'mean_spend' column")
        cur = cv["mean_spend"].to_numpy(float)
    else:
        unknown = sorted(set(map(str, current)) - set(channels))
        missing = [c for c in channels if c not in set(map(str, current))]
        if unknown or missing:
            raise ConfigError(
                f"current: unknown channel(s) {unknown}, missing channel(s) {missing}; "
                f"channels are {channels}"
            )
        cur = np.array([float({str(c): v for c, v in current.items()}[c]) for c in channels])

    model = cv["model"].astype(str).to_numpy()
    a, b, k = (cv[c].to_numpy(float) for c in ("a", "b", "k"))
    bad = [m for m in model if m not in RESPONSE_MODELS]
    if bad:
        raise ModelInputError(f"curves: unknown model {bad[0]!r}; expected {RESPONSE_MODELS}")

    if total <= lo.sum():
        proposed = lo.copy()
    elif total >= hi.sum():
        proposed = hi.copy()
    else:
        proposed = _solve_kkt(total, model, a, b, k, lo, hi)

    extrapolated = np.zeros(len(channels), bool)
    if {"spend_min", "spend_max"} <= set(cv.columns):
        tol = 1e-9 * max(total, 1.0)
        extrapolated = (proposed < cv["spend_min"].to_numpy(float) - tol) | (
            proposed > cv["spend_max"].to_numpy(float) + tol
        )
    return pd.DataFrame(
        {
            "channel": channels,
            "current_spend": cur,
            "proposed_spend": proposed,
            "expected_before": response(model, a, b, k, cur),
            "expected_after": response(model, a, b, k, proposed),
            "change": proposed - cur,
            "marginal_after": marginal_response(model, a, b, k, proposed),
            "extrapolated": extrapolated,
        }
    )


def _solve_kkt(
    total: float,
    model: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    k: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> np.ndarray:
    """Bisection on the common marginal return λ: ``sum_c s_c(λ)`` decreases in λ."""

    def spent(lam: float) -> np.ndarray:
        return _spend_at_marginal(lam, model, a, b, k, lo, hi)

    mid = np.clip(np.full(a.size, total / a.size), lo, hi)
    lam = float(np.median(marginal_response(model, a, b, k, mid)))
    lam = lam if np.isfinite(lam) and lam > 0 else 1.0
    lam_lo, lam_hi = lam, lam  # sum(spent(lam_lo)) >= total >= sum(spent(lam_hi))
    for _ in range(2100):
        if spent(lam_lo).sum() >= total:
            break
        lam_lo /= 2.0
    for _ in range(2100):
        if spent(lam_hi).sum() <= total:
            break
        lam_hi *= 2.0
    for _ in range(200):
        lam = float(np.sqrt(lam_lo * lam_hi))
        if not lam_lo < lam < lam_hi:
            break
        if spent(lam).sum() >= total:
            lam_lo = lam
        else:
            lam_hi = lam
    more, less = spent(lam_lo), spent(lam_hi)
    # channels whose marginal return equals λ (linear curves) may take any spend in between;
    # the convex combination hits the budget exactly
    gap = more.sum() - less.sum()
    theta = (total - less.sum()) / gap if gap > 0 else 0.0
    return less + theta * (more - less)
