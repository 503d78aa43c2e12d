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
  are summed as matrices in groups of equal length; F depends on a customer only through
  (x, t), evaluated once per distinct pair (CDNOW: 1,726 (x, t_x) and 979 (x, T) pairs for
  23,570 customers). The gradient is analytic: d log S / d(B, C, z) from the same terms.
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
from crm_models.models.clv.base import BTYDModel, frequency_recency_T
from crm_models.models.clv.bgnbd import _horizon

_LEGENDRE_NODES, _LEGENDRE_WEIGHTS = roots_legendre(256)


_MAX_TERMS = 2**14
"""Series terms per row at most (reached only for z within ~1e-3 of 1 with few purchases, e.g.
max(alpha, beta) / min(alpha, beta) above ~1000 at t = 0); the rest is the added tail estimate."""


_GRID = np.unique(np.ceil(8 * 1.25 ** np.arange(40))).astype(int)
"""Term counts rows are grouped by (8 to 2**14, 25% apart: little work is wasted on rounding up)."""
_GRID = _GRID[_GRID <= _MAX_TERMS]


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
    bisection, and rows are summed in groups of equal length as matrices, without an iteration
    loop over terms. With ``gradient``, also the derivatives of
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
) -> tuple[np.ndarray, np.ndarray | None]:
    """log F(t) of A0 = F(t_x) - F(T) (module docstring), after Euler's transformation.

    With ``gradient`` also d log F / d(p, s, alpha, beta) as a (rows, 4) array.
    """
    la, lb = np.log(alpha + t), np.log(beta + t)
    if alpha >= beta:
        z = (alpha - beta) / (alpha + t)
        log_s, g = _euler_series(p, p + s + 1.0, z, gradient)
        out = -p * la - s * lb + log_s
        if not gradient:
            return out, None
        s_b, s_c, s_z = g.T
        d = np.column_stack(
            [
                -la + s_b + s_c,
                -lb + s_c,
                -p / (alpha + t) + s_z * (beta + t) / (alpha + t) ** 2,
                -s / (beta + t) - s_z / (alpha + t),
            ]
        )
    else:
        z = (beta - alpha) / (beta + t)
        log_s, g = _euler_series(np.full_like(p, s + 1.0), p + s + 1.0, z, gradient)
        out = -(p - 1.0) * la - (s + 1.0) * lb + log_s
        if not gradient:
            return out, None
        s_b, s_c, s_z = g.T
        d = np.column_stack(
            [
                -la + s_c,
                -lb + s_b + s_c,
                -(p - 1.0) / (alpha + t) - s_z / (beta + t),
                -(s + 1.0) / (beta + t) + s_z * (alpha + t) / (beta + t) ** 2,
            ]
        )
    return out, d


def _log_bracket(
    p: np.ndarray,
    alpha: float,
    s: float,
    beta: float,
    t_x: np.ndarray,
    T: np.ndarray,
    gradient: bool = False,
    f_tx: tuple | None = None,
    f_T: tuple | None = None,
) -> Any:
    """log[(alpha+T)^-p (beta+T)^-s + s/(p+s) A0], the likelihood's bracket.

    ``p`` is r+x for the likelihood (and r+x+1 for the posterior mean of lambda). With
    ``gradient``, also its derivatives with respect to (p, s, alpha, beta), (rows, 4).
    ``f_tx`` / ``f_T``: ``_log_f`` at t_x / T when already computed (on distinct rows).
    """
    f_tx, d_tx = f_tx if f_tx is not None else _log_f(p, alpha, s, beta, t_x, gradient)
    f_T, d_T = f_T if f_T is not None else _log_f(p, alpha, s, beta, T, gradient)
    # A0 = F(t_x) - F(T) >= 0 (an integral); rounding can make the difference -0.
    gap = np.minimum(f_T - f_tx, 0.0)
    with np.errstate(divide="ignore"):
        log_a0 = f_tx + np.log(-np.expm1(gap))
    log_alive = -p * np.log(alpha + T) - s * np.log(beta + T)
    log_dead = np.log(s) - np.log(p + s) + log_a0
    out = np.logaddexp(log_alive, log_dead)
    if not gradient:
        return out
    w_alive = np.exp(log_alive - out)
    # The dead part's weight times d log A0, written without dividing by A0 (which is 0 when
    # t_x = T): s/(p+s) F(t_x)/bracket * (d log F(t_x) - F(T)/F(t_x) d log F(T)).
    c_dead = np.exp(np.log(s) - np.log(p + s) + f_tx - out)
    w_dead = c_dead * -np.expm1(gap)
    d_a0 = c_dead[:, None] * (d_tx - np.exp(gap)[:, None] * d_T)
    d_alive = np.column_stack(
        [-np.log(alpha + T), -np.log(beta + T), -p / (alpha + T), -s / (beta + T)]
    )
    d_const = np.column_stack(
        [-1.0 / (p + s), 1.0 / s - 1.0 / (p + s), np.zeros_like(p), np.zeros_like(p)]
    )
    grad = w_alive[:, None] * d_alive + w_dead[:, None] * d_const + d_a0
    return out, grad


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
        for t in ("t_x", "T"):
            pairs, inverse = np.unique(
                np.column_stack([data["x"], data[t]]), axis=0, return_inverse=True
            )
            out[f"{t}_pairs"], out[f"{t}_inverse"] = pairs, inverse.reshape(-1)
        return out

    def _log_likelihood(self, params: np.ndarray, data: dict, gradient: bool = False) -> Any:
        r, alpha, s, beta = params
        x = data["x"]
        f = {}
        for t in ("t_x", "T"):
            pairs, inverse = data[f"{t}_pairs"], data[f"{t}_inverse"]
            log_f, d = _log_f(r + pairs[:, 0], alpha, s, beta, pairs[:, 1], gradient)
            f[t] = (log_f[inverse], d[inverse] if gradient else None)
        head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        out = _log_bracket(
            r + x, alpha, s, beta, data["t_x"], data["T"], gradient, f["t_x"], f["T"]
        )
        if not gradient:
            return head + out
        bracket, d = out
        # d columns are (p, s, alpha, beta) with p = r + x; parameters are (r, alpha, s, beta).
        G = np.vstack(
            [
                digamma(r + x) - digamma(r) + np.log(alpha) + d[:, 0],
                r / alpha + d[:, 2],
                np.log(beta) + d[:, 1],
                s / beta + d[:, 3],
            ]
        )
        return head + bracket, G @ data["weights"]

    # -- predictions ---------------------------------------------------------------------------

    def _bracket(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, extra: float = 0.0) -> Any:
        """The likelihood's log-bracket at p = r + x + extra, F evaluated once per (x, t) pair."""
        r, alpha, s, beta = self._params()
        f = []
        for t in (t_x, T):
            pairs, inverse = np.unique(np.column_stack([x, t]), axis=0, return_inverse=True)
            log_f, _ = _log_f(r + extra + pairs[:, 0], alpha, s, beta, pairs[:, 1], False)
            f.append((log_f[inverse.reshape(-1)], None))
        return _log_bracket(r + extra + x, alpha, s, beta, t_x, T, False, f[0], f[1])

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
