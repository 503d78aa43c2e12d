"""RFM features and the customer feature table at a cutoff (RFM + behaviour + tickets + attributes).

:func:`customer_features_expr` is the one Ibis expression a model's design matrix starts from;
:func:`customer_features` runs it (DuckDB by default) and returns pandas indexed by customer_id.
Only rows with ts < cutoff are read; days are floats computed from timestamps.
"""

from __future__ import annotations

import ibis.expr.types as ir
import pandas as pd

from crm_models.errors import DataError
from crm_models.features.behaviour import (
    TICKET_COLUMNS,
    purchase_behaviour_expr,
    ticket_features_expr,
)
from crm_models.features.engine import TableLike, as_timestamp, execute, lit_ts, to_ibis
from crm_models.features.snapshot import (
    CutoffLike,
    as_ts_column,
    days_between,
    exact_sum,
    past,
    require_columns,
)

RFM_COLUMNS: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "purchase_days",
    "monetary_total",
    "monetary_mean",
    "tenure_days",
)


def rfm_expr(transactions: ir.Table, cutoff: CutoffLike) -> ir.Table:
    """RFM per customer with >= 1 purchase before the cutoff.

    - ``recency_days``: cutoff - last purchase; ``tenure_days``: cutoff - first purchase.
    - ``frequency``: purchases (rows); ``purchase_days``: distinct calendar days with a purchase.
    - ``monetary_total``: sum of amounts (reproducible DECIMAL sum, 6 decimals per row);
      ``monetary_mean``: total / frequency.
    """
    require_columns(transactions, "transactions", ["customer_id", "ts", "amount"])
    c = lit_ts(cutoff)
    tx = past(transactions, cutoff)
    ts = as_ts_column(tx, "ts")
    agg = tx.group_by("customer_id").aggregate(
        first_ts=ts.min(),
        last_ts=ts.max(),
        frequency=tx.count(),
        purchase_days=ts.date().nunique(),
        monetary_total=exact_sum(tx.amount),
    )
    return agg.select(
        "customer_id",
        recency_days=days_between(c, agg.last_ts),
        frequency=agg.frequency,
        purchase_days=agg.purchase_days,
        monetary_total=agg.monetary_total.fill_null(0.0),
        monetary_mean=agg.monetary_total.fill_null(0.0) / agg.frequency,
        tenure_days=days_between(c, agg.first_ts),
    )


def customer_features_expr(
    transactions: ir.Table,
    cutoff: CutoffLike,
    customers: ir.Table | None = None,
    tickets: ir.Table | None = None,
    window_days: float = 90,
) -> ir.Table:
    """The customer feature table at ``cutoff`` as one Ibis expression.

    One row per customer with >= 1 purchase before the cutoff (and, when ``customers`` is
    given, a row there with ``signup_ts < cutoff``; ``tenure_days`` then counts from signup).
    Columns: :data:`RFM_COLUMNS`, the behaviour columns of
    :func:`~crm_models.features.behaviour.purchase_behaviour_expr`, the ticket columns of
    :func:`~crm_models.features.behaviour.ticket_features_expr` when ``tickets`` is given
    (0 counts for customers without tickets), and every customer attribute except
    ``signup_ts`` (joined as they are: attributes are assumed static).
    """
    c = as_timestamp(cutoff)
    behaviour = purchase_behaviour_expr(transactions, c, window_days)
    behaviour_names = [col for col in behaviour.columns if col != "customer_id"]
    feats = rfm_expr(transactions, c).join(behaviour, "customer_id")

    attr_names: list[str] = []
    if customers is not None:
        require_columns(customers, "customers", ["customer_id", "signup_ts"])
        attr_names = [col for col in customers.columns if col not in ("customer_id", "signup_ts")]
        clash = sorted(set(attr_names) & {*feats.columns, *TICKET_COLUMNS})
        if clash:
            raise DataError(
                f"table 'customers': attribute column(s) {clash} clash with feature names; "
                "rename them in the column mapping"
            )
        signed_up = past(customers, c, ts="signup_ts")
        signed_up = signed_up.select(
            "customer_id",
            *attr_names,
            signup_tenure_days=days_between(lit_ts(c), as_ts_column(signed_up, "signup_ts")),
        )
        feats = feats.join(signed_up, "customer_id")
        feats = feats.mutate(tenure_days=feats.signup_tenure_days).drop("signup_tenure_days")

    ticket_names: list[str] = []
    if tickets is not None:
        tk = ticket_features_expr(tickets, c).rename(tk_customer_id="customer_id")
        feats = feats.left_join(tk, feats.customer_id == tk.tk_customer_id).drop("tk_customer_id")
        feats = feats.mutate(
            ticket_count=feats.ticket_count.fill_null(0),
            complaint_count=feats.complaint_count.fill_null(0),
        )
        ticket_names = list(TICKET_COLUMNS)

    return feats.select("customer_id", *RFM_COLUMNS, *behaviour_names, *ticket_names, *attr_names)


def customer_features(
    transactions: TableLike,
    cutoff: CutoffLike,
    customers: TableLike | None = None,
    tickets: TableLike | None = None,
    window_days: float = 90,
) -> pd.DataFrame:
    """Run :func:`customer_features_expr`; pandas in or Ibis in, pandas out (index customer_id)."""
    expr = customer_features_expr(
        to_ibis(transactions),
        cutoff,
        customers=None if customers is None else to_ibis(customers),
        tickets=None if tickets is None else to_ibis(tickets),
        window_days=window_days,
    )
    return execute(expr)


__all__ = ["RFM_COLUMNS", "customer_features", "customer_features_expr", "rfm_expr"]
