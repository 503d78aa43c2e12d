"""Behaviour features at a cutoff: purchase rhythm, recent trend, returns and support tickets.

Each builder is an Ibis expression over the raw contract table that reads only rows with
ts < cutoff and returns one row per customer. The RFM core and the assembled customer feature
table live in :mod:`crm_models.features.rfm`.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pandas as pd

from crm_models.data.contracts import COMPLAINT_KIND
from crm_models.features.engine import as_timestamp, lit_ts
from crm_models.features.snapshot import (
    CutoffLike,
    as_ts_column,
    days_between,
    exact_sum,
    past,
    require_columns,
)

SQUARED_DAYS_SCALE = 12
"""Decimals kept per squared gap deviation (days^2) in the reproducible variance sum."""


def purchase_behaviour_expr(
    transactions: ir.Table, cutoff: CutoffLike, window_days: float = 90
) -> ir.Table:
    """Gaps, last-vs-prior window activity and return rate per customer, from ts < cutoff.

    Columns:
    - ``gap_mean_days``: mean gap between consecutive purchases (rows, ordered by ts; purchases
      at the same instant give a gap of 0); null with a single purchase.
    - ``gap_std_days``: sample standard deviation (ddof=1) of those gaps; null with < 3 purchases.
    - ``freq_last_w`` / ``freq_prior_w``: purchases in [cutoff - w, cutoff) and
      [cutoff - 2w, cutoff - w); ``spend_last_w`` / ``spend_prior_w``: their amounts (0 if none);
      ``freq_trend`` / ``spend_trend``: last minus prior.
    - ``return_rate``: share of purchases with ``returned`` true, among rows where it is known;
      only when the table has a ``returned`` column.
    """
    require_columns(transactions, "transactions", ["customer_id", "ts", "amount"])
    c = as_timestamp(cutoff)
    w = pd.Timedelta(days=window_days)
    has_returned = "returned" in transactions.columns

    tx = past(transactions, c)
    cols = {"customer_id": tx.customer_id, "ts": as_ts_column(tx, "ts"), "amount": tx.amount}
    if has_returned:
        cols["returned"] = tx.returned.cast("int64")
    tx = tx.select(**cols)

    by_customer = ibis.window(group_by=tx.customer_id)
    in_order = ibis.window(group_by=tx.customer_id, order_by=tx.ts)
    n = tx.count().over(by_customer)
    # The mean gap telescopes to (last - first) / (n - 1): exact, with no float sum at all.
    gap_mean = ibis.cases(
        (
            n >= 2,
            days_between(tx.ts.max().over(by_customer), tx.ts.min().over(by_customer)) / (n - 1),
        ),
        else_=ibis.null("float64"),
    )
    gap = days_between(tx.ts, tx.ts.lag().over(in_order))
    rows = tx.mutate(gap_mean=gap_mean, sq_dev=(gap - gap_mean) ** 2)

    last_start, prior_start = lit_ts(c - w), lit_ts(c - 2 * w)
    in_last = rows.ts >= last_start
    in_prior = (rows.ts >= prior_start) & (rows.ts < last_start)
    aggs = {
        "n": rows.count(),
        "gap_mean_days": rows.gap_mean.max(),
        # Sum of squared deviations in DECIMAL so the std is bit-identical run to run.
        "ssd": exact_sum(rows.sq_dev, scale=SQUARED_DAYS_SCALE),
        "freq_last_w": rows.count(where=in_last),
        "freq_prior_w": rows.count(where=in_prior),
        "spend_last_w": exact_sum(rows.amount, where=in_last),
        "spend_prior_w": exact_sum(rows.amount, where=in_prior),
    }
    if has_returned:
        aggs["n_returned"] = rows.returned.sum()
        aggs["n_return_known"] = rows.returned.count()
    agg = rows.group_by("customer_id").aggregate(**aggs)

    out = {
        "customer_id": agg.customer_id,
        "gap_mean_days": agg.gap_mean_days,
        "gap_std_days": ibis.cases(
            (agg.n >= 3, (agg.ssd / (agg.n - 2)).sqrt()), else_=ibis.null("float64")
        ),
        "freq_last_w": agg.freq_last_w,
        "freq_prior_w": agg.freq_prior_w,
        "spend_last_w": agg.spend_last_w.fill_null(0.0),
        "spend_prior_w": agg.spend_prior_w.fill_null(0.0),
    }
    out["freq_trend"] = out["freq_last_w"] - out["freq_prior_w"]
    out["spend_trend"] = out["spend_last_w"] - out["spend_prior_w"]
    if has_returned:
        out["return_rate"] = ibis.cases(
            (agg.n_return_known > 0, agg.n_returned.cast("float64") / agg.n_return_known),
            else_=ibis.null("float64"),
        )
    return agg.select(**out)


def ticket_features_expr(tickets: ir.Table, cutoff: CutoffLike) -> ir.Table:
    """Support history per customer with >= 1 ticket before the cutoff.

    Columns: ``ticket_count``, ``complaint_count`` (``kind == 'complaint'``),
    ``days_since_last_ticket``, ``days_since_last_complaint`` (null without a complaint).
    Customers without tickets are absent here; :func:`~crm_models.features.rfm.customer_features`
    gives them 0 counts.
    """
    require_columns(tickets, "tickets", ["customer_id", "ts", "kind"])
    c = lit_ts(cutoff)
    t = past(tickets, cutoff)
    t = t.select(customer_id=t.customer_id, ts=as_ts_column(t, "ts"), kind=t.kind)
    is_complaint = t.kind == COMPLAINT_KIND
    agg = t.group_by("customer_id").aggregate(
        ticket_count=t.count(),
        complaint_count=t.count(where=is_complaint),
        last_ticket=t.ts.max(),
        last_complaint=t.ts.max(where=is_complaint),
    )
    return agg.select(
        "customer_id",
        "ticket_count",
        "complaint_count",
        days_since_last_ticket=days_between(c, agg.last_ticket),
        days_since_last_complaint=days_between(c, agg.last_complaint),
    )


TICKET_COLUMNS: tuple[str, ...] = (
    "ticket_count",
    "complaint_count",
    "days_since_last_ticket",
    "days_since_last_complaint",
)

__all__ = ["TICKET_COLUMNS", "purchase_behaviour_expr", "ticket_features_expr"]
