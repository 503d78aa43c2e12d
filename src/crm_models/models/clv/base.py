"""The maximum-likelihood machinery shared by the BTYD models (BG/NBD, MBG/NBD, Pareto/NBD, BG/BB,
Gamma-Gamma).

This module owns what is not a model's math: validating a ``btyd summary`` (errors name the table,
the column and an example customer), compressing it to its unique rows with counts, the optimizer
(L-BFGS-B on the log-parameters, then Newton steps; on more than ``_SUBSAMPLE_ABOVE`` distinct rows,
L-BFGS-B on a subsample of them and Newton steps on all rows from its optimum), the L2
penalizer, standard errors from the Hessian (analytic or finite differences of the gradient), the
convergence report, ``summary()``, and a Gauss hypergeometric function that does not overflow (the
BG/NBD expectations need it).

A model subclass declares ``_param_names``, implements ``_prepare`` (its columns, validated),
``_log_likelihood`` (per row, natural parameters; with ``gradient=True`` also the gradient of
the weighted total, sum_i weights_i d ll_i / d params, when ``_has_gradient``; otherwise the
gradient is numerical; with ``hessian=True`` also the Hessian of that total, when
``_has_hessian``), ``_initial_params``, optionally ``_precompute`` (parameter-free arrays
reused at every evaluation; the compressed rows' counts are ``data["weights"]``), and adds its
predictions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import hyp2f1 as _scipy_hyp2f1
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import ThreadpoolController

from crm_models.errors import ModelInputError

TABLE = "btyd summary"
"""How errors name the input table (the frame :func:`crm_models.features.btyd_summary` returns)."""

_LOG_BOUND = 25.0
"""Log-parameters are kept in [-25, 25] (parameters in [1e-11, 7e10]); an optimum on this bound is
a parameter running off to 0 or infinity and is reported, not returned."""


_SUBSAMPLE_ABOVE = 100_000
"""Fits on more distinct rows than this start from a fit on a subsample of them."""
_SUBSAMPLE_ROWS = 25_000
"""About this many distinct rows in that subsample."""
_SUBSAMPLE_TOL = 1e-4
"""Gradient norm the subsample's fit stops at (x 1/100 for L-BFGS-B): it only gives the start,
a few standard errors away from the optimum of all rows anyway."""
_POLISH_STEPS = 12
"""Newton steps on all rows after the subsample's fit, at most (then L-BFGS-B takes over)."""


class ModelFitError(ModelInputError):
    """The likelihood could not be maximized (no convergence, or a parameter at 0 or infinity)."""


@dataclass(frozen=True)
class _Objectives:
    """The penalized mean negative log-likelihood of one dataset in the log-parameters."""

    objective: Callable[[np.ndarray], float]
    value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]]
    grad: Callable[[np.ndarray], np.ndarray]
    hessian: Callable[..., np.ndarray]
    full: Callable[..., tuple[float, np.ndarray, np.ndarray | None]]
    """Value, gradient and (with an analytic Hessian, else None) Hessian in one evaluation."""


@dataclass(frozen=True)
class ConvergenceReport:
    """How the maximization ended (``convergence_`` of a fitted model)."""

    success: bool
    message: str
    iterations: int
    """L-BFGS-B iterations plus Newton steps."""
    gradient_norm: float
    """Max-abs gradient of the penalized mean negative log-likelihood in the log-parameters."""
    function_evaluations: int
    """Evaluations of the likelihood on all rows (after a subsample's fit, the Newton polish's,
    with the finite-difference Hessian's; the subsample's own count is in ``message``)."""


# --- validation ---------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A numpy scalar as a Python one (``40.0``, not ``np.float64(40.0)``) for messages."""
    return value.item() if isinstance(value, np.generic) else value


def _example(summary: pd.DataFrame, mask: np.ndarray, columns: Sequence[str]) -> str:
    """``customer 12 (frequency=2, recency=40.0, T=38.86)`` for the first row where mask holds."""
    i = int(np.flatnonzero(mask)[0])
    values = ", ".join(
        f"{c}={_plain(summary[c].iloc[i])!r}" for c in columns if c in summary.columns
    )
    return f"customer {_plain(summary.index[i])!r} ({values})"


def as_summary(summary: Any) -> pd.DataFrame:
    """Check that ``summary`` is a non-empty pandas frame."""
    if not isinstance(summary, pd.DataFrame):
        raise ModelInputError(
            f"{TABLE}: expected a pandas DataFrame (crm_models.features.btyd_summary), "
            f"got {type(summary).__name__}"
        )
    if len(summary) == 0:
        raise ModelInputError(f"{TABLE}: the table is empty")
    return summary


