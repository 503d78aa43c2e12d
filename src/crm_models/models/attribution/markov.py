"""Markov-chain attribution with exact removal effects (absorbing chain, exact linear solves).

The chain (Anderl, Becker, von Wangenheim & Schumann 2016, "Mapping the customer journey"):
states ``(start)``, the channels (order 1) or the tuples of the last ``order`` channels (order
2-3; the first touches of a path use shorter tuples), and the absorbing ``(conversion)`` and
``(null)``. Transition probabilities are the observed transition counts, each path weighted by
its journeys (conversions + nulls), normalised per state.

Absorption. With Q the transient-to-transient block (``(start)`` included) and r the one-step
probability of ``(conversion)``, the conversion probabilities x solve ``(I - Q) x = r`` and the
chain's conversion rate is ``x[(start)]`` (for order 1 it equals total conversions / journeys:
observed flows are conserved). Removing channel c sends every transition into a state that
contains c to ``(null)``; that is the same system restricted to the states without c, solved
exactly with :func:`scipy.sparse.linalg.spsolve` (no simulation). The removal effect is
``1 - x_without_c[(start)] / x[(start)]``; channel c is attributed
``total conversions x RE_c / sum of RE``.

Value: the same chain with the conversion edge paying the path's value instead of 1
(``r_value[s]`` = value of conversions leaving s / journeys leaving s), so ``x_value[(start)]``
is the expected value per journey; value removal effects split the total value the same way.

Order 1 with up to :data:`DENSE_MAX_CHANNELS` channels takes a dense route with the same answer
(to rounding): transitions are counted with one ``np.bincount`` over ``from * k + to`` (repeats
are the diagonal, zeroed when collapsed; on a path table with up to 64 distinct channel names they
are counted while the path strings are split, so per-touch codes are never stored), and every
removal effect comes from one solve for the fundamental matrix ``N = (I - Q)^-1``: the chance of
ever reaching c from ``(start)`` is ``N[start, c] / N[c, c]`` and, by the strong Markov property,
the conversions lost without c are that times ``x[c]``, so
``RE_c = N[start, c] x[c] / (N[c, c] x[start])`` (value alike).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from crm_models.errors import ConfigError
from crm_models.features.paths import (
    CONVERSION,
    DEFAULT_SEP,
    NULL,
    START,
    EncodedPaths,
    _order1_counts,  # paths.py's splitter counting order-1 transitions; its only user is here
    encode_paths,
)
from crm_models.models.attribution.heuristics import (
    PathsLike,
    attribution_table,
    require_conversions,
)

MAX_ORDER = 3
DENSE_MAX_CHANNELS = 500
"""Order 1 with at most this many channels: dense counting and one dense solve (a k + 1 square
matrix); beyond, or for orders 2-3, sparse solves per channel."""
_BLOCK_PATHS = 8192


@dataclass(frozen=True)
class _Chain:
    """Transient states (index 0 = ``(start)``) and their transition probabilities."""

    state_codes: np.ndarray
    """(n_states - 1, order) channel codes of each channel state, -1 padded (row s-1 = state s)."""
    q: sp.csr_matrix
    """Transient -> transient probabilities (n_states x n_states)."""
    r_conv: np.ndarray
    r_null: np.ndarray
    r_value: np.ndarray


def _check_order(order: int) -> int:
    if (
        isinstance(order, bool)
        or not isinstance(order, (int, np.integer))
        or not 1 <= order <= MAX_ORDER
    ):
        raise ConfigError(f"Markov order must be 1, 2 or 3, got {order!r}")
    return int(order)


def _state_keys(enc: EncodedPaths, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Per touch, the (order)-tuple of the last channels as -1-padded codes, and an int key."""
    pos = enc.position
    base = enc.n_channels + 1
    cols = []
    for lag in range(order):
        shifted = np.full(enc.codes.size, -1, np.int64)
        if lag < enc.codes.size:
            shifted[lag:] = enc.codes[: enc.codes.size - lag]
        shifted[pos < lag] = -1  # before the path's first touch
        cols.append(shifted)
    codes = np.stack(cols[::-1], axis=1)  # oldest first
    key = np.zeros(enc.codes.size, np.int64)
    for j in range(order):
        key = key * base + (codes[:, j] + 1)
    return codes, key


