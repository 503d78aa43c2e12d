"""Attribution evaluation: the simulator's true channel credit, errors against it, and the plots.

Owns the *truth* an attribution method is judged by on simulated data
(:func:`true_channel_shares`), the distance of a method's shares from it
(:func:`attribution_errors`) and the figures the runner logs for an attribution run (shares by
method, transition heatmap, ROI, budget reallocation). Figures are returned, never shown or logged.

Why this truth. In the simulator (``crm_models.data.synthetic``) prospect ``j`` converts with
probability ``p(S_j) = sigmoid(base + sum_{c in S_j} effect[c])``, ``S_j`` the DISTINCT channels of
its journey. What the journey's channels *caused* is ``v(S_j) = p(S_j) - p(∅)``: the
conversions above what the prospect would have done untouched. The logistic link makes channels
interact (their contributions are not additive on the probability scale), so ``v`` is split by
the exact Shapley value of the cooperative game ``v(T) = p(T) - p(∅)``, ``T ⊆ S_j``: the unique
split that is efficient (sums to ``v(S_j)``), symmetric, gives 0 to a channel that never changes
``p`` (a zero effect) and is additive over journeys. Summed over ALL prospects (converted or
not) it is each channel's expected incremental conversions.

Normalization. Attribution methods hand out every observed conversion, including the ``p(∅)``
baseline a prospect would have reached without any touch (every simulated journey has at least
one touch, so that baseline is never observed apart). Any symmetric method can only spread it
over the touched channels, which adds a reach-proportional component that no channel earned. The
comparable normalization is therefore the share of *incremental* conversions (``share``): it is
what a budget decision needs (what is lost without the channel) and it gives a zero-effect
channel exactly 0. For reference the table also holds ``baseline_conversions`` (``p(∅)`` split
equally among each journey's distinct channels) and ``share_with_baseline``
(``(true_conversions + baseline_conversions) / sum``), the "all conversions" variant; comparing a
method against both shows how much of its error is the baseline it cannot separate.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")  # plots are files for MLflow, never windows

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import ConstantInputWarning, spearmanr

from crm_models.errors import DataError

_MAX_BITMASK_CHANNELS = 62
"""Channel sets are int64 bitmasks."""
_MAX_SET_SIZE = 20
"""Exact Shapley costs 2^|S| per distinct channel set; beyond this it is not 'cheap'."""


# --------------------------------------------------------------------------- truth


def _sigmoid(z: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, float)))


def shapley_logistic(base: float, effects: np.ndarray) -> np.ndarray:
    """Exact Shapley values of ``v(T) = sigmoid(base + sum_{c in T} e_c) - sigmoid(base)``.

    ``effects`` are the effects of the players (the distinct channels of one journey), in order;
    returns one value per player, summing to ``v(all)``. Cost ``O(k 2^k)``, vectorized over the
    ``2^k`` coalitions.
    """
    e = np.asarray(effects, float).ravel()
    k = e.size
    if k == 0:
        return np.zeros(0)
    coalition = np.arange(1 << k, dtype=np.int64)
    bits = (coalition[:, None] >> np.arange(k)) & 1
    size = bits.sum(axis=1)
    v = _sigmoid(base + bits @ e) - _sigmoid(base)
    # weight of a coalition T not containing the player: |T|! (k - |T| - 1)! / k!
    weight = np.array(
        [math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k) for s in range(k)]
    )
    phi = np.empty(k)
    for j in range(k):  # players of one journey (<= _MAX_SET_SIZE), not customers
        without = coalition[bits[:, j] == 0]
        phi[j] = np.sum(weight[size[without]] * (v[without | (1 << j)] - v[without]))
    return phi


def _journey_touches(touchpoints: pd.DataFrame, lookback_days: float | None) -> pd.DataFrame:
    missing = [c for c in ("customer_id", "ts", "channel") if c not in touchpoints.columns]
    if missing:
        raise DataError(
            f"touchpoints: missing column(s) {missing}; columns are {list(touchpoints.columns)}"
        )
    tp = touchpoints[["customer_id", "ts", "channel"]]
    if lookback_days is not None:
        if not lookback_days > 0:
            raise DataError(f"lookback_days must be > 0, got {lookback_days}")
        ts = pd.to_datetime(tp["ts"])
        last = ts.groupby(tp["customer_id"]).transform("max")
        tp = tp[ts >= last - pd.Timedelta(days=float(lookback_days))]
    return tp


def true_channel_shares(
    touchpoints: pd.DataFrame,
    ground_truth: Mapping[str, Any],
    lookback_days: float | None = None,
) -> pd.DataFrame:
    """The simulator's true credit per channel: expected incremental conversions and their share.

    Every prospect in ``touchpoints`` (``customer_id`` = prospect id, converted or not) with
    distinct channel set ``S`` contributes ``p(S) - p(∅)``, ``p = sigmoid(conversion_base + sum
    of channel_conversion_effects)`` (both from ``ground_truth``), split among the channels of
    ``S`` by the exact Shapley value (see the module docstring for why, and for the
    normalization). Journeys are grouped by channel-set bitmask, so the cost is ``2^|S|`` per
    distinct set, not per journey.

    ``lookback_days`` keeps only touches within that many days before a prospect's last touch
    (what the attribution methods saw). The simulator converts on the WHOLE journey, so the truth
    is exact only with ``None`` or a lookback >= the simulator's ``journey_window_days``.

    Returns one row per channel (effects' channels first, in their order, then any others):
    ``channel, true_conversions, share, baseline_conversions, share_with_baseline``.
    """
    try:
        effects = {str(c): float(v) for c, v in ground_truth["channel_conversion_effects"].items()}
        base = float(ground_truth["conversion_base"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(
            "ground_truth needs 'channel_conversion_effects' (channel -> effect) and "
            f"'conversion_base' (the simulator's ground truth); problem: {exc!r}"
        ) from None
    tp = _journey_touches(touchpoints, lookback_days)
    channel = tp["channel"].astype(str)
    unknown = ~channel.isin(list(effects))
    if unknown.any():
        row = tp[unknown].iloc[0]
        raise DataError(
            f"touchpoints: column 'channel' has value {row['channel']!r} with no conversion "
            f"effect in the ground truth (example row: customer_id={row['customer_id']}, "
            f"ts={row['ts']}); known channels are {sorted(effects)}"
        )
    names = list(effects)
    if len(names) > _MAX_BITMASK_CHANNELS:
        raise DataError(f"true_channel_shares supports at most {_MAX_BITMASK_CHANNELS} channels")
    code = pd.Categorical(channel, categories=names).codes.astype(np.int64)
    pairs = pd.DataFrame({"j": tp["customer_id"].to_numpy(), "bit": np.left_shift(1, code)})
    # distinct powers of two summed = bitwise OR: the journey's channel set
    masks = pairs.drop_duplicates().groupby("j", sort=False)["bit"].sum().to_numpy(np.int64)
    sets, counts = np.unique(masks, return_counts=True)

    eff = np.array([effects[c] for c in names])
    p0 = float(_sigmoid(base))
    incremental = np.zeros(len(names))
    baseline = np.zeros(len(names))
    for mask, count in zip(sets, counts, strict=True):  # distinct channel sets, <= 2^channels
        members = np.flatnonzero((int(mask) >> np.arange(len(names))) & 1)
        if members.size > _MAX_SET_SIZE:
            raise DataError(
                f"touchpoints: a journey touches {members.size} distinct channels; exact Shapley "
                f"is limited to {_MAX_SET_SIZE} (2^k coalitions)"
            )
        incremental[members] += count * shapley_logistic(base, eff[members])
        baseline[members] += count * p0 / members.size
    total_inc = incremental.sum()
    total_all = total_inc + baseline.sum()
    return pd.DataFrame(
        {
            "channel": names,
            "true_conversions": incremental,
            "share": incremental / total_inc if total_inc > 0 else np.nan,
            "baseline_conversions": baseline,
            "share_with_baseline": (incremental + baseline) / total_all
            if total_all > 0
            else np.nan,
        }
    )


# --------------------------------------------------------------------------- errors


def _shares_series(obj: Any, name: str) -> pd.Series:
    """Channel -> share from a (channel, share) frame, a Series indexed by channel, or a dict."""
    if isinstance(obj, pd.DataFrame):
        missing = [c for c in ("channel", "share") if c not in obj.columns]
        if missing:
            raise DataError(f"{name}: missing column(s) {missing}; columns are {list(obj.columns)}")
        s = obj.groupby(obj["channel"].astype(str), sort=False)["share"].sum()
    elif isinstance(obj, pd.Series):
        s = obj.groupby(obj.index.astype(str), sort=False).sum()
    elif isinstance(obj, Mapping):
        s = pd.Series({str(k): v for k, v in obj.items()}, dtype=float)
    else:
        raise DataError(f"{name}: expected a DataFrame (channel, share), Series or dict")
    s = s.astype(float)
    if not np.isfinite(s.to_numpy()).all():
        bad = s[~np.isfinite(s.to_numpy())].index[0]
        raise DataError(f"{name}: share of channel {bad!r} is not finite ({s[bad]})")
    return s


def attribution_errors(
    shares_by_method: pd.DataFrame | Mapping[str, Any],
    truth: pd.DataFrame | pd.Series | Mapping[str, float],
    truth_column: str = "share",
) -> pd.DataFrame:
    """Per method: distance of its channel shares from the true shares.

    ``shares_by_method`` is a long frame ``method, channel, share`` or a dict ``method ->``
    (channel, share) frame / Series / dict. ``truth`` is :func:`true_channel_shares`' table (its
    ``truth_column``, e.g. ``"share_with_baseline"``) or channel -> share. Channels missing on
    either side count as share 0; each side is rescaled to sum to 1 (shares of a method may be
    negative, e.g. data-driven Shapley, and are kept).

    Returns ``method, tvd, spearman, max_abs_error, n_channels``: ``tvd = 0.5 * sum |share -
    true share|`` (the share of credit misallocated: 0 identical, 1 disjoint supports),
    ``spearman`` the rank correlation of the shares with the truth over the channels (NaN when
    either side is constant), ``max_abs_error`` the largest single-channel error.
    """
    if isinstance(truth, pd.DataFrame):
        if truth_column not in truth.columns or "channel" not in truth.columns:
            raise DataError(
                f"truth: needs columns 'channel' and {truth_column!r}; "
                f"columns are {list(truth.columns)}"
            )
        truth = truth[["channel", truth_column]].rename(columns={truth_column: "share"})
    t = _shares_series(truth, "truth")
    if isinstance(shares_by_method, pd.DataFrame):
        if "method" not in shares_by_method.columns:
            raise DataError(
                "shares_by_method: a frame needs a 'method' column (or pass a dict of frames); "
                f"columns are {list(shares_by_method.columns)}"
            )
        methods = {str(m): g for m, g in shares_by_method.groupby("method", sort=False)}
    else:
        methods = {str(m): v for m, v in shares_by_method.items()}

    rows = []
    for method, obj in methods.items():  # methods, a handful
        s = _shares_series(obj, f"shares of method {method!r}")
        channels = t.index.union(s.index, sort=False)
        p = _normalized(s.reindex(channels, fill_value=0.0), f"shares of method {method!r}")
        q = _normalized(t.reindex(channels, fill_value=0.0), "truth")
        diff = np.abs(p - q)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConstantInputWarning)
            rho = spearmanr(p, q).statistic if len(channels) > 1 else np.nan
        rows.append(
            {
                "method": method,
                "tvd": 0.5 * float(diff.sum()),
                "spearman": float(rho),
                "max_abs_error": float(diff.max()) if len(channels) else np.nan,
                "n_channels": len(channels),
            }
        )
    return pd.DataFrame(rows, columns=["method", "tvd", "spearman", "max_abs_error", "n_channels"])


def _normalized(s: pd.Series, name: str) -> np.ndarray:
    total = float(s.sum())
    if not total > 0:
        raise DataError(f"{name}: shares sum to {total}; cannot compare shares that sum to <= 0")
    return s.to_numpy(float) / total


# --------------------------------------------------------------------------- plots


def _channel_order(table: pd.DataFrame, truth: pd.Series | None) -> list[str]:
    mean = table.groupby(table["channel"].astype(str))["share"].mean().sort_values(ascending=False)
    first = [] if truth is None else [str(c) for c in truth.sort_values(ascending=False).index]
    return list(dict.fromkeys(first + [str(c) for c in mean.index]))


def plot_shares_by_method(
    table: pd.DataFrame,
    truth: pd.DataFrame | pd.Series | None = None,
    title: str = "Attributed share of conversions by channel",
    truth_column: str = "share",
) -> plt.Figure:
    """Grouped bars: one group per channel, one bar per method; CIs and the true shares.

    ``table`` has ``method, channel, share`` and optionally ``share_lower, share_upper`` (drawn as
    error bars where present, e.g. bootstrap intervals). ``truth`` (``channel, share`` or a Series)
    is drawn as a black line across each channel's group (``truth_column`` of a
    :func:`true_channel_shares` table). Channels are ordered by true share (else by mean share).
    """
    need = [c for c in ("method", "channel", "share") if c not in table.columns]
    if need:
        raise DataError(
            f"shares table: missing column(s) {need}; columns are {list(table.columns)}"
        )
    if isinstance(truth, pd.DataFrame) and truth_column != "share":
        truth = truth[["channel", truth_column]].rename(columns={truth_column: "share"})
    t = _shares_series(truth, "truth") if truth is not None else None
    channels = _channel_order(table, t)
    methods = list(dict.fromkeys(table["method"].astype(str)))
    x = np.arange(len(channels))
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(channels) + 3), 5), layout="constrained")
    for i, method in enumerate(methods):
        part = table[table["method"].astype(str) == method].copy()
        part["channel"] = part["channel"].astype(str)
        part = part.set_index("channel").reindex(channels)
        share = part["share"].to_numpy(float)
        yerr = None
        if {"share_lower", "share_upper"} <= set(part.columns):
            lo, hi = part["share_lower"].to_numpy(float), part["share_upper"].to_numpy(float)
            # a percentile interval need not contain the point estimate; never draw negative bars
            yerr = np.vstack([np.clip(share - lo, 0, None), np.clip(hi - share, 0, None)])
            yerr = np.nan_to_num(yerr)
        ax.bar(
            x - 0.4 + width * (i + 0.5),
            np.nan_to_num(share),
            width,
            yerr=yerr,
            capsize=2,
            label=method,
            color=plt.cm.tab10(i % 10),
            error_kw={"lw": 0.8},
        )
    if t is not None:
        tv = t.reindex(channels).fillna(0.0).to_numpy(float)
        ax.hlines(tv, x - 0.45, x + 0.45, colors="black", lw=2.2, label="truth")
    ax.set_xticks(x, channels, rotation=30 if len(channels) > 8 else 0)
    ax.set_ylabel("share of attributed conversions")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside right center", fontsize="small")
    return fig


def plot_transition_heatmap(
    transition_matrix: pd.DataFrame, title: str = "Journey transition probabilities"
) -> plt.Figure:
    """Heatmap of a from-state x to-state probability matrix (rows sum to 1), values annotated.

    Annotations are written when the matrix has at most 15 rows and columns.
    """
    m = transition_matrix.astype(float)
    n_r, n_c = m.shape
    fig, ax = plt.subplots(
        figsize=(min(3 + 0.6 * n_c, 20), min(2.5 + 0.45 * n_r, 20)), layout="constrained"
    )
    im = ax.imshow(
        m.to_numpy(),
        cmap="Blues",
        vmin=0.0,
        vmax=max(float(np.nanmax(m)), 1e-9) if m.size else 1.0,
        aspect="auto",
    )
    ax.set_xticks(np.arange(n_c), [str(c) for c in m.columns], rotation=45, ha="right")
    ax.set_yticks(np.arange(n_r), [str(r) for r in m.index])
    ax.set_xlabel("to state")
    ax.set_ylabel("from state")
    if n_r <= 15 and n_c <= 15:
        vals = m.to_numpy()
        top = np.nanmax(vals) if vals.size else 1.0
        for (r, c), v in np.ndenumerate(vals):
            if v > 0:
                ax.text(
                    c,
                    r,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > 0.6 * top else "black",
                )
    fig.colorbar(im, ax=ax, label="probability")
    ax.set_title(title)
    return fig


def plot_roi(roi: pd.DataFrame, title: str = "Return on spend by channel") -> plt.Figure:
    """ROAS (bars, marginal ROAS as markers when present) and CPA by channel and method.

    ``roi`` is :func:`crm_models.models.attribution.budget.roi_table`'s output; an infinite CPA
    (spend but no conversions) is left out of the bars and marked with "∞". A panel switches to a
    log scale when its values span more than a factor 50.
    """
    need = [c for c in ("channel", "roas", "cpa") if c not in roi.columns]
    if need:
        raise DataError(f"ROI table: missing column(s) {need}; columns are {list(roi.columns)}")
    df = roi.copy()
    if "method" not in df.columns:
        df["method"] = "attribution"
    df["channel"] = df["channel"].astype(str)
    channels = list(dict.fromkeys(df["channel"]))
    methods = list(dict.fromkeys(df["method"].astype(str)))
    x = np.arange(len(channels))
    width = 0.8 / max(len(methods), 1)
    fig, (ax_r, ax_c) = plt.subplots(
        1, 2, figsize=(max(10.0, 2 * len(channels) + 3), 4.8), layout="constrained"
    )
    for i, method in enumerate(methods):
        part = df[df["method"].astype(str) == method].set_index("channel").reindex(channels)
        pos = x - 0.4 + width * (i + 0.5)
        color = plt.cm.tab10(i % 10)
        roas = part["roas"].to_numpy(float)
        ax_r.bar(pos, np.where(np.isfinite(roas), roas, 0.0), width, color=color, label=method)
        if "marginal_roas" in part.columns:
            mr = part["marginal_roas"].to_numpy(float)
            ax_r.plot(pos, mr, "v", color="black", ms=5, label="marginal ROAS" if i == 0 else None)
        cpa = part["cpa"].to_numpy(float)
        ax_c.bar(pos, np.where(np.isfinite(cpa), cpa, 0.0), width, color=color)
        for px in pos[np.isinf(cpa)]:
            ax_c.text(px, 0, "∞", ha="center", va="bottom", fontsize=9)
    ax_r.axhline(1.0, color="grey", ls="--", lw=1)
    for ax, label, col in (
        (ax_r, "ROAS (value / spend)", "roas"),
        (ax_c, "CPA (spend / conversion)", "cpa"),
    ):
        v = df[col].to_numpy(float)
        v = v[np.isfinite(v) & (v > 0)]
        if v.size and v.max() / v.min() > 50:  # one cheap channel would flatten all the others
            ax.set_yscale("log")
        ax.set_xticks(x, channels, rotation=30 if len(channels) > 6 else 0)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside right center", fontsize="small")
    fig.suptitle(title)
    return fig


def plot_budget(reallocation: pd.DataFrame, title: str | None = None) -> plt.Figure:
    """Current vs proposed spend per channel; expected outcome before -> after in the title.

    ``reallocation`` is :func:`crm_models.models.attribution.budget.reallocate_budget`'s output.
    """
    need = [
        c
        for c in ("channel", "current_spend", "proposed_spend", "expected_before", "expected_after")
        if c not in reallocation.columns
    ]
    if need:
        raise DataError(
            f"reallocation table: missing column(s) {need}; "
            f"columns are {list(reallocation.columns)}"
        )
    r = reallocation
    channels = r["channel"].astype(str).tolist()
    x = np.arange(len(channels))
    before, after = float(r["expected_before"].sum()), float(r["expected_after"].sum())
    gain = (after / before - 1.0) * 100 if before > 0 else np.nan
    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * len(channels) + 2), 4.8), layout="constrained")
    ax.bar(x - 0.2, r["current_spend"].to_numpy(float), 0.4, label="current", color="tab:grey")
    ax.bar(x + 0.2, r["proposed_spend"].to_numpy(float), 0.4, label="proposed", color="tab:blue")
    ax.set_xticks(x, channels, rotation=30 if len(channels) > 8 else 0)
    ax.set_ylabel("spend per period")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    ax.set_title(
        title
        or f"Budget reallocation: expected outcome {before:,.1f} -> {after:,.1f} ({gain:+.1f}%)"
    )
    return fig
