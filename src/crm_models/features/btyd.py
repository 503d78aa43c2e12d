"""The BTYD summary: per-customer frequency, recency, T and spend for buy-till-you-die models.

This module owns the calibration/holdout summary that BG/NBD, Pareto/NBD and Gamma-Gamma are
fitted on (Fader, Hardie & Lee 2005; the same definitions as lifetimes'
``summary_data_from_transaction_data`` with ``freq="D"``, then scaled to the time unit). It is
written as Ibis expressions only (group_by / aggregate / argmin / ``delta(unit="day")``), so the
same expression runs on DuckDB and on Spark.

Definitions (a *purchase* is a customer-day: rows of one calendar day are one purchase whose value
is their sum; the calibration period ends with the whole ``calibration_end`` day):

- ``frequency``: calibration purchase days - 1 (repeat purchases);
- ``recency``: last - first calibration purchase day; ``T``: calibration_end - first purchase day;
- ``monetary_value``: mean value of the repeat purchase days (0 when frequency is 0);
- with ``observation_end``: ``frequency_holdout`` (purchase days in (calibration_end,
  observation_end]), ``monetary_value_holdout`` (their mean value, 0 if none) and
  ``duration_holdout`` (observation_end - calibration_end).

Durations are in ``time_unit``: "D" days, "W" days / 7, "M" days / (365.25 / 12).
Customers whose first purchase is after ``calibration_end`` are not in the summary.
Days of time-zone-aware timestamps are UTC days (convert first for local days); a time of day in
``calibration_end`` / ``observation_end`` is dropped, the boundary day counts whole.
"""

from __future__ import annotations

from datetime import date, datetime

import ibis
import ibis.expr.types as ir
import pandas as pd

from crm_models.errors import DataError
from crm_models.features.engine import TableLike, boundary_day, execute, lit_ts, to_ibis

DateLike = str | date | datetime | pd.Timestamp

TIME_UNIT_DAYS: dict[str, float] = {"D": 1.0, "W": 7.0, "M": 365.25 / 12}
"""Length of one time unit in days."""

CALIBRATION_COLUMNS = ("frequency", "recency", "T", "monetary_value")
_MONEY = "decimal(18, 6)"
"""Amounts to the micro-unit; 64-bit decimals keep the per-day sums cheap."""

HOLDOUT_COLUMNS = ("frequency_holdout", "monetary_value_holdout", "duration_holdout")


def _day(value: DateLike, name: str) -> pd.Timestamp:
    return boundary_day(value, name, "btyd_summary")


def _check_inputs(
    transactions: ir.Table, time_unit: str, customer_id: str, ts: str, amount: str
) -> float:
    if time_unit not in TIME_UNIT_DAYS:
        raise DataError(
            f"btyd_summary: unknown time_unit {time_unit!r}; "
            f"expected one of {sorted(TIME_UNIT_DAYS)}"
        )
    schema = transactions.schema()
    missing = [c for c in (customer_id, ts, amount) if c not in schema]
    if missing:
        raise DataError(
            f"transactions: missing column(s) {missing} needed by btyd_summary; "
            f"columns present: {list(schema.names)}"
        )
    if not (schema[ts].is_timestamp() or schema[ts].is_date()):
        raise DataError(
            f"transactions.{ts}: expected a timestamp or date column, got {schema[ts]}; "
            "parse it first (e.g. pd.to_datetime)"
        )
    if not schema[amount].is_numeric():
        raise DataError(f"transactions.{amount}: expected a numeric column, got {schema[amount]}")
    return TIME_UNIT_DAYS[time_unit]


