"""Churn labels at a cutoff as survival targets: ``duration_days`` (float) and ``event`` (0/1).

Labels read only the last purchase before the cutoff (to define who is at risk) and rows in
[cutoff, cutoff + horizon). Time arithmetic is done in whole microseconds from the cutoff, so
boundary comparisons (exactly D days, exactly at the horizon) are exact.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pandas as pd

from crm_models.features.engine import TableLike, as_timestamp, execute, lit_ts, to_ibis
from crm_models.features.snapshot import (
    MICROS_PER_DAY,
    CutoffLike,
    as_ts_column,
    day_micros,
    future,
    micros_between,
    past,
    require_columns,
)


def noncontractual_churn_labels_expr(
    transactions: ir.Table, cutoff: CutoffLike, horizon_days: float, inactivity_days: float
) -> ir.Table:
    """Non-contractual churn: the first time a customer goes ``inactivity_days`` without buying.

    With c = cutoff, H = ``horizon_days`` and D = ``inactivity_days``:

    - Population: customers whose last purchase before c, L0, has c - L0 < D (not yet churned).
    - Sequence: L0 and every purchase in [c, c + H), sorted. A purchase p churns when no
      purchase falls in the open interval (p, p + D) and p + D < c + H; the churn time is the
      first such p + D.
    - ``event`` = 1 and ``duration_days`` = churn time - c when a churn time exists; otherwise
      ``event`` = 0 and ``duration_days`` = H (censored at the horizon).
    """
    require_columns(transactions, "transactions", ["customer_id", "ts"])
    if not horizon_days > 0 or not inactivity_days > 0:
        raise ValueError(
            f"horizon_days and inactivity_days must be > 0, got {horizon_days}, {inactivity_days}"
        )
    c = as_timestamp(cutoff)
    d_us, h_us = day_micros(inactivity_days), day_micros(horizon_days)

    before = past(transactions, c)
    last = before.group_by("customer_id").aggregate(ts=as_ts_column(before, "ts").max())
    at_risk = last.filter(last.ts > lit_ts(c - pd.Timedelta(microseconds=d_us)))

    window = future(transactions, c, horizon_days)
    window = window.select("customer_id", ts=as_ts_column(window, "ts"))
    window = window.semi_join(at_risk, "customer_id")
    # No dedupe needed: of purchases at one instant, all but the last see a gap of 0 to the
    # next (no churn) and the last sees the true next purchase.
    seq = at_risk.union(window)
    seq = seq.select("customer_id", t=micros_between(seq.ts, lit_ts(c)))
    nxt = seq.t.lead().over(ibis.window(group_by=seq.customer_id, order_by=seq.t))
    churns = (nxt.isnull() | (nxt - seq.t >= d_us)) & (seq.t + d_us < h_us)
    seq = seq.mutate(churn_t=ibis.cases((churns, seq.t + d_us), else_=ibis.null("int64")))
    agg = seq.group_by("customer_id").aggregate(churn_t=seq.churn_t.min())
    event = agg.churn_t.notnull()
    return agg.select(
        "customer_id",
        duration_days=ibis.cases(
            (event, agg.churn_t.cast("float64") / MICROS_PER_DAY),
            else_=ibis.literal(float(horizon_days)),
        ),
        event=event.cast("int64"),
    )


def noncontractual_churn_labels(
    transactions: TableLike, cutoff: CutoffLike, horizon_days: float, inactivity_days: float
) -> pd.DataFrame:
    """Run :func:`noncontractual_churn_labels_expr`; pandas out, indexed by customer_id."""
    return execute(
        noncontractual_churn_labels_expr(
            to_ibis(transactions), cutoff, horizon_days, inactivity_days
        )
    )


def contractual_churn_labels_expr(
    subscriptions: ir.Table, cutoff: CutoffLike, horizon_days: float
) -> ir.Table:
    """Contractual churn: the subscription active at the cutoff ends within the horizon.

    - Population: subscriptions active at c (start_ts < c and end_ts null or >= c); with several
      per customer, the one with the latest start.
    - ``event`` = end_ts < c + H; ``duration_days`` = end_ts - c if the event happened, else H.
      A table without ``end_ts`` has no ended subscription (all censored).
    """
    require_columns(subscriptions, "subscriptions", ["customer_id", "start_ts"])
    if not horizon_days > 0:
        raise ValueError(f"horizon_days must be > 0, got {horizon_days}")
    c = as_timestamp(cutoff)
    h_us = day_micros(horizon_days)
    s = subscriptions
    end = as_ts_column(s, "end_ts") if "end_ts" in s.columns else ibis.null("timestamp")
    s = s.select("customer_id", start_ts=as_ts_column(s, "start_ts"), end_ts=end)
    active = s.filter((s.start_ts < lit_ts(c)) & (s.end_ts.isnull() | (s.end_ts >= lit_ts(c))))
    latest = ibis.row_number().over(
        ibis.window(group_by=active.customer_id, order_by=ibis.desc(active.start_ts))
    )
    active = active.mutate(rn=latest).filter(lambda t: t.rn == 0)
    end_us = micros_between(active.end_ts, lit_ts(c))
    event = end_us.notnull() & (end_us < h_us)
    return active.select(
        "customer_id",
        duration_days=ibis.cases(
            (event, end_us.cast("float64") / MICROS_PER_DAY),
            else_=ibis.literal(float(horizon_days)),
        ),
        event=event.cast("int64"),
    )


def contractual_churn_labels(
    subscriptions: TableLike, cutoff: CutoffLike, horizon_days: float
) -> pd.DataFrame:
    """Run :func:`contractual_churn_labels_expr`; pandas out, indexed by customer_id."""
    return execute(contractual_churn_labels_expr(to_ibis(subscriptions), cutoff, horizon_days))


__all__ = [
    "contractual_churn_labels",
    "contractual_churn_labels_expr",
    "noncontractual_churn_labels",
    "noncontractual_churn_labels_expr",
]
