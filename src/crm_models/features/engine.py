"""The feature engine: Ibis expressions executed on DuckDB (default) or any Ibis backend.

Feature builders are written once as Ibis expressions (``*_expr`` functions taking and
returning ``ibis.Table``), so the same code runs on the embedded DuckDB engine and on Spark.
This module owns the conversions at the edges: pandas in, Ibis in the middle, pandas out.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from crm_models.errors import DataError

TableLike = pd.DataFrame | ir.Table


def to_ibis(table: TableLike) -> ir.Table:
    """Wrap a pandas frame as an Ibis table (an in-memory DuckDB table); pass Ibis through."""
    if isinstance(table, ir.Table):
        return table
    if isinstance(table, pd.DataFrame):
        return ibis.memtable(_microsecond_timestamps(table))
    raise TypeError(f"expected a pandas DataFrame or an ibis Table, got {type(table).__name__}")


def _microsecond_timestamps(df: pd.DataFrame) -> pd.DataFrame:
    """Floor nanosecond timestamps to microseconds.

    Ibis/DuckDB timestamps are microsecond precision; Arrow refuses to cast a value with
    nanoseconds ("would lose data"), so floor them here (a copy only when a column needs it).
    """
    fixed = {}
    for col in df.columns:
        s = df[col]
        if s.dtype == "datetime64[ns]":
            ns = s.to_numpy().view("int64")
            if (ns % 1000 != 0).any():
                fixed[col] = s.dt.floor("us")
    return df.assign(**fixed) if fixed else df


def execute(expr: ir.Table, index: str | None = "customer_id") -> pd.DataFrame:
    """Run an expression on its backend and return a pandas frame sorted by ``index``.

    Sorting (in the engine) makes results independent of its parallel scheduling. The result goes
    through Arrow directly: Ibis's own ``to_pandas`` costs about half the query time again on
    large results.
    """
    if index is not None and index in expr.columns:
        return expr.order_by(index).to_pyarrow().to_pandas().set_index(index)
    return expr.to_pyarrow().to_pandas()


def as_timestamp(value: str | date | datetime | pd.Timestamp | None) -> pd.Timestamp | None:
    """Parse an ISO string, date or timestamp into a tz-naive ``pd.Timestamp`` (None passes)."""
    if value is None:
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def boundary_day(value: Any, name: str, who: str) -> pd.Timestamp:
    """The calendar day (midnight) of a window boundary; a time of day is dropped, the day counts
    whole. ``who`` (the calling function) and ``name`` (its argument) go into the error."""
    try:
        ts = as_timestamp(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{who}: {name}={value!r} is not a date ({exc})") from None
    if ts is None or pd.isna(ts):
        raise DataError(f"{who}: {name} is required, got {value!r}")
    return ts.normalize()


def lit_ts(value: Any) -> ir.TimestampScalar:
    """An Ibis timestamp literal from anything :func:`as_timestamp` accepts."""
    return ibis.timestamp(as_timestamp(value).to_pydatetime())
