"""Data-driven (incremental) attribution: a conversion model fitted on converting AND
non-converting journeys, its lift over "no touch" split among the channels by exact Shapley.

After Shao & Li (2011), "Data-driven multi-touch attribution models" (KDD), who fit a logistic
regression of conversion on channel-presence indicators over all users, converters or not, and
Dalessandro, Perlich, Stitelman & Provost (2012), "Causally motivated attribution for online
advertising" (ADKDD), who define a channel's credit as its Shapley value in the game of the
conversion probability's lift over the untouched baseline.

Model. A journey with distinct channels ``S`` and feature vector ``x`` converts with probability

    p̂(x) = sigmoid(b0 + sum_c w_c x_c [+ sum_{c < d} w_cd x_c x_d]),

``x_c = 1[c in S]`` (``features="presence"``) or ``log1p(touches of c)`` (``"counts"``),
pairwise products with ``interactions=True``. It is fitted by L2-penalized maximum likelihood
on every journey (scikit-learn ``LogisticRegression``, Newton-Cholesky solver: a few exact Newton
steps on few columns; ``C`` is the inverse penalty over the journey-weighted log-loss and the
intercept is not penalized). Journeys with the same feature vector are one row per label, weighted
by their count: a path table's ``conversions`` and ``nulls``.

Credit. For a journey, ``x_T`` is its feature vector restricted to the channels ``T ⊆ S`` and the
game is ``v(T) = p̂(x_T) - p̂(0)``: what the channels of ``T`` add to the probability of a prospect
nobody touched. Its exact Shapley value splits ``v(S) = p̂(x) - p̂(0)`` among the channels of ``S``
(efficient, symmetric, 0 to a channel whose coefficients are 0, additive over journeys)::

    phi_j = sum_{T ⊆ S \\ j} |T|! (|S| - |T| - 1)! / |S|! [v(T + j) - v(T)].

Journeys with the same feature vector share it, so the cost is ``O(|S| 2^|S|)`` per distinct
feature vector (not per journey); ``|S|`` is capped at :data:`MAX_SET_SIZE`. Summed over all
journeys, ``phi`` is each channel's expected incremental conversions
(``incremental_conversions``); ``sum p̂(0)`` over all journeys is the baseline the prospects would
have reached untouched (``attrs["baseline_conversions"]``). With an unpenalized intercept the
likelihood equations make ``sum p̂ = observed conversions``, so incremental + baseline add up to
the observed total.

Reported numbers. Like every attribution method, ``conversions`` hands out the OBSERVED
conversions: ``incremental_conversions`` scaled to sum to the total (so ``share`` is the share of
incremental conversions, the simulator's ``true_channel_shares`` normalization). ``value``: a
converting journey of value ``y`` with probability ``p̂`` owes the fraction ``phi_j / p̂`` of its
conversion to channel j (``sum_j phi_j / p̂ = 1 - p̂(0) / p̂``, the rest is the baseline), so
``incremental value_j = sum over converting journeys of y phi_j / p̂``, an unbiased estimate of
``sum over all journeys of E[y | converted] phi_j``; it is scaled to sum to the observed total
value (NaN if the incremental value total is not positive). Credits (and shares) are negative for
a channel whose fitted effect is negative; they are kept, not clipped.

Identification. Every observed journey has at least one touch, so ``p̂(0)`` is never observed
directly: the logistic form extrapolates it. It is pinned by additivity on the logit scale (with
two channels and presence features the model has exactly one parameter per observed set, and
``b0 = logit p(a) + logit p(b) - logit p(ab)``); with ``interactions=True`` it rests on "no
three-way interactions" and needs at least three channels. A channel present in every journey
makes the baseline unidentifiable and is an error.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from crm_models.errors import ConfigError, DataError, ModelInputError
from crm_models.features.paths import DEFAULT_SEP, EncodedPaths, encode_paths
from crm_models.models.attribution.heuristics import (
    PathsLike,
    attribution_table,
    require_conversions,
)

MODELS: tuple[str, ...] = ("logistic",)
FEATURES: tuple[str, ...] = ("presence", "counts")
MAX_SET_SIZE = 20
"""Exact Shapley enumerates the 2^|S| sub-coalitions of a journey's channel set."""

_CHUNK_ELEMENTS = 1 << 24  # rows x coalitions x players per vectorized Shapley block


# --------------------------------------------------------------------------- exact Shapley


def _coalition_bits(k: int) -> np.ndarray:
    """``(2^k, k)`` 0/1 matrix: row t is the coalition with bitmask t."""
    return ((np.arange(1 << k)[:, None] >> np.arange(k)) & 1).astype(float)