def _build_chain(enc: EncodedPaths, order: int) -> _Chain:
    codes, key = _state_keys(enc, order)
    uniq, first, touch_state = np.unique(key, return_index=True, return_inverse=True)
    touch_state = touch_state + 1  # 0 is (start)
    n = uniq.size + 1
    tp = enc.touch_path
    journeys = enc.conversions + enc.nulls
    starts = enc.offsets[:-1]
    ends = enc.offsets[1:] - 1
    # start -> first state; state_i -> state_{i+1} within a path (same path = not a path start)
    inner = np.ones(enc.codes.size, bool)
    inner[starts] = False
    src = np.concatenate([np.zeros(starts.size, np.int64), touch_state[np.flatnonzero(inner) - 1]])
    dst = np.concatenate([touch_state[starts], touch_state[inner]])
    w = np.concatenate([journeys, journeys[tp[inner]]])
    last = touch_state[ends]
    out_weight = np.bincount(src, w, n) + np.bincount(last, journeys, n)
    denom = np.where(out_weight > 0, out_weight, 1.0)
    q = sp.csr_matrix((w / denom[src], (src, dst)), shape=(n, n))
    q.sum_duplicates()
    r_conv = np.bincount(last, enc.conversions, n) / denom
    r_null = np.bincount(last, enc.nulls, n) / denom
    r_value = np.bincount(last, enc.value, n) / denom
    return _Chain(codes[first], q, r_conv, r_null, r_value)


def _absorb(chain: _Chain, keep: np.ndarray | None = None) -> np.ndarray:
    """``(conversion probability, expected value)`` from ``(start)``, on the ``keep`` states."""
    q = chain.q
    rhs = np.column_stack([chain.r_conv, chain.r_value])
    if keep is not None:
        idx = np.flatnonzero(keep)
        q = q[idx][:, idx]
        rhs = rhs[idx]
    a = (sp.identity(q.shape[0], format="csc") - q.tocsc()).tocsc()
    x = spsolve(a, rhs)
    x = np.asarray(x).reshape(q.shape[0], 2)
    return x[0]  # (start) is kept and first


def _pair_counts(enc: EncodedPaths) -> np.ndarray:
    """Journey-weighted counts of touch -> next touch, (k + 1) x k: ``[i, j]`` from channel i
    (row k: ``(start)``, i.e. a path's first touch) to channel j."""
    k = enc.n_channels
    codes, offsets = enc.codes, enc.offsets
    journeys = enc.conversions + enc.nulls
    lengths = np.diff(offsets)
    # one bincount over from * k + to, where from = k is (start): a path's first touch comes from
    # (start), every other touch from the touch before it
    n_keys = (k + 1) * k
    counts = np.zeros(n_keys)
    # blocks of paths: small scratch arrays stay in cache and reuse memory (no page faults)
    for lo in range(0, enc.n_paths, _BLOCK_PATHS):
        hi = min(lo + _BLOCK_PATHS, enc.n_paths)
        first_touch = offsets[lo]
        c = codes[first_touch : offsets[hi]]
        pair = np.empty(c.size, np.intp)
        pair[1:] = c[:-1]
        pair[offsets[lo:hi] - first_touch] = k
        pair *= k
        pair += c
        w = np.repeat(journeys[lo:hi], lengths[lo:hi])
        counts += np.bincount(pair, w, n_keys)
    return counts.reshape(k + 1, k)