def btyd_summary_expr(
    transactions: ir.Table,
    calibration_end: DateLike,
    observation_end: DateLike | None = None,
    time_unit: str = "W",
    customer_id: str = "customer_id",
    ts: str = "ts",
    amount: str = "amount",
) -> ir.Table:
    """The BTYD summary as an Ibis expression (one row per customer, unsorted).

    Columns: ``customer_id`` (named as given), ``frequency``, ``recency``, ``T``,
    ``monetary_value`` and, with ``observation_end``, ``frequency_holdout``,
    ``monetary_value_holdout``, ``duration_holdout``. See the module docstring for definitions.
    Rows after the last day are filtered out before any aggregation. If no customer purchased on or
    before ``calibration_end`` the table is empty (:func:`btyd_summary` raises instead).

    Raises:
        DataError: unknown ``time_unit``, missing or mistyped columns, or
            ``observation_end`` not after ``calibration_end``.
    """
    unit_days = _check_inputs(transactions, time_unit, customer_id, ts, amount)
    cal = _day(calibration_end, "calibration_end")
    obs = None if observation_end is None else _day(observation_end, "observation_end")
    if obs is not None and obs <= cal:
        raise DataError(
            f"btyd_summary: observation_end {obs.date()} must be after calibration_end {cal.date()}"
        )
    last_day = obs if obs is not None else cal
    cal_date = ibis.date(cal.date())

    t = transactions
    # Compare the raw column with the day after the end (no cast) so the engine can prune rows
    # before it converts timestamps to days.
    end_excl = last_day + pd.Timedelta(days=1)
    bound = ibis.date(end_excl.date()) if t[ts].type().is_date() else lit_ts(end_excl)
    # Money is summed as DECIMAL (exact, so independent of the order parallel threads combine
    # partial sums: float sums differed in the last bit between runs); floats only at the end.
    rows = t.filter(t[ts] < bound).select(
        cid=t[customer_id], day=t[ts].cast("date"), amount=t[amount].cast(_MONEY)
    )
    days = rows.group_by(["cid", "day"]).aggregate(value=rows.amount.sum())

    # Without a holdout every row is a calibration row: skip the FILTER clauses.
    in_cal = None if obs is None else days.day <= cal_date
    aggs = {
        "first": days.day.min(),
        "last": days.day.max(where=in_cal),
        "n_cal": days.count(where=in_cal),
        "value_cal": days.value.sum(where=in_cal),
        # Days are unique per customer here, so the first day's value is well defined; the
        # mean of repeat days is (total - first) / repeats, one pass instead of a window.
        "first_value": days.value.argmin(days.day),
    }
    if obs is not None:
        aggs["n_hold"] = days.count(where=~in_cal)
        aggs["value_hold_total"] = days.value.sum(where=~in_cal)
    per = days.group_by("cid").aggregate(**aggs)
    per = per.filter(per["first"] <= cal_date)

    repeats = per.n_cal - 1
    cols = {
        customer_id: per.cid,
        "frequency": repeats,
        # float64 before dividing: Spark divides an integer by a decimal literal in DECIMAL,
        # rounded to 6 places
        "recency": per["last"].delta(per["first"], unit="day").cast("float64") / unit_days,
        "T": cal_date.delta(per["first"], unit="day").cast("float64") / unit_days,
        "monetary_value": ibis.ifelse(
            repeats > 0, (per.value_cal - per.first_value).cast("float64") / repeats, 0.0
        ),
    }
    if obs is not None:
        cols["frequency_holdout"] = per.n_hold
        cols["monetary_value_holdout"] = ibis.ifelse(
            per.n_hold > 0, per.value_hold_total.cast("float64") / per.n_hold, 0.0
        )
        cols["duration_holdout"] = ibis.literal((obs - cal).days / unit_days, type="float64")
    return per.select(**cols)


def btyd_summary(
    transactions: TableLike,
    calibration_end: DateLike,
    observation_end: DateLike | None = None,
    time_unit: str = "W",
    customer_id: str = "customer_id",
    ts: str = "ts",
    amount: str = "amount",
) -> pd.DataFrame:
    """The BTYD summary of a transactions table, as a pandas frame indexed by customer, sorted.

    ``transactions`` is a pandas frame (run on embedded DuckDB) or an Ibis table (run on its
    backend). Arguments and columns as in :func:`btyd_summary_expr`.

    Example (CDNOW sample, Fader-Hardie design)::

        btyd_summary(load_cdnow(sample=True), "1997-09-30", "1998-06-30")  # 2,357 customers

    Raises:
        DataError: as :func:`btyd_summary_expr`, and when no customer purchased on or before
            ``calibration_end``.
    """
    table = to_ibis(transactions)
    expr = btyd_summary_expr(
        table, calibration_end, observation_end, time_unit, customer_id, ts, amount
    )
    out = execute(expr, index=customer_id)
    if out.empty:
        # Only on the failure path: one more query to show where the data starts.
        earliest = table.select(customer_id, ts).order_by(ts).limit(1).to_pandas()
        where = (
            "the table is empty"
            if earliest.empty
            else "the earliest row is " + ", ".join(f"{k}={v}" for k, v in earliest.iloc[0].items())
        )
        raise DataError(
            f"transactions.{ts}: no purchase on or before calibration_end "
            f"{_day(calibration_end, 'calibration_end').date()}; {where}"
        )
    return out