def _coalition_weights(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per coalition T of k players: ``(a + b, b)`` with ``phi = (v (a + b)) @ bits - sum v b``.

    ``phi_j = sum_{T ∌ j} w(|T|) [v(T + j) - v(T)]``, ``w(t) = t! (k - t - 1)! / k!``, regrouped
    by coalition: ``v(T)`` enters with ``a_T = w(|T| - 1)`` for ``j ∈ T`` and ``-b_T = -w(|T|)``
    for ``j ∉ T`` (``b`` of the grand coalition is 0: it lacks no player). Two vectors instead of
    a ``2^k x k`` matrix keep ``k = 20`` within memory.
    """
    size = np.bitwise_count(np.arange(1 << k, dtype=np.uint64)).astype(np.int64)
    w = np.array([math.factorial(t) * math.factorial(k - t - 1) for t in range(k)], float)
    w /= math.factorial(k)
    a = np.where(size > 0, w[np.clip(size - 1, 0, k - 1)], 0.0)
    b = np.where(size < k, w[np.clip(size, 0, k - 1)], 0.0)
    return a + b, b


def _shapley(v: np.ndarray, bits: np.ndarray, ab: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (v * ab) @ bits - (v @ b)[..., None]


def exact_shapley(values: np.ndarray) -> np.ndarray:
    """Exact Shapley values of games given by their worth on every coalition.

    ``values`` has shape ``(..., 2^k)``: entry ``t`` is the worth of the coalition whose bitmask
    is ``t`` (bit j = player j). Returns shape ``(..., k)``; each row sums to
    ``v(all) - v(∅)``.
    """
    v = np.asarray(values, float)
    k = int(v.shape[-1]).bit_length() - 1
    if k < 0 or (1 << k) != v.shape[-1]:
        raise ValueError(f"values' last axis must have length 2^k, got {v.shape[-1]}")
    if k == 0:
        return np.zeros((*v.shape[:-1], 0))
    return _shapley(v, _coalition_bits(k), *_coalition_weights(k))


# --------------------------------------------------------------------------- features


class _Groups:
    """Journeys grouped by feature vector: per group its present channels and feature values."""

    def __init__(self, enc: EncodedPaths, features: str) -> None:
        k = enc.n_channels
        pair, count = np.unique(enc.touch_path.astype(np.int64) * k + enc.codes, return_counts=True)
        path, code = pair // k, (pair % k).astype(np.int64)
        value = np.ones(pair.size) if features == "presence" else np.log1p(count)
        # one key string per path ("code[:count],..."), factorized: identical feature vectors
        token = pc.cast(pa.array(code), pa.string())
        if features == "counts":
            token = pc.binary_join_element_wise(token, pc.cast(pa.array(count), pa.string()), ":")
        starts = np.flatnonzero(np.r_[True, path[1:] != path[:-1]])
        offsets = pa.array(np.r_[starts, pair.size].astype(np.int32))
        keys = pc.binary_join(pa.ListArray.from_arrays(offsets, token), ",")
        inv, uniq = pd.factorize(keys.to_numpy(zero_copy_only=False))
        n = uniq.size
        first = np.full(n, -1, np.int64)
        first[inv[::-1]] = np.arange(inv.size)[::-1]  # each group's first path
        lengths = np.diff(np.r_[starts, pair.size])
        size = lengths[first]
        rep = np.repeat(first, size)
        within = np.arange(rep.size) - np.repeat(np.cumsum(size) - size, size)
        at = starts[rep] + within  # the pairs of each group's representative path
        self.size = size
        self.group_of_pair = np.repeat(np.arange(n), self.size)
        self.code = code[at]
        self.value = value[at]
        self.n_groups = n
        self.n_channels = k
        self.conversions = np.bincount(inv, enc.conversions, n)
        self.nulls = np.bincount(inv, enc.nulls, n)
        self.conv_value = np.bincount(inv, enc.value, n)

    def dense(self) -> np.ndarray:
        x = np.zeros((self.n_groups, self.n_channels))
        x[self.group_of_pair, self.code] = self.value
        return x


def _pairs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Channel pairs (i < j) that appear together in some journey (others carry no data)."""
    co = (x != 0).astype(float)
    i, j = np.nonzero(np.triu(co.T @ co, 1))
    return i, j


def _design(x: np.ndarray, pairs: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    if pairs is None:
        return x
    i, j = pairs
    return np.hstack([x, x[:, i] * x[:, j]])


# --------------------------------------------------------------------------- the method


def _check_params(model: str, features: str, C: float, interactions: bool, max_iter: int) -> None:
    if model not in MODELS:
        raise ConfigError(f"unknown data-driven model {model!r}; expected one of {MODELS}")
    if features not in FEATURES:
        raise ConfigError(f"unknown features {features!r}; expected one of {FEATURES}")
    if isinstance(C, bool) or not (isinstance(C, int | float) and C > 0):
        raise ConfigError(f"C must be a positive number (np.inf: no penalty), got {C!r}")
    if not isinstance(interactions, bool | np.bool_):
        raise ConfigError(f"interactions must be True or False, got {interactions!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ConfigError(f"max_iter must be a positive integer, got {max_iter!r}")


def _check_data(enc: EncodedPaths, groups: _Groups, interactions: bool) -> None:
    require_conversions(enc)
    if not enc.nulls.sum() > 0:
        raise DataError(
            "paths: no non-converting journeys (nulls == 0 everywhere); data-driven attribution "
            "compares converting with non-converting journeys: build the journeys with "
            "build_journeys(..., include_nonconverting=True) or pass a path table with 'nulls'"
        )
    k = enc.n_channels
    if k < 2 or (interactions and k < 3):
        need = 3 if interactions else 2
        raise DataError(
            f"paths: {k} channel(s) {list(enc.channels)}; data-driven attribution needs at "
            f"least {need}{' with interactions' if interactions else ''}: otherwise the "
            "untouched baseline p(no touch) cannot be told apart from the channels' effect"
        )
    big = groups.size > MAX_SET_SIZE
    if big.any():
        g = int(np.flatnonzero(big)[0])
        names = [enc.channels[c] for c in groups.code[groups.group_of_pair == g]]
        raise DataError(
            f"paths: a journey touches {int(groups.size[g])} distinct channels (e.g. {names}); "
            f"exact Shapley enumerates 2^|S| coalitions and is limited to {MAX_SET_SIZE} "
            "channels per journey: group rare channels together"
        )
    weight = groups.conversions + groups.nulls
    reach = np.bincount(groups.code, weight[groups.group_of_pair], k)
    everywhere = np.flatnonzero(np.isclose(reach, weight.sum()))
    if everywhere.size:
        raise DataError(
            f"paths: channel {enc.channels[everywhere[0]]!r} is in every journey, so its effect "
            "and the untouched baseline cannot be separated; data-driven attribution needs "
            "journeys without it"
        )


def _fit(
    x: np.ndarray, groups: _Groups, C: float, max_iter: int, tol: float
) -> tuple[LogisticRegression, bool]:
    n = x.shape[0]
    xx = np.vstack([x, x])
    y = np.r_[np.ones(n), np.zeros(n)]
    w = np.r_[groups.conversions, groups.nulls]
    keep = w > 0
    lr = LogisticRegression(C=C, max_iter=int(max_iter), tol=tol, solver="newton-cholesky")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        lr.fit(xx[keep], y[keep], sample_weight=w[keep])
    converged = not any(issubclass(c.category, ConvergenceWarning) for c in caught)
    if not converged:
        warnings.warn(
            f"data-driven attribution: the logistic fit did not converge in {max_iter} "
            "iterations (raise max_iter, or lower C if a channel set never / always converts)",
            ConvergenceWarning,
            stacklevel=3,
        )
    return lr, converged


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def _shapley_by_group(
    groups: _Groups,
    intercept: float,
    coef: np.ndarray,
    pair_coef: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per group: Shapley credits of its channels (flat, aligned with ``groups.code``) and p̂."""
    credit = np.zeros(groups.code.size)
    p_full = np.zeros(groups.n_groups)
    p0 = float(_sigmoid(np.asarray(intercept)))
    pair_start = np.r_[0, np.cumsum(groups.size)][:-1]
    for s in np.unique(groups.size):  # distinct set sizes, <= MAX_SET_SIZE
        s = int(s)
        rows = np.flatnonzero(groups.size == s)
        bits = _coalition_bits(s)
        ab, b = _coalition_weights(s)
        step = max(1, _CHUNK_ELEMENTS // ((1 << s) * s * (s if pair_coef is not None else 1)))
        for lo in range(0, rows.size, step):
            r = rows[lo : lo + step]
            at = pair_start[r][:, None] + np.arange(s)  # (rows, s) positions in the flat arrays
            code, val = groups.code[at], groups.value[at]
            logit = intercept + (val * coef[code]) @ bits.T  # (rows, 2^s)
            if pair_coef is not None:
                q = (
                    pair_coef[code[:, :, None], code[:, None, :]]
                    * val[:, :, None]
                    * val[:, None, :]
                )
                q = np.triu(q, 1)
                logit = logit + np.einsum("ti,rij,tj->rt", bits, q, bits, optimize=True)
            v = _sigmoid(logit) - p0
            credit[at] = _shapley(v, bits, ab, b)
            p_full[r] = v[:, -1] + p0
    return credit, p_full


def data_driven_attribution(
    paths: PathsLike,
    model: str = "logistic",
    features: str = "presence",
    C: float = 1.0,
    interactions: bool = False,
    sep: str = DEFAULT_SEP,
    max_iter: int = 1000,
    tol: float = 1e-8,
) -> pd.DataFrame:
    """Incremental (data-driven) attribution: logistic conversion model + exact Shapley.

    See the module docstring for the model, the game and the normalization.

    Args:
        paths: a journeys table (:func:`~crm_models.features.paths.build_journeys`, with its
            non-converting journeys) or a path table with ``nulls``.
        model: the conversion model; ``"logistic"``.
        features: ``"presence"`` (channel seen or not) or ``"counts"`` (``log1p`` touches).
        C: inverse L2 penalty of scikit-learn's ``LogisticRegression`` over the journey-weighted
            log-loss (``np.inf``: unpenalized); the intercept is not penalized.
        interactions: add pairwise channel products (needs >= 3 channels).
        max_iter, tol: the Newton solver's settings.

    Returns:
        ``channel, conversions, value, share, incremental_conversions`` sorted by channel;
        ``conversions`` (and ``value``) sum to the observed totals, ``incremental_conversions``
        are the unscaled expected incremental conversions. ``attrs``: ``incremental_total``,
        ``baseline_conversions`` (sum of p̂(no touch) over all journeys), ``observed_conversions``,
        ``intercept``, ``coefficients`` (channel -> coefficient), ``interaction_coefficients``
        ("a × b" -> coefficient), ``n_groups`` (distinct feature vectors), ``converged``.

    Raises:
        ConfigError: unknown model / features, bad C, interactions, max_iter.
        DataError: a bad path table, no conversions, no non-converting journeys, fewer than two
            channels (three with interactions), a channel in every journey, a journey with more
            than :data:`MAX_SET_SIZE` distinct channels.
        ModelInputError: the fitted model gives the channels no positive incremental total.
    """
    _check_params(model, features, C, interactions, max_iter)
    enc = encode_paths(paths, sep)
    groups = _Groups(enc, features)
    _check_data(enc, groups, bool(interactions))
    x = groups.dense()
    pairs = _pairs(x) if interactions else None
    lr, converged = _fit(_design(x, pairs), groups, float(C), max_iter, tol)
    k = enc.n_channels
    beta = lr.coef_.ravel()
    coef, intercept = beta[:k], float(lr.intercept_[0])
    pair_coef = None
    if pairs is not None:
        pair_coef = np.zeros((k, k))
        pair_coef[pairs] = beta[k:]

    credit, p_full = _shapley_by_group(groups, intercept, coef, pair_coef)
    g = groups.group_of_pair
    n_journeys = groups.conversions + groups.nulls
    incremental = np.bincount(groups.code, credit * n_journeys[g], k)
    total_inc = float(incremental.sum())
    observed = enc.total_conversions
    if not total_inc > 0:
        raise ModelInputError(
            f"data-driven attribution: the fitted model gives the channels {total_inc:.4g} "
            "incremental conversions in total (touched journeys convert no more than the "
            "untouched baseline); shares of a non-positive total are meaningless"
        )
    inc_value = np.bincount(groups.code, credit * (groups.conv_value / p_full)[g], k)
    total_value = float(enc.value.sum())
    if float(inc_value.sum()) > 0:
        value = total_value * inc_value / inc_value.sum()
    else:
        value = np.full(k, 0.0 if total_value == 0 else np.nan)
    out = attribution_table(
        enc,
        observed * incremental / total_inc,
        value,
        incremental_conversions=incremental,
    )
    p0 = float(_sigmoid(np.asarray(intercept)))
    out.attrs.update(
        incremental_total=total_inc,
        baseline_conversions=p0 * float(n_journeys.sum()),
        observed_conversions=observed,
        intercept=intercept,
        coefficients=dict(zip(enc.channels, coef.tolist(), strict=True)),
        interaction_coefficients={}
        if pairs is None
        else {
            f"{enc.channels[i]} × {enc.channels[j]}": float(b)
            for i, j, b in zip(*pairs, beta[k:], strict=True)
        },
        n_groups=groups.n_groups,
        converged=converged,
        model=model,
        features=features,
    )
    return out


__all__ = [
    "FEATURES",
    "MAX_SET_SIZE",
    "MODELS",
    "data_driven_attribution",
    "exact_shapley",
]
