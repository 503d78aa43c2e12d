"""BG/BB: the beta-geometric / beta-Bernoulli model for discrete-time purchase opportunities.

Fader, P. S., Hardie, B. G. S. & Shang, J. (2010), "Customer-Base Analysis in a Discrete-Time
Noncontractual Setting", Marketing Science 29(6), 1086-1108 (equation numbers are the paper's).

Model: at each of n purchase opportunities after the first purchase (annual donation drives,
weekly shows, ...) an alive customer buys with probability p ~ Beta(alpha, beta); before each
opportunity she drops out for good with probability theta ~ Beta(gamma, delta).

Columns of the btyd summary (all integers): ``frequency`` = x, the number of the n opportunities
with a purchase; ``recency`` = t_x, the opportunity of the last purchase (0 if none); ``T`` (or
``n_periods``) = n, the number of opportunities observed. So 0 <= x <= t_x <= n, and t_x = 0 when
x = 0.

- Likelihood (eq. 5), B the beta function:
  L = B(alpha+x, beta+n-x)/B(alpha, beta) * B(gamma, delta+n)/B(gamma, delta)
      + sum_{i=0}^{n-t_x-1} B(alpha+x, beta+t_x-x+i)/B(alpha, beta)
                            * B(gamma+1, delta+t_x+i)/B(gamma, delta)
  (alive through n, or dropped out before opportunity t_x+i+1); summed in logs.
- P(alive at opportunity n+m | x, t_x, n) = B(alpha+x, beta+n-x)/B(alpha, beta)
      * B(gamma, delta+n+m)/B(gamma, delta) / L   (m = 1 is eq. 11).
- E[X(n, n+n*) | x, t_x, n] (eq. 13) = B(alpha+x+1, beta+n-x)/B(alpha, beta) / L
      * delta/(gamma-1) * Gamma(gamma+delta)/Gamma(1+delta)
      * [Gamma(1+delta+n)/Gamma(gamma+delta+n) - Gamma(1+delta+n+n*)/Gamma(gamma+delta+n+n*)].
- E[X(n)] for a new customer (eq. 9) = alpha/(alpha+beta) * delta/(gamma-1)
      * [1 - Gamma(gamma+delta)/Gamma(1+delta) * Gamma(1+delta+n)/Gamma(gamma+delta+n)]
  (eq. 13 at x = t_x = n = 0).
- P(X(n) = x) for a new customer (eq. 7) = C(n, x) B(alpha+x, beta+n-x)/B(alpha, beta)
      * B(gamma, delta+n)/B(gamma, delta)
      + sum_{i=x}^{n-1} C(i, x) B(alpha+x, beta+i-x)/B(alpha, beta) * B(gamma+1, delta+i)/B(gamma, delta).
The gradient of the log-likelihood is analytic (digamma differences weighted by each term's share).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import betaln, digamma, gammaln, logsumexp

from crm_models.errors import ModelInputError
from crm_models.models.clv.base import (
    TABLE,
    BTYDModel,
    as_summary,
    check_rules,
    numeric_columns,
    resolve_columns,
)


def _integers(values: Any, name: str) -> np.ndarray:
    values = np.asarray(values)
    if (values < 0).any() or (values != np.round(values)).any():
        raise ModelInputError(f"{name} must be non-negative integers, got {values}")
    return values.astype(float)


def _bracket_over_gamma_minus_1(gamma: float, delta: float, n: Any, n_star: Any) -> np.ndarray:
    """[G(1+d+n)/G(g+d+n) - G(1+d+n+n*)/G(g+d+n+n*)] / (g-1), with its limit at g = 1."""
    g1 = gammaln(1 + delta + n) - gammaln(gamma + delta + n)
    if abs(gamma - 1.0) < 1e-10:
        return np.exp(g1) * (digamma(1 + delta + n + n_star) - digamma(1 + delta + n))
    g2 = gammaln(1 + delta + n + n_star) - gammaln(gamma + delta + n + n_star)
    return np.exp(g1) * -np.expm1(g2 - g1) / (gamma - 1.0)


class BetaGeoBetaBinom(BTYDModel):
    """BG/BB (Fader, Hardie & Shang 2010); parameters ``alpha, beta, gamma, delta``.

    Fit on a btyd summary of discrete opportunities with columns ``frequency`` (x), ``recency``
    (t_x) and ``T`` or ``n_periods`` (n); compressed tables pass their counts as ``weights``
    (e.g. ``fit(table, weights="count")``). Prediction horizons are numbers of future
    opportunities.
    """

    _param_names = ("alpha", "beta", "gamma", "delta")
    _has_gradient = True

    def _prepare(self, summary: Any, fit: bool) -> dict[str, np.ndarray]:
        summary = as_summary(summary)
        name = type(self).__name__
        cols = resolve_columns(
            summary,
            {"x": ("frequency",), "t_x": ("recency",), "n": ("T", "n_periods")},
            name,
        )
        v = numeric_columns(summary, list(cols.values()))
        x, t_x, n = v[cols["x"]], v[cols["t_x"]], v[cols["n"]]
        n_name = cols["n"]
        shown = list(cols.values())
        fractional = (x != np.round(x)) | (t_x != np.round(t_x)) | (n != np.round(n))
        rules = [
            (fractional, "non-integer values (counts of opportunities)"),
            (x < 0, "frequency < 0"),
            (t_x < 0, "recency < 0"),
            ((x == 0) & (t_x != 0), "frequency = 0 but recency != 0"),
            (x > n, f"frequency > {n_name} (more purchases than opportunities)"),
            ((x > 0) & (x > t_x), "frequency > recency (x purchases need t_x >= x opportunities)"),
            (t_x > n, f"recency > {n_name}"),
            ((n < 1) if fit else (n < 0), f"{n_name} {'< 1' if fit else '< 0'} (no opportunity)"),
        ]
        check_rules(summary, rules, shown)
        if fit and not (x > 0).any():
            raise ModelInputError(f"{TABLE}: no customer has frequency > 0; nothing to learn from")
        return {"x": x, "t_x": t_x, "n": n}

    def _initial_params(self, data: dict, weights: np.ndarray) -> np.ndarray:
        return np.ones(4)

    def _log_likelihood(self, params: np.ndarray, data: dict, gradient: bool = False) -> Any:
        alpha, beta, gamma, delta = params
        x, t_x, n = data["x"], data["t_x"], data["n"]
        # Column 0: alive through n; column 1+i: dropped out before opportunity t_x+i+1.
        width = int((n - t_x).max()) if len(n) else 0
        j = t_x[:, None] + np.arange(width)[None, :]
        died = j < n[:, None]
        xc = x[:, None]
        log_terms = np.concatenate(
            [
                (betaln(alpha + x, beta + n - x) + betaln(gamma, delta + n))[:, None],
                np.where(
                    died, betaln(alpha + xc, beta + j - xc) + betaln(gamma + 1, delta + j), -np.inf
                ),
            ],
            axis=1,
        )
        log_sum = logsumexp(log_terms, axis=1)
        ll = log_sum - betaln(alpha, beta) - betaln(gamma, delta)
        if not gradient:
            return ll
        share = np.exp(log_terms - log_sum[:, None])
        # Number of opportunities (k) and whether the component is "dropped out" (extra gamma+1).
        k = np.concatenate([n[:, None], j], axis=1)
        dead = np.concatenate([np.zeros((len(n), 1)), np.ones_like(j)], axis=1)
        psi_ab = digamma(alpha + beta + k)
        psi_gd = digamma(gamma + delta + k + dead)
        G = np.vstack(
            [
                digamma(alpha + x) - (share * psi_ab).sum(axis=1),
                (share * (digamma(beta + k - xc) - psi_ab)).sum(axis=1),
                (share * (digamma(gamma + dead) - psi_gd)).sum(axis=1),
                (share * (digamma(delta + k) - psi_gd)).sum(axis=1),
            ]
        )
        G -= np.array(
            [
                [digamma(alpha) - digamma(alpha + beta)],
                [digamma(beta) - digamma(alpha + beta)],
                [digamma(gamma) - digamma(gamma + delta)],
                [digamma(delta) - digamma(gamma + delta)],
            ]
        )
        return ll, G @ data["weights"]

    # -- predictions ---------------------------------------------------------------------------

    def prob_alive(self, summary: pd.DataFrame, future_periods: int = 0) -> np.ndarray:
        """P(alive at opportunity n + future_periods | x, t_x, n) per customer.

        ``future_periods=0``: alive at the last observed opportunity (lifetimes' default);
        ``future_periods=1``: alive at the next opportunity (FHS 2010 eq. 11).
        """
        alpha, beta, gamma, delta = self._params()
        m = float(_integers(future_periods, "future_periods"))
        data = self._prepare(summary, fit=False)
        x, n = data["x"], data["n"]
        return np.exp(
            betaln(alpha + x, beta + n - x)
            - betaln(alpha, beta)
            + betaln(gamma, delta + n + m)
            - betaln(gamma, delta)
            - self._log_likelihood(np.array(self._params()), data)
        )

    def _expected(self, x: np.ndarray, t_x: np.ndarray, n: np.ndarray, n_star: Any) -> np.ndarray:
        alpha, beta, gamma, delta = self._params()
        data = {"x": x, "t_x": t_x, "n": n}
        log_front = (
            betaln(alpha + x + 1, beta + n - x)
            - betaln(alpha, beta)
            + np.log(delta)
            + gammaln(gamma + delta)
            - gammaln(1 + delta)
            - self._log_likelihood(np.array(self._params()), data)
        )
        return np.exp(log_front) * _bracket_over_gamma_minus_1(gamma, delta, n, n_star)

    def predict_purchases(self, summary: pd.DataFrame, t: Any) -> np.ndarray:
        """Expected purchases in the next ``t`` opportunities per customer (FHS 2010 eq. 13).

        ``t`` (n*) is a non-negative integer, or one per customer.
        """
        data = self._prepare(summary, fit=False)
        t = _integers(t, "t (future opportunities)")
        if t.ndim and t.shape != data["x"].shape:
            raise ModelInputError(f"t must be a scalar or one value per customer, got {t.shape}")
        return self._expected(data["x"], data["t_x"], data["n"], t)

    def expected_purchases(self, t: Any) -> np.ndarray | float:
        """E[X(t)]: expected purchases of a new customer in her first ``t`` opportunities (eq. 9)."""
        t = _integers(t, "t (opportunities)")
        zero = np.zeros(1)
        out = self._expected(zero, zero, zero, t)
        return float(out[0]) if t.ndim == 0 else out.reshape(t.shape)

    def prob_n_purchases(self, n: Any, t: int) -> np.ndarray | float:
        """P(X(t) = n): probability that a new customer buys at n of her first t opportunities
        (FHS 2010 eq. 7); ``n`` an int or an int array, ``t`` an int."""
        alpha, beta, gamma, delta = self._params()
        x = _integers(n, "n")
        t = float(_integers(t, "t (opportunities)"))
        xs = x.reshape(-1, 1)
        i = np.arange(int(t))[None, :]

        def log_choose(a: Any, b: Any) -> Any:
            return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)

        with np.errstate(invalid="ignore"):
            alive = np.where(
                xs[:, 0] <= t,
                np.exp(
                    log_choose(t, xs[:, 0])
                    + betaln(alpha + xs[:, 0], beta + t - xs[:, 0])
                    + betaln(gamma, delta + t)
                    - betaln(alpha, beta)
                    - betaln(gamma, delta)
                ),
                0.0,
            )
            dead_terms = np.where(
                i >= xs,
                np.exp(
                    log_choose(i, xs)
                    + betaln(alpha + xs, beta + i - xs)
                    + betaln(gamma + 1, delta + i)
                    - betaln(alpha, beta)
                    - betaln(gamma, delta)
                ),
                0.0,
            )
        out = (alive + dead_terms.sum(axis=1)).reshape(x.shape)
        return float(out) if out.ndim == 0 else out