def resolve_columns(
    summary: pd.DataFrame, wanted: dict[str, Sequence[str]], model: str
) -> dict[str, str]:
    """Map each logical column to the first of its accepted names present; report all missing."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for logical, names in wanted.items():
        name = next((n for n in names if n in summary.columns), None)
        if name is None:
            missing.append(" or ".join(repr(n) for n in names))
        else:
            found[logical] = name
    if missing:
        raise ModelInputError(
            f"{TABLE}: missing column(s) {', '.join(missing)} needed by {model}; "
            f"columns present: {list(summary.columns)}"
        )
    return found


def numeric_columns(summary: pd.DataFrame, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The columns as float arrays; non-numeric, NaN and infinite values are reported together."""
    out: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for name in names:
        col = summary[name]
        if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
            problems.append(f"column {name!r} is not numeric (dtype {col.dtype})")
            continue
        values = col.to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            problems.append(
                f"column {name!r} has {int(bad.sum())} NaN or infinite value(s), "
                f"e.g. {_example(summary, bad, names)}"
            )
        out[name] = values
    if problems:
        raise ModelInputError(f"{TABLE}: " + "; ".join(problems))
    return out


def check_rules(
    summary: pd.DataFrame, rules: Sequence[tuple[np.ndarray, str]], columns: Sequence[str]
) -> None:
    """Raise one error listing every violated rule ``(mask of bad rows, what is wrong)``."""
    problems = [
        f"{int(mask.sum())} row(s) with {what}, e.g. {_example(summary, mask, columns)}"
        for mask, what in rules
        if mask.any()
    ]
    if problems:
        raise ModelInputError(f"{TABLE}: " + "; ".join(problems))


def frequency_recency_T(summary: Any, model: str, fit: bool) -> dict[str, np.ndarray]:
    """Validated ``x`` (frequency), ``t_x`` (recency) and ``T`` of a continuous-time summary.

    Rules: frequency is a non-negative integer; 0 <= recency <= T; recency is 0 when frequency is
    0; T > 0 to fit (a customer first seen on the calibration end carries no information) and
    T >= 0 to predict.
    """
    summary = as_summary(summary)
    cols = ("frequency", "recency", "T")
    resolve_columns(summary, {c: (c,) for c in cols}, model)
    v = numeric_columns(summary, cols)
    x, t_x, T = v["frequency"], v["recency"], v["T"]
    rules = [
        (x < 0, "frequency < 0"),
        (x != np.round(x), "a non-integer frequency (repeat purchases are counts)"),
        (t_x < 0, "recency < 0"),
        ((x == 0) & (t_x != 0), "frequency = 0 but recency != 0 (recency is 0 without repeats)"),
        (
            t_x > T * (1 + 1e-12),
            (
                "recency > T (recency = last - first purchase and T = calibration end - first "
                "purchase, in the same time unit)"
            ),
        ),
    ]
    if fit:
        rules.append(
            (
                T <= 0,
                (
                    "T <= 0 (a customer whose first purchase is on the calibration end has no "
                    "observation time; drop these rows before fitting)"
                ),
            )
        )
    else:
        rules.append((T < 0, "T < 0"))
    check_rules(summary, rules, cols)
    if fit and not (x > 0).any():
        raise ModelInputError(
            f"{TABLE}: no customer has frequency > 0; {model} learns purchase rates from repeat "
            "purchases (check the calibration period)"
        )
    return {"x": x, "t_x": np.minimum(t_x, T), "T": T}


def row_weights(summary: pd.DataFrame, weights: Any) -> np.ndarray:
    """Per-row counts: None (all 1), an array of len(summary), or the name of a column."""
    if weights is None:
        return np.ones(len(summary))
    if isinstance(weights, str):
        if weights not in summary.columns:
            raise ModelInputError(
                f"{TABLE}: weights column {weights!r} not found; "
                f"columns present: {list(summary.columns)}"
            )
        w = numeric_columns(summary, [weights])[weights]
    else:
        w = np.asarray(weights, dtype=float).reshape(-1)
        if len(w) != len(summary):
            raise ModelInputError(
                f"{TABLE}: weights has {len(w)} values but the table has {len(summary)} rows"
            )
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        raise ModelInputError(
            f"{TABLE}: weights must be finite and >= 0; {int(bad.sum())} are not, "
            f"e.g. customer {_plain(summary.index[int(np.flatnonzero(bad)[0])])!r}: "
            f"{w[int(np.flatnonzero(bad)[0])]}"
        )
    if w.sum() <= 0:
        raise ModelInputError(f"{TABLE}: every weight is 0: nothing to fit")
    return w


_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def _row_hash(columns: Sequence[np.ndarray]) -> np.ndarray:
    """A 64-bit hash of each row of float-valued columns (equal rows, equal hashes)."""
    h = np.zeros(len(columns[0]), dtype=np.uint64)
    for col in columns:
        # + 0.0 turns -0.0 into 0.0, so the bits of equal values are equal
        h ^= (np.asarray(col, dtype=float) + 0.0).view(np.uint64)
        h *= _HASH_MULTIPLIER  # uint64 arithmetic wraps around: a multiplicative hash
        h ^= h >> np.uint64(31)
    return h


