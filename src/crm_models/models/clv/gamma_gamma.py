"""Gamma-Gamma: the spend-per-transaction model, and customer lifetime value on top of a BTYD model.

Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005), "RFM and CLV: Using Iso-Value Curves for
Customer Base Analysis", Journal of Marketing Research 42(4), 415-430; formulas as in Fader, P. S.
& Hardie, B. G. S. (2013), "The Gamma-Gamma Model of Monetary Value" (brucehardie.com note 025;
after Colombo & Jiang 1999).

Model: a customer's transaction values are Gamma(p, nu) with nu ~ Gamma(q, v) across customers
(v is in money units). The summary gives, per customer, x = ``frequency`` (repeat transactions)
and m = ``monetary_value`` (their mean value); only customers with x > 0 carry information, and
x is both the number of values averaged and how much a customer's own mean counts (FHL 2005).

- Likelihood of the mean of x values (note eq. 1a):
  f(m | p, q, v; x) = Gamma(px+q) / (Gamma(px) Gamma(q)) * v^q m^(px-1) x^(px) / (v + m x)^(px+q)
- Conditional expected mean spend (note eq. 5):
  E[M | p, q, v, m, x] = p (v + m x) / (p x + q - 1)
      = (q-1)/(px+q-1) * p v/(q-1) + px/(px+q-1) * m,
  a weighted average of the population mean p v / (q-1) and the customer's own mean; at x = 0 it
  is the population mean (finite only for q > 1).
The log-likelihood gradient is analytic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import digamma, gammaln

from crm_models.errors import ModelInputError
from crm_models.models.clv.base import (
    BTYDModel,
    as_summary,
    check_rules,
    numeric_columns,
    resolve_columns,
)


class GammaGamma(BTYDModel):
    """Gamma-Gamma spend model; parameters ``p, q, v``.

    ``fit(summary)`` uses the customers with ``frequency`` > 0 (their ``monetary_value`` is the
    mean of their repeat purchases and must be > 0); ``predict_spend`` and
    ``customer_lifetime_value`` take any btyd summary.
    """

    _param_names = ("p", "q", "v")
    _has_gradient = True

    def _prepare(self, summary: Any, fit: bool) -> dict[str, np.ndarray]:
        summary = as_summary(summary)
        cols = ("frequency", "monetary_value")
        resolve_columns(summary, {c: (c,) for c in cols}, type(self).__name__)
        v = numeric_columns(summary, cols)
        x, m = v["frequency"], v["monetary_value"]
        check_rules(
            summary,
            [
                (x < 0, "frequency < 0"),
                (x != np.round(x), "a non-integer frequency"),
                (
                    (x > 0) & (m <= 0),
                    (
                        "frequency > 0 but monetary_value <= 0 (the Gamma-Gamma model needs a "
                        "positive mean spend per repeat purchase; drop or fix returns and free "
                        "orders before building the summary)"
                    ),
                ),
            ],
            cols,
        )
        return {"x": x, "m": m}

    def _fit_rows(self, data: dict[str, np.ndarray]) -> np.ndarray:
        keep = data["x"] > 0
        if not keep.any():
            raise ModelInputError(
                "btyd summary: no customer with frequency > 0; the Gamma-Gamma model is fitted "
                "on repeat buyers' mean spend"
            )
        return keep

    def _initial_params(self, data: dict, weights: np.ndarray) -> np.ndarray:
        mean_spend = float(weights @ data["m"]) / weights.sum()
        return np.array([1.0, 2.0, mean_spend])  # population mean p v / (q - 1) = mean spend

    def _log_likelihood(self, params: np.ndarray, data: dict, gradient: bool = False) -> Any:
        p, q, v = params
        x, m = data["x"], data["m"]
        px = p * x
        log_xm_v = np.log(v + m * x)
        ll = (
            gammaln(px + q)
            - gammaln(px)
            - gammaln(q)
            + q * np.log(v)
            + (px - 1) * np.log(m)
            + px * np.log(x)
            - (px + q) * log_xm_v
        )
        if not gradient:
            return ll
        psi = digamma(px + q)
        G = np.vstack(
            [
                x * (psi - digamma(px) + np.log(m) + np.log(x) - log_xm_v),
                psi - digamma(q) + np.log(v) - log_xm_v,
                q / v - (px + q) / (v + m * x),
            ]
        )
        return ll, G @ data["weights"]

    def predict_spend(self, summary: pd.DataFrame) -> np.ndarray:
        """E[mean spend per transaction | frequency, monetary_value] per customer (note eq. 5).

        Customers with frequency 0 get the population mean p v / (q - 1) (infinite if q <= 1).
        """
        p, q, v = self._params()
        data = self._prepare(summary, fit=False)
        x = data["x"]
        m = np.where(x > 0, data["m"], 0.0)  # a one-time buyer's monetary_value is unused
        denom = p * x + q - 1
        with np.errstate(divide="ignore"):
            return np.where(denom > 0, p * (v + m * x) / denom, np.inf)

    def customer_lifetime_value(
        self,
        purchase_model: Any,
        summary: pd.DataFrame,
        horizon: int = 12,
        discount_rate: float = 0.01,
        margin: float = 1.0,
        time_unit_days: float = 7.0,
        period_days: float = 365.25 / 12,
        spend_summary: pd.DataFrame | None = None,
    ) -> np.ndarray:
        """Discounted expected margin per customer over ``horizon`` periods.

        CLV = sum_{i=1..horizon} margin * E[spend] * (E[Y(t_i)] - E[Y(t_(i-1))]) / (1 + d)^i,
        with t_i = i * period_days / time_unit_days in the summary's time unit, E[Y(t)] the
        purchase model's ``predict_purchases(summary, t)`` (fitted BG/NBD, MBG/NBD or Pareto/NBD
        on the same summary), E[spend] this model's ``predict_spend`` and d = ``discount_rate``
        *per period* (lifetimes' ``customer_lifetime_value`` convention, whose ``time`` is
        months, period_days = 30.415 for a weekly summary as its factor 4.345 weeks per month).

        Args:
            purchase_model: a fitted model with ``predict_purchases(summary, t)``.
            summary: btyd summary (``frequency``, ``recency``, ``T``, ``monetary_value``).
            horizon: number of periods (default 12 months).
            discount_rate: discount rate per period (default 1% a month).
            margin: profit margin applied to the spend (1.0 = revenue).
            time_unit_days: length of the summary's time unit in days (7 for weeks).
            period_days: length of one discounting period in days (default a mean month).
            spend_summary: the rows ``predict_spend`` reads, if not ``summary`` (same customers,
                same order; e.g. with repeat buyers of zero spend recoded as one-time buyers).
        """
        if not (isinstance(horizon, int | np.integer) and horizon >= 1):
            raise ModelInputError(f"horizon must be a positive number of periods, got {horizon}")
        if not (np.isfinite(discount_rate) and discount_rate > -1):
            raise ModelInputError(f"discount_rate must be > -1, got {discount_rate}")
        if not (time_unit_days > 0 and period_days > 0):
            raise ModelInputError("time_unit_days and period_days must be positive")
        spend_rows = summary if spend_summary is None else spend_summary
        if len(spend_rows) != len(summary):
            raise ModelInputError(
                f"spend_summary has {len(spend_rows)} rows but summary has {len(summary)}"
            )
        spend = self.predict_spend(spend_rows) * margin
        step = period_days / time_unit_days
        clv = np.zeros(len(spend))
        previous = np.zeros(len(spend))
        for i in range(1, horizon + 1):  # periods, not customers: each step is vectorized
            cumulative = np.asarray(purchase_model.predict_purchases(summary, i * step))
            clv += spend * (cumulative - previous) / (1.0 + discount_rate) ** i
            previous = cumulative
        return clv
