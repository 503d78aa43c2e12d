"""Pareto/NBD: the Pareto / negative binomial purchase model (Schmittlein, Morrison & Colombo 1987).

Schmittlein, D. C., Morrison, D. G. & Colombo, R. (1987), "Counting Your Customers: Who Are They
and What Will They Do Next?", Management Science 33(1), 1-24; the expressions below are those of
Fader, P. S. & Hardie, B. G. S. (2005), "A Note on Deriving the Pareto/NBD Model and Related
Expressions" (brucehardie.com note 009; equation numbers are the note's).

Model: while alive a customer buys as a Poisson process with rate lambda ~ Gamma(r, alpha); her
lifetime is exponential with rate mu ~ Gamma(s, beta) (alpha, beta are time scales in the
summary's time unit). Data per customer: x = frequency, t_x = recency, T.

- Likelihood (eq. 18-20):
  L = Gamma(r+x) alpha^r beta^s / Gamma(r) * [ (alpha+T)^-(r+x) (beta+T)^-s + s/(r+s+x) A0 ],
  A0 = F(t_x) - F(T), and with a = r+s+x,
  alpha >= beta: F(t) = 2F1(a, s+1; a+1; (alpha-beta)/(alpha+t)) / (alpha+t)^a,
  alpha <  beta: F(t) = 2F1(a, r+x; a+1; (beta-alpha)/(beta+t)) / (beta+t)^a.
  s/(r+s+x) A0 = s * integral_{t_x}^{T} (alpha+u)^-(r+x) (beta+u)^-(s+1) du is the probability
  (up to the constant in front) of dying between t_x and T.
- Numerics: 2F1(a, b; a+1; z) is astronomically large for large r+x (scipy.special.hyp2f1
  returns inf from x ~ 500 at z = 0.9), so it is evaluated after Euler's transformation,
  2F1(a, b; a+1; z) = (1-z)^(1-b) 2F1(1, a+1-b; a+1; z), whose series has positive terms
  decreasing faster than z^k and a sum below 1/(1-z); hence
  alpha >= beta: F(t) = (alpha+t)^-(r+x) (beta+t)^-s S(t),
  alpha <  beta: F(t) = (alpha+t)^-(r+x-1) (beta+t)^-(s+1) S(t),
  S the transformed series, everything in logs, A0 as a log-difference. The number of terms a
  row needs is found beforehand (t_k is a ratio of gamma functions in closed form), so rows
  are summed in groups of equal length (term by term over blocks of rows for short series, as
  matrices for long ones); F depends on a customer only through
  (x, t), evaluated once per distinct pair (CDNOW: 1,726 (x, t_x) and 979 (x, T) pairs for
  23,570 customers). The gradient is analytic: d log S / d(B, C, z) from the same terms; per
  row only scalar weights are formed, summed per distinct pair (bincount) and multiplied with
  the pairs' derivatives, so no (rows x 4) array is built.
- P(alive | x, t_x, T) (eq. 36-37) = (alpha+T)^-(r+x) (beta+T)^-s / [the bracket of L].
- E[Y(t) | x, t_x, T] (eq. 41) = P(alive) (r+x)(beta+T) / ((alpha+T)(s-1))
      * [1 - ((beta+T)/(beta+T+t))^(s-1)]   (the s -> 1 limit is a logarithm).
- E[X(t)] (eq. 27) = r beta / (alpha (s-1)) * [1 - (beta/(beta+t))^(s-1)].
- P(X(t) = n) for a new customer = NB(n; r, alpha/(alpha+t)) (beta/(beta+t))^s
      + integral_0^t NB(n; r, alpha/(alpha+u)) s beta^s (beta+u)^-(s+1) du
  (alive at t with n purchases, or died at u < t after n): the integral by 256-point
  Gauss-Legendre quadrature (the note's closed form subtracts nearly equal sums of 2F1 terms);
  checked against adaptive quadrature to ~1e-14 and by sum_n P = 1, sum_n n P = E[X(t)].
- E[lambda | x, t_x, T]: the same bracket with r+x -> r+x+1 in the lambda factor, times r+x,
  over the bracket of L (the posterior of lambda mixes Gamma(r+x, alpha+u) over the death time u).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import digamma, gammaln, roots_legendre, xlogy

from crm_models.errors import ModelInputError
from crm_models.models.clv.base import BTYDModel, frequency_recency_T, group_rows
from crm_models.models.clv.bgnbd import _distinct_counts, _dot, _horizon

_LEGENDRE_NODES, _LEGENDRE_WEIGHTS = roots_legendre(256)


_MAX_TERMS = 2**14
"""Series terms per row at most (reached only for z within ~1e-3 of 1 with few purchases, e.g.
max(alpha, beta) / min(alpha, beta) above ~1000 at t = 0); the rest is the added tail estimate."""


_GRID = np.unique(np.ceil(8 * 1.25 ** np.arange(40))).astype(int)
"""Term counts rows are grouped by (8 to 2**14, 25% apart: little work is wasted on rounding up)."""
_GRID = _GRID[_GRID <= _MAX_TERMS]


_RECURRENCE_UP_TO = 64
"""Rows whose series needs at most this many terms are summed term by term over row blocks."""


def _short_series(
    B: np.ndarray, C: np.ndarray, z: np.ndarray, K: int, gradient: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`_euler_series` for rows that all take K terms, by the recurrence
    t_{j+1} = t_j (B+j)/(C+j) z on vectors of rows (in-place, cache-sized: with few terms this
    beats the (rows x K) matrices, whose temporaries cost more than the arithmetic). The
    derivative sums run forward: sum_k t_k sum_{j<k} 1/(B+j) with the inner sum carried along.
    """
    t = np.ones_like(z)
    total = np.ones_like(z)
    b_j, c_j, tmp = np.empty_like(z), np.empty_like(z), np.empty_like(z)
    if gradient:
        h_b, h_c, s_b, s_c, s_k = (np.zeros_like(z) for _ in range(5))
    for j in range(K):
        np.add(B, j, out=b_j)
        np.add(C, j, out=c_j)
        if gradient:
            np.divide(1.0, b_j, out=tmp)
            h_b += tmp
            np.divide(1.0, c_j, out=tmp)
            h_c += tmp
        np.divide(b_j, c_j, out=tmp)
        tmp *= z
        t *= tmp  # t_{j+1}
        total += t
        if gradient:
            np.multiply(t, h_b, out=tmp)
            s_b += tmp
            np.multiply(t, h_c, out=tmp)
            s_c += tmp
            np.multiply(t, j + 1.0, out=tmp)
            s_k += tmp
    last_ratio = (B + K) / (C + K) * z
    tail = t * last_ratio / (1.0 - last_ratio)
    total += tail
    if not gradient:
        return np.log(total), None
    # The tail estimate enters the B and C derivatives as terms beyond K would (as in the
    # matrix summation of _euler_series).
    s_b += tail * h_b
    s_c += tail * h_c
    return np.log(total), np.column_stack([s_b / total, -s_c / total, s_k / (z * total)])


