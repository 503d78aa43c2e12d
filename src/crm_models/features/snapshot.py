"""Snapshots: the cutoff that splits a table into the past (features) and the future (labels).

This module owns the time windows every builder uses: ``past`` = rows with ts < cutoff,
``future`` = rows in [cutoff, cutoff + horizon). It also owns the portable day arithmetic
(:func:`days_between`) and the column checks the builders share.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import ibis.expr.types as ir
import pandas as pd

from crm_models.errors import DataError
from crm_models.features.engine import as_timestamp, lit_ts

MICROS_PER_DAY = 86_400_000_000
"""Time differences are taken in whole microseconds (exact integers), then scaled to days."""

CutoffLike = str | date | datetime | pd.Timestamp


@dataclass(frozen=True)
class Snapshot:
    """A cutoff and a label horizon: features read [.., cutoff), labels [cutoff, label_end)."""

    cutoff: pd.Timestamp
    horizon_days: float

    def __post_init__(self) -> None:
        # Frozen dataclass: normalise through object.__setattr__ so callers may pass strings/dates.
        object.__setattr__(self, "cutoff", as_timestamp(self.cutoff))
        if not self.horizon_days > 0:
            raise ValueError(f"horizon_days must be > 0, got {self.horizon_days!r}")

    @property
    def label_end(self) -> pd.Timestamp:
        """The exclusive end of the label window: ``cutoff + horizon_days``."""
        return self.cutoff + pd.Timedelta(days=self.horizon_days)

    def past(self, table: ir.Table, ts: str = "ts") -> ir.Table:
        """Rows of ``table`` with ``ts < cutoff``."""
        return past(table, self.cutoff, ts=ts)

    def future(self, table: ir.Table, ts: str = "ts") -> ir.Table:
        """Rows of ``table`` with ``cutoff <= ts < label_end``."""
        return future(table, self.cutoff, self.horizon_days, ts=ts)


def as_ts_column(table: ir.Table, ts: str) -> ir.TimestampValue:
    """``table[ts]`` as a timestamp (date columns are promoted to midnight)."""
    col = table[ts]
    if col.type().is_date():
        return col.cast("timestamp")
    return col


def past(table: ir.Table, cutoff: CutoffLike, ts: str = "ts") -> ir.Table:
    """Rows with ``ts < cutoff`` (the only rows a feature may read)."""
    return table.filter(as_ts_column(table, ts) < lit_ts(cutoff))


def future(table: ir.Table, cutoff: CutoffLike, horizon_days: float, ts: str = "ts") -> ir.Table:
    """Rows with ``cutoff <= ts < cutoff + horizon_days`` (the only rows a label may read)."""
    c = as_timestamp(cutoff)
    col = as_ts_column(table, ts)
    return table.filter((col >= lit_ts(c)) & (col < lit_ts(c + pd.Timedelta(days=horizon_days))))


def micros_between(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.IntegerValue:
    """``later - earlier`` in whole microseconds (int64; exact, and portable to Spark)."""
    return later.delta(earlier, unit="microsecond")


def days_between(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.FloatingValue:
    """``later - earlier`` in days as a float, from the timestamps (not calendar dates)."""
    return micros_between(later, earlier).cast("float64") / MICROS_PER_DAY


def day_micros(days: float) -> int:
    """A duration in days as whole microseconds."""
    return round(days * MICROS_PER_DAY)


def exact_sum(
    value: ir.NumericValue, scale: int = 6, where: ir.BooleanValue | None = None
) -> ir.FloatingScalar:
    """A float sum that is bit-identical run to run (rounded to ``scale`` decimals per row).

    Parallel float sums depend on the order threads combine partial sums, so the last bit can
    change between runs. A DECIMAL sum is exact, hence order-free; only the final cast rounds.
    """
    return value.cast(f"decimal(38, {scale})").sum(where=where).cast("float64")


def require_columns(table: ir.Table, table_name: str, columns: Iterable[str]) -> None:
    """Raise :class:`DataError` naming the table and the missing columns."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(
            f"table {table_name!r}: missing column(s) {missing}; it has {list(table.columns)}"
        )


__all__ = [
    "MICROS_PER_DAY",
    "Snapshot",
    "day_micros",
    "days_between",
    "exact_sum",
    "future",
    "micros_between",
    "past",
    "require_columns",
]
