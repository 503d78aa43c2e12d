"""BG/NBD: the beta-geometric / negative binomial purchase model (Fader, Hardie & Lee 2005).

Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005), "'Counting Your Customers' the Easy Way: An
Alternative to the Pareto/NBD Model", Marketing Science 24(2), 275-284 (equation numbers below
are the paper's); Fader, Hardie & Lee (2008), "Computing P(alive) using the BG/NBD model"
(brucehardie.com note 021).

Model: while alive a customer buys as a Poisson process with rate lambda ~ Gamma(r, alpha)
(alpha is a time scale, in the summary's time unit); after each repeat purchase she drops out with
probability p ~ Beta(a, b). Data per customer: x = frequency (repeat purchases), t_x = recency
(time of the last one since the first purchase), T (time since the first purchase).

This module also holds the MBG/NBD math (``mbgnbd.py``): with ``d`` extra dropout opportunities
at the first purchase (BG/NBD d = 0, MBG/NBD d = 1) every expression below is that of both, and
with d = 0 it is the paper's:

- likelihood (eq. 6), B the beta function:
  L = Gamma(r+x) alpha^r / Gamma(r) * B(a, b+x+d) / B(a, b)
      * [ (alpha+T)^-(r+x) + 1{x+d > 0} a / (b+x+d-1) * (alpha+t_x)^-(r+x) ]
- P(alive | x, t_x, T) = 1 / (1 + 1{x+d > 0} a/(b+x+d-1) * ((alpha+T)/(alpha+t_x))^(r+x))
  (note 021);
- E[Y(t) | x, t_x, T] (eq. 10) = P(alive) * (a+b+x+d-1)/(a-1)
      * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x+d; a+b+x+d-1; t/(alpha+T+t))],
  evaluated after Euler's transformation as 1 - (1-z)^(a-1) 2F1(a+b+d-1-r, a-1; a+b+x+d-1; z)
  with z = t/(alpha+T+t): the untransformed 2F1 overflows for large x (its parameters grow with
  x), the transformed one is of order 1;
- E[X(t)] for a new customer (eq. 9) is the same expression at x = t_x = T = 0;
- P(X(t) = n) (eq. 8) = B(a, b+n+d)/B(a, b) * NB(n; r, alpha/(alpha+t))
      + 1{n+d > 0} B(a+1, b+n+d-1)/B(a, b) * P(NB(r, alpha/(alpha+t)) >= n),
  the negative binomial tail written as the regularized incomplete beta I_{t/(alpha+t)}(n, r);
- E[lambda | x, t_x, T]: the posterior of lambda is a two-component gamma mixture, Gamma(r+x,
  alpha+T) if alive (weight P(alive)) and Gamma(r+x, alpha+t_x) if she dropped out after the last
  purchase, so E[lambda | data] = (r+x) * (P(alive)/(alpha+T) + (1-P(alive))/(alpha+t_x)).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.special import betainc, betaln, digamma, expit, gammaln, polygamma, xlogy

from crm_models.errors import ModelInputError
from crm_models.models.clv.base import BTYDModel, frequency_recency_T, log_hyp2f1


def _horizon(t: Any, n: int | None = None) -> np.ndarray:
    """A non-negative horizon, scalar or one per customer."""
    t = np.asarray(t, dtype=float)
    if not np.isfinite(t).all() or (t < 0).any():
        raise ModelInputError(f"prediction horizon t must be finite and >= 0, got {t}")
    if n is not None and t.ndim and t.shape != (n,):
        raise ModelInputError(f"t must be a scalar or one value per customer ({n}), got {t.shape}")
    return t


def _dot(u: np.ndarray, v: np.ndarray) -> float:
    """sum(u * v) without BLAS (whose thread start-up dominates on one vector pair)."""
    return float(np.einsum("i,i->", u, v))


def _distinct_counts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values, index)`` with ``values[index] == x`` for non-negative integer counts ``x``.

    The values are 0 .. max(x) when that range is small (no sort needed), else the distinct
    values."""
    top = int(x.max()) if len(x) else 0
    if top < max(2**16, len(x)):
        return np.arange(top + 1, dtype=float), x.astype(np.intp)
    values, index = np.unique(x, return_inverse=True)
    return values, index.reshape(-1)


