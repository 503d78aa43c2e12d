"""The data simulator: the six contract tables drawn from a known generative model, plus its truth.

Every model in the workbench is tested against these data, so the generating process is fixed
here and written down (``ground_truth.json``) next to the tables. Everything is vectorized numpy
and deterministic: the same ``(n_customers, seed, params)`` give byte-identical Parquet files.

Time is measured in days since ``start``; rates are per day. Covariates ``x_i`` are the RAW
customer columns: ``age`` (years), ``email_opt_in`` (0/1) and level indicators named
``column=level`` (``region=south``, ``acquisition_channel=social``, ``plan=subscription``; baselines
north, search, none). Linear predictors are centred at a reference customer ``x_ref`` (age
``reference_age``, every indicator 0), which only moves the baseline constants.

1. Acquisition. Prospect ``j`` has a potential signup time ``d_j ~ U[0, signup_window_days)``
   and a journey of ``K_j = 1 + Binomial(max_touches - 1, touch_count_p)`` touches: the last at
   ``d_j``, the others at ``d_j - U(0, journey_window_days)``. A touch in week ``w`` has channel
   ``c`` with probability ``∝ channel_frequencies[c] * B[c, w]``, ``B[c, w] ~ LogNormal(0,
   budget_multiplier_sigma)`` (weekly budget multipliers). The prospect converts with probability
   ``sigmoid(conversion_base + sum over the DISTINCT channels c of the journey of effect[c])``.
   Prospects are drawn until the ``n_customers``-th converter; all earlier prospects keep their
   touchpoints. A converter's ``signup_ts = d_j + delay`` (delay ~ Exp, mean
   ``signup_delay_hours``) is its first purchase; ``acquisition_channel`` is the last touch's
   channel. A touch of channel ``c`` in week ``w`` with ``n_cw`` touches costs
   ``unit_cost[c] * (n_cw / mean_w n_cw) ** (1/e - 1)`` times LogNormal noise (mean 1), so the
   weekly spend ``S_cw`` (the sum of costs) satisfies ``n_cw ∝ S_cw ** e``,
   ``e = spend_elasticity`` (diminishing returns). ``channel_spend`` has one row per channel per
   Monday-week covering every touch.
2. Customers: ``region ~ Cat(region_probabilities)``, ``age = clip(round(N(age_mean, age_sd)),
   18, 80)``, ``email_opt_in ~ Bernoulli``, ``plan = "subscription"`` with ``subscription_rate``.
3. Purchases: a Poisson process from signup (the first purchase, at ``signup_ts``) to
   ``min(tau_i, observation_end)`` with rate
   ``lambda_i = lambda_ref * G_i * exp(b . (x_i - x_ref))``, ``G_i ~ Gamma(shape=r, scale=1/r)``,
   ``lambda_ref = 1 / mean_purchase_gap_days``. Given the window
   length ``T_i`` the count is ``Poisson(lambda_i T_i)`` and the times are uniform (exact).
   Amount (Gamma-Gamma, Fader-Hardie-Lee 2005): ``nu_i ~ Gamma(shape=q, rate=gamma)``, amount
   ``~ Gamma(shape=p, rate=nu_i)``, so ``E[amount | nu_i] = p / nu_i`` and the population mean is
   ``p * gamma / (q - 1)`` (40 by default); rounded to cents, at least 0.01.
4. Dropout: ``mu_i(t) = mu_ref * exp(beta . (x_i - x_ref)) * complaint_hazard_factor **
   1[complained before t]``, ``mu_ref = ln 2 / baseline_median_lifetime_days``; no frailty on mu,
   so a Cox model on the true dropout times recovers ``beta`` and ``log(factor)``. Drawn exactly by
   inverting the piecewise-linear cumulative hazard at ``E ~ Exp(1)``.
5. Tickets: a complaint with probability ``sigmoid(complaint_base + a . x_i)`` at ``signup + U(0,
   complaint_window_days)``, only if still alive then; questions and billing tickets are a Poisson
   process (``ticket_rate_per_day``) while alive, with no effect on dropout.
6. Subscriptions: one row per ``plan == "subscription"`` customer, ``end_ts = tau_i`` if before
   ``observation_end``, else null.

Every table holds only rows with ``ts < observation_end`` (journeys may start before ``start``).

``ground_truth.json`` holds the parameters (``params``), the effects named as above, the
calendar, ``seed``, ``n_customers``, ``simulator_version`` and, column-wise under ``customers``:
``customer_id, signup_ts, purchase_rate`` (lambda_i, per day), ``dropout_hazard`` (mu_i per day
after the complaint window, the factor included), ``dropout_probability = mu_i / (lambda_i +
mu_i)`` (the chance that the next event is dropout, BG/NBD's p), ``complained, complaint_ts,
dropout_ts`` (may be after ``observation_end``), ``lifetime_days`` (tau_i - signup) and
``spend_mean`` (``p / nu_i``).

The oracle (:func:`oracle_churn_risk`) scores customers for the inactivity churn label of
:func:`noncontractual_churn_labels_np` with the true ``lambda_i, mu_i`` — the ceiling a churn
model could reach on these data.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crm_models.data.contracts import COMPLAINT_KIND, TABLE_NAMES
from crm_models.errors import ConfigError, DataError

SIMULATOR_VERSION = "1.0.0"
"""Bump whenever the same seed would give different data; cached datasets are regenerated."""

GROUND_TRUTH_FILE = "ground_truth.json"
CHANNELS: tuple[str, ...] = ("search", "social", "display", "email", "affiliate", "referral")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west")
PLANS: tuple[str, ...] = ("none", "subscription")

_S_PER_DAY = 86_400
_ORACLE_PATHS_PER_CHUNK = 2_000_000


def _default(value: dict[str, float]) -> Any:
    return field(default_factory=lambda: dict(value))


@dataclass(frozen=True)
class SimulationParams:
    """Every knob of the generative model (see the module docstring for the formulas)."""

    start: str = "2023-01-01"
    observation_end: str = "2025-01-01"
    reference_age: float = 40.0

    # 1. acquisition
    signup_window_days: float = 365.0
    journey_window_days: float = 30.0
    max_touches: int = 6
    touch_count_p: float = 0.4
    channel_frequencies: dict[str, float] = _default(
        {"search": 0.28, "social": 0.24, "display": 0.2, "email": 0.12, "affiliate": 0.09,
         "referral": 0.07}
    )
    conversion_base: float = -2.3
    channel_conversion_effects: dict[str, float] = _default(
        {"search": 0.6, "social": 0.2, "display": 0.05, "email": 0.4, "affiliate": 0.3,
         "referral": 0.9}
    )
    channel_cost_per_touch: dict[str, float] = _default(
        {"search": 1.5, "social": 0.8, "display": 0.3, "email": 0.05, "affiliate": 2.0,
         "referral": 5.0}
    )
    cost_noise_sigma: float = 0.25
    budget_multiplier_sigma: float = 0.5
    spend_elasticity: float = 0.7
    campaigns_per_channel: int = 3
    signup_delay_hours: float = 1.0

    # 2. customers
    region_probabilities: dict[str, float] = _default(
        {"north": 0.3, "south": 0.25, "east": 0.25, "west": 0.2}
    )
    age_mean: float = 42.0
    age_sd: float = 13.0
    email_opt_in_rate: float = 0.6
    subscription_rate: float = 0.25

    # 3. purchases
    mean_purchase_gap_days: float = 25.0
    purchase_heterogeneity_r: float = 3.0
    purchase_effects: dict[str, float] = _default({"email_opt_in": 0.2, "age": 0.005})
    spend_p: float = 6.0
    spend_q: float = 4.0
    spend_gamma: float = 20.0
    purchase_channel_probabilities: dict[str, float] = _default(
        {"web": 0.5, "app": 0.35, "store": 0.15}
    )
    category_probabilities: dict[str, float] = _default(
        {"apparel": 0.3, "home": 0.25, "electronics": 0.15, "beauty": 0.2, "grocery": 0.1}
    )
    extra_quantity_mean: float = 0.5
    return_rate: float = 0.05
    return_rate_complainers: float = 0.12

    # 4. dropout
    baseline_median_lifetime_days: float = 547.5
    dropout_effects: dict[str, float] = _default(
        {"age": -0.02, "email_opt_in": -0.4, "region=south": 0.3, "region=east": 0.1,
         "region=west": -0.2, "acquisition_channel=social": 0.3,
         "acquisition_channel=display": 0.4, "acquisition_channel=email": -0.2,
         "acquisition_channel=affiliate": 0.2, "acquisition_channel=referral": -0.3,
         "plan=subscription": -0.3}
    )
    complaint_hazard_factor: float = 2.0

    # 5. tickets
    complaint_window_days: float = 60.0
    complaint_base: float = -1.2
    complaint_effects: dict[str, float] = _default({"age": -0.01, "plan=subscription": 0.3})
    ticket_rate_per_day: float = 1 / 200
    ticket_kind_probabilities: dict[str, float] = _default({"question": 0.6, "billing": 0.4})
    resolution_mean_days: float = 2.0

    def __post_init__(self) -> None:
        problems = []
        for name in ("channel_frequencies", "channel_conversion_effects", "channel_cost_per_touch"):
            if set(getattr(self, name)) != set(CHANNELS):
                problems.append(f"{name} must have exactly the channels {list(CHANNELS)}")
        if set(self.region_probabilities) != set(REGIONS):
            problems.append(f"region_probabilities must have exactly the regions {list(REGIONS)}")
        positive = ("signup_window_days", "journey_window_days", "mean_purchase_gap_days",
                    "purchase_heterogeneity_r", "spend_p", "spend_gamma", "spend_elasticity",
                    "baseline_median_lifetime_days", "complaint_hazard_factor",
                    "complaint_window_days")
        problems += [f"{n} must be > 0" for n in positive if not getattr(self, n) > 0]
        if not self.spend_q > 1:
            problems.append("spend_q must be > 1 (the Gamma-Gamma mean is finite only then)")
        if self.max_touches < 1:
            problems.append("max_touches must be >= 1")
        if pd.Timestamp(self.observation_end) <= pd.Timestamp(self.start) + pd.Timedelta(
            days=self.signup_window_days
        ):
            problems.append("observation_end must be after start + signup_window_days")
        if problems:
            raise ConfigError("invalid SimulationParams: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """All parameters as plain JSON-able values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimulationParams:
        """Inverse of :meth:`to_dict` (unknown keys are ignored, missing ones take defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class SyntheticDataset:
    """Simulated contract tables and the truth that generated them."""

    tables: dict[str, pd.DataFrame]
    ground_truth: dict


# --------------------------------------------------------------------------- helpers


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _categorical(rng: np.random.Generator, probs: np.ndarray, size: int) -> np.ndarray:
    """Indices drawn with probabilities ``probs`` (1-D, normalized here)."""
    cum = np.cumsum(np.asarray(probs, float))
    cum /= cum[-1]
    return np.minimum(np.searchsorted(cum, rng.random(size), side="right"), len(cum) - 1)


def _days_to_ts(start: np.datetime64, days: np.ndarray) -> np.ndarray:
    """Float days since ``start`` -> datetime64[ns], floored to whole seconds."""
    secs = np.floor(np.asarray(days, float) * _S_PER_DAY).astype(np.int64)
    return start + secs.astype("timedelta64[s]").astype("timedelta64[ns]")


def _iso_seconds(start: np.datetime64, days: np.ndarray) -> list[str | None]:
    """ISO strings (second resolution, far-future safe); NaN days -> None."""
    days = np.asarray(days, float)
    ok = np.isfinite(days)
    secs = np.floor(np.where(ok, days, 0.0) * _S_PER_DAY).astype(np.int64)
    stamps = np.datetime_as_string(start.astype("datetime64[s]") + secs, unit="s")
    out = stamps.astype(object)
    out[~ok] = None
    return out.tolist()


def _round_sig(x: np.ndarray, digits: int = 8) -> list[float]:
    """Round to ``digits`` significant digits so the JSON stays short.

    An integer divided (or multiplied) by an exact power of ten is correctly rounded to the double
    nearest the decimal, so ``repr`` prints the short form.
    """
    x = np.asarray(x, float)
    out = x.copy()
    nz = np.isfinite(x) & (x != 0)
    v = x[nz]
    k = digits - 1 - np.floor(np.log10(np.abs(v))).astype(int)
    scale = 10.0 ** np.abs(k)
    out[nz] = np.where(k >= 0, np.round(v * scale) / scale, np.round(v / scale) * scale)
    return out.tolist()


def covariate_matrix(customers: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """The design matrix of raw customer columns for effect names (``age``, ``region=south``).

    A plain name is the numeric column itself; ``column=level`` is the 0/1 indicator of a level.
    """
    cols = []
    for name in names:
        col, _, level = name.partition("=")
        if col not in customers.columns:
            raise DataError(
                f"customers: column {col!r} (needed for effect {name!r}) is missing; "
                f"columns are {list(customers.columns)}"
            )
        values = customers[col]
        cols.append((values == level).to_numpy(float) if level else values.to_numpy(float))
    return np.column_stack(cols) if cols else np.zeros((len(customers), 0))


def _linear_predictor(
    customers: pd.DataFrame, effects: dict[str, float], ref_age: float
) -> np.ndarray:
    names = list(effects)
    x = covariate_matrix(customers, names)
    x_ref = np.array([ref_age if n == "age" else 0.0 for n in names])
    return (x - x_ref) @ np.array([effects[n] for n in names], float)


# --------------------------------------------------------------------------- acquisition


@dataclass
class _Acquisition:
    prospect_id: np.ndarray  # per touch
    touch_days: np.ndarray
    touch_channel: np.ndarray
    touch_campaign: np.ndarray
    touch_cost: np.ndarray
    touch_is_last: np.ndarray
    prospect_converted: np.ndarray  # per prospect (index = prospect_id - 1)
    prospect_signup_days: np.ndarray
    prospect_last_channel: np.ndarray
    week0_days: float
    spend: np.ndarray  # (n_channels, n_weeks)


def _simulate_acquisition(
    p: SimulationParams, n_customers: int, start: np.datetime64, rng: np.random.Generator
) -> _Acquisition:
    n_ch = len(CHANNELS)
    freq = np.array([p.channel_frequencies[c] for c in CHANNELS], float)
    effect = np.array([p.channel_conversion_effects[c] for c in CHANNELS], float)
    # Monday-aligned weeks covering every possible touch (numpy weeks start on Thursday 1970-01-01)
    first_day = -p.journey_window_days - 1.0
    first_date = start + np.timedelta64(int(np.floor(first_day)), "D")
    weekday = (first_date.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 0 = Monday
    week0 = float(np.floor(first_day) - weekday)
    n_weeks = int(np.ceil((p.signup_window_days + 1.0 - week0) / 7.0)) + 1
    budget = rng.lognormal(0.0, p.budget_multiplier_sigma, size=(n_weeks, n_ch))
    cum_w = np.cumsum(freq * budget, axis=1)
    cum_w /= cum_w[:, -1:]

    batches: list[tuple[np.ndarray, ...]] = []
    n_conv, n_pros, rate = 0, 0, 0.2
    while n_conv < n_customers:
        b = int(np.ceil((n_customers - n_conv) / max(rate, 0.01) * 1.15)) + 200
        d = rng.random(b) * p.signup_window_days
        k = 1 + rng.binomial(p.max_touches - 1, p.touch_count_p, size=b)
        owner = np.repeat(np.arange(b), k)
        starts = np.cumsum(k) - k
        is_last = np.zeros(owner.size, bool)
        is_last[starts] = True  # the block's first slot is the journey's last touch (offset 0)
        offset = np.where(is_last, 0.0, rng.random(owner.size) * p.journey_window_days)
        t = d[owner] - offset
        week = np.floor((t - week0) / 7.0).astype(np.int64)
        u = rng.random(owner.size)
        ch = np.minimum((u[:, None] > cum_w[week]).sum(axis=1), n_ch - 1)
        seen = np.zeros((b, n_ch), bool)
        seen[owner, ch] = True
        conv = rng.random(b) < _sigmoid(p.conversion_base + seen @ effect)
        batches.append((d, k, owner + n_pros, t, ch, is_last, conv))
        n_conv += int(conv.sum())
        n_pros += b
        rate = n_conv / n_pros

    d = np.concatenate([x[0] for x in batches])
    owner = np.concatenate([x[2] for x in batches])
    t = np.concatenate([x[3] for x in batches])
    ch = np.concatenate([x[4] for x in batches])
    is_last = np.concatenate([x[5] for x in batches])
    conv = np.concatenate([x[6] for x in batches])
    # keep prospects up to the n-th converter so the funnel (conversion share) is consistent
    n_keep = int(np.searchsorted(np.cumsum(conv), n_customers)) + 1
    d, conv = d[:n_keep], conv[:n_keep]
    keep = owner < n_keep
    owner, t, ch, is_last = owner[keep], t[keep], ch[keep], is_last[keep]

    last_channel = np.empty(n_keep, np.int64)
    last_channel[owner[is_last]] = ch[is_last]
    delay = np.maximum(rng.exponential(p.signup_delay_hours / 24.0, n_keep), 1.0 / 1440.0)
    signup = d + delay

    week = np.floor((t - week0) / 7.0).astype(np.int64)
    n_cw = np.bincount(ch * n_weeks + week, minlength=n_ch * n_weeks).reshape(n_ch, n_weeks)
    n_ref = n_cw.mean(axis=1, keepdims=True)
    unit = np.array([p.channel_cost_per_touch[c] for c in CHANNELS], float)
    sigma = p.cost_noise_sigma
    noise = rng.lognormal(-0.5 * sigma**2, sigma, size=t.size)
    # cost per touch rises with the week's volume: n_cw ∝ spend_cw ** elasticity
    unit_cw = unit[:, None] * (np.maximum(n_cw, 1) / n_ref) ** (1.0 / p.spend_elasticity - 1.0)
    cost = np.round(unit_cw[ch, week] * noise, 4)
    cost = np.maximum(cost, 1e-4)
    spend = np.bincount(ch * n_weeks + week, weights=cost, minlength=n_ch * n_weeks)
    campaign = rng.integers(1, p.campaigns_per_channel + 1, size=t.size)
    return _Acquisition(
        prospect_id=owner.astype(np.int64) + 1,
        touch_days=t,
        touch_channel=ch,
        touch_campaign=campaign,
        touch_cost=cost,
        touch_is_last=is_last,
        prospect_converted=conv,
        prospect_signup_days=signup,
        prospect_last_channel=last_channel,
        week0_days=week0,
        spend=spend.reshape(n_ch, n_weeks),
    )


# --------------------------------------------------------------------------- customers and lives


def _simulate_customers(
    p: SimulationParams, customer_id: np.ndarray, signup_ts: np.ndarray,
    acquisition_channel: np.ndarray, rng: np.random.Generator,
) -> pd.DataFrame:
    n = customer_id.size
    region = np.array(REGIONS, dtype=object)[
        _categorical(rng, [p.region_probabilities[r] for r in REGIONS], n)
    ]
    age = np.clip(np.round(rng.normal(p.age_mean, p.age_sd, n)), 18, 80).astype(np.int64)
    email = rng.random(n) < p.email_opt_in_rate
    plan = np.where(rng.random(n) < p.subscription_rate, PLANS[1], PLANS[0]).astype(object)
    return pd.DataFrame(
        {
            "customer_id": customer_id,
            "signup_ts": signup_ts,
            "acquisition_channel": acquisition_channel,
            "region": region,
            "age": age,
            "email_opt_in": email,
            "plan": plan,
        }
    )


@dataclass
class _Lives:
    mu: np.ndarray  # hazard before any complaint
    mu_after: np.ndarray  # hazard after the complaint window
    complained: np.ndarray
    complaint_days: np.ndarray  # NaN without a complaint
    lifetime: np.ndarray  # tau_i - signup, days


def _simulate_lives(
    p: SimulationParams, customers: pd.DataFrame, signup: np.ndarray, rng: np.random.Generator
) -> _Lives:
    """Complaints and dropout; the piecewise-exponential lifetime is drawn exactly."""
    n = len(customers)
    mu_ref = np.log(2.0) / p.baseline_median_lifetime_days
    mu = mu_ref * np.exp(_linear_predictor(customers, p.dropout_effects, p.reference_age))
    f = p.complaint_hazard_factor
    will_complain = rng.random(n) < _sigmoid(
        p.complaint_base + _linear_predictor(customers, p.complaint_effects, 0.0)
    )
    complaint_offset = rng.random(n) * p.complaint_window_days
    e = rng.exponential(1.0, n)  # the unit-rate cumulative hazard at dropout
    tau0 = e / mu
    complained = will_complain & (complaint_offset < tau0)  # only the living complain
    lifetime = np.where(complained, complaint_offset + (e - mu * complaint_offset) / (f * mu), tau0)
    return _Lives(
        mu=mu,
        mu_after=np.where(complained, f * mu, mu),
        complained=complained,
        complaint_days=np.where(complained, signup + complaint_offset, np.nan),
        lifetime=lifetime,
    )


# --------------------------------------------------------------------------- event tables


def _simulate_transactions(
    p: SimulationParams, start: np.datetime64, end_s: int, customer_id: np.ndarray,
    signup: np.ndarray, exposure: np.ndarray, lam: np.ndarray, nu: np.ndarray,
    complained: np.ndarray, r_buy: np.random.Generator, r_misc: np.random.Generator,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Purchases (the first at signup, then Poisson while alive) and each first order's id."""
    n = customer_id.size
    n_repeat = r_buy.poisson(lam * exposure)
    rep = np.repeat(np.arange(n), n_repeat)
    owner = np.concatenate([np.arange(n), rep])
    # given the count, the times of a Poisson process on the window are iid uniform
    days = np.concatenate([signup, signup[rep] + r_buy.random(rep.size) * exposure[rep]])
    m = owner.size
    amount = np.maximum(np.round(r_buy.gamma(p.spend_p, 1.0 / nu[owner]), 2), 0.01)
    secs = np.minimum(np.floor(days * _S_PER_DAY).astype(np.int64), end_s - 1)
    order = np.lexsort((secs, owner))
    owner, secs, amount = owner[order], secs[order], amount[order]
    chrono = np.lexsort((owner, secs))  # order ids follow time, like a shop's order counter
    order_id = np.empty(m, np.int64)
    order_id[chrono] = 1_000_001 + np.arange(m)
    channels = np.array(list(p.purchase_channel_probabilities), dtype=object)
    categories = np.array(list(p.category_probabilities), dtype=object)
    p_return = np.where(complained[owner], p.return_rate_complainers, p.return_rate)
    transactions = pd.DataFrame(
        {
            "customer_id": customer_id[owner],
            "ts": start + secs.astype("timedelta64[s]").astype("timedelta64[ns]"),
            "amount": amount,
            "order_id": order_id,
            "channel": channels[
                _categorical(r_misc, list(p.purchase_channel_probabilities.values()), m)
            ],
            "category": categories[
                _categorical(r_misc, list(p.category_probabilities.values()), m)
            ],
            "quantity": 1 + r_misc.poisson(p.extra_quantity_mean, m).astype(np.int64),
            "returned": r_misc.random(m) < p_return,
        }
    )
    is_first = np.r_[True, owner[1:] != owner[:-1]]
    first_order = np.empty(n, np.int64)
    first_order[owner[is_first]] = order_id[is_first]
    return transactions, first_order