def group_rows(columns: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)``: a row index of each distinct row of ``columns`` and, per row, its
    distinct row's position, so that ``col[first][inverse] == col``.

    Distinct rows come in the order of their hash, which depends on the values only (not on the
    input's row order). Rows are grouped by a 64-bit hash (one sort of integers: ~8x faster
    than a pandas group-by or ``np.unique(axis=0)`` on 1M float rows); rows that share a hash are
    then compared column by column and, should two different rows ever collide, the exact
    (slower) grouping is used instead.
    """
    h = _row_hash(columns)
    _, inverse = np.unique(h, return_inverse=True)
    inverse = inverse.reshape(-1)
    first = np.empty(int(inverse.max()) + 1 if len(inverse) else 0, dtype=np.intp)
    first[inverse] = np.arange(len(inverse))  # any row of a group: they are equal
    if len(first) < len(inverse):
        shared = np.bincount(inverse)[inverse] > 1
        rows, groups = np.flatnonzero(shared), inverse[shared]
        for col in columns:
            col = np.asarray(col, dtype=float)
            if not (col[rows] == col[first[groups]]).all():
                stacked = np.column_stack([np.asarray(c, dtype=float) for c in columns])
                _, first, inverse = np.unique(
                    stacked, axis=0, return_index=True, return_inverse=True
                )
                return first, inverse.reshape(-1)
    return first, inverse


def compress(data: dict[str, np.ndarray], weights: np.ndarray) -> tuple[dict, np.ndarray]:
    """Unique rows of ``data`` with summed weights.

    The likelihood depends on a customer only through these columns, so duplicates (most
    one-time buyers share x = t_x = 0 and one of a few T) are evaluated once. The distinct rows'
    order depends on their values only (:func:`group_rows`), so the input's row order does not
    change the fit.
    """
    first, group = group_rows(list(data.values()))
    w = np.bincount(group, weights=weights, minlength=len(first))
    keep = first[w > 0]
    return {k: v[keep] for k, v in data.items()}, w[w > 0]


# --- the Gauss hypergeometric function ------------------------------------------------------------


def _series_sum(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, z: np.ndarray, block: int, max_terms: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log|sum|, sign and a converged flag of the power series of 2F1(a, b; c; z), 0 <= z < 1.

    Terms are summed ``block`` at a time (one cumulative product per block, so the Python loop
    runs once per block; the block doubles up to 1024) and rescaled after each block so that
    large intermediate terms cannot overflow. A row stops when the term ratio has fallen below
    z (from then on it stays there, as c-a-b >= 0 on the side summed) and the geometric bound
    on the tail is below 1e-16 of the sum.
    """
    n = len(z)
    log_scale = np.zeros(n)
    total = np.ones(n)
    term = np.ones(n)
    done = z == 0
    k0 = 0
    active = np.flatnonzero(~done)
    while active.size and k0 < max_terms:
        ka = k0 + np.arange(block, dtype=float)
        aa, bb, cc, zz = a[active, None], b[active, None], c[active, None], z[active, None]
        terms = term[active, None] * np.cumprod(
            (aa + ka) * (bb + ka) / ((cc + ka) * (ka + 1.0)) * zz, axis=1
        )
        tot = total[active] + terms.sum(axis=1)
        last = terms[:, -1]
        scale = np.maximum(np.abs(tot), np.abs(last))
        scale = np.where(scale > 0, scale, 1.0)
        total[active] = tot / scale
        term[active] = last / scale
        log_scale[active] += np.log(scale)
        k0 += block
        ratio_next = np.abs((a[active] + k0) * (b[active] + k0) / ((c[active] + k0) * (k0 + 1.0)))
        zt = z[active]
        tail = np.abs(term[active]) * zt / (1.0 - zt)
        finished = (ratio_next <= 1.0) & (tail <= 1e-16 * np.abs(total[active]))
        done[active[finished]] = True
        active = active[~finished]
        block = min(2 * block, 1024)
    with np.errstate(divide="ignore"):
        return np.log(np.abs(total)) + log_scale, np.sign(total), done


