"""Bootstrap confidence intervals for any attribution method's channel shares.

Journeys are resampled with replacement. From a journeys table each journey gets a
multinomial count (its weight); from a path table the (path, converted / not converted) cells
are redrawn as ``Multinomial(N, cell counts / N)`` with N the number of journeys, which is the
same distribution without the journeys themselves. A path's resampled value is its value per
conversion times its resampled conversions (the per-journey values are not in a path table).
The paths are parsed once; replicates only change the counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from crm_models.errors import ConfigError, DataError
from crm_models.features.paths import DEFAULT_SEP, EncodedPaths, encode_paths
from crm_models.models.attribution.data_driven import data_driven_attribution
from crm_models.models.attribution.heuristics import HEURISTIC_METHODS, heuristic_attribution
from crm_models.models.attribution.markov import markov_attribution
from crm_models.models.attribution.shapley import shapley_attribution

METHODS: tuple[str, ...] = (*HEURISTIC_METHODS, "markov", "shapley", "data_driven")


def _method(method: str, kwargs: dict[str, Any]) -> Callable[[EncodedPaths], pd.DataFrame]:
    if method in HEURISTIC_METHODS:
        return lambda enc: heuristic_attribution(enc, method=method, **kwargs)
    if method == "markov":
        return lambda enc: markov_attribution(enc, **kwargs)
    if method == "shapley":
        return lambda enc: shapley_attribution(enc, **kwargs)
    if method == "data_driven":
        return lambda enc: data_driven_attribution(enc, **kwargs)
    raise ConfigError(f"unknown attribution method {method!r}; expected one of {METHODS}")


def _is_journeys(data: Any) -> bool:
    return (
        isinstance(data, pd.DataFrame) and "channels" in data.columns and "path" not in data.columns
    )


def bootstrap_attribution(
    journeys_or_paths: pd.DataFrame,
    method: str,
    n_boot: int = 200,
    ci: float = 0.95,
    seed: int = 0,
    sep: str = DEFAULT_SEP,
    **kwargs: Any,
) -> pd.DataFrame:
    """The method's attribution table plus bootstrap ``share_lower``, ``share_upper``, ``share_se``.

    Args:
        journeys_or_paths: a journeys table (:func:`~crm_models.features.paths.build_journeys`)
            or a path table (integer counts: they are resampled as journeys).
        method: one of :data:`METHODS` (``first``, ``last``, ``linear``, ``time_decay``,
            ``position``, ``markov``, ``shapley``, ``data_driven``); ``kwargs`` go to it (e.g.
            ``order=2``, ``ordered=True``, ``half_life=3``, ``features="counts"``).
        ci: the central percentile interval's coverage.

    Returns:
        The point estimate on the full data with the interval's bounds and the replicates'
        standard deviation of ``share``.

    Raises:
        ConfigError: unknown method, ``n_boot < 2``, ``ci`` outside (0, 1).
        DataError: bad paths, non-integer path counts.
    """
    fn = _method(method, kwargs)
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 2:
        raise ConfigError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    if not 0 < ci < 1:
        raise ConfigError(f"ci must be in (0, 1), got {ci!r}")
    journeys = _is_journeys(journeys_or_paths)
    enc = encode_paths(journeys_or_paths, sep)
    point = fn(enc)
    rng = np.random.default_rng(seed)
    shares = np.full((int(n_boot), enc.n_channels), np.nan)
    timing = method == "time_decay" and enc.days_before is not None
    draw = _journey_draw(enc, rng, timing) if journeys else _path_draw(enc, rng)
    for b in range(int(n_boot)):
        rep = draw()
        if not rep.total_conversions > 0:
            continue  # a replicate without conversions has no shares
        shares[b] = fn(rep)["share"].to_numpy()
    alpha = (1.0 - ci) / 2.0
    out = point.copy()
    out["share_lower"] = np.nanquantile(shares, alpha, axis=0)
    out["share_upper"] = np.nanquantile(shares, 1.0 - alpha, axis=0)
    out["share_se"] = np.nanstd(shares, axis=0, ddof=1)
    out.attrs.update(point.attrs, n_boot=int(n_boot), ci=ci, method=method)
    return out


def _journey_draw(
    enc: EncodedPaths, rng: np.random.Generator, keep_timing: bool
) -> Callable[[], EncodedPaths]:
    n = enc.n_paths
    # (an optional ``weight`` column was already multiplied into the counts by encode_paths)
    conv, value, nulls = enc.conversions, enc.value, enc.nulls
    if keep_timing:
        target, inv = enc, np.arange(n)
    else:
        # Other methods read only per-path counts: sum the resampled journeys onto the distinct
        # paths (the same result, computed on far fewer rows).
        target, inv = enc.distinct()
    k = target.n_paths

    def draw() -> EncodedPaths:
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        return target.with_counts(
            np.bincount(inv, conv * w, k),
            np.bincount(inv, value * w, k),
            np.bincount(inv, nulls * w, k),
        )

    return draw


def _path_draw(enc: EncodedPaths, rng: np.random.Generator) -> Callable[[], EncodedPaths]:
    cells = np.concatenate([enc.conversions, enc.nulls])
    if not np.allclose(cells, np.round(cells)):
        raise DataError(
            "paths: bootstrap resamples journeys, so conversions and nulls must be whole counts"
        )
    cells = np.round(cells)
    total = int(cells.sum())
    p = cells / total
    value_per_conversion = np.divide(
        enc.value, enc.conversions, out=np.zeros_like(enc.value), where=enc.conversions > 0
    )
    n = enc.n_paths

    def draw() -> EncodedPaths:
        counts = rng.multinomial(total, p).astype(float)
        conv = counts[:n]
        return enc.with_counts(conv, conv * value_per_conversion, counts[n:])

    return draw


__all__ = ["METHODS", "bootstrap_attribution"]