def _touchpoints_and_spend(
    p: SimulationParams, start: np.datetime64, end: np.datetime64, acq: _Acquisition,
    conv_idx: np.ndarray, first_order: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    channel_names = np.array(CHANNELS, dtype=object)
    conv_touch = acq.touch_is_last & acq.prospect_converted[acq.prospect_id - 1]
    cust_pos = np.zeros(acq.prospect_converted.size, np.int64)
    cust_pos[conv_idx] = np.arange(conv_idx.size)
    tp_order = np.where(conv_touch, first_order[cust_pos[acq.prospect_id - 1]], 0)
    channel = channel_names[acq.touch_channel]
    sort = np.lexsort((acq.touch_days, acq.prospect_id))
    touchpoints = pd.DataFrame(
        {
            "customer_id": acq.prospect_id,
            "ts": _days_to_ts(start, acq.touch_days),
            "channel": channel,
            "campaign": channel + "_c" + acq.touch_campaign.astype(str).astype(object),
            "cost": acq.touch_cost,
            "converted": conv_touch,
            "order_id": pd.arrays.IntegerArray(tp_order.astype(np.int64), mask=~conv_touch),
        }
    ).iloc[sort].reset_index(drop=True)

    n_ch, n_weeks = acq.spend.shape
    week_start = _days_to_ts(start, acq.week0_days + 7.0 * np.arange(n_weeks))
    channel_spend = pd.DataFrame(
        {
            "channel": np.repeat(channel_names, n_weeks),
            "period_start": np.tile(week_start, n_ch),
            "period_end": np.tile(week_start + np.timedelta64(7, "D"), n_ch),
            "spend": acq.spend.ravel(),
        }
    )
    channel_spend = channel_spend[channel_spend["period_start"] < end].reset_index(drop=True)
    return touchpoints, channel_spend


def _simulate_tickets(
    p: SimulationParams, start: np.datetime64, end: np.datetime64, end_days: float,
    customer_id: np.ndarray, signup: np.ndarray, exposure: np.ndarray, lives: _Lives,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Complaint tickets plus question/billing tickets (a Poisson process while alive)."""
    n = customer_id.size
    other = np.repeat(np.arange(n), rng.poisson(p.ticket_rate_per_day * exposure))
    complainers = np.flatnonzero(lives.complained)
    owner = np.concatenate([complainers, other])
    days = np.concatenate(
        [
            lives.complaint_days[complainers],
            signup[other] + rng.random(other.size) * exposure[other],
        ]
    )
    kinds = np.array(list(p.ticket_kind_probabilities), dtype=object)
    kind = np.concatenate(
        [
            np.full(complainers.size, COMPLAINT_KIND, dtype=object),
            kinds[_categorical(rng, list(p.ticket_kind_probabilities.values()), other.size)],
        ]
    )
    is_complaint = np.arange(owner.size) < complainers.size
    satisfaction = np.clip(
        np.round(rng.normal(np.where(is_complaint, 1.8, 4.0), 0.8), 1), 1.0, 5.0
    )
    resolved = days + 1.0 / 24.0 + rng.exponential(p.resolution_mean_days, owner.size)
    sort = np.lexsort((days, owner))
    sort = sort[days[sort] < end_days]
    resolved_ts = _days_to_ts(start, resolved[sort])
    return pd.DataFrame(
        {
            "customer_id": customer_id[owner[sort]],
            "ts": _days_to_ts(start, days[sort]),
            "kind": kind[sort],
            "satisfaction": satisfaction[sort],
            # not yet resolved when the data end
            "resolved_ts": np.where(resolved_ts < end, resolved_ts, np.datetime64("NaT", "ns")),
        }
    )


# --------------------------------------------------------------------------- simulate


def simulate(
    n_customers: int = 20_000, seed: int = 7, params: SimulationParams | None = None
) -> SyntheticDataset:
    """Simulate the six contract tables and their ground truth (see the module docstring)."""
    if int(n_customers) < 1:
        raise ConfigError(f"n_customers must be >= 1, got {n_customers}")
    n = int(n_customers)
    p = params or SimulationParams()
    start = np.datetime64(pd.Timestamp(p.start).to_datetime64(), "ns")
    end = np.datetime64(pd.Timestamp(p.observation_end).to_datetime64(), "ns")
    end_days = float((end - start) / np.timedelta64(1, "D"))
    end_s = int((end - start) // np.timedelta64(1, "s"))
    # independent streams per component: changing one part leaves the others' draws unchanged
    r_acq, r_cust, r_life, r_buy, r_tix, r_misc = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)
    )

    acq = _simulate_acquisition(p, n, start, r_acq)
    conv_idx = np.flatnonzero(acq.prospect_converted)
    customer_id = conv_idx.astype(np.int64) + 1
    signup = acq.prospect_signup_days[conv_idx]
    customers = _simulate_customers(
        p, customer_id, _days_to_ts(start, signup),
        np.array(CHANNELS, dtype=object)[acq.prospect_last_channel[conv_idx]], r_cust,
    )
    lives = _simulate_lives(p, customers, signup, r_life)
    dropout = signup + lives.lifetime
    exposure = np.minimum(dropout, end_days) - signup  # alive and observed

    lam_ref = 1.0 / p.mean_purchase_gap_days
    r = p.purchase_heterogeneity_r
    lam = lam_ref * r_buy.gamma(r, 1.0 / r, n) * np.exp(
        _linear_predictor(customers, p.purchase_effects, p.reference_age)
    )
    nu = r_buy.gamma(p.spend_q, 1.0 / p.spend_gamma, n)  # Gamma(q, rate=gamma)
    transactions, first_order = _simulate_transactions(
        p, start, end_s, customer_id, signup, exposure, lam, nu, lives.complained, r_buy, r_misc
    )
    touchpoints, channel_spend = _touchpoints_and_spend(p, start, end, acq, conv_idx, first_order)
    tickets = _simulate_tickets(
        p, start, end, end_days, customer_id, signup, exposure, lives, r_tix
    )
    sub = np.flatnonzero(customers["plan"].to_numpy() == PLANS[1])
    ended = dropout[sub] < end_days
    subscriptions = pd.DataFrame(
        {
            "customer_id": customer_id[sub],
            "start_ts": _days_to_ts(start, signup[sub]),
            "end_ts": np.where(
                ended, _days_to_ts(start, np.where(ended, dropout[sub], 0.0)),
                np.datetime64("NaT", "ns"),
            ),
        }
    )

    tables = {
        "transactions": transactions,
        "customers": customers,
        "touchpoints": touchpoints,
        "channel_spend": channel_spend,
        "tickets": tickets,
        "subscriptions": subscriptions,
    }
    ground_truth = {
        "simulator_version": SIMULATOR_VERSION,
        "n_customers": n,
        "seed": int(seed),
        "start": pd.Timestamp(start).isoformat(),
        "observation_end": pd.Timestamp(end).isoformat(),
        "params": p.to_dict(),
        "dropout_effects": dict(p.dropout_effects),
        "purchase_effects": dict(p.purchase_effects),
        "complaint_effects": dict(p.complaint_effects),
        "complaint_hazard_factor": p.complaint_hazard_factor,
        "complaint_window_days": p.complaint_window_days,
        "channel_conversion_effects": dict(p.channel_conversion_effects),
        "conversion_base": p.conversion_base,
        "spend_elasticity": p.spend_elasticity,
        "reference_covariates": {"age": p.reference_age},
        "dropout_hazard_reference": float(np.log(2.0) / p.baseline_median_lifetime_days),
        "purchase_rate_reference": lam_ref,
        "n_prospects": int(acq.prospect_converted.size),
        "customers": {
            "customer_id": customer_id.tolist(),
            "signup_ts": _iso_seconds(start, signup),
            "purchase_rate": _round_sig(lam),
            "dropout_probability": _round_sig(lives.mu_after / (lam + lives.mu_after)),
            "dropout_hazard": _round_sig(lives.mu_after),
            "complained": lives.complained.tolist(),
            "complaint_ts": _iso_seconds(start, lives.complaint_days),
            "dropout_ts": _iso_seconds(start, dropout),
            "lifetime_days": _round_sig(lives.lifetime, 10),
            "spend_mean": _round_sig(p.spend_p / nu),
        },
    }
    return SyntheticDataset(tables=tables, ground_truth=ground_truth)


# --------------------------------------------------------------------------- files


def _write_dataset(ds: SyntheticDataset, directory: Path) -> None:
    for name in TABLE_NAMES:
        ds.tables[name].to_parquet(directory / f"{name}.parquet", index=False, engine="pyarrow")
    (directory / GROUND_TRUTH_FILE).write_text(json.dumps(ds.ground_truth, separators=(",", ":")))


def write_synthetic(
    out_dir: str | Path,
    n_customers: int = 20_000,
    seed: int = 7,
    params: SimulationParams | None = None,
    overwrite: bool = False,
) -> Path:
    """Simulate and write the six tables (``<table>.parquet``) and ``ground_truth.json``.

    Atomic: files go to a temporary directory beside ``out_dir`` that is renamed at the end, so an
    existing ``out_dir`` is never half-overwritten. An existing ``out_dir`` without ``overwrite``
    raises :class:`DataError`.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise DataError(f"synthetic data directory {out} already exists (use overwrite=True)")
    ds = simulate(n_customers, seed, params)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        _write_dataset(ds, tmp)
        if out.exists():
            if not overwrite:
                raise DataError(
                    f"synthetic data directory {out} already exists (use overwrite=True)"
                )
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp, out)
            except OSError:
                # another writer finished first
                raise DataError(f"synthetic data directory {out} already exists") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_synthetic(data_dir: str | Path) -> SyntheticDataset:
    """Read a directory written by :func:`write_synthetic`."""
    d = Path(data_dir)
    missing = [f"{t}.parquet" for t in TABLE_NAMES if not (d / f"{t}.parquet").is_file()]
    if not (d / GROUND_TRUTH_FILE).is_file():
        missing.append(GROUND_TRUTH_FILE)
    if missing:
        raise DataError(f"synthetic data directory {d}: missing {', '.join(missing)}")
    tables = {t: pd.read_parquet(d / f"{t}.parquet", engine="pyarrow") for t in TABLE_NAMES}
    ground_truth = json.loads((d / GROUND_TRUTH_FILE).read_text())
    return SyntheticDataset(tables=tables, ground_truth=ground_truth)


def _is_current(d: Path, n_customers: int, seed: int) -> bool:
    if not all((d / f"{t}.parquet").is_file() for t in TABLE_NAMES):
        return False
    try:
        gt = json.loads((d / GROUND_TRUTH_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (
        gt.get("n_customers") == n_customers
        and gt.get("seed") == seed
        and gt.get("simulator_version") == SIMULATOR_VERSION
        and gt.get("params") == json.loads(json.dumps(SimulationParams().to_dict()))
    )


def ensure_synthetic(base_dir: str | Path, n_customers: int, seed: int) -> Path:
    """``<base_dir>/n{n}_seed{seed}/`` with default-parameter data: generated once, reused after.

    Reused only when its ground truth names the same ``n_customers``, ``seed``, simulator version
    and parameters; otherwise regenerated in place (atomically).
    """
    d = Path(base_dir) / f"n{int(n_customers)}_seed{int(seed)}"
    if _is_current(d, int(n_customers), int(seed)):
        return d
    try:
        write_synthetic(d, n_customers, seed, overwrite=d.exists())
    except DataError:
        if not _is_current(d, int(n_customers), int(seed)):  # lost a race to a stale writer
            raise
    return d


# --------------------------------------------------------------------------- churn labels / oracle


def _first_churn(
    group: np.ndarray, t: np.ndarray, n_groups: int, horizon: float, inactivity: float
) -> tuple[np.ndarray, np.ndarray]:
    """Inactivity churn per group from purchase times ``t`` (days from the cutoff).

    ``group`` is sorted and ``t`` sorted within a group; purchase ``k`` churns when the next one is
    at least ``inactivity`` later and ``t_k + inactivity < horizon``.
    """
    nxt = np.full(t.size, np.inf)
    same = group[1:] == group[:-1]
    nxt[:-1] = np.where(same, t[1:], np.inf)
    churn = np.flatnonzero((nxt - t >= inactivity) & (t + inactivity < horizon))
    duration = np.full(n_groups, float(horizon))
    event = np.zeros(n_groups, np.int64)
    g, first = np.unique(group[churn], return_index=True)
    duration[g] = t[churn[first]] + inactivity
    event[g] = 1
    return duration, event


def noncontractual_churn_labels_np(
    customer_id: Sequence[int] | np.ndarray | pd.Series,
    ts: Sequence[Any] | np.ndarray | pd.Series,
    cutoff: Any,
    horizon_days: float,
    inactivity_days: float,
) -> pd.DataFrame:
    """The runner's inactivity churn label, in numpy (for the oracle and for tests).

    Population: customers whose last purchase before the cutoff, ``L0``, has ``cutoff - L0 <
    inactivity_days``. Over ``L0`` and the purchases in ``[cutoff, cutoff + horizon)``, the first
    purchase with no next one within ``inactivity_days`` and ``p + inactivity < cutoff + horizon``
    churns at ``p + inactivity``: ``event = 1, duration_days = churn_time - cutoff``; otherwise
    ``event = 0, duration_days = horizon_days``. Indexed by customer_id (sorted).
    """
    c = pd.Timestamp(cutoff).to_datetime64().astype("datetime64[ns]")
    cid = np.asarray(customer_id, np.int64)
    t = (np.asarray(pd.to_datetime(np.asarray(ts)), "datetime64[ns]") - c) / np.timedelta64(1, "D")
    keep = t < horizon_days
    cid, t = cid[keep], t[keep]
    order = np.lexsort((t, cid))
    cid, t = cid[order], t[order]
    before = t < 0
    nxt_same = np.r_[cid[1:] == cid[:-1], False]
    nxt_before = np.r_[before[1:], False]
    is_l0 = before & ~(nxt_same & nxt_before)
    pop = np.unique(cid[is_l0 & (-t < inactivity_days)])
    rows = np.isin(cid, pop) & (is_l0 | ~before)
    cid, t = cid[rows], t[rows]
    group = np.searchsorted(pop, cid)
    duration, event = _first_churn(group, t, pop.size, horizon_days, inactivity_days)
    return pd.DataFrame(
        {"duration_days": duration, "event": event},
        index=pd.Index(pop, name="customer_id"),
    )


def _simulate_label_paths(
    r: np.ndarray, lam: np.ndarray, mu: np.ndarray, p_alive: np.ndarray, horizon: float,
    inactivity: float, n_draws: int, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``n_draws`` futures per customer; returns (mean duration, event share) per customer.

    Times are days from the cutoff; the last purchase is at ``-r``. A path advances one purchase
    per step, all open paths at once, and closes when it churns or can no longer churn.
    """
    m, k = r.size, int(n_draws)
    cust = np.repeat(np.arange(m), k)
    lam_q = lam[cust]
    alive = rng.random(cust.size) < p_alive[cust]
    end = np.where(alive, np.minimum(rng.exponential(1.0, cust.size) / mu[cust], horizon), 0.0)
    cur = -r[cust]
    duration = np.full(cust.size, float(horizon))
    event = np.zeros(cust.size, bool)
    active = np.arange(cust.size)
    first = True
    while active.size:
        s = cur[active]
        # no purchase in (L0, cutoff) is known, and the process is memoryless: restart at 0
        base = np.maximum(s, 0.0) if first else s
        nxt = base + rng.exponential(1.0, active.size) / lam_q[active]
        nxt = np.where(nxt < end[active], nxt, np.inf)
        churn = (nxt - s >= inactivity) & (s + inactivity < horizon)
        duration[active[churn]] = s[churn] + inactivity
        event[active[churn]] = True
        go_on = ~churn & (nxt + inactivity < horizon)  # inf + D is not < horizon
        cur[active[go_on]] = nxt[go_on]
        active = active[go_on]
        first = False
    return duration.reshape(m, k).mean(axis=1), event.reshape(m, k).mean(axis=1)


def oracle_churn_summary(
    ground_truth: dict,
    transactions: pd.DataFrame,
    cutoff: Any,
    horizon_days: float,
    inactivity_days: float,
    n_draws: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Monte Carlo of the inactivity label under the TRUE ``lambda_i, mu_i`` for the population.

    The oracle sees the purchases before the cutoff but not whether a customer is still alive:
    ``P(alive at c | alive at L0, no purchase in (L0, c)) = e^{-(λ+μ)r} / (e^{-(λ+μ)r} +
    μ/(λ+μ) (1 - e^{-(λ+μ)r}))``, ``r = c - L0``. Each draw: alive ~ Bernoulli, then dropout after
    the cutoff ~ Exp(μ), purchases ~ Poisson(λ) until then; the label follows
    :func:`noncontractual_churn_labels_np`. Returns ``risk = -expected_duration_days``,
    ``expected_duration_days``, ``event_probability`` and ``p_alive``, indexed by customer_id.

    The hazard is taken constant after ``L0`` (its post-complaint-window value). That holds when
    every ``L0`` is past its customer's complaint window (true for the default calendar with a
    cutoff after ~2024-03); otherwise a warning says for how many customers it is approximate.
    """
    c = pd.Timestamp(cutoff)
    horizon, inactivity = float(horizon_days), float(inactivity_days)
    past = transactions.loc[transactions["ts"] < c, ["customer_id", "ts"]]
    last = past.groupby("customer_id")["ts"].max()
    r = ((c - last) / pd.Timedelta(days=1)).to_numpy(float)
    in_pop = r < inactivity
    pop_ids, r = last.index.to_numpy(np.int64)[in_pop], r[in_pop]

    gt = ground_truth["customers"]
    ids = np.asarray(gt["customer_id"], np.int64)
    sorter = np.argsort(ids, kind="stable")
    pos = sorter[np.minimum(np.searchsorted(ids, pop_ids, sorter=sorter), ids.size - 1)]
    found = ids[pos] == pop_ids
    if not found.all():
        raise DataError(
            f"transactions: customer_id {int(pop_ids[~found][0])} has no ground truth "
            "(the oracle needs the simulator's own data)"
        )
    lam = np.asarray(gt["purchase_rate"], float)[pos]
    mu = np.asarray(gt["dropout_hazard"], float)[pos]
    window_end = pd.to_datetime(np.asarray(gt["signup_ts"], object)[pos]) + pd.Timedelta(
        days=float(ground_truth["complaint_window_days"])
    )
    n_inside = int(((c - window_end) / pd.Timedelta(days=1) < r).sum())
    if n_inside:
        warnings.warn(
            f"oracle: {n_inside} customers' last purchase before the cutoff is inside their "
            "complaint window; their dropout hazard is taken constant (approximation)",
            stacklevel=2,
        )

    s = lam + mu
    alive_w = np.exp(-s * r)
    p_alive = alive_w / (alive_w + mu / s * (1.0 - alive_w))

    rng = np.random.default_rng(seed)
    # customer chunks bound the memory (paths = customers x draws)
    step = max(1, _ORACLE_PATHS_PER_CHUNK // max(int(n_draws), 1))
    parts = [
        _simulate_label_paths(
            r[i : i + step], lam[i : i + step], mu[i : i + step], p_alive[i : i + step],
            horizon, inactivity, n_draws, rng,
        )
        for i in range(0, pop_ids.size, step)
    ]
    exp_dur = np.concatenate([d for d, _ in parts]) if parts else np.zeros(0)
    p_event = np.concatenate([e for _, e in parts]) if parts else np.zeros(0)
    return pd.DataFrame(
        {
            "risk": -exp_dur,
            "expected_duration_days": exp_dur,
            "event_probability": p_event,
            "p_alive": p_alive,
        },
        index=pd.Index(pop_ids, name="customer_id"),
    )


def oracle_churn_risk(
    ground_truth: dict,
    transactions: pd.DataFrame,
    cutoff: Any,
    horizon_days: int,
    inactivity_days: int,
    n_draws: int = 200,
    seed: int = 0,
) -> pd.Series:
    """Oracle churn risk (higher = churns sooner) for the inactivity-label population.

    ``-E[duration_days]`` under the true parameters; see :func:`oracle_churn_summary`.
    """
    return oracle_churn_summary(
        ground_truth, transactions, cutoff, horizon_days, inactivity_days, n_draws, seed
    )["risk"].rename("risk")
