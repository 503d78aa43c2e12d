"""Rule-based attribution: first, last, linear, time-decay and position (U-shaped) touch credit.

Each rule gives every touch of a converting path a weight (the weights of a path sum to 1); a
channel's conversions are the sum over paths of ``conversions x weight`` and its value likewise.
This module also owns the result table every attribution model returns (:func:`attribution_table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import pandas as pd

from crm_models.errors import ConfigError, DataError
from crm_models.features.paths import DEFAULT_SEP, EncodedPaths, encode_paths

HEURISTIC_METHODS: tuple[str, ...] = ("first", "last", "linear", "time_decay", "position")
RESULT_COLUMNS: tuple[str, ...] = ("channel", "conversions", "value", "share")

PathsLike = pd.DataFrame | EncodedPaths


def attribution_table(
    enc: EncodedPaths | Sequence[str],
    conversions: np.ndarray,
    value: np.ndarray,
    **extra: np.ndarray,
) -> pd.DataFrame:
    """The common result: ``channel, conversions, value, share`` (+ extra columns), by channel.

    ``enc``: the encoded paths, or just their channels (code order). ``share`` is the channel's
    share of the attributed conversions (sums to 1).
    """
    channels = list(enc.channels if isinstance(enc, EncodedPaths) else enc)
    total = float(np.sum(conversions))
    share = conversions / total if total > 0 else np.full(len(conversions), np.nan)
    out = pd.DataFrame(
        {
            "channel": channels,
            "conversions": np.asarray(conversions, float),
            "value": np.asarray(value, float),
            "share": share,
            **extra,
        }
    )
    if all(a <= b for a, b in pairwise(channels)):
        return out  # already in channel order (code order is name order): no pandas sort
    return out.sort_values("channel", kind="stable").reset_index(drop=True)


def require_conversions(enc: EncodedPaths) -> None:
    """Attribution divides conversions: a table without any is a user error."""
    if not enc.total_conversions > 0:
        raise DataError(
            "paths: no conversions (every path has conversions == 0); nothing to attribute"
        )


def _position_weights(
    lengths: np.ndarray, position: np.ndarray, weights: Sequence[float]
) -> np.ndarray:
    # 1 touch: all credit; 2 touches: first/last in proportion (40/40 -> 50/50); >= 3: as given,
    # the middle share split evenly (touch_weights renormalises each path to 1).
    first, middle, last = (float(w) for w in weights)
    n = np.repeat(lengths, lengths)
    w = np.where(position == 0, first, np.where(position == n - 1, last, 0.0))
    mid = (position > 0) & (position < n - 1)
    w = np.where(mid, middle / np.maximum(n - 2, 1), w)
    return np.where(n == 1, 1.0, w)


def touch_weights(
    enc: EncodedPaths,
    method: str,
    half_life: float = 7.0,
    position_weights: Sequence[float] = (0.4, 0.2, 0.4),
) -> np.ndarray:
    """Each touch's share of its path's conversion under ``method`` (a path's weights sum to 1)."""
    lengths = enc.lengths
    pos = enc.position
    n = np.repeat(lengths, lengths)
    if method == "first":
        w = (pos == 0).astype(float)
    elif method == "last":
        w = (pos == n - 1).astype(float)
    elif method == "linear":
        w = 1.0 / n
    elif method == "position":
        w = _position_weights(lengths, pos, position_weights)
    elif method == "time_decay":
        # Half-life in days before the conversion when timing is known, else in touches before
        # the last touch (a path table has no clock).
        age = enc.days_before if enc.days_before is not None else (n - 1 - pos).astype(float)
        w = np.exp2(-np.maximum(age, 0.0) / half_life)
    else:
        raise ConfigError(
            f"unknown heuristic method {method!r}; expected one of {HEURISTIC_METHODS}"
        )
    sums = np.add.reduceat(w, enc.offsets[:-1])
    return w / np.repeat(sums, lengths)


def _check_params(method: str, half_life: float, position_weights: Sequence[float]) -> None:
    if method not in HEURISTIC_METHODS:
        raise ConfigError(
            f"unknown heuristic method {method!r}; expected one of {HEURISTIC_METHODS}"
        )
    if not (np.isfinite(half_life) and half_life > 0):
        raise ConfigError(f"half_life must be a positive number of days, got {half_life!r}")
    pw = np.asarray(position_weights, float)
    if pw.shape != (3,) or not np.isfinite(pw).all() or (pw < 0).any() or pw[0] + pw[2] <= 0:
        raise ConfigError(
            "position_weights must be three non-negative numbers (first, middle, last) with "
            f"first + last > 0, got {position_weights!r}"
        )


def heuristic_attribution(
    paths: PathsLike,
    method: str = "last",
    half_life: float = 7.0,
    position_weights: Sequence[float] = (0.4, 0.2, 0.4),
    sep: str = DEFAULT_SEP,
) -> pd.DataFrame:
    """Rule-based attribution of a path table (or a journeys table).

    Methods (weights of the touches of one path; repeated channels count per touch):

    - ``first`` / ``last``: all credit to the first / last touch.
    - ``linear``: ``1 / K`` to each of the K touches.
    - ``time_decay``: ``2 ** (-age / half_life)``, normalised per path. With a journeys table
      (``timestamps``, ``conversion_ts``) ``age`` is the days from the touch to the conversion and
      ``half_life`` is in days; on a path table (no timing) ``age`` is the number of touches
      before the last one, so ``half_life`` is in touches.
    - ``position`` (U-shaped): ``position_weights = (first, middle, last)``, default 40/20/40,
      the middle share split evenly over the middle touches; 1 touch -> 100%, 2 touches ->
      first/last in proportion (50/50 by default).

    Returns:
        ``channel, conversions, value, share`` sorted by channel; conversions sum to the total.

    Raises:
        ConfigError: unknown method or bad ``half_life`` / ``position_weights``.
        DataError: bad path table (see :func:`~crm_models.features.paths.encode_paths`), or no
            conversion at all.
    """
    _check_params(method, half_life, position_weights)
    enc = encode_paths(paths, sep)
    require_conversions(enc)
    w = touch_weights(enc, method, half_life, position_weights)
    tp = enc.touch_path
    k = enc.n_channels
    conversions = np.bincount(enc.codes, w * enc.conversions[tp], k)
    value = np.bincount(enc.codes, w * enc.value[tp], k)
    return attribution_table(enc, conversions, value)


__all__ = [
    "HEURISTIC_METHODS",
    "RESULT_COLUMNS",
    "attribution_table",
    "heuristic_attribution",
    "touch_weights",
]