def log_hyp2f1(
    a: Any, b: Any, c: Any, z: Any, max_terms: int = 100_000
) -> tuple[np.ndarray, np.ndarray]:
    """``(log|2F1(a, b; c; z)|, sign)`` for 0 <= z < 1 and c > 0, without overflow.

    2F1 is summed as its power series, on whichever side of Euler's transformation
    2F1(a, b; c; z) = (1 - z)^(c-a-b) 2F1(c-a, c-b; c; z) has the faster-decaying terms (the one
    whose series converges at z = 1: c-a-b >= 0 direct, else transformed), so the sum stays of
    moderate size even when 2F1 itself is astronomically large (large counts, z near 1); the
    factor (1 - z)^(c-a-b) is applied in logs (``scipy.special.hyp2f1(a, b; c; z)`` returns inf
    once the value passes 1e308, e.g. a = b = 500, z = 0.9). Rows whose series needs more than
    ``max_terms`` terms (z within ~1e-5 of 1 with c-a-b near 0) fall back to scipy.
    """
    a, b, c, z = (np.asarray(v, dtype=float) for v in np.broadcast_arrays(a, b, c, z))
    shape = z.shape
    a, b, c, z = a.ravel(), b.ravel(), c.ravel(), z.ravel()
    m = c - a - b
    euler = m < 0
    sa = np.where(euler, c - a, a)
    sb = np.where(euler, c - b, b)
    # Rows are summed in groups of similar length: the first block is the number of terms a
    # geometric series in z needs to reach 1e-16, rounded up to a power of two.
    with np.errstate(divide="ignore"):
        need = np.log(1e-16 * (1.0 - z)) / np.log(np.where(z > 0, z, 0.5))
    group = 2 ** np.clip(np.ceil(np.log2(np.maximum(need, 1.0))), 3, 10)
    log_f = np.empty_like(z)
    sign = np.empty_like(z)
    done = np.empty(z.shape, dtype=bool)
    for size in np.unique(group):
        rows = np.flatnonzero(group == size)
        log_f[rows], sign[rows], done[rows] = _series_sum(
            sa[rows], sb[rows], c[rows], z[rows], int(size), max_terms
        )
    with np.errstate(divide="ignore"):
        log_f = log_f + np.where(euler, m * np.log1p(-z), 0.0)
    if not done.all():
        rest = ~done
        f = _scipy_hyp2f1(a[rest], b[rest], c[rest], z[rest])
        with np.errstate(divide="ignore"):
            log_f[rest] = np.log(np.abs(f))
        sign[rest] = np.sign(f)
    return log_f.reshape(shape), sign.reshape(shape)


_THREADPOOLS: list[ThreadpoolController] = []


def _single_threaded_blas() -> Any:
    """A context that limits BLAS to one thread.

    L-BFGS-B calls BLAS on vectors of 4 numbers; with a multi-threaded OpenBLAS on a busy machine
    each call waits for its threads and a 20-iteration fit took 0.3 s instead of 3 ms. The
    controller is built once (inspecting the loaded libraries costs ~20 ms).
    """
    if not _THREADPOOLS:
        _THREADPOOLS.append(ThreadpoolController())
    return _THREADPOOLS[0].limit(limits=1, user_api="blas")


# --- numerical derivatives ------------------------------------------------------------------------


def _numeric_gradient(f: Callable[[np.ndarray], float], theta: np.ndarray, h: float) -> np.ndarray:
    g = np.empty_like(theta)
    for j in range(len(theta)):
        e = np.zeros_like(theta)
        e[j] = h
        g[j] = (f(theta + e) - f(theta - e)) / (2 * h)
    return g


def _hessian_from_gradient(
    g: Callable[[np.ndarray], np.ndarray],
    theta: np.ndarray,
    h: float = 1e-6,
    g0: np.ndarray | None = None,
) -> np.ndarray:
    """Forward differences of the analytic gradient (relative error ~1e-6, ample for SEs);
    ``g0``: the gradient at ``theta`` when already known."""
    k = len(theta)
    g0 = g(theta) if g0 is None else g0
    H = np.empty((k, k))
    for j in range(k):
        e = np.zeros(k)
        e[j] = h
        H[:, j] = (g(theta + e) - g0) / h
    return (H + H.T) / 2


def _hessian_from_function(
    f: Callable[[np.ndarray], float], theta: np.ndarray, h: float = 1e-4
) -> np.ndarray:
    """Central second differences of the function (used when the gradient is itself numeric)."""
    k = len(theta)
    f0 = f(theta)
    H = np.empty((k, k))
    E = np.eye(k) * h
    for i in range(k):
        H[i, i] = (f(theta + E[i]) - 2 * f0 + f(theta - E[i])) / h**2
        for j in range(i):
            H[i, j] = H[j, i] = (
                f(theta + E[i] + E[j])
                - f(theta + E[i] - E[j])
                - f(theta - E[i] + E[j])
                + f(theta - E[i] - E[j])
            ) / (4 * h**2)
    return H


# --- the estimator ----------------------------------------------------------------------------------