def _order1_chain(
    pairs: np.ndarray,
    last: np.ndarray,
    conversions: np.ndarray,
    value: np.ndarray,
    nulls: np.ndarray,
    collapse_repeats: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense order-1 chain: Q over (start) + channels (code c is state c + 1) and the one-step
    ``(conversion, value)`` columns, from the :func:`_pair_counts` and each path's ``last``
    channel and counts."""
    k = pairs.shape[1]
    journeys = conversions + nulls
    trans = pairs[:k].copy()
    if collapse_repeats:  # a > a > b is a > b: the repeats are exactly the diagonal
        np.fill_diagonal(trans, 0.0)
    out = np.empty(k + 1)
    out[0] = journeys.sum()
    out[1:] = trans.sum(axis=1) + np.bincount(last, journeys, k)
    denom = np.where(out > 0, out, 1.0)
    q = np.zeros((k + 1, k + 1))
    q[0, 1:] = pairs[k]
    q[1:, 1:] = trans
    q /= denom[:, None]
    r = np.zeros((k + 1, 2))
    r[1:, 0] = np.bincount(last, conversions, k)
    r[1:, 1] = np.bincount(last, value, k)
    r /= denom[:, None]
    return q, r


def _encoded_order1_chain(
    enc: EncodedPaths, collapse_repeats: bool
) -> tuple[np.ndarray, np.ndarray]:
    last = enc.codes[enc.offsets[1:] - 1]
    return _order1_chain(
        _pair_counts(enc), last, enc.conversions, enc.value, enc.nulls, collapse_repeats
    )


def _dense_removal_effects(
    q: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Removal effects of every transient state but (start) from one solve (module docstring)."""
    n = q.shape[0]
    a = np.eye(n) - q
    sol = np.linalg.solve(a, np.concatenate([np.eye(n), r], axis=1))
    fund, x = sol[:, :n], sol[:, n:]
    reach = fund[0, 1:] / np.diagonal(fund)[1:]  # P(ever visit c | start)
    base_conv, base_value = float(x[0, 0]), float(x[0, 1])
    re_conv = reach * x[1:, 0] / base_conv if base_conv > 0 else np.zeros(n - 1)
    re_value = reach * x[1:, 1] / base_value if base_value != 0 else np.zeros(n - 1)
    return re_conv, re_value, base_conv, base_value


def removal_effects(
    enc: EncodedPaths, order: int = 1
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per channel (code order): conversion and value removal effects, and the chain's base
    conversion probability and expected value per journey (repeats in ``enc`` are self-loops)."""
    if order == 1 and enc.n_channels <= DENSE_MAX_CHANNELS:
        return _dense_removal_effects(*_encoded_order1_chain(enc, collapse_repeats=False))
    return _sparse_removal_effects(enc, order)


def _sparse_removal_effects(
    enc: EncodedPaths, order: int
) -> tuple[np.ndarray, np.ndarray, float, float]:
    chain = _build_chain(enc, order)
    base_conv, base_value = _absorb(chain)
    k = enc.n_channels
    re_conv = np.zeros(k)
    re_value = np.zeros(k)
    contains = np.zeros((chain.state_codes.shape[0] + 1, k), bool)
    rows, cols = np.nonzero(chain.state_codes >= 0)
    contains[rows + 1, chain.state_codes[rows, cols]] = True
    for c in range(k):
        keep = ~contains[:, c]
        if keep.all():
            continue
        conv_c, value_c = _absorb(chain, keep)
        re_conv[c] = 1.0 - conv_c / base_conv if base_conv > 0 else 0.0
        re_value[c] = 1.0 - value_c / base_value if base_value != 0 else 0.0
    return re_conv, re_value, float(base_conv), float(base_value)


def markov_attribution(
    paths: PathsLike,
    order: int = 1,
    sep: str = DEFAULT_SEP,
    collapse_repeats: bool = True,
) -> pd.DataFrame:
    """Markov-chain attribution with exact removal effects (see the module docstring).

    Args:
        paths: a path table (``path``, ``conversions``, ``nulls``, ``value``) or journeys table.
        order: 1-3; states are the last ``order`` channels.
        collapse_repeats: merge consecutive repeats (a > a > b -> a > b) before building the
            chain; with False a repeat is a self-loop.

    Returns:
        ``channel, conversions, value, share, removal_effect, value_removal_effect`` sorted by
        channel. Conversions (value) sum to the table's total conversions (value); ``attrs``
        holds ``conversion_probability`` and ``value_per_journey`` of the full chain.

    Raises:
        ConfigError: ``order`` outside 1-3.
        DataError: a bad path table, or no conversions.
    """
    order = _check_order(order)
    # A path table's order-1 transitions are counted while its strings are split (the codes of
    # every touch are never stored); anything else, or any problem, takes encode_paths.
    counts = _order1_counts(paths, sep) if order == 1 else None
    if (
        counts is not None
        and len(counts.channels) <= DENSE_MAX_CHANNELS
        and counts.conversions.sum() > 0
    ):
        chain = _order1_chain(
            counts.pairs,
            counts.last,
            counts.conversions,
            counts.value,
            counts.nulls,
            collapse_repeats,
        )
        re_conv, re_value, p_conv, v_journey = _dense_removal_effects(*chain)
        channels, path_conversions, path_value = counts.channels, counts.conversions, counts.value
    else:
        enc = encode_paths(paths, sep)
        require_conversions(enc)
        if order == 1 and enc.n_channels <= DENSE_MAX_CHANNELS:
            chain = _encoded_order1_chain(enc, collapse_repeats)
            re_conv, re_value, p_conv, v_journey = _dense_removal_effects(*chain)
        else:
            if collapse_repeats:
                enc = enc.collapsed()
            re_conv, re_value, p_conv, v_journey = _sparse_removal_effects(enc, order)
        channels, path_conversions, path_value = enc.channels, enc.conversions, enc.value
    total = float(path_conversions.sum())
    total_value = float(path_value.sum())
    conversions = total * re_conv / re_conv.sum()
    value = (
        total_value * re_value / re_value.sum() if re_value.sum() != 0 else np.zeros_like(re_value)
    )
    out = attribution_table(
        channels, conversions, value, removal_effect=re_conv, value_removal_effect=re_value
    )
    out.attrs.update(conversion_probability=p_conv, value_per_journey=v_journey, order=order)
    return out


def transition_matrix(
    paths: PathsLike,
    order: int = 1,
    sep: str = DEFAULT_SEP,
    collapse_repeats: bool = True,
) -> pd.DataFrame:
    """The chain's transition probabilities, from-state (rows) x to-state (columns).

    States: ``(start)``, the channel states (order 1: channel names; order 2-3: the last
    channels joined by ``sep``), ``(conversion)``, ``(null)``; the absorbing states map to
    themselves with probability 1, so every row sums to 1. For a heatmap.
    """
    order = _check_order(order)
    enc = encode_paths(paths, sep)
    if collapse_repeats:
        enc = enc.collapsed()
    chain = _build_chain(enc, order)
    names = np.array(enc.channels, dtype=object)
    labels = (
        [START] + [sep.join(names[row[row >= 0]]) for row in chain.state_codes] + [CONVERSION, NULL]
    )
    n = chain.q.shape[0]
    m = np.zeros((n + 2, n + 2))
    m[:n, :n] = chain.q.toarray()
    m[:n, n] = chain.r_conv
    m[:n, n + 1] = chain.r_null
    m[n, n] = m[n + 1, n + 1] = 1.0
    return pd.DataFrame(m, index=pd.Index(labels, name="from"), columns=pd.Index(labels, name="to"))


__all__ = [
    "DENSE_MAX_CHANNELS",
    "MAX_ORDER",
    "markov_attribution",
    "removal_effects",
    "transition_matrix",
]