def _euler_series(
    B: np.ndarray, C: np.ndarray, z: np.ndarray, gradient: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """log S, S = 2F1(1, B; C; z) = sum_k t_k, t_k = prod_{j<k} (B+j)/(C+j) z, for 0 < B <= C and
    0 <= z < 1.

    The term ratios q_k = (B+k)/(C+k) z increase towards z. Each row is summed to the first K
    (on a grid 25% apart) whose tail estimate t_K q_K/(1-q_K) is below 1e-15, and that estimate
    is added; the true tail lies between it and t_K z/(1-z), so the error is below
    1e-15 z(1-q_K)/(q_K(1-z)) of S (5e-14 at z = 0.98, q_K = 0.5): bounding the tail instead costs
    ~3x the terms. t_K has a closed form (gamma functions), so K is found beforehand by
    bisection, and rows are summed in groups of equal length: up to ``_RECURRENCE_UP_TO`` terms
    by :func:`_short_series`, longer ones as matrices (a term-by-term loop would run up to
    ``_MAX_TERMS`` times in Python). With ``gradient``, also the derivatives of
    log S with respect to B, C and z (columns), from the same terms: d log t_k/dB =
    sum_{j<k} 1/(B+j), d/dC = -sum_{j<k} 1/(C+j), d/dz = k/z; the double sums are taken as
    sum_j 1/(B+j) * (t_{j+1} + t_{j+2} + ...), one cumulative sum for both.
    """
    n = len(z)
    log_s = np.zeros(n)
    grad = np.zeros((n, 3)) if gradient else None
    # An upper end for K from the geometric bound t_K <= z^K (rows with large counts, C >> B,
    # need far fewer terms: their ratios start near B/C).
    with np.errstate(divide="ignore", invalid="ignore"):  # z = 0 rows need no terms
        log_z = np.log(z)
        need = (np.log(1e-15) - log_z + np.log1p(-z)) / log_z
    pick = np.minimum(np.searchsorted(_GRID, need), len(_GRID) - 1)
    long = np.flatnonzero((_GRID[pick] > 16) & (z > 0))
    if long.size:
        b, c, lz = B[long], C[long], log_z[long]
        base = gammaln(c) - gammaln(b)

        def log_tail_estimate(K: np.ndarray) -> np.ndarray:
            q = (b + K) / (c + K) * z[long]
            return gammaln(b + K) - gammaln(c + K) + base + K * lz + np.log(q) - np.log1p(-q)

        # Bisection over the grid for the first K whose estimate is small (it decreases in K).
        lo = np.zeros(long.size, dtype=int)
        hi = pick[long].copy()
        while (lo < hi).any():
            mid = (lo + hi) // 2
            small = log_tail_estimate(_GRID[mid].astype(float)) < np.log(1e-15)
            hi = np.where(small, mid, hi)
            lo = np.where(small, lo, mid + 1)
        pick[long] = hi
    size = np.where(z > 0, _GRID[pick], 0)
    if gradient:
        grad[:, 2] = np.where(z > 0, 0.0, B / C)  # the z -> 0 limit of sum_k k t_k / (z S)
    for K in np.unique(size[size > 0]):
        rows_k = np.flatnonzero(size == K)
        if K <= _RECURRENCE_UP_TO:
            for rows in np.array_split(rows_k, max(1, len(rows_k) // 2**15)):
                log_s[rows], g = _short_series(B[rows], C[rows], z[rows], int(K), gradient)
                if gradient:
                    grad[rows] = g
            continue
        for rows in np.array_split(rows_k, max(1, len(rows_k) * K // 2**16)):
            j = np.arange(K, dtype=float)
            zz = z[rows, None]
            b_j = B[rows, None] + j
            inv_c_j = 1.0 / (C[rows, None] + j)
            terms = np.cumprod(b_j * inv_c_j * zz, axis=1)  # t_1 .. t_K
            last_ratio = (B[rows] + K) / (C[rows] + K) * z[rows]
            total = 1.0 + terms.sum(axis=1) + terms[:, -1] * last_ratio / (1.0 - last_ratio)
            log_s[rows] = np.log(total)
            if gradient:
                # t_{j+1} + t_{j+2} + ... as the row sum minus a running sum: no reversed copies;
                # the cancellation costs ~K * 1e-16 of S, far below what the optimizer resolves.
                tails = terms - np.cumsum(terms, axis=1)
                tails += (total - 1.0)[:, None]
                grad[rows, 0] = (tails / b_j).sum(axis=1) / total
                grad[rows, 1] = -(tails * inv_c_j).sum(axis=1) / total
                grad[rows, 2] = (terms @ (j + 1.0)) / (zz[:, 0] * total)
    return log_s, grad


def _log_f(
    p: np.ndarray, alpha: float, s: float, beta: float, t: np.ndarray, gradient: bool
) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
    """log F(t) of A0 = F(t_x) - F(T) (module docstring), after Euler's transformation.

    With ``gradient`` also d log F / d(p, s, alpha, beta), four arrays.
    """
    la, lb = np.log(alpha + t), np.log(beta + t)
    if alpha >= beta:
        z = (alpha - beta) / (alpha + t)
        log_s, g = _euler_series(p, p + s + 1.0, z, gradient)
        out = -p * la - s * lb + log_s
        if not gradient:
            return out, None
        s_b, s_c, s_z = g.T
        d = (
            -la + s_b + s_c,
            -lb + s_c,
            -p / (alpha + t) + s_z * (beta + t) / (alpha + t) ** 2,
            -s / (beta + t) - s_z / (alpha + t),
        )
    else:
        z = (beta - alpha) / (beta + t)
        log_s, g = _euler_series(np.full_like(p, s + 1.0), p + s + 1.0, z, gradient)
        out = -(p - 1.0) * la - (s + 1.0) * lb + log_s
        if not gradient:
            return out, None
        s_b, s_c, s_z = g.T
        d = (
            -la + s_c,
            -lb + s_b + s_c,
            -(p - 1.0) / (alpha + t) - s_z / (beta + t),
            -(s + 1.0) / (beta + t) + s_z * (alpha + t) / (beta + t) ** 2,
        )
    return out, d


def _log_bracket(
    p: np.ndarray,
    alpha: float,
    s: float,
    beta: float,
    T: np.ndarray,
    f_tx: np.ndarray,
    f_T: np.ndarray,
) -> np.ndarray:
    """log[(alpha+T)^-p (beta+T)^-s + s/(p+s) A0], the likelihood's bracket, from ``f_tx`` and
    ``f_T``, log F at t_x and at T (:func:`_log_f`).

    ``p`` is r+x for the likelihood (and r+x+1 for the posterior mean of lambda).
    """
    # A0 = F(t_x) - F(T) >= 0 (an integral); rounding can make the difference -0.
    gap = np.minimum(f_T - f_tx, 0.0)
    with np.errstate(divide="ignore"):
        log_a0 = f_tx + np.log(-np.expm1(gap))
    log_alive = -p * np.log(alpha + T) - s * np.log(beta + T)
    log_dead = np.log(s) - np.log(p + s) + log_a0
    return np.logaddexp(log_alive, log_dead)


def _one_minus_power_over(q: np.ndarray, e: float) -> np.ndarray:
    """(1 - q^e) / e, with its limit -log(q) at e = 0."""
    if abs(e) < 1e-10:
        return -np.log(q)
    return -np.expm1(e * np.log(q)) / e


class ParetoNBD(BTYDModel):
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987); parameters ``r, alpha, s, beta``.

    Fit on a btyd summary with columns ``frequency``, ``recency``, ``T`` (formulas and numerics in
    the module docstring). The log-likelihood gradient is analytic (the series' derivatives).
    """

    _param_names = ("r", "alpha", "s", "beta")
    _has_gradient = True

    def _prepare(self, summary: Any, fit: bool) -> dict[str, np.ndarray]:
        return frequency_recency_T(summary, type(self).__name__, fit)

    def _initial_params(self, data: dict, weights: np.ndarray) -> np.ndarray:
        mean_x = max(float(weights @ data["x"]) / weights.sum(), 0.05)
        mean_T = float(weights @ data["T"]) / weights.sum()
        return np.array([1.0, mean_T / mean_x, 1.0, mean_T])

    def _precompute(self, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # F(t) depends on a row through (x, t) only: CDNOW's 23,570 customers have 8,685
        # distinct (x, t_x, T) rows but 1,726 distinct (x, t_x) and 979 distinct (x, T) pairs.
        out = dict(data)
        x = data["x"]
        for t in ("t_x", "T"):
            first, inverse = group_rows([x, data[t]])
            out[f"{t}_pairs"] = np.column_stack([x[first], data[t][first]])
            out[f"{t}_inverse"] = inverse
        out["x_u"], out["x_i"] = _distinct_counts(x)
        if "weights" in data:
            out["x_w"] = np.bincount(out["x_i"], weights=data["weights"], minlength=len(out["x_u"]))
        return out

    def _log_likelihood(self, params: np.ndarray, data: dict, gradient: bool = False) -> Any:
        r, alpha, s, beta = params
        ux, ix, x, T = data["x_u"], data["x_i"], data["x"], data["T"]
        f, d = {}, {}
        for t in ("t_x", "T"):
            pairs = data[f"{t}_pairs"]
            log_f, d[t] = _log_f(r + pairs[:, 0], alpha, s, beta, pairs[:, 1], gradient)
            f[t] = np.take(log_f, data[f"{t}_inverse"])
        head = gammaln(r + ux) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        # The bracket (_log_bracket) row by row, one pass per line on ~1M rows; the terms that
        # depend on x alone are computed per distinct x and gathered.
        p = x + r
        log_aT = np.log(alpha + T)
        log_bT = np.log(beta + T)
        gap = f["T"] - f["t_x"]
        np.minimum(gap, 0.0, out=gap)  # A0 = F(t_x) - F(T) >= 0; rounding can make it -0
        one_minus = np.expm1(gap)
        np.negative(one_minus, out=one_minus)  # A0 / F(t_x) = 1 - e^gap
        with np.errstate(divide="ignore"):
            log_dead = np.log(one_minus)
        log_dead += f["t_x"]
        log_dead += np.take(np.log(s) - np.log(ux + r + s), ix)
        log_alive = p * log_aT
        log_alive += s * log_bT
        np.negative(log_alive, out=log_alive)
        # log(alive + dead) = max + log(1 + e^-|difference|), and the two shares from e.
        e = log_alive - log_dead
        alive_first = e >= 0
        np.abs(e, out=e)
        np.negative(e, out=e)
        np.exp(e, out=e)
        one_plus = e + 1.0
        ll = np.log(one_plus)
        ll += np.maximum(log_alive, log_dead)
        ll += np.take(head, ix)
        if not gradient:
            return ll
        w, W_x = data["weights"], data["x_w"]
        W = float(W_x.sum())
        np.divide(1.0, one_plus, out=one_plus)
        e *= one_plus  # e / (1 + e)
        w_alive = np.where(alive_first, one_plus, e)  # alive share of the bracket
        w_dead = np.where(alive_first, e, one_plus)
        w_alive *= w
        w_dead *= w
        # d log(dead part): d/d(p, s) of log s - log(p+s), and d log A0 = (F(t_x) d log F(t_x)
        # - F(T) d log F(T)) / A0, the two d log F summed per distinct (x, t) pair with the
        # weights w_dead / (1 - e^gap) and that times e^gap (none where A0 = 0: t_x = T).
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(one_minus > 0, w_dead / one_minus, 0.0)
        by_tx = np.bincount(data["t_x_inverse"], weights=c, minlength=len(d["t_x"][0]))
        c *= 1.0 - one_minus
        by_T = np.bincount(data["T_inverse"], weights=c, minlength=len(d["T"][0]))
        dead_a0 = [d_tx @ by_tx - d_T @ by_T for d_tx, d_T in zip(d["t_x"], d["T"], strict=True)]
        dead_by_x = np.bincount(ix, weights=w_dead, minlength=len(ux))
        inv_ps = 1.0 / (ux + r + s)
        # d log(alive part) / d(p, s, alpha, beta) = (-log(alpha+T), -log(beta+T),
        # -p/(alpha+T), -s/(beta+T)).
        g_p = -_dot(w_alive, log_aT) - dead_by_x @ inv_ps + dead_a0[0]
        g_s = -_dot(w_alive, log_bT) + dead_by_x @ (1.0 / s - inv_ps) + dead_a0[1]
        w_alive *= p
        g_alpha = -_dot(w_alive, 1.0 / (alpha + T)) + dead_a0[2]
        w_alive /= p
        g_beta = -s * _dot(w_alive, 1.0 / (beta + T)) + dead_a0[3]
        grad = np.array(
            [
                W_x @ (digamma(r + ux) - digamma(r)) + W * np.log(alpha) + g_p,
                r / alpha * W + g_alpha,
                W * np.log(beta) + g_s,
                s / beta * W + g_beta,
            ]
        )
        return ll, grad

    # -- predictions ---------------------------------------------------------------------------

    def _bracket(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, extra: float = 0.0) -> Any:
        """The likelihood's log-bracket at p = r + x + extra, F evaluated once per (x, t) pair."""
        r, alpha, s, beta = self._params()
        f = []
        for t in (t_x, T):
            first, inverse = group_rows([x, t])
            log_f, _ = _log_f(r + extra + x[first], alpha, s, beta, t[first], False)
            f.append(log_f[inverse])
        return _log_bracket(r + extra + x, alpha, s, beta, T, f[0], f[1])

    def _prob_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, s, beta = self._params()
        log_alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        return np.exp(log_alive - self._bracket(x, t_x, T))

    def prob_alive(self, summary: pd.DataFrame) -> np.ndarray:
        """P(alive at T | frequency, recency, T) per customer (note eq. 36-37)."""
        data = self._prepare(summary, fit=False)
        return self._prob_alive(data["x"], data["t_x"], data["T"])

    def predict_purchases(self, summary: pd.DataFrame, t: Any) -> np.ndarray:
        """Expected repeat purchases in (T, T + t] per customer (note eq. 41).

        ``t`` is in the summary's time unit, a scalar or one value per customer.
        """
        r, alpha, s, beta = self._params()
        data = self._prepare(summary, fit=False)
        x, t_x, T = data["x"], data["t_x"], data["T"]
        t = _horizon(t, len(x))
        q = (beta + T) / (beta + T + t)
        return (
            self._prob_alive(x, t_x, T)
            * (r + x)
            * (beta + T)
            / (alpha + T)
            * _one_minus_power_over(q, s - 1.0)
        )

    def expected_purchases(self, t: Any) -> np.ndarray | float:
        """E[X(t)]: expected repeat purchases in (0, t] of a new customer (note eq. 27)."""
        r, alpha, s, beta = self._params()
        t = _horizon(t)
        out = r * beta / alpha * _one_minus_power_over(beta / (beta + t), s - 1.0)
        return float(out) if np.ndim(out) == 0 else out

    def prob_n_purchases(self, n: Any, t: float) -> np.ndarray | float:
        """P(X(t) = n) for a new customer; ``n`` an int or an int array.

        Alive at t with n purchases, plus dead at u < t with n purchases before (the integral
        over u by 256-point Gauss-Legendre quadrature in log(1 + u/alpha), where the purchase
        count's distribution changes smoothly).
        """
        r, alpha, s, beta = self._params()
        n = np.asarray(n)
        if (n < 0).any() or (n != np.round(n)).any():
            raise ModelInputError(f"n must be non-negative integers, got {n}")
        nf = n.astype(float).reshape(-1, 1)
        t = float(_horizon(t))

        def log_nb(u: np.ndarray) -> np.ndarray:
            q = u / (alpha + u)
            return gammaln(r + nf) - gammaln(r) - gammaln(nf + 1) + r * np.log1p(-q) + xlogy(nf, q)

        alive = np.exp(log_nb(np.array([t]))[:, 0] + s * np.log(beta / (beta + t)))
        # u = alpha (e^v - 1), v in [0, log(1 + t/alpha)]; du = (alpha + u) dv.
        v_max = np.log1p(t / alpha)
        v = (_LEGENDRE_NODES + 1.0) * v_max / 2.0
        u = alpha * np.expm1(v)
        log_death = np.log(s) + s * np.log(beta) - (s + 1.0) * np.log(beta + u) + np.log(alpha + u)
        dead = (np.exp(log_nb(u) + log_death) @ _LEGENDRE_WEIGHTS) * v_max / 2.0
        out = (alive + dead).reshape(n.shape)
        return float(out) if out.ndim == 0 else out

    def posterior_purchase_rate(self, summary: pd.DataFrame) -> np.ndarray:
        """E[lambda | frequency, recency, T]: purchases per time unit while alive."""
        r = self._params()[0]
        data = self._prepare(summary, fit=False)
        x, t_x, T = data["x"], data["t_x"], data["T"]
        p = r + x
        return p * np.exp(self._bracket(x, t_x, T, extra=1.0) - self._bracket(x, t_x, T))