class BTYDModel(BaseEstimator):
    """Maximum likelihood for a BTYD model; subclasses supply the likelihood and predictions.

    Parameters:
        penalizer_coef: L2 penalty ``penalizer_coef * sum(params**2)`` added to the *mean*
            negative log-likelihood per customer (lifetimes' convention; parameters in the
            summary's time unit). 0 gives the maximum-likelihood estimate.
        maxiter: iteration budget (L-BFGS-B iterations plus Newton steps).
        tol: convergence threshold on the max-abs gradient of the penalized mean negative
            log-likelihood with respect to the log-parameters.

    Fitted attributes: ``params_`` (dict), ``log_likelihood_`` (unpenalized total over
    customers, weights applied), ``n_customers_`` (total weight), ``n_rows_`` (unique rows the
    likelihood was evaluated on), ``covariance_`` (of the parameters, from the Hessian of the
    penalized total negative log-likelihood; the delta method maps it from the log-scale),
    ``standard_errors_`` (dict), ``convergence_`` (:class:`ConvergenceReport`).

    Raises :class:`ModelFitError` when the optimizer does not converge or a parameter runs off to
    0 or infinity, with the fix (more iterations, a penalizer).
    """

    _param_names: ClassVar[tuple[str, ...]] = ()
    _has_gradient: ClassVar[bool] = False
    """Whether ``_log_likelihood(..., gradient=True)`` returns the analytic gradient."""
    _has_hessian: ClassVar[bool] = False
    """Whether ``_log_likelihood(..., gradient=True, hessian=True)`` returns ``(ll, gradient,
    hessian)``, the Hessian being sum_i weights_i d2 ll_i / d params2 (natural parameters)."""

    def __init__(self, penalizer_coef: float = 0.0, maxiter: int = 1000, tol: float = 1e-6):
        self.penalizer_coef = penalizer_coef
        self.maxiter = maxiter
        self.tol = tol

    # -- to implement -------------------------------------------------------------------------

    def _prepare(self, summary: Any, fit: bool) -> dict[str, np.ndarray]:
        """Validated model columns as float arrays (one per customer row)."""
        raise NotImplementedError

    def _fit_rows(self, data: dict[str, np.ndarray]) -> np.ndarray | None:
        """Rows the likelihood uses (None = all)."""
        return None

    def _log_likelihood(self, params: np.ndarray, data: dict, gradient: bool = False) -> Any:
        """Per-row log-likelihood; with ``gradient`` also sum_i weights_i d ll_i / d params.

        ``data`` holds the model's columns (distinct rows) and ``data["weights"]`` their counts.
        """
        raise NotImplementedError

    def _initial_params(self, data: dict, weights: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _precompute(self, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Parameter-free arrays the likelihood reuses at every evaluation (after compression)."""
        return data

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, summary: pd.DataFrame, weights: Any = None) -> BTYDModel:
        """Maximize the (penalized) likelihood on a btyd summary.

        ``weights``: optional per-row counts (an array or a column name), e.g. the number of
        customers sharing a compressed (frequency, recency, T) row; each row's log-likelihood is
        multiplied by its weight.
        """
        name = type(self).__name__
        if not (isinstance(self.maxiter, int | np.integer) and self.maxiter >= 1):
            raise ModelInputError(f"{name}: maxiter must be a positive integer, got {self.maxiter}")
        if not (np.isfinite(self.penalizer_coef) and self.penalizer_coef >= 0):
            raise ModelInputError(f"{name}: penalizer_coef must be >= 0, got {self.penalizer_coef}")
        with _single_threaded_blas():
            self._fit(summary, weights)
        return self

    def _fit(self, summary: Any, weights: Any) -> None:
        name = type(self).__name__
        summary = as_summary(summary)
        data = self._prepare(summary, fit=True)
        w = row_weights(summary, weights)
        keep = self._fit_rows(data)
        if keep is not None:
            data = {k: v[keep] for k, v in data.items()}
            w = w[keep]
            if w.sum() <= 0:
                raise ModelInputError(f"{TABLE}: no row {name} can be fitted on")
        rows, w = compress(data, w)
        data = self._precompute(rows | {"weights": w})
        objectives = self._objectives(data)
        theta0 = np.log(np.asarray(self._initial_params(data, w), dtype=float))
        if self._has_gradient and len(w) > _SUBSAMPLE_ABOVE:
            theta, report, H = self._maximize_from_subsample(rows, w, objectives, theta0)
        else:
            theta, report, H = self._maximize(objectives, theta0)
        params = np.exp(theta)
        total = float(w.sum())
        self.params_ = dict(zip(self._param_names, (float(v) for v in params), strict=True))
        self.log_likelihood_ = float(w @ self._log_likelihood(params, data))
        self.n_customers_ = total
        self.n_rows_ = len(w)
        self.convergence_ = report
        self.covariance_ = self._covariance(H * total, params)
        se = np.sqrt(np.diag(self.covariance_))
        self.standard_errors_ = dict(zip(self._param_names, (float(v) for v in se), strict=True))

    def _objectives(self, data: dict[str, np.ndarray]) -> _Objectives:
        """The penalized mean negative log-likelihood of ``data`` in the log-parameters."""
        w = data["weights"]
        total = float(w.sum())
        pen = float(self.penalizer_coef)
        ll_of = self._log_likelihood

        def objective(theta: np.ndarray) -> float:
            p = np.exp(theta)
            with np.errstate(all="ignore"):
                value = -(w @ ll_of(p, data)) / total + pen * (p @ p)
            return float(value) if np.isfinite(value) else np.inf

        if self._has_gradient:

            def full(
                theta: np.ndarray, with_hessian: bool = True
            ) -> tuple[float, np.ndarray, np.ndarray | None]:
                p = np.exp(theta)
                with np.errstate(all="ignore"):
                    if self._has_hessian and with_hessian:
                        ll, g, h = ll_of(p, data, gradient=True, hessian=True)
                    else:
                        (ll, g), h = ll_of(p, data, gradient=True), None
                    value = -(w @ ll) / total + pen * (p @ p)
                    grad = -g / total * p + 2 * pen * p * p
                    # f(theta) = F(e^theta): d2f = diag(p) d2F diag(p) + diag(df/dtheta)
                    if h is not None:
                        h = np.outer(p, p) * (-h / total + 2 * pen * np.eye(len(p)))
                        h += np.diag(grad)
                if not (np.isfinite(value) and np.isfinite(grad).all()):
                    return np.inf, np.zeros_like(theta), None
                if h is not None and not np.isfinite(h).all():
                    h = None
                return float(value), grad, h

            def value_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
                return full(theta, False)[:2]

            def grad(theta: np.ndarray) -> np.ndarray:
                return full(theta, False)[1]

            def hessian(theta: np.ndarray, g0: np.ndarray | None = None) -> np.ndarray:
                if self._has_hessian:
                    h = full(theta)[2]
                    if h is not None:
                        return h
                return _hessian_from_gradient(grad, theta, g0=g0)

        else:

            def grad(theta: np.ndarray) -> np.ndarray:
                return _numeric_gradient(objective, theta, 5e-6)

            def value_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
                value = objective(theta)
                return value, (grad(theta) if np.isfinite(value) else np.zeros_like(theta))

            def full(
                theta: np.ndarray, with_hessian: bool = True
            ) -> tuple[float, np.ndarray, np.ndarray | None]:
                return (*value_and_grad(theta), None)

            def hessian(theta: np.ndarray, g0: np.ndarray | None = None) -> np.ndarray:
                return _hessian_from_function(objective, theta)

        return _Objectives(objective, value_and_grad, grad, hessian, full)

    def _maximize_from_subsample(
        self,
        rows: dict[str, np.ndarray],
        w: np.ndarray,
        full: _Objectives,
        theta0: np.ndarray,
    ) -> tuple[np.ndarray, ConvergenceReport, np.ndarray]:
        """Fit a subsample of the distinct rows, then polish on all rows with Newton steps.

        On many distinct rows each evaluation is dear and L-BFGS-B needs ~20-30 of them. A
        1-in-k sample of the distinct rows (their order is a hash of their values, so the sample
        does not depend on the input's row order) with their weights gives an unbiased estimate
        of the mean log-likelihood: its optimum is a few standard errors from the full one, and
        its Hessian is that of the full data to a few percent. Newton steps on all rows from
        there, with the analytic Hessian when the model has one (quadratic convergence) or the
        subsample's (linear, ~1.5 digits a step), reach the same optimum in a handful of
        evaluations; the standard errors use the full data's Hessian. Should the polish stall,
        L-BFGS-B on all rows takes over from where it stopped.
        """
        n = len(w)
        stride = max(2, n // _SUBSAMPLE_ROWS)
        pick = np.arange(0, n, stride)
        sub = self._objectives(
            self._precompute({k: v[pick] for k, v in rows.items()} | {"weights": w[pick]})
        )
        try:
            theta, sub_report, H_sub = self._maximize(sub, theta0, tol=_SUBSAMPLE_TOL)
        except ModelFitError:
            return self._maximize(full, theta0)
        gtol = self.tol * 1e-2
        budget = int(self.maxiter) - sub_report.iterations
        f, g, H = full.full(theta)
        evaluations, steps = 1, 0
        B = H if H is not None else H_sub
        exact = 0  # finite-difference Hessians of all rows taken during the polish
        while np.max(np.abs(g)) > gtol and steps < min(budget, _POLISH_STEPS):
            try:
                L = np.linalg.cholesky(B)
            except np.linalg.LinAlgError:
                break
            step = -np.linalg.solve(L.T, np.linalg.solve(L, g))
            step *= min(1.0, 1.0 / max(float(np.max(np.abs(step))), 1e-300))  # at most e^1
            t, accepted = 1.0, False
            while t >= 1.0 / 16:
                cand = np.clip(theta + t * step, -_LOG_BOUND, _LOG_BOUND)
                f_new, g_new, H_new = full.full(cand)
                evaluations += 1
                # Near the optimum the objective's change drowns in the rounding of a sum over
                # a million rows; there a smaller gradient is the evidence of progress.
                if f_new <= f + 1e-4 * t * (g @ step) or (
                    f_new <= f + 1e-12 * abs(f) and np.max(np.abs(g_new)) < np.max(np.abs(g))
                ):
                    accepted = True
                    break
                t /= 2
            if not accepted:
                break
            progress = np.max(np.abs(g_new)) / np.max(np.abs(g))
            s_k, y_k = cand - theta, g_new - g
            theta, f, g, steps = cand, f_new, g_new, steps + 1
            if H_new is not None:
                H = B = H_new
            elif np.max(np.abs(g)) <= gtol:
                break
            elif progress > 0.1 and exact < 2:
                # The subsample's Hessian is off along a flat ridge (the data barely tell two
                # parameters apart): Newton with the full data's Hessian from here on.
                B = full.hessian(theta, g0=g)
                evaluations += len(theta)
                exact += 1
            elif s_k @ y_k > 0:
                # BFGS update: corrects the Hessian along the direction just travelled
                Bs = B @ s_k
                B = B - np.outer(Bs, Bs) / (s_k @ Bs) + np.outer(y_k, y_k) / (s_k @ y_k)
        what = (
            f"subsample of 1 in {stride} distinct rows ({len(pick):,} of {n:,}), "
            f"{sub_report.function_evaluations} evaluations: {sub_report.message}; "
        )
        if np.max(np.abs(g)) > gtol:
            theta, report, H = self._maximize(full, theta)
            return (
                theta,
                replace(
                    report,
                    message=f"{what}{steps} Newton step(s) on all rows, then {report.message}",
                    iterations=report.iterations + steps + sub_report.iterations,
                    function_evaluations=report.function_evaluations + evaluations,
                ),
                H,
            )
        if H is None:
            H = full.hessian(theta, g0=g)
            evaluations += len(theta)
        report = self._report(
            theta,
            f,
            g,
            f"{what}then {steps} Newton step(s) on all rows",
            sub_report.iterations + steps,
            evaluations,
        )
        return theta, report, H

    def _report(
        self,
        theta: np.ndarray,
        f_val: float,
        g: np.ndarray,
        message: str,
        iterations: int,
        evaluations: int,
        tol: float | None = None,
    ) -> ConvergenceReport:
        """The convergence report; raises :class:`ModelFitError` on a bound or without
        convergence."""
        name = type(self).__name__
        tol = self.tol if tol is None else tol
        gnorm = float(np.max(np.abs(g)))
        success = gnorm <= tol and np.isfinite(f_val)
        report = ConvergenceReport(
            success=bool(success),
            message=message,
            iterations=iterations,
            gradient_norm=gnorm,
            function_evaluations=evaluations,
        )
        at_stop = dict(zip(self._param_names, np.exp(theta).tolist(), strict=True))
        on_bound = np.abs(theta) >= _LOG_BOUND - 1e-3
        if on_bound.any():
            names = [self._param_names[i] for i in np.flatnonzero(on_bound)]
            raise ModelFitError(
                f"{name}: the likelihood is maximized with {names} at 0 or infinity "
                f"(parameters at the stop: {at_stop}); the data do not identify the model. Add "
                f"a penalizer (penalizer_coef=0.001, say) or check the summary (time unit, "
                f"calibration end, enough repeat buyers)."
            )
        if not success:
            raise ModelFitError(
                f"{name} did not converge: after {report.iterations} iteration(s) the gradient "
                f"norm is {gnorm:.3g} > tol={tol:g} ({message}); parameters at the stop: "
                f"{at_stop}. Increase maxiter (now {self.maxiter}), or add a penalizer "
                f"(penalizer_coef=0.001, say) if a parameter drifts towards 0 or infinity."
            )
        return report

    def _maximize(
        self, fn: _Objectives, theta0: np.ndarray, tol: float | None = None
    ) -> tuple[np.ndarray, ConvergenceReport, np.ndarray]:
        """L-BFGS-B, then Newton steps with the (analytic or finite-difference) Hessian, to a
        gradient norm of ``tol`` (default ``self.tol``) / 100.

        The Newton steps polish the optimum to near machine precision (quadratic convergence on
        a 3-4 parameter problem costs a few Hessians) and take over when L-BFGS-B stops early
        on a line-search failure. The last Hessian gives the standard errors.
        """
        objective, value_and_grad, grad, hessian = (
            fn.objective,
            fn.value_and_grad,
            fn.grad,
            fn.hessian,
        )
        name = type(self).__name__
        tol = self.tol if tol is None else tol
        k = len(theta0)
        bounds = [(-_LOG_BOUND, _LOG_BOUND)] * k
        theta0 = np.clip(theta0, -_LOG_BOUND + 1, _LOG_BOUND - 1)
        if not np.isfinite(objective(theta0)):
            raise ModelFitError(
                f"{name}: the log-likelihood is not finite at the starting values "
                f"{dict(zip(self._param_names, np.exp(theta0).round(6), strict=True))}"
            )
        res = minimize(
            value_and_grad,
            theta0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": int(self.maxiter), "gtol": tol * 1e-2, "ftol": 1e-15},
        )
        theta, iterations, evaluations = res.x, int(res.nit), int(res.nfev)
        message = f"L-BFGS-B: {res.message}"
        f_val, g = float(res.fun), np.asarray(res.jac, dtype=float)  # at res.x
        budget = int(self.maxiter) - iterations
        newton = 0
        # Newton steps only when L-BFGS-B stopped short of its own target; further polishing
        # would chase the rounding noise of a sum over customers.
        while budget > 0 and np.max(np.abs(g)) > tol * 1e-2 and newton < 50:
            H = hessian(theta, g0=g)
            try:
                np.linalg.cholesky(H)
                step = -np.linalg.solve(H, g)
            except np.linalg.LinAlgError:
                # Not locally convex (yet): a gradient step, scaled to a modest length.
                step = -g / max(1.0, float(np.max(np.abs(g))))
            t, accepted = 1.0, False
            while t > 1e-8:
                cand = np.clip(theta + t * step, -_LOG_BOUND, _LOG_BOUND)
                f_new = objective(cand)
                evaluations += 1
                if f_new <= f_val + 1e-4 * t * (g @ step) or (
                    f_new <= f_val and np.max(np.abs(grad(cand))) < np.max(np.abs(g))
                ):
                    accepted = True
                    break
                t /= 2
            if not accepted:
                break
            theta, f_val = cand, f_new
            g = grad(theta)
            newton += 1
            budget -= 1
        if newton:
            message += f"; then {newton} Newton step(s)"
        report = self._report(theta, f_val, g, message, iterations + newton, evaluations, tol)
        return theta, report, hessian(theta, g0=g)

    def _covariance(self, H_total_log: np.ndarray, params: np.ndarray) -> np.ndarray:
        """Covariance of the natural parameters (delta method from the log-parameters)."""
        try:
            np.linalg.cholesky(H_total_log)
            cov_log = np.linalg.inv(H_total_log)
        except np.linalg.LinAlgError:
            warnings.warn(
                f"{type(self).__name__}: the Hessian at the optimum is not positive definite; "
                "standard errors are NaN",
                RuntimeWarning,
                stacklevel=4,
            )
            return np.full((len(params), len(params)), np.nan)
        relative_se = np.sqrt(np.diag(cov_log))  # = se(param) / param
        weak = [n for n, v in zip(self._param_names, relative_se, strict=True) if v > 100]
        if weak:
            warnings.warn(
                f"{type(self).__name__}: {weak} poorly identified (standard error over 100 times "
                f"the estimate; parameters {dict(zip(self._param_names, params.tolist()))}): "
                "the estimate is drifting towards 0 or infinity. Add a penalizer "
                "(penalizer_coef=0.001, say) or fit on more customers.",
                RuntimeWarning,
                stacklevel=4,
            )
        return cov_log * np.outer(params, params)

    # -- fitted-model helpers -----------------------------------------------------------------

    def _params(self) -> tuple[float, ...]:
        check_is_fitted(self, "params_")
        return tuple(self.params_[n] for n in self._param_names)

    def log_likelihood(
        self, summary: pd.DataFrame, weights: Any = None, params: dict | None = None
    ) -> float:
        """Total log-likelihood of ``summary`` (weights applied) at the fitted parameters, or at
        ``params`` (a dict like ``params_``); the rows a fit would use, validated the same way."""
        if params is None:
            values = np.asarray(self._params(), dtype=float)
        else:
            values = np.array([float(params[n]) for n in self._param_names])
        summary = as_summary(summary)
        data = self._prepare(summary, fit=True)
        w = row_weights(summary, weights)
        keep = self._fit_rows(data)
        if keep is not None:
            data, w = {k: v[keep] for k, v in data.items()}, w[keep]
        data, w = compress(data, w)
        data["weights"] = w
        with np.errstate(all="ignore"):
            return float(w @ self._log_likelihood(values, self._precompute(data)))

    def summary(self) -> pd.DataFrame:
        """Estimates with standard errors and Wald 95% intervals, one row per parameter."""
        params = np.asarray(self._params())
        se = np.sqrt(np.diag(self.covariance_))
        return pd.DataFrame(
            {
                "coef": params,
                "se": se,
                "lower 95%": params - 1.959964 * se,
                "upper 95%": params + 1.959964 * se,
            },
            index=pd.Index(self._param_names, name="param"),
        )
