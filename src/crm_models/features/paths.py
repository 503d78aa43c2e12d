"""Customer journeys and path tables: the input of every attribution model.

This module owns three steps and one representation:

- :func:`build_journeys` (Ibis over DuckDB, :func:`build_journeys_expr`): touchpoints and
  conversions -> one row per journey (the ordered channels that led to a conversion, or to none).
- :func:`conversions_from_touchpoints` / :func:`conversions_from_transactions`: the conversions
  table (customer_id, ts, value) from the contract tables.
- :func:`aggregate_paths`: journeys -> the standard path table (``path``, ``conversions``,
  ``value``, ``nulls``).
- :class:`EncodedPaths` / :func:`encode_paths`: a path table (or a journeys table) validated and
  encoded as flat integer arrays, the form the models in ``crm_models.models.attribution`` compute
  on (and that the bootstrap re-weights without parsing strings again).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crm_models.errors import DataError
from crm_models.features.engine import TableLike, as_timestamp, lit_ts, to_ibis
from crm_models.features.snapshot import CutoffLike, as_ts_column, day_micros, micros_between

DEFAULT_SEP = " > "
START, CONVERSION, NULL = "(start)", "(conversion)", "(null)"
"""The Markov chain's special states; no channel may be named like them."""
RESERVED_STATES: tuple[str, ...] = (START, CONVERSION, NULL)

JOURNEY_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "journey_id",
    "channels",
    "timestamps",
    "converted",
    "value",
    "conversion_ts",
    "n_touches",
)
PATH_COLUMNS: tuple[str, ...] = ("path", "conversions", "value", "nulls")

# Separators users commonly write paths with; used only to explain a wrong ``sep``.
_ARROWS = ("->", "=>", "→", ">")
_SEPARATOR_GUESSES = (" > ", " -> ", "->", " => ", "=>", "→", ">", ", ", ",", "|", ";", "/")
_MICROS_PER_DAY = 86_400_000_000


# --------------------------------------------------------------------------- input checks


def _example(df: pd.DataFrame, pos: int) -> dict[str, Any]:
    row = df.iloc[pos]
    return {str(k): _plain(v) for k, v in row.items()}


def _plain(v: Any) -> Any:
    """A cell as a plain Python value for messages (``1`` rather than ``np.int64(1)``)."""
    if _is_missing(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def _is_missing(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # list-like cells
        return False


def _check_columns(df: pd.DataFrame, table: str, required: list[str]) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        example = _example(df, 0) if len(df) else "(table is empty)"
        raise DataError(
            f"table {table!r}: missing column(s) {missing}; it has {list(df.columns)}; "
            f"example row: {example}"
        )


def _parse_ts(df: pd.DataFrame, table: str, col: str) -> pd.Series:
    """``df[col]`` as tz-naive datetime64; DataError naming the first bad row."""
    s = df[col]
    null = s.isna().to_numpy()
    if null.any():
        pos = int(np.flatnonzero(null)[0])
        raise DataError(
            f"table {table!r}, column {col!r}: {int(null.sum())} null timestamp(s); "
            f"example row {df.index[pos]!r}: {_example(df, pos)}"
        )
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return s
    try:
        parsed = pd.to_datetime(s, errors="coerce", utc=True, format="mixed")
    except (TypeError, ValueError):
        parsed = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    bad = parsed.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"table {table!r}, column {col!r}: {int(bad.sum())} value(s) are not timestamps, "
            f"e.g. {s.iloc[pos]!r}; example row {df.index[pos]!r}: {_example(df, pos)}"
        )
    return parsed.dt.tz_localize(None)


def _check_not_null(df: pd.DataFrame, table: str, col: str) -> None:
    null = df[col].isna().to_numpy()
    if null.any():
        pos = int(np.flatnonzero(null)[0])
        raise DataError(
            f"table {table!r}, column {col!r}: {int(null.sum())} null value(s); "
            f"example row {df.index[pos]!r}: {_example(df, pos)}"
        )


def _check_ibis(t: ir.Table, table: str, required: list[str], ts: str, not_null: list[str]) -> None:
    missing = [c for c in required if c not in t.columns]
    if missing:
        raise DataError(f"table {table!r}: missing column(s) {missing}; it has {list(t.columns)}")
    dtype = t[ts].type()
    if not (dtype.is_timestamp() or dtype.is_date()):
        raise DataError(
            f"table {table!r}, column {ts!r}: expected a timestamp or date column, got {dtype}; "
            "parse it first (e.g. pd.to_datetime)"
        )
    for col in not_null:
        bad = t.filter(t[col].isnull())
        n = int(bad.count().to_pyarrow().as_py())
        if n:
            example = bad.limit(1).to_pyarrow().to_pylist()[0]
            raise DataError(
                f"table {table!r}, column {col!r}: {n} null value(s); example row: {example}"
            )


def _touchpoints_table(touchpoints: TableLike) -> ir.Table:
    required = ["customer_id", "ts", "channel"]
    if isinstance(touchpoints, pd.DataFrame):
        _check_columns(touchpoints, "touchpoints", required)
        _check_not_null(touchpoints, "touchpoints", "customer_id")
        _check_not_null(touchpoints, "touchpoints", "channel")
        ts = _parse_ts(touchpoints, "touchpoints", "ts")
        df = pd.DataFrame(
            {
                "customer_id": touchpoints["customer_id"].to_numpy(),
                "ts": ts.to_numpy(),
                "channel": touchpoints["channel"].astype(str).to_numpy(),
            }
        )
        return to_ibis(df)
    t = to_ibis(touchpoints)
    _check_ibis(t, "touchpoints", required, "ts", ["customer_id", "ts", "channel"])
    return t.select("customer_id", ts=as_ts_column(t, "ts"), channel=t.channel.cast("string"))


def _conversions_table(conversions: TableLike) -> ir.Table:
    required = ["customer_id", "ts"]
    if isinstance(conversions, pd.DataFrame):
        _check_columns(conversions, "conversions", required)
        _check_not_null(conversions, "conversions", "customer_id")
        ts = _parse_ts(conversions, "conversions", "ts")
        value = _numeric(conversions, "conversions", "value") if "value" in conversions else 0.0
        df = pd.DataFrame(
            {
                "customer_id": conversions["customer_id"].to_numpy(),
                "ts": ts.to_numpy(),
                "value": value,
            }
        )
        return to_ibis(df)
    t = to_ibis(conversions)
    _check_ibis(t, "conversions", required, "ts", ["customer_id", "ts"])
    value = t.value.cast("float64").fill_null(0.0) if "value" in t.columns else ibis.literal(0.0)
    return t.select("customer_id", ts=as_ts_column(t, "ts"), value=value)


def _numeric(df: pd.DataFrame, table: str, col: str) -> np.ndarray:
    s = pd.to_numeric(df[col], errors="coerce")
    bad = (s.isna() & df[col].notna()).to_numpy() | ~np.isfinite(s.fillna(0.0).to_numpy(float))
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"table {table!r}, column {col!r}: {int(bad.sum())} value(s) are not finite numbers; "
            f"example row {df.index[pos]!r}: {_example(df, pos)}"
        )
    return s.fillna(0.0).to_numpy(float)


# --------------------------------------------------------------------------- conversions


