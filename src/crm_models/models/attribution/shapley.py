"""Shapley-value attribution over channel sets: the simplified and the ordered Shapley value of
Zhao, Mahboobi & Bagheri (2018), "Shapley value methods for attribution modeling in online
advertising", arXiv:1804.05327.

The game. Players are the channels P (p of them). ``R(S)`` is the number of conversions of the
journeys whose set of distinct channels is exactly S (a coalition, stored here as a bitmask).
The worth of a coalition is what its channels and all their sub-coalitions converted,
``v(S) = sum over T subset of S of R(T)``, and the Shapley value is the classical

    phi_j = sum over S subset of P without x_j of |S|! (p - |S| - 1)! / p! [v(S + x_j) - v(S)].

Simplified Shapley value (the paper's simplified formula). Because v is a sum of unanimity
games ``R(T) u_T``, the p!-term sum collapses to

    phi_j = sum over S containing x_j of R(S) / |S|,

so a conversion's credit is split evenly over the distinct channels of its journey. It needs one
pass over the distinct coalitions, never the 2^p subsets (the tests check it against the full
sum above).

Ordered Shapley value (the paper's ordered variant): ``phi_j^i`` is channel j's credit at touch
position i (1 = first touch): a coalition's ``R(S) / |S|`` for x_j is given to the positions where
x_j occurs. Choice made here: a channel seen k times in a journey splits its ``1/|S|`` evenly over
its k positions, so ``sum_i phi_j^i = phi_j`` (the positions refine the simplified value and
conversions still sum to the total).

Equation numbers: the brief asks for the paper's equation numbers, but only the abstract of the
paper could be consulted here, so the formulas above are named by content (general Shapley value,
characteristic function, simplified formula, ordered formula) rather than by number.

Value: ``R`` counts value instead of conversions (same formulas).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_models.errors import ConfigError
from crm_models.features.paths import DEFAULT_SEP, EncodedPaths, encode_paths
from crm_models.models.attribution.heuristics import (
    PathsLike,
    attribution_table,
    require_conversions,
)

MAX_CHANNELS = 64
"""Coalitions are uint64 bitmasks."""


def coalition_masks(enc: EncodedPaths) -> np.ndarray:
    """The set of distinct channels of every path as a uint64 bitmask (bit j = channel code j)."""
    if enc.n_channels > MAX_CHANNELS:
        raise ConfigError(
            f"Shapley attribution supports up to {MAX_CHANNELS} channels, got {enc.n_channels}; "
            "group rare channels together"
        )
    bits = np.left_shift(np.uint64(1), enc.codes.astype(np.uint64))
    return np.bitwise_or.reduceat(bits, enc.offsets[:-1])


def coalition_table(paths: PathsLike, sep: str = DEFAULT_SEP) -> pd.DataFrame:
    """``R(S)``: conversions and value per coalition (distinct channel set), with its size.

    Columns ``mask`` (uint64), ``channels`` (sorted names joined by ``sep``), ``size``,
    ``conversions``, ``value``, ``nulls``.
    """
    enc = encode_paths(paths, sep)
    masks = coalition_masks(enc)
    uniq, inv = np.unique(masks, return_inverse=True)
    names = np.array(enc.channels, dtype=object)
    bits = ((uniq[:, None] >> np.arange(enc.n_channels, dtype=np.uint64)) & np.uint64(1)).astype(
        bool
    )
    return pd.DataFrame(
        {
            "mask": uniq,
            "channels": [sep.join(names[row]) for row in bits],
            "size": np.bitwise_count(uniq).astype(np.int64),
            "conversions": np.bincount(inv, enc.conversions, uniq.size),
            "value": np.bincount(inv, enc.value, uniq.size),
            "nulls": np.bincount(inv, enc.nulls, uniq.size),
        }
    )


def _simplified(enc: EncodedPaths, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inv = np.unique(masks, return_inverse=True)
    size = np.bitwise_count(uniq).astype(float)
    r_conv = np.bincount(inv, enc.conversions, uniq.size) / size
    r_value = np.bincount(inv, enc.value, uniq.size) / size
    member = ((uniq[:, None] >> np.arange(enc.n_channels, dtype=np.uint64)) & np.uint64(1)).astype(
        float
    )
    return r_conv @ member, r_value @ member


def _ordered(enc: EncodedPaths, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per touch credit ``R/(|S| k)``; returns channel totals and the channel x position matrix."""
    tp = enc.touch_path
    k = enc.n_channels
    pair = tp.astype(np.int64) * k + enc.codes
    _, pair_inv, pair_count = np.unique(pair, return_inverse=True, return_counts=True)
    share = 1.0 / (np.bitwise_count(masks).astype(float)[tp] * pair_count[pair_inv])
    conv = share * enc.conversions[tp]
    value = share * enc.value[tp]
    pos = enc.position
    n_pos = int(enc.lengths.max())
    by_position = np.zeros((k, n_pos))
    np.add.at(by_position, (enc.codes, pos), conv)
    return np.bincount(enc.codes, conv, k), np.bincount(enc.codes, value, k), by_position


def shapley_attribution(
    paths: PathsLike, ordered: bool = False, sep: str = DEFAULT_SEP
) -> pd.DataFrame:
    """Simplified (or ordered) Shapley attribution of Zhao et al. (2018); see the module docstring.

    Only converting journeys carry credit: a channel seen only on non-converting paths gets 0.

    Returns:
        ``channel, conversions, value, share`` sorted by channel (conversions sum to the total);
        with ``ordered=True`` also ``position_1 ... position_N``: the conversions credited to the
        channel at touch position i (1 = first touch; they sum to ``conversions``).

    Raises:
        ConfigError: more than 64 channels.
        DataError: a bad path table, or no conversions.
    """
    enc = encode_paths(paths, sep)
    require_conversions(enc)
    masks = coalition_masks(enc)
    if not ordered:
        conv, value = _simplified(enc, masks)
        return attribution_table(enc, conv, value)
    conv, value, by_position = _ordered(enc, masks)
    extra = {f"position_{i + 1}": by_position[:, i] for i in range(by_position.shape[1])}
    return attribution_table(enc, conv, value, **extra)


__all__ = ["MAX_CHANNELS", "coalition_masks", "coalition_table", "shapley_attribution"]