class BetaGeo(BTYDModel):
    """BG/NBD (Fader, Hardie & Lee 2005); parameters ``r, alpha, a, b``.

    Fit on a btyd summary with columns ``frequency``, ``recency``, ``T`` (see the module
    docstring for the formulas). The log-likelihood's gradient and Hessian are analytic.
    """

    _param_names = ("r", "alpha", "a", "b")
    _has_gradient = True
    _has_hessian = True
    _extra_dropout: ClassVar[int] = 0
    """d: dropout opportunities at the first purchase (0 BG/NBD, 1 MBG/NBD)."""

    def _prepare(self, summary: Any, fit: bool) -> dict[str, np.ndarray]:
        return frequency_recency_T(summary, type(self).__name__, fit)

    def _initial_params(self, data: dict, weights: np.ndarray) -> np.ndarray:
        mean_x = max(float(weights @ data["x"]) / weights.sum(), 0.05)
        mean_T = float(weights @ data["T"]) / weights.sum()
        # Purchase rate r/alpha ~ repeats per unit of observed time (ignores dropout).
        return np.array([1.0, mean_T / mean_x, 1.0, 1.0])

    def _precompute(self, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Few distinct frequencies: the special functions are evaluated once per frequency and
        # gathered, and the gradient's per-frequency terms are summed against each frequency's
        # weight. Ages and recencies are used as they are: on large tables they are nearly all
        # distinct (continuous time) or the gathers would cost about what they save.
        out = dict(data)
        w = data["weights"]
        out["x_u"], out["x_i"] = _distinct_counts(data["x"])
        out["x_w"] = np.bincount(out["x_i"], weights=w, minlength=len(out["x_u"]))
        out["wx"] = w * data["x"]
        out["w_total"] = float(w.sum())
        return out

    def _log_likelihood(
        self, params: np.ndarray, data: dict, gradient: bool = False, hessian: bool = False
    ) -> Any:
        r, alpha, a, b = params
        d = self._extra_dropout
        ux, ix, x = data["x_u"], data["x_i"], data["x"]
        has_death = (ux + d) > 0
        b_death = np.where(has_death, b + ux + d - 1, 1.0)  # b+x+d-1 > 0 wherever it is used
        head = gammaln(r + ux) - gammaln(r) + r * np.log(alpha) + betaln(a, b + ux + d)
        head -= betaln(a, b)
        log_a_over_b = np.where(has_death, np.log(a) - np.log(b_death), -np.inf)
        # One pass per line below on ~1M rows: in-place operations, np.take for the gathers
        # (several times faster than fancy indexing) and log(1 + e^-|odds|) by log, not log1p
        # (3x slower; the absolute error, 1e-16 per row, is far below the sum's rounding).
        p = x + r
        log_T = np.log(data["T"] + alpha)
        gap = np.log(data["t_x"] + alpha)
        np.subtract(log_T, gap, out=gap)  # log (alpha+T)/(alpha+t_x)
        # log(dead part / alive part) of the likelihood's bracket; the bracket's log is
        # -p log(alpha+T) + log(1 + e^odds) and P(dropped out | data) = expit(odds).
        odds = p * gap
        odds += np.take(log_a_over_b, ix)
        small = np.abs(odds)
        np.negative(small, out=small)
        np.exp(small, out=small)  # e^-|odds|
        one_plus = small + 1.0
        ll = np.log(one_plus)
        ll += np.maximum(odds, 0.0)
        ll += np.take(head, ix)
        ll -= p * log_T
        if not gradient:
            return ll
        w, W_x, W = data["weights"], data["x_w"], data["w_total"]
        sigma = np.where(odds >= 0, 1.0, small)
        sigma /= one_plus  # P(dropped out after the last purchase | data)
        w_dead = w * sigma
        inv_T = 1.0 / (data["T"] + alpha)
        inv_tx = 1.0 / (data["t_x"] + alpha)
        diff = inv_T - inv_tx  # d gap / d alpha
        dead_p = w_dead * p
        psi_ab = digamma(a + b)
        psi_abx = digamma(a + b + ux + d)
        dead_by_x = np.bincount(ix, weights=w_dead, minlength=len(ux))
        inv_b = np.where(has_death, 1.0 / b_death, 0.0)
        # d/dr: -w_alive log(alpha+T) - w_dead log(alpha+t_x) = -log(alpha+T) + w_dead * gap.
        g_r = W_x @ (digamma(r + ux) - digamma(r) + np.log(alpha)) - _dot(w, log_T)
        g_r += _dot(w_dead, gap)
        # d/dalpha: r/alpha - p (w_alive/(alpha+T) + w_dead/(alpha+t_x)).
        g_alpha = r / alpha * W - (r * _dot(w, inv_T) + _dot(data["wx"], inv_T))
        g_alpha += _dot(dead_p, diff)
        g_a = W_x @ (psi_ab - psi_abx) + dead_by_x.sum() / a
        g_b = W_x @ (digamma(b + ux + d) - digamma(b) + psi_ab - psi_abx) - dead_by_x @ inv_b
        grad = np.array([g_r, g_alpha, g_a, g_b])
        if not hessian:
            return ll, grad
        # The bracket's log is log(1 + e^odds) - p log(alpha+T): its Hessian is
        # sigma (1 - sigma) d odds d odds' + sigma d2 odds, with d odds / d(r, alpha, a, b) =
        # (gap, p diff, 1/a, -1/(b+x+d-1)); the rest is trigamma terms per frequency.
        s2 = w_dead * (1.0 - sigma)
        q = p * diff
        s2_gap = s2 * gap
        s2_q = s2 * q
        s2_by_x = np.bincount(ix, weights=s2, minlength=len(ux))
        s2_gap_by_x = np.bincount(ix, weights=s2_gap, minlength=len(ux))
        s2_q_by_x = np.bincount(ix, weights=s2_q, minlength=len(ux))
        tri_ab = polygamma(1, a + b) - polygamma(1, a + b + ux + d)
        inv_T2 = inv_T * inv_T
        H = np.empty((4, 4))
        H[0, 0] = W_x @ (polygamma(1, r + ux) - polygamma(1, r)) + _dot(s2_gap, gap)
        H[0, 1] = W / alpha - _dot(w, inv_T) + _dot(w_dead, diff) + _dot(s2_gap, q)
        H[0, 2] = s2_gap_by_x.sum() / a
        H[0, 3] = -(s2_gap_by_x @ inv_b)
        H[1, 1] = (
            -r * W / alpha**2
            + r * _dot(w, inv_T2)
            + _dot(data["wx"], inv_T2)
            + _dot(dead_p, inv_tx * inv_tx - inv_T2)
            + _dot(s2_q, q)
        )
        H[1, 2] = s2_q_by_x.sum() / a
        H[1, 3] = -(s2_q_by_x @ inv_b)
        H[2, 2] = W_x @ tri_ab + (s2_by_x.sum() - dead_by_x.sum()) / a**2
        H[2, 3] = W_x @ tri_ab - (s2_by_x @ inv_b) / a
        H[3, 3] = W_x @ (polygamma(1, b + ux + d) - polygamma(1, b) + tri_ab) + (
            dead_by_x + s2_by_x
        ) @ (inv_b * inv_b)
        H[np.tril_indices(4, -1)] = H.T[np.tril_indices(4, -1)]
        return ll, grad, H

    # -- predictions ---------------------------------------------------------------------------

    def _prob_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = self._params()
        d = self._extra_dropout
        has_death = (x + d) > 0
        b_death = np.where(has_death, b + x + d - 1, 1.0)
        log_odds_dead = (
            np.log(a) - np.log(b_death) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        )
        return np.where(has_death, expit(-log_odds_dead), 1.0)

    def _expected_if_alive(self, x: np.ndarray, T: np.ndarray, t: np.ndarray) -> np.ndarray:
        """E[Y(t) | alive at T, x repeats]: eq. 10 without its P(alive) factor."""
        r, alpha, a, b = self._params()
        d = self._extra_dropout
        z = t / (alpha + T + t)
        log_f, sign = log_hyp2f1(a + b + d - 1 - r, a - 1, a + b + x + d - 1, z)
        log_term = (a - 1) * np.log1p(-z) + log_f
        bracket = np.where(sign > 0, -np.expm1(log_term), 1.0 + np.exp(log_term))
        return (a + b + x + d - 1) / (a - 1) * bracket

    def prob_alive(self, summary: pd.DataFrame) -> np.ndarray:
        """P(alive at T | frequency, recency, T) per customer (1 when frequency is 0 for BG/NBD)."""
        data = self._prepare(summary, fit=False)
        return self._prob_alive(data["x"], data["t_x"], data["T"])

    def predict_purchases(self, summary: pd.DataFrame, t: Any) -> np.ndarray:
        """Expected repeat purchases in (T, T + t] per customer (FHL 2005 eq. 10).

        ``t`` is in the summary's time unit, a scalar or one value per customer.
        """
        data = self._prepare(summary, fit=False)
        x, t_x, T = data["x"], data["t_x"], data["T"]
        t = _horizon(t, len(x))
        return self._prob_alive(x, t_x, T) * self._expected_if_alive(x, T, t)

    def expected_purchases(self, t: Any) -> np.ndarray | float:
        """E[X(t)]: expected repeat purchases in (0, t] of a new customer (FHL 2005 eq. 9)."""
        t = _horizon(t)
        zero = np.zeros_like(t)
        out = self._prob_alive(zero, zero, zero) * self._expected_if_alive(zero, zero, t)
        return float(out) if out.ndim == 0 else out

    def prob_n_purchases(self, n: Any, t: float) -> np.ndarray | float:
        """P(X(t) = n) for a new customer (FHL 2005 eq. 8); ``n`` an int or an int array."""
        r, alpha, a, b = self._params()
        d = self._extra_dropout
        n = np.asarray(n)
        if (n < 0).any() or (n != np.round(n)).any():
            raise ModelInputError(f"n must be non-negative integers, got {n}")
        n = n.astype(float)
        t = float(_horizon(t))
        q = t / (alpha + t)
        log_nb = gammaln(r + n) - gammaln(r) - gammaln(n + 1) + r * np.log1p(-q) + xlogy(n, q)
        alive = np.exp(betaln(a, b + n + d) - betaln(a, b) + log_nb)
        has_death = (n + d) > 0
        b_death = np.where(has_death, b + n + d - 1, 1.0)
        tail = np.where(n > 0, betainc(np.maximum(n, 1), r, q), 1.0)
        dead = np.where(has_death, np.exp(betaln(a + 1, b_death) - betaln(a, b)) * tail, 0.0)
        out = alive + dead
        return float(out) if out.ndim == 0 else out

    def posterior_purchase_rate(self, summary: pd.DataFrame) -> np.ndarray:
        """E[lambda | frequency, recency, T]: purchases per time unit while alive."""
        r, alpha, _, _ = self._params()
        data = self._prepare(summary, fit=False)
        x, t_x, T = data["x"], data["t_x"], data["T"]
        p_alive = self._prob_alive(x, t_x, T)
        return (r + x) * (p_alive / (alpha + T) + (1 - p_alive) / (alpha + t_x))