def conversions_from_touchpoints(
    touchpoints: pd.DataFrame, transactions: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Conversions (customer_id, ts, value) from the touches marked ``converted``.

    With ``transactions``, each converted touch's ``order_id`` is looked up there: ``ts`` is the
    order's time (its earliest line) and ``value`` its amount (lines summed). Without it, ``ts`` is
    the touch's time and ``value`` 0.

    Raises:
        DataError: missing columns, or a converted touch whose order_id is null or not found.
    """
    _check_columns(touchpoints, "touchpoints", ["customer_id", "ts", "converted"])
    conv = touchpoints[touchpoints["converted"].fillna(False).astype(bool).to_numpy()]
    if transactions is None:
        ts = _parse_ts(conv, "touchpoints", "ts")
        return pd.DataFrame(
            {"customer_id": conv["customer_id"].to_numpy(), "ts": ts.to_numpy(), "value": 0.0}
        ).reset_index(drop=True)
    _check_columns(touchpoints, "touchpoints", ["order_id"])
    _check_columns(transactions, "transactions", ["order_id", "ts", "amount"])
    _check_not_null(conv, "touchpoints", "order_id")
    tx_ts = _parse_ts(transactions, "transactions", "ts")
    orders = (
        pd.DataFrame(
            {
                "order_id": transactions["order_id"].to_numpy(),
                "ts": tx_ts.to_numpy(),
                "value": _numeric(transactions, "transactions", "amount"),
            }
        )
        .groupby("order_id", sort=False)
        .agg(ts=("ts", "min"), value=("value", "sum"))
    )
    order_ids = pd.Index(conv["order_id"].to_numpy())
    pos = orders.index.get_indexer(order_ids)
    if (pos < 0).any():
        bad = int(np.flatnonzero(pos < 0)[0])
        raise DataError(
            f"table 'touchpoints', column 'order_id': {int((pos < 0).sum())} converted touch(es) "
            f"name an order_id that is not in transactions; example row {conv.index[bad]!r}: "
            f"{_example(conv, bad)}"
        )
    return pd.DataFrame(
        {
            "customer_id": conv["customer_id"].to_numpy(),
            "ts": orders["ts"].to_numpy()[pos],
            "value": orders["value"].to_numpy()[pos],
        }
    )


def conversions_from_transactions(
    transactions: pd.DataFrame, first_only: bool = True
) -> pd.DataFrame:
    """Conversions from purchases: each customer's first order (``first_only``) or every order.

    An order is an ``order_id`` (lines summed, earliest line's ts); without ``order_id`` every row
    is an order.
    """
    _check_columns(transactions, "transactions", ["customer_id", "ts", "amount"])
    df = pd.DataFrame(
        {
            "customer_id": transactions["customer_id"].to_numpy(),
            "ts": _parse_ts(transactions, "transactions", "ts").to_numpy(),
            "value": _numeric(transactions, "transactions", "amount"),
        }
    )
    if "order_id" in transactions:
        df["order_id"] = transactions["order_id"].to_numpy()
        df = df.groupby(["customer_id", "order_id"], sort=False, as_index=False).agg(
            ts=("ts", "min"), value=("value", "sum")
        )
    df = df.sort_values(["customer_id", "ts", "value"], kind="stable")
    if first_only:
        df = df.drop_duplicates("customer_id", keep="first")
    return df[["customer_id", "ts", "value"]].reset_index(drop=True)


# --------------------------------------------------------------------------- journeys


def journey_touches_expr(
    touchpoints: ir.Table,
    conversions: ir.Table,
    lookback_days: float | None = 30,
    max_path_length: int | None = None,
    cutoff: CutoffLike | None = None,
) -> ir.Table:
    """The touches that belong to a journey, one row each, as an Ibis expression (unsorted).

    Columns customer_id, journey_id, ts, channel, conversion_ts (null on the non-converting
    tail), value. ``touchpoints`` needs customer_id, ts (timestamp), channel; ``conversions``
    customer_id, ts, value (float). How a touch finds its conversion: touches and conversions are
    stacked per customer in time order (a conversion after the touches of the same instant) and a
    running count of conversions gives each touch the 0-based index ``k`` of the conversion it
    leads to; ``k`` = the customer's number of conversions marks the non-converting tail.
    """
    if lookback_days is not None and not lookback_days > 0:
        raise DataError(f"build_journeys: lookback_days must be > 0 or None, got {lookback_days!r}")
    if max_path_length is not None and int(max_path_length) < 1:
        raise DataError(f"build_journeys: max_path_length must be >= 1, got {max_path_length!r}")
    # explicit types: an empty pandas column arrives as Ibis "null" and breaks the union
    tp = touchpoints.select("customer_id", "ts", channel=touchpoints.channel.cast("string"))
    cv = conversions.select(
        customer_id=conversions.customer_id.cast(tp.customer_id.type()), ts="ts", value="value"
    )
    if cutoff is not None:
        c = lit_ts(cutoff)
        tp = tp.filter(tp.ts < c)
        cv = cv.filter(cv.ts < c)
    cv = cv.mutate(k=ibis.row_number().over(group_by=cv.customer_id, order_by=[cv.ts, cv.value]))
    # kind orders a conversion after the touches of the same instant: a touch at the conversion's
    # ts belongs to it (the journey is (previous conversion, conversion]).
    events = tp.mutate(kind=ibis.literal(0, "int64")).union(
        cv.select("customer_id", "ts", channel=ibis.null("string"), kind=ibis.literal(1, "int64"))
    )
    running = ibis.cumulative_window(group_by=events.customer_id, order_by=[events.ts, events.kind])
    touches = events.mutate(k=events.kind.sum().over(running))
    touches = touches.filter(touches.kind == 0).drop("kind")
    cvj = cv.select(cv_customer="customer_id", cv_k="k", conv_ts="ts", conv_value="value")
    j = touches.left_join(
        cvj, [touches.customer_id == cvj.cv_customer, touches.k == cvj.cv_k]
    ).select("customer_id", "ts", "channel", "k", "conv_ts", "conv_value")
    per_journey = ibis.window(group_by=[j.customer_id, j.k])
    j = j.mutate(anchor=j.conv_ts.coalesce(j.ts.max().over(per_journey)))
    if lookback_days is not None:
        j = j.filter(micros_between(j.anchor, j.ts) <= day_micros(lookback_days))
    if max_path_length is not None:
        j = j.mutate(
            rank_from_end=ibis.row_number().over(
                group_by=[j.customer_id, j.k], order_by=[ibis.desc(j.ts), ibis.desc(j.channel)]
            )
        )
        j = j.filter(j.rank_from_end < int(max_path_length))
    return j.select(
        "customer_id",
        journey_id=(j.k + 1).cast("int64"),
        ts=j.ts,
        channel=j.channel,
        conversion_ts=j.conv_ts,
        value=j.conv_value.fill_null(0.0).cast("float64"),
    )


def build_journeys_expr(
    touchpoints: ir.Table,
    conversions: ir.Table,
    lookback_days: float | None = 30,
    max_path_length: int | None = None,
    cutoff: CutoffLike | None = None,
) -> ir.Table:
    """The journeys as one Ibis expression (unsorted), the same rows as :func:`build_journeys`,
    kept in the engine: for tables too large for a pandas result (write it with the backend's
    ``to_parquet``). :func:`build_journeys` assembles its rows faster from the sorted
    :func:`journey_touches_expr`."""
    j = journey_touches_expr(touchpoints, conversions, lookback_days, max_path_length, cutoff)
    # (ts, channel) structs collected and sorted: time order, ties by channel name. An ordered
    # collect would say the same, but Ibis's PySpark dialect does not compile one.
    g = j.group_by(["customer_id", "journey_id"]).aggregate(
        touches=ibis.struct({"ts": j.ts, "channel": j.channel}).collect(),
        conversion_ts=j.conversion_ts.max(),
        value=j.value.max(),
        n_touches=j.count(),
    )
    ordered = g.touches.sort()
    return g.select(
        "customer_id",
        "journey_id",
        channels=ordered.map(lambda t: t.channel),
        timestamps=ordered.map(lambda t: t.ts),
        converted=g.conversion_ts.notnull(),
        value=g.value,
        conversion_ts=g.conversion_ts,
        n_touches=g.n_touches.cast("int64"),
    )


def build_journeys(
    touchpoints: TableLike,
    conversions: TableLike | None,
    lookback_days: float | None = 30,
    max_path_length: int | None = None,
    cutoff: CutoffLike | None = None,
    include_nonconverting: bool = True,
) -> pd.DataFrame:
    """One row per journey: the channels that led to a conversion, or to none yet.

    A conversion's journey is its customer's touches with ts in (previous conversion, this
    conversion] and at most ``lookback_days`` before it. A customer's touches after the last
    conversion (or all of them, without one) form one non-converting journey, cut to
    ``lookback_days`` before its last touch; Markov models need these nulls
    (``include_nonconverting=False`` drops them). A conversion without a touch in its window
    has no journey (nothing to attribute it to), and a touch before a conversion but outside its
    lookback belongs to no journey. ``max_path_length`` keeps the LAST n touches.
    Point-in-time: only rows with ts < ``cutoff`` are read (None: all rows), so appending later
    rows never changes the result.

    Args:
        touchpoints: customer_id, ts, channel (the contract table; other columns ignored).
        conversions: customer_id, ts, value (e.g. :func:`conversions_from_touchpoints`); None
            takes the touches marked ``converted`` (value 0).

    Returns:
        Columns :data:`JOURNEY_COLUMNS`, sorted by customer_id, journey_id. ``journey_id`` = k
        for the journey ending in the customer's k-th conversion (1-based, time order), number
        of conversions + 1 for the non-converting tail. ``channels`` / ``timestamps`` are lists
        in time order (ties broken by channel name); ``value`` is 0 when not converted.

    Raises:
        DataError: missing columns, null customer_id/channel/ts, unparseable ts (the message
            names table, column and an example row), bad lookback/max_path_length.
    """
    if conversions is None:
        if not isinstance(touchpoints, pd.DataFrame):
            raise DataError("build_journeys: conversions=None needs touchpoints as a DataFrame")
        conversions = conversions_from_touchpoints(touchpoints)
    tp = _touchpoints_table(touchpoints)
    cv = _conversions_table(conversions)
    if cutoff is not None:
        as_timestamp(cutoff)  # fail early on a bad cutoff
    expr = journey_touches_expr(tp, cv, lookback_days, max_path_length, cutoff)
    if not include_nonconverting:
        expr = expr.filter(expr.conversion_ts.notnull())
    # Sorting rows in the engine and cutting lists at journey boundaries costs about half of an
    # ordered ARRAY_AGG (measured on 3M touches).
    table = expr.order_by(["customer_id", "journey_id", "ts", "channel"]).to_pyarrow()
    return _journeys_frame(table)


def _journeys_frame(touches: pa.Table) -> pd.DataFrame:
    """Sorted journey touches -> one row per journey (``channels`` as Python lists,
    ``timestamps`` as datetime64 arrays)."""
    n = touches.num_rows
    cid = touches.column("customer_id").to_numpy()
    jid = touches.column("journey_id").to_numpy()
    new = np.ones(n, bool)
    if n:
        new[1:] = (cid[1:] != cid[:-1]) | (jid[1:] != jid[:-1])
    starts = np.flatnonzero(new)
    offsets = pa.array(np.append(starts, n).astype(np.int64))
    channel = touches.column("channel").combine_chunks()
    ts = touches.column("ts").combine_chunks()
    conversion_ts = touches.column("conversion_ts").to_pandas().to_numpy()[starts]
    return pd.DataFrame(
        {
            "customer_id": cid[starts],
            "journey_id": jid[starts],
            "channels": pd.Series(
                pa.LargeListArray.from_arrays(offsets, channel).to_pylist(), dtype=object
            ),
            "timestamps": pa.LargeListArray.from_arrays(offsets, ts).to_pandas(),
            "converted": ~pd.isna(conversion_ts),
            "value": touches.column("value").to_numpy()[starts],
            "conversion_ts": conversion_ts,
            "n_touches": np.diff(np.append(starts, n)),
        }
    )


# --------------------------------------------------------------------------- path table


def _list_array(channels: pd.Series) -> pa.ListArray:
    arr = pa.array(channels.to_numpy(), type=pa.list_(pa.string()), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr


def aggregate_paths(journeys: pd.DataFrame, sep: str = DEFAULT_SEP) -> pd.DataFrame:
    """The path table: one row per distinct path (channels joined by ``sep``).

    Columns ``path``, ``conversions`` (converted journeys), ``value`` (their summed value),
    ``nulls`` (journeys on the path that did not convert). An optional ``weight`` column in
    ``journeys`` multiplies each journey (the bootstrap uses it). Sorted by conversions, then
    nulls (descending), then path.

    Raises:
        DataError: missing columns, an empty journey, null channels, a channel containing ``sep``.
    """
    _check_columns(journeys, "journeys", ["channels", "converted"])
    return _encode_journeys(journeys, sep, timing=False).path_table()


# --------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class EncodedPaths:
    """A validated path table as flat integer arrays (what the attribution models compute on).

    Path ``p`` is ``channels[codes[offsets[p]:offsets[p + 1]]]``. Per path: ``conversions``,
    ``value`` (of those conversions), ``nulls``. ``days_before`` (per touch, optional) is the
    time from the touch to its journey's conversion (or last touch), for time decay.
    """

    channels: tuple[str, ...]
    codes: np.ndarray
    offsets: np.ndarray
    conversions: np.ndarray
    value: np.ndarray
    nulls: np.ndarray
    sep: str = DEFAULT_SEP
    days_before: np.ndarray | None = None

    @property
    def n_paths(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def touch_path(self) -> np.ndarray:
        """The path index of every touch."""
        return np.repeat(np.arange(self.n_paths), self.lengths)

    @property
    def position(self) -> np.ndarray:
        """0-based position of every touch in its path."""
        return np.arange(self.codes.size) - np.repeat(self.offsets[:-1], self.lengths)

    @property
    def total_conversions(self) -> float:
        return float(self.conversions.sum())

    def with_counts(
        self, conversions: np.ndarray, value: np.ndarray, nulls: np.ndarray
    ) -> EncodedPaths:
        """The same paths with other counts (bootstrap replicates)."""
        return replace(
            self,
            conversions=np.asarray(conversions, float),
            value=np.asarray(value, float),
            nulls=np.asarray(nulls, float),
        )

    def take(self, rows: np.ndarray) -> EncodedPaths:
        """The paths ``rows`` (in that order), with their counts and timing."""
        rows = np.asarray(rows, np.int64)
        lengths = self.lengths[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        touch = np.repeat(self.offsets[rows], lengths) + (
            np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
        )
        return replace(
            self,
            codes=self.codes[touch],
            offsets=offsets,
            conversions=self.conversions[rows],
            value=self.value[rows],
            nulls=self.nulls[rows],
            days_before=None if self.days_before is None else self.days_before[touch],
        )

    def distinct(self) -> tuple[EncodedPaths, np.ndarray]:
        """Identical paths merged (counts summed, timing dropped), and each row's distinct path."""
        inv, key = pd.factorize(self.path_strings())
        first = np.full(key.size, -1, np.int64)
        first[inv[::-1]] = np.arange(inv.size)[::-1]
        merged = replace(self.take(first), days_before=None)
        n = key.size
        return merged.with_counts(
            np.bincount(inv, self.conversions, n),
            np.bincount(inv, self.value, n),
            np.bincount(inv, self.nulls, n),
        ), inv

    def collapsed(self) -> EncodedPaths:
        """Consecutive repeats merged into one touch (a > a > b -> a > b)."""
        if self.codes.size == 0:
            return self
        keep = np.ones(self.codes.size, bool)
        keep[1:] = self.codes[1:] != self.codes[:-1]
        keep[self.offsets[:-1]] = True
        new_len = np.add.reduceat(keep.astype(np.int64), self.offsets[:-1])
        offsets = np.concatenate([[0], np.cumsum(new_len)])
        days = None if self.days_before is None else self.days_before[keep]
        return replace(self, codes=self.codes[keep], offsets=offsets, days_before=days)

    def path_strings(self) -> np.ndarray:
        return self._joined().to_numpy(zero_copy_only=False)

    def _joined(self) -> pa.Array:
        names = pa.array(self.channels, pa.string()).take(pa.array(self.codes))
        lists = pa.ListArray.from_arrays(pa.array(self.offsets, pa.int64()), names)
        lists = lists.cast(pa.list_(pa.string()))
        return pc.binary_join(lists, self.sep)

    def path_table(self) -> pd.DataFrame:
        """Aggregate identical paths into the standard path table (see :func:`aggregate_paths`)."""
        # Hashed and sorted in Arrow: no Python string is made.
        distinct = pc.dictionary_encode(self._joined())
        inv = distinct.indices.to_numpy()
        key = distinct.dictionary
        n = len(key)
        conversions = np.bincount(inv, self.conversions, n)
        value = np.bincount(inv, self.value, n)
        nulls = np.bincount(inv, self.nulls, n)
        # UTF-8 byte order is code point order: the order of sorting Python strings
        order = pc.sort_indices(
            pa.table({"conversions": conversions, "nulls": nulls, "path": key}),
            sort_keys=[
                ("conversions", "descending"),
                ("nulls", "descending"),
                ("path", "ascending"),
            ],
        ).to_numpy()
        return pd.DataFrame(
            {
                # Arrow-backed (pandas' string[pyarrow], what pandas 3 makes of every str column):
                # the models cut the paths straight from its buffer, without Python strings
                "path": pd.arrays.ArrowStringArray(key.take(order)),
                "conversions": conversions[order],
                "value": value[order],
                "nulls": nulls[order],
            }
        )


def _normalized(name: str) -> str:
    return "".join(name.split()).lower()


_RESERVED_NORMALIZED = {_normalized(s) for s in RESERVED_STATES}


def _check_channel_names(names: np.ndarray, table: str, sep: str, examples: dict[str, str]) -> None:
    """Reserved state names, empty names and (for split paths) foreign separators."""
    for name in names:
        if _normalized(name) in _RESERVED_NORMALIZED:
            raise DataError(
                f"table {table!r}: channel {name!r} is named like a Markov state "
                f"{list(RESERVED_STATES)}; rename it (e.g. in {examples.get(name, name)!r})"
            )
        if name == "":
            raise DataError(
                f"table {table!r}: empty channel name (e.g. in {examples.get(name, name)!r}); "
                f"paths must be channel names joined by sep={sep!r}"
            )
        for arrow in _ARROWS:
            if arrow in name and arrow not in sep:
                if name not in examples:  # a journeys table: the name itself is the problem
                    raise DataError(
                        f"table {table!r}: channel {name!r} contains {arrow!r}, which reads as a "
                        "path separator; rename the channel"
                    )
                raise DataError(
                    f"table {table!r}: path {examples[name]!r} looks separated by {arrow!r}, but "
                    f"sep={sep!r} (channel {name!r}); pass the separator the paths use"
                )


def _counts(df: pd.DataFrame, col: str, table: str, default: float | None) -> np.ndarray:
    if col not in df.columns:
        if default is None:
            _check_columns(df, table, [col])
        return np.full(len(df), float(default or 0.0))
    raw = df[col]
    if raw.dtype == bool:
        return raw.to_numpy(float)
    if isinstance(raw.dtype, np.dtype) and raw.dtype.kind in "iuf":
        s = raw.to_numpy(float)
    else:
        s = pd.to_numeric(raw, errors="coerce").to_numpy(float)
    if not np.isfinite(s).all():
        bad = ~np.isfinite(s)
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"table {table!r}, column {col!r}: {int(bad.sum())} NaN or non-numeric value(s); "
            f"example row {df.index[pos]!r}: {_example(df, pos)}"
        )
    return s


def _path_counts(paths: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A path table's ``conversions``, ``nulls`` (0 when absent) and ``value`` (0 when absent),
    checked: numbers, conversions and nulls not negative."""
    table = "paths"
    conversions = _counts(paths, "conversions", table, None)
    nulls = _counts(paths, "nulls", table, 0.0)
    value = _counts(paths, "value", table, 0.0)
    _non_negative(conversions, paths, "conversions", table)
    _non_negative(nulls, paths, "nulls", table)
    return conversions, nulls, value


def _non_negative(a: np.ndarray, df: pd.DataFrame, col: str, table: str) -> None:
    neg = a < 0
    if neg.any():
        pos = int(np.flatnonzero(neg)[0])
        raise DataError(
            f"table {table!r}, column {col!r}: {int(neg.sum())} negative count(s); "
            f"example row {df.index[pos]!r}: {_example(df, pos)}"
        )


# --------------------------------------------------------------------------- splitting paths fast
#
# Why not pyarrow's split_pattern + dictionary_encode: on 86k path strings (594k tokens) they cost
# ~25 ms, more than the whole order-1 Markov model. A path column is a handful of distinct channel
# names repeated many times, so here it is cut with numpy: an Arrow-backed column (what
# aggregate_paths returns) straight from its data buffer, its offsets the path boundaries; Python
# strings joined a block at a time, a joiner byte after each path. Separators are found by byte
# comparisons (their positions compacted from 2-byte groups, see _delimiters), and every token is
# read as little-endian 64-bit words (a token of up to 8 bytes is one word, zeroed past its end;
# unaligned words are assembled from two aligned ones) and looked up in a small hash table of the
# distinct tokens. A lookup compares every word of the token (and longer tokens' length), so a
# hash collision can never mistake one channel for another. Paths are cut in blocks of a few
# thousand, whose work arrays are views of one allocation reused block after block (_Scratch).
# Order-1 Markov needs only the journey-weighted (previous, next) token counts, so for it each
# block's token ids are counted and dropped (_PairCounter, one bincount a block) instead of being
# kept as codes. Input the fast path does not cover (non-str cells, NUL bytes, empty tokens or
# overlapping separators, a separator across two Arrow paths, the joiner byte in a Python path,
# tokens over 256 bytes, over 1024 distinct tokens; over 64 when counting) makes it return None,
# and the pyarrow path (which also words the errors) runs instead.

_PAD = 16  # NUL bytes after a block's last path: both aligned words read at a token start exist
_BLOCK_BYTES = 1 << 19  # ~60k tokens: faster than 256 kB (call overhead) or 1 MB (cache)
_MAX_TOKEN_BYTES = 256
_MAX_VOCAB = 1024
_SAMPLE = 4096
_MAX_TABLE_BITS = 18
_HASH_MULTS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)
# _LOW_BYTES[i] keeps a word's low i bytes (a token's first i bytes), read with indices clipped
# to 0..9: [9] = 0 is the short key of every token longer than 8 bytes, which the long table
# (all words and the length) resolves.
_LOW_BYTES = np.array([(1 << (8 * i)) - 1 for i in range(9)] + [0], dtype=np.uint64)


class _Unsupported(Exception):
    """Input the fast path leaves to the pyarrow path."""


class _ScratchFull(Exception):
    """A block has more tokens than the scratch arrays hold (many one-byte tokens)."""


@dataclass(frozen=True)
class _SplitPaths:
    """A path column cut into tokens: ``names`` sorted and trimmed, ``codes`` into them; or,
    when counted for order-1 Markov, ``pairs`` and ``last`` instead of ``codes`` and
    ``offsets`` (see :func:`_split_fast`)."""

    names: list[str]
    codes: np.ndarray | None
    offsets: np.ndarray | None
    has_sep: bool
    """Whether any path contains the separator at all."""
    pairs: np.ndarray | None = None
    last: np.ndarray | None = None


class _Scratch:
    """The work arrays of one block, carved from one allocation and reused block after block.

    Written by hand because numpy allocates every temporary afresh, and blocks of a few hundred
    kB go back to the operating system between uses: touching them again costs a page fault per
    4 kB. Measured on the path table of 1M journeys (86k paths): ~3,000 faults a split, which
    made it 25-40 ms instead of 17 ms; one allocation of a few MB (numpy asks for huge pages from
    4 MB) faults a few times a call."""

    _BYTE_ARRAYS = (("buf", np.uint8), ("marks", np.uint8), ("match", np.bool_))
    _TOKEN_ARRAYS = (
        ("u16", np.uint16),
        ("flag", np.bool_),
        ("kind", np.uint8),
        ("is_end", np.bool_),
        ("length", np.int64),
        ("key", np.uint64),
        ("ids", np.int64),
    )
    # read twice per token at most (its first word, and the last 8 bytes of a long token); once
    # the words are keys, q / word / high serve the lookup and the pair counting
    _READ_ARRAYS = (("reads", np.int64), ("q", np.int64), ("word", np.uint64), ("high", np.uint64))
    _PATH_ARRAYS = (("after", np.int64), ("path_tmp", np.int64))

    def __init__(self, n_bytes: int, n_tokens: int, n_paths: int) -> None:
        self.n_bytes, self.n_tokens = n_bytes, n_tokens
        layout = []
        for arrays, size in (
            (self._BYTE_ARRAYS, n_bytes + _PAD + 8),
            (self._TOKEN_ARRAYS, n_tokens),
            (self._READ_ARRAYS, 2 * n_tokens),
            (self._PATH_ARRAYS, n_paths),
        ):
            layout += [(name, np.dtype(dtype), size) for name, dtype in arrays]
        total = sum(-(-size * dt.itemsize // 64) * 64 for _, dt, size in layout)
        mem = np.empty(total, np.uint8)
        at = 0
        for name, dt, size in layout:
            setattr(self, name, mem[at : at + size * dt.itemsize].view(dt))
            at += -(-size * dt.itemsize // 64) * 64


def _row_hash(cols: list[np.ndarray], mult: int) -> np.ndarray:
    m = np.uint64(mult)
    h = cols[0] * m
    for c in cols[1:]:
        h ^= c
        h *= m
    return h


class _TokenTable:
    """Direct-mapped hash table from distinct key rows (uint64 columns) to integer values, sized so
    that the rows land in distinct buckets; :meth:`lookup` confirms every column."""

    def __init__(self, rows: np.ndarray, values: np.ndarray) -> None:
        n = rows.shape[0]
        cols = [rows[:, j] for j in range(rows.shape[1])]
        for bits in range(max(n - 1, 1).bit_length() + 2, _MAX_TABLE_BITS + 1):
            for mult in _HASH_MULTS:
                bucket = (_row_hash(cols, mult) >> np.uint64(64 - bits)).astype(np.intp)
                if np.unique(bucket).size == n:
                    break
            else:
                continue
            break
        else:
            raise _Unsupported("no collision-free table")
        self.mult, self.shift = np.uint64(mult), np.uint64(64 - bits)
        # empty buckets hold row 0: a key that matches it hashes to row 0's bucket, not theirs
        self.keys = [np.full(1 << bits, c[0], np.uint64) for c in cols]
        for table, c in zip(self.keys, cols):
            table[bucket] = c
        self.values = np.full(1 << bits, values[0], np.int64)
        self.values[bucket] = values

    def lookup(self, cols: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Each key row's value, and None if every row is in the table, else a mask of those
        that are."""
        h = _row_hash(cols, self.mult)
        bucket = np.right_shift(h, self.shift, out=h).view(np.intp)
        ok = self.keys[0].take(bucket) == cols[0]
        for table, c in zip(self.keys[1:], cols[1:]):
            ok &= table.take(bucket) == c
        return self.values.take(bucket), None if ok.all() else ok

    def lookup_into(self, key: np.ndarray, s: _Scratch) -> tuple[np.ndarray, bool]:
        """:meth:`lookup` of one-word keys in the scratch arrays: the values (``s.ids``) and
        whether every key is in the table."""
        n = key.size
        bucket = np.multiply(key, self.mult, out=s.q[:n].view(np.uint64))
        bucket >>= self.shift
        at = bucket.view(np.intp)
        probe = np.take(self.keys[0], at, out=s.high[:n], mode="clip")
        ok = np.equal(probe, key, out=s.flag[:n])
        return np.take(self.values, at, out=s.ids[:n], mode="clip"), bool(ok.all())


def _short_keys(keys: np.ndarray) -> list[bytes]:
    """Tokens of up to 8 bytes from their keys (the data has no NUL byte)."""
    return [int(k).to_bytes(8, "little").rstrip(b"\0") for k in keys]


# A token longer than 8 bytes is keyed by its length, its first 8 bytes, its last 8 bytes and,
# past 16 bytes, the words in between (each word j: bytes 8j.. up to the last 8, zero-padded), so
# a key does not depend on how many middle words a block reads: they are 0 for shorter tokens.


def _long_keys(rows: np.ndarray) -> list[bytes]:
    """Longer tokens from their key rows (length, first word, last word, middle words)."""
    out = []
    for r in rows:
        n = int(r[0])
        token = bytearray(int(r[1]).to_bytes(8, "little").ljust(n, b"\0"))
        for j, w in enumerate(r[3:], start=1):
            size = max(0, min(8, n - 8 - 8 * j))
            token[8 * j : 8 * j + size] = int(w).to_bytes(8, "little")[:size]
        token[n - 8 :] = int(r[2]).to_bytes(8, "little")
        out.append(bytes(token))
    return out


def _long_row(token: bytes, n_middle: int) -> list[int]:
    n = len(token)
    middle = [token[8 * j : max(8 * j, min(8 * j + 8, n - 8))] for j in range(1, n_middle + 1)]
    words = [token[:8], token[n - 8 :], *middle]
    return [n, *(int.from_bytes(w, "little") for w in words)]


class _Vocabulary:
    """The distinct raw tokens met so far, numbered in order of discovery, and the tables that
    find them: short tokens by one masked word, long ones by all their words and the length."""

    def __init__(self) -> None:
        self.tokens: list[bytes] = []
        self.short: _TokenTable | None = None
        self.long: _TokenTable | None = None
        self.long_words = 0

    def add(self, tokens: list[bytes]) -> None:
        tokens = sorted(set(tokens) - set(self.tokens))  # the first block: ids in name order
        if not tokens:
            raise _Unsupported("lookup failed")  # cannot happen: a key row is its token
        self.tokens += tokens
        if len(self.tokens) > _MAX_VOCAB:
            raise _Unsupported("too many distinct tokens")
        short = [(i, t) for i, t in enumerate(self.tokens) if len(t) <= 8]
        # key 0 = "longer than 8 bytes": id -1, resolved by the long table
        keys = np.array([int.from_bytes(t, "little") for _, t in short] + [0], np.uint64)
        ids = np.array([i for i, _ in short] + [-1], np.int64)
        self.short = _TokenTable(keys[:, None], ids)
        self.long = None

    def short_ids(self, key: np.ndarray, s: _Scratch) -> np.ndarray:
        ids, found = self.short.lookup_into(key, s)
        if not found:  # tokens not met before
            ok = s.flag[: key.size]
            self.add(_short_keys(np.unique(key[~ok])))
            ids, found = self.short.lookup_into(key, s)
            if not found:
                raise _Unsupported("lookup failed")
        return ids

    def long_ids(self, cols: list[np.ndarray]) -> np.ndarray:
        if self.long is not None and len(cols) - 3 < self.long_words:
            # a block of shorter long tokens: its missing middle words are 0, as in the table's
            cols = cols + [np.zeros_like(cols[0])] * (self.long_words + 3 - len(cols))
        if self.long is None or self.long_words != len(cols) - 3:
            self.long_words = len(cols) - 3
            long = [(i, t) for i, t in enumerate(self.tokens) if len(t) > 8]
            rows = np.array(
                [_long_row(t, self.long_words) for _, t in long] or [[0] * len(cols)], np.uint64
            )
            ids = np.array([i for i, _ in long] or [-1], np.int64)
            self.long = _TokenTable(rows, ids)
        ids, ok = self.long.lookup(cols)
        if ok is not None:
            missed = np.unique(np.stack([c[~ok] for c in cols], axis=1), axis=0)
            self.add(_long_keys(missed))
            return self.long_ids(cols)
        return ids


def _delimiters(
    buf: np.ndarray,
    n_bytes: int,
    sep_b: bytes,
    ends: np.ndarray | None,
    joiner: int | None,
    s: _Scratch,
) -> tuple[np.ndarray, np.ndarray]:
    """Where the tokens of a block end, in order, and which of those ends a path.

    The first ``n_bytes`` of ``buf`` are the paths, back to back with ``ends`` (increasing, the
    last = ``n_bytes``) where each ends, or each followed by the byte ``joiner``. A token ends at
    the start of every separator and at every path end. Raises :class:`_Unsupported` where a
    separator starts an Arrow path (an empty first token: the slow path words the error)."""
    m = len(sep_b)
    n = max(n_bytes - m + 1, 0)  # separators lie inside the paths
    # marks: 1 where a separator starts, 2 at a path end
    size = n_bytes + 1 + (n_bytes + 1) % 2
    marks = s.marks[:size]
    marks[n:] = 0
    hit = marks[:n].view(np.bool_)
    np.equal(buf[:n], sep_b[0], out=hit)
    for j in range(1, m):
        hit &= np.equal(buf[j : n + j], sep_b[j], out=s.match[:n])
    if joiner is not None:  # (a separator after a joiner leaves an empty token: refused)
        at_joiner = np.equal(buf[:n_bytes], joiner, out=s.match[:n_bytes]).view(np.uint8)
        np.add(at_joiner, at_joiner, out=at_joiner)  # 2 (faster than a shift of uint8)
        marks[:n_bytes] |= at_joiner
    else:
        # (A separator across two paths, back to back in the buffer, makes the token after it
        # end before it starts: refused, so the slow path takes such a table.)
        if np.take(marks, ends, mode="clip").any():
            raise _Unsupported("a separator at a path's start")
        marks.put(ends, 2, mode="clip")
    # Two token ends lie at least 2 bytes apart unless a token is one byte long (after a
    # separator, the next end is m + 1 or more bytes on; after a path's end, as far as the next
    # path's first token is long), so the marks are found by a pass over n / 2 byte pairs rather
    # than n bytes, each pair's one mark by its lane; a pair with two (a one-byte token) shows in
    # the count and takes the byte-wise pass.
    pairs = marks.view(np.uint16)
    pos = np.flatnonzero(np.not_equal(pairs, 0, out=s.match[: pairs.size]))
    n_marks = np.count_nonzero(marks)
    if n_marks > s.n_tokens:
        raise _ScratchFull
    if pos.size == n_marks:
        lane = np.take(pairs, pos, out=s.u16[: pos.size], mode="clip")
        pos *= 2
        pos += np.greater(lane, 255, out=s.flag[: pos.size])
    else:
        pos = np.flatnonzero(marks)
    kind = np.take(marks, pos, out=s.kind[: pos.size], mode="clip")
    return pos, np.equal(kind, 2, out=s.is_end[: pos.size])


def _words_at(aligned: np.ndarray, at: np.ndarray, s: _Scratch | None = None) -> np.ndarray:
    """The little-endian 64-bit words at byte offsets ``at`` of the buffer ``aligned`` (its 8-byte
    words), read as two aligned words joined by shifts: numpy copies a whole unaligned (stride 1)
    view before any gather, which costs more than the gather. With ``s``, in its arrays."""
    n = at.size
    if s is None:
        q = at >> 3
        word = aligned.take(q)
        high = aligned[1:].take(q)
    else:
        q = np.right_shift(at, 3, out=s.q[:n])
        word = np.take(aligned, q, out=s.word[:n], mode="clip")
        high = np.take(aligned[1:], q, out=s.high[:n], mode="clip")
    shift = np.bitwise_and(at, 7, out=q).view(np.uint64)
    shift <<= np.uint64(3)
    word >>= shift
    np.subtract(np.uint64(64), shift, out=shift)
    high <<= shift  # a shift by 64 gives 0 in numpy (at a word boundary)
    word |= high
    return word


def _long_key_rows(
    aligned: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    start: np.ndarray,
    length: np.ndarray,
    at: np.ndarray,
) -> list[np.ndarray]:
    """Key columns (see :func:`_long_row`) of the tokens ``at`` (all over 8 bytes long), whose
    bytes are ``[start, start + length)``; ``first`` / ``last``: the first / last 8 bytes of
    every token / of these (``aligned``: the buffer's 8-byte words)."""
    length = length.take(at)
    longest = int(length.max())
    if longest > _MAX_TOKEN_BYTES:
        raise _Unsupported("long token")
    cols = [length.view(np.uint64), first.take(at), last.copy()]
    if longest > 16:
        starts = start.take(at)
    for j in range(1, (longest - 9) // 8 + 1):
        # bytes 8j.. up to the last 8 (a shorter token keeps none: clip its read into the buffer)
        w = _words_at(aligned, np.minimum(starts + 8 * j, 8 * aligned.size - 16))
        cols.append(w & _LOW_BYTES[np.clip(length - 8 - 8 * j, 0, 8)])
    return cols


_PAIR_BASE = 64
"""Counting order-1 transitions while splitting handles up to this many distinct raw tokens."""


class _PairCounter:
    """Journey-weighted counts of (previous token, token) over raw token ids, ``_PAIR_BASE``
    standing for ``(start)`` before a path's first token, and every path's last token."""

    def __init__(self, journeys: np.ndarray) -> None:
        self.journeys = journeys
        self.counts = np.zeros(_PAIR_BASE * (_PAIR_BASE + 1))
        self.last = np.empty(journeys.size, np.int64)

    def add(
        self,
        ids: np.ndarray,
        last: np.ndarray,
        after: np.ndarray,
        lo: int,
        n_tokens: int,
        s: _Scratch,
    ) -> None:
        """Block of paths ``lo..``: token ids, each path's last token and the first token of
        every path but the first (block positions)."""
        if n_tokens > _PAIR_BASE:
            raise _Unsupported("too many distinct tokens to count pairs")
        n, k = ids.size, last.size
        # pair = token * (base + 1) + previous token; a path's first token follows (start) = base
        pair = np.multiply(ids, _PAIR_BASE + 1, out=s.q[:n])
        pair[1:] += ids[:-1]
        first = np.take(ids, after, out=s.path_tmp[: k - 1], mode="clip")
        first *= _PAIR_BASE + 1
        first += _PAIR_BASE
        pair.put(after, first, mode="clip")
        pair[0] += _PAIR_BASE
        journeys = self.journeys[lo : lo + k]
        if journeys.min() == journeys.max():  # (often: the tail of a table sorted by counts)
            self.counts += np.bincount(pair, minlength=self.counts.size) * journeys[0]
        else:
            token_path = s.word[:n].view(np.int64)
            token_path[:] = 0
            token_path.put(after, 1, mode="clip")
            np.cumsum(token_path, out=token_path)
            weight = np.take(journeys, token_path, out=s.high[:n].view(np.float64), mode="clip")
            self.counts += np.bincount(pair, weight, self.counts.size)
        np.take(ids, last, out=self.last[lo : lo + k], mode="clip")

    def by_code(self, lut: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The counts over channel codes, (k + 1) x k with row k = (start), and each path's last
        channel code (raw id r is channel ``lut[r]``)."""
        raw = self.counts.reshape(_PAIR_BASE, _PAIR_BASE + 1).T  # [previous, token]
        v = lut.size
        pairs = np.zeros((k + 1, k))
        src = np.append(lut, k)
        rows = raw[np.append(np.arange(v), _PAIR_BASE), :v]
        np.add.at(pairs, (src[:, None], lut[None, :]), rows)
        return pairs, lut.take(self.last)


def _arrow_strings(col: pd.Series | np.ndarray) -> pa.Array | None:
    """The column as one Arrow string array when pandas holds it in Arrow (``string[pyarrow]``,
    ``ArrowDtype(pa.string())``, pandas 3's ``str``), else None."""
    if isinstance(col, np.ndarray) or col.dtype == object:
        return None
    try:
        arr = pa.array(col.array) if hasattr(col.array, "__arrow_array__") else None
    except (TypeError, ValueError, pa.ArrowException):
        return None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr is None or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    return arr


_JOINERS = (0x1F, 0x1E, 0x1D, 0x1C)
"""ASCII unit/record/group/file separators: what ends each Python path string when they are
joined into one buffer (the first one not in ``sep``)."""


class _Blocks:
    """A path column as blocks of paths: ``(lo, hi, bytes, ends)``, ``ends`` where each path of
    the block ends (Arrow: its offsets; joined Python strings: None, a joiner byte ends each)."""

    def __init__(self, column: pd.Series | np.ndarray, sep_b: bytes) -> None:
        arr = _arrow_strings(column)
        if arr is not None:
            if arr.null_count or len(arr) == 0:
                raise _Unsupported("nulls")
            n = len(arr)
            width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
            offs = np.frombuffer(arr.buffers()[1], width)[arr.offset : arr.offset + n + 1]
            self.offs = offs.astype(np.int64)
            if self.offs[-1] == self.offs[0]:
                raise _Unsupported("only empty paths")
            self.data = np.frombuffer(arr.buffers()[2], np.uint8)
            typical = (self.offs[-1] - self.offs[0]) / n
            self.joiner = None
        else:
            values = np.asarray(column, dtype=object)
            n = len(values)
            if n == 0:
                raise _Unsupported("empty")
            self.values = values
            self.joiner = next((j for j in _JOINERS if j not in sep_b), None)
            if self.joiner is None:
                raise _Unsupported("no joiner")
            spread = values[:: max(1, n // 64)]  # (tables are often sorted by count)
            typical = sum(len(v) for v in spread) / len(spread) + 1  # bytes, ~ASCII
        self.n_paths = n
        self.block_paths = min(n, max(1, int(_BLOCK_BYTES / (typical + len(sep_b)))))
        if self.joiner is None:
            bounds = self.offs[:: self.block_paths]
            self.most_bytes = int(np.diff(np.append(bounds, self.offs[-1])).max())
        else:
            # a guess (a larger block grows the scratch)
            self.most_bytes = int(min(_BLOCK_BYTES, n * typical) * 1.25) + 64

    def __iter__(self) -> Any:
        for lo in range(0, self.n_paths, self.block_paths):
            hi = min(self.n_paths, lo + self.block_paths)
            if self.joiner is None:
                b0 = int(self.offs[lo])
                yield lo, hi, self.data[b0 : int(self.offs[hi])], self.offs[lo + 1 : hi + 1] - b0
            else:
                # (a block at a time: the string objects of a table built from many more rows
                # lie scattered in memory, and a block's are read from RAM once)
                block = self.values[lo:hi].tolist()
                block.append("")
                data = chr(self.joiner).join(block).encode("utf-8")
                yield lo, hi, np.frombuffer(data, np.uint8), None


def _split_fast(
    column: pd.Series | np.ndarray, sep: str, journeys: np.ndarray | None = None
) -> _SplitPaths | None:
    """Cut the path strings of ``column`` at ``sep`` (see the section comment); None when the
    fast path does not apply. Token semantics equal ``pc.split_pattern`` +
    ``pc.utf8_trim_whitespace``. With ``journeys`` (per path), no codes are kept: the order-1
    transitions are counted block by block instead (``pairs``, ``last`` of
    :class:`_SplitPaths`)."""
    try:
        sep_b = sep.encode("utf-8")
        blocks = _Blocks(column, sep_b)
    except (TypeError, UnicodeEncodeError, _Unsupported):  # (TypeError: a cell not a str)
        return None
    m = len(sep_b)
    n_paths = blocks.n_paths

    def scratch_for(n_bytes: int, n_tokens: int | None = None) -> _Scratch:
        # room for tokens of 2 bytes on average; a block with more (one-byte tokens, or empty
        # ones and overlapping separators, which then fail the token checks) grows the scratch
        tokens = n_bytes // (m + 2) + blocks.block_paths + 1 if n_tokens is None else n_tokens
        return _Scratch(n_bytes, tokens, blocks.block_paths)

    scratch = scratch_for(blocks.most_bytes)
    vocab = _Vocabulary()
    counter = None if journeys is None else _PairCounter(journeys)
    offsets = np.empty(n_paths + 1, np.int64)
    offsets[0] = 0
    id_blocks = []
    n_tok = 0
    try:
        for lo, hi, data, ends in blocks:
            if data.size > scratch.n_bytes:
                scratch = scratch_for(data.size)
            while True:
                try:
                    ids, last, after = _block_ids(
                        data, ends, blocks.joiner, hi - lo, sep_b, vocab, scratch
                    )
                    break
                except _ScratchFull:  # room for a mark at every byte: it fits then
                    scratch = scratch_for(scratch.n_bytes, scratch.n_bytes + 1)
            if counter is None:
                id_blocks.append(ids.astype(np.int32))
                offsets[lo + 1 : hi + 1] = last + (n_tok + 1)
            else:
                counter.add(ids, last, after, lo, len(vocab.tokens), scratch)
            n_tok += ids.size
        raw = [t.decode("utf-8") for t in vocab.tokens]
    except (TypeError, UnicodeEncodeError, UnicodeDecodeError, _Unsupported):
        return None
    # str.strip removes exactly the characters pc.utf8_trim_whitespace does (checked for every
    # code point), without a round trip through Arrow
    trimmed = [t.strip() for t in raw]
    names = sorted(set(trimmed))
    code = {name: i for i, name in enumerate(names)}
    lut = np.array([code[t] for t in trimmed], np.int32)
    has_sep = bool(n_tok > n_paths)
    if counter is not None:
        pairs, last_codes = counter.by_code(lut, len(names))
        return _SplitPaths(names, None, None, has_sep, pairs, last_codes)
    ids = np.concatenate(id_blocks)
    if not np.array_equal(lut, np.arange(lut.size)):  # trimmed duplicates or late tokens
        np.take(lut, ids, out=ids, mode="clip")
    return _SplitPaths(names, ids, offsets, has_sep)


def _block_ids(
    data: np.ndarray,
    ends: np.ndarray | None,
    joiner: int | None,
    k: int,
    sep_b: bytes,
    vocab: _Vocabulary,
    s: _Scratch,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw token ids of a block of ``k`` paths (in ``s``), each path's last token and the
    first token of each path but the first (block positions). ``data``: the paths' bytes,
    ``ends`` where each path ends, or None when a ``joiner`` byte follows each path."""
    m = len(sep_b)
    n_bytes = data.size
    # the block's bytes, zero-padded to whole words: the words read past a token exist
    size = -(-(n_bytes + _PAD) // 8) * 8
    buf = s.buf[:size]
    buf[:n_bytes] = data
    buf[n_bytes:] = 0
    if n_bytes == 0 or buf[:n_bytes].min() == 0:
        raise _Unsupported("NUL, or empty paths")  # NUL: zero-padded words of 2 tokens equal
    end, is_end = _delimiters(buf, n_bytes, sep_b, ends, joiner, s)
    n = end.size
    last = np.flatnonzero(is_end)  # each path's last token
    if last.size != k:
        raise _Unsupported("an empty path, or a joiner inside one")
    after = np.add(last[:-1], 1, out=s.after[: k - 1])  # each later path's first token
    # every token's start, then the last 8 bytes' start of those over 8 bytes: their words are
    # read together. A token starts m bytes after a separator, and where the path before ends
    # (Arrow) or 1 byte after (its joiner).
    reads = s.reads[: 2 * n]
    start = reads[:n]
    start[0] = 0
    np.add(end[:-1], m, out=start[1:])
    path_start = np.take(end, last[:-1], out=s.path_tmp[: k - 1], mode="clip")
    if joiner is not None:
        path_start += 1
    start.put(after, path_start, mode="clip")
    length = np.subtract(end, start, out=s.length[:n])  # < 1: an empty token, or "a > > b"
    long_at = np.flatnonzero(np.greater(length, 8, out=s.flag[:n]))
    n_long = long_at.size
    if n_long:
        np.take(end, long_at, out=reads[n : n + n_long], mode="clip")
        reads[n : n + n_long] -= 8
    aligned = buf.view(np.uint64)
    words = _words_at(aligned, reads[: n + n_long], s)
    word = words[:n]  # bytes start..start+7
    long_cols = _long_key_rows(aligned, word, words[n:], start, length, long_at) if n_long else None
    # a length under 1 gets key 0 and so id -1, refused below
    key = np.take(_LOW_BYTES, length, out=s.key[:n], mode="clip")
    key &= word
    if vocab.short is None:  # the first block's tokens, numbered in name order
        sample = np.unique(key[:: max(1, key.size // _SAMPLE)])
        first = _short_keys(sample[sample != 0])
        if long_cols is not None:  # distinct by hash: one lost to a collision comes later
            _, i = np.unique(_row_hash(long_cols, _HASH_MULTS[0]), return_index=True)
            first += _long_keys(np.stack([c[i] for c in long_cols], axis=1))
        vocab.add(first)
    ids = vocab.short_ids(key, s)
    if long_cols is not None:
        ids[long_at] = vocab.long_ids(long_cols)
    if ids.min() < 0:
        raise _Unsupported("an empty path or token, or overlapping separators")
    return ids, last, after


def encode_paths(paths: pd.DataFrame | EncodedPaths, sep: str = DEFAULT_SEP) -> EncodedPaths:
    """Validate and encode a path table or a journeys table.

    - Path table: ``path`` (channels joined by ``sep``), ``conversions``, optional ``value``
      and ``nulls`` (0 when absent). Identical paths may repeat (their counts add up).
    - Journeys table (:func:`build_journeys`): ``channels`` (lists), ``converted``, optional
      ``value``, ``weight`` (multiplies the journey) and ``timestamps`` + ``conversion_ts``
      (kept as ``days_before`` for time decay). One encoded path per journey.

    Channels are coded in sorted name order. Tokens are stripped of surrounding spaces.

    Raises:
        DataError: empty table, missing columns, NaN / negative counts, non-finite values, an
            empty path or channel, a separator other than ``sep`` in the paths (named), a channel
            named like a Markov state ("(start)", "(conversion)", "(null)", any case/spacing).
    """
    if isinstance(paths, EncodedPaths):
        return paths
    if not isinstance(paths, pd.DataFrame):
        raise DataError(f"paths: expected a pandas DataFrame, got {type(paths).__name__}")
    if not isinstance(sep, str) or sep == "":
        raise DataError(f"paths: sep must be a non-empty string, got {sep!r}")
    if "path" not in paths.columns and "channels" in paths.columns:
        return _encode_journeys(paths, sep)
    table = "paths"
    _check_columns(paths, table, ["path", "conversions"])
    if len(paths) == 0:
        raise DataError("table 'paths' is empty: no paths to attribute")
    split = _split_fast(paths["path"], sep)
    if split is None:  # every cell a str means no nulls
        _check_not_null(paths, table, "path")
    conversions, nulls, value = _path_counts(paths)

    if split is not None:
        if not split.has_sep:
            _check_separator(paths["path"].to_numpy(), sep)
        names = split.names
        suspicious = _suspicious(names)
        examples: dict[str, str] = {}
        for name in suspicious:  # one example path per suspicious channel, for the message only
            tok = int(np.flatnonzero(split.codes == names.index(name))[0])
            row = int(np.searchsorted(split.offsets, tok, side="right")) - 1
            examples[name] = str(paths["path"].iloc[row])
        _check_channel_names(np.asarray(names, dtype=object), table, sep, examples)
        return EncodedPaths(
            channels=tuple(names),
            codes=split.codes,
            offsets=split.offsets,
            conversions=conversions,
            value=value,
            nulls=nulls,
            sep=sep,
        )
    strings = paths["path"].astype(str).to_numpy()
    if not any(sep in s for s in strings):
        _check_separator(strings, sep)
    lists = pc.split_pattern(pa.array(strings, pa.string()), sep)
    tokens = pc.utf8_trim_whitespace(lists.flatten())
    offsets = lists.offsets.to_numpy().astype(np.int64)
    return _finish(tokens, offsets, conversions, value, nulls, sep, table, strings)


@dataclass(frozen=True)
class _Order1Counts:
    """What order-1 Markov needs from a path table, counted while the paths are split (no
    per-touch codes are kept): ``pairs[i, j]`` = journeys that go from channel i (row k:
    ``(start)``) straight to channel j; per path its last channel and its counts."""

    channels: tuple[str, ...]
    pairs: np.ndarray
    last: np.ndarray
    conversions: np.ndarray
    value: np.ndarray
    nulls: np.ndarray


def _order1_counts(paths: Any, sep: str = DEFAULT_SEP) -> _Order1Counts | None:
    """:class:`_Order1Counts` of a path table, or None where :func:`encode_paths` must run
    instead (anything but a valid path table of string paths with at most 64 distinct tokens,
    or one whose checks would fail: it then raises the same error as always)."""
    if not (
        isinstance(paths, pd.DataFrame)
        and isinstance(sep, str)
        and sep != ""
        and "path" in paths.columns
        and "conversions" in paths.columns
        and len(paths) > 0
    ):
        return None
    try:  # (encode_paths checks these after splitting; here the split needs the weights)
        conversions, nulls, value = _path_counts(paths)
    except DataError:
        return None
    split = _split_fast(paths["path"], sep, conversions + nulls)
    if split is None or _suspicious(split.names):  # encode_paths words the error
        return None
    if not split.has_sep:
        _check_separator(paths["path"].to_numpy(), sep)
    return _Order1Counts(tuple(split.names), split.pairs, split.last, conversions, value, nulls)


def _check_separator(strings: Any, sep: str) -> None:
    """No path contains ``sep``: name a separator the paths do contain, if any."""
    for other in _SEPARATOR_GUESSES:
        hit = next((s for s in strings if other in s), None)
        if other not in sep and hit is not None:
            raise DataError(
                f"table 'paths': no path contains sep={sep!r}, but e.g. {hit!r} contains "
                f"{other!r}; pass sep={other!r} (or the separator the paths use)"
            )


def _suspicious(names: Any) -> list[str]:
    """Channel names that :func:`_check_channel_names` may reject (they need an example)."""
    return [
        n
        for n in names
        if n == "" or _normalized(n) in _RESERVED_NORMALIZED or any(a in n for a in _ARROWS)
    ]


def _encode_journeys(journeys: pd.DataFrame, sep: str, timing: bool = True) -> EncodedPaths:
    table = "journeys"
    _check_columns(journeys, table, ["channels", "converted"])
    if len(journeys) == 0:
        raise DataError("table 'journeys' is empty: no journeys to attribute")
    _check_not_null(journeys, table, "channels")
    _check_not_null(journeys, table, "converted")
    converted = journeys["converted"].to_numpy().astype(bool)
    weight = _counts(journeys, "weight", table, 1.0)
    _non_negative(weight, journeys, "weight", table)
    value = _counts(journeys, "value", table, 0.0) * converted * weight
    lists = _list_array(journeys["channels"])
    if lists.null_count or pc.any(pc.is_null(lists.flatten())).as_py():
        raise DataError("table 'journeys', column 'channels': null channel in a journey")
    tokens = lists.flatten()
    offsets = lists.offsets.to_numpy().astype(np.int64)
    has_sep = pc.match_substring(tokens, sep)
    if pc.any(has_sep).as_py():
        bad = tokens.filter(has_sep)[0].as_py()
        raise DataError(
            f"table 'journeys', column 'channels': channel {bad!r} contains the path separator "
            f"{sep!r}; pick another sep"
        )
    enc = _finish(
        tokens, offsets, converted * weight, value, (~converted) * weight, sep, table, None
    )
    if timing and "timestamps" in journeys.columns:
        enc = replace(enc, days_before=_days_before(journeys, offsets))
    return enc


def _days_before(journeys: pd.DataFrame, offsets: np.ndarray) -> np.ndarray:
    """Days from each touch to its journey's conversion (or its last touch)."""
    ts = _list_array_ts(journeys["timestamps"])
    lengths = np.diff(offsets)
    if ts.size != offsets[-1]:
        raise DataError("table 'journeys': timestamps and channels differ in length")
    last = ts[offsets[1:] - 1]
    anchor = last
    if "conversion_ts" in journeys.columns:
        conv = pd.to_datetime(journeys["conversion_ts"]).to_numpy("datetime64[us]").astype(np.int64)
        known = ~pd.isna(journeys["conversion_ts"]).to_numpy()
        anchor = np.where(known, conv, last)
    return (np.repeat(anchor, lengths) - ts) / _MICROS_PER_DAY


def _list_array_ts(col: pd.Series) -> np.ndarray:
    """Flattened list-of-timestamps column as int64 microseconds."""
    arr = pa.array(col.to_numpy(), type=pa.list_(pa.timestamp("us")), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.flatten().cast(pa.int64()).to_numpy(zero_copy_only=False)


def _finish(
    tokens: pa.Array,
    offsets: np.ndarray,
    conversions: np.ndarray,
    value: np.ndarray,
    nulls: np.ndarray,
    sep: str,
    table: str,
    strings: np.ndarray | None,
) -> EncodedPaths:
    lengths = np.diff(offsets)
    if (lengths == 0).any():
        pos = int(np.flatnonzero(lengths == 0)[0])
        raise DataError(f"table {table!r}: row {pos} has an empty path")
    uniq = pc.unique(tokens)
    names = np.sort(np.asarray(uniq.to_pylist(), dtype=object))
    examples: dict[str, str] = {}
    suspicious = _suspicious(names)
    if strings is not None and suspicious:
        # one example path per suspicious channel, for the error message only
        flat = np.asarray(tokens.to_pylist(), dtype=object)
        owner = np.repeat(np.arange(lengths.size), lengths)
        for name in suspicious:
            examples[name] = strings[owner[np.flatnonzero(flat == name)[0]]]
    _check_channel_names(names, table, sep, examples)
    codes = pc.index_in(tokens, value_set=pa.array(names, pa.string())).to_numpy().astype(np.int32)
    return EncodedPaths(
        channels=tuple(str(n) for n in names),
        codes=codes,
        offsets=offsets,
        conversions=np.asarray(conversions, float),
        value=np.asarray(value, float),
        nulls=np.asarray(nulls, float),
        sep=sep,
    )


__all__ = [
    "CONVERSION",
    "DEFAULT_SEP",
    "JOURNEY_COLUMNS",
    "NULL",
    "PATH_COLUMNS",
    "RESERVED_STATES",
    "START",
    "EncodedPaths",
    "aggregate_paths",
    "build_journeys",
    "build_journeys_expr",
    "conversions_from_touchpoints",
    "conversions_from_transactions",
    "encode_paths",
    "journey_touches_expr",
]
