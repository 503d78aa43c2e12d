"""Customer segments from the feature table: RFM scores, named RFM segments, value tiers,
activity status and lifecycle stage.

Scores and tiers are ranks over the customers of one snapshot, so they are relative to that
population. Every rule is deterministic under ties: tied customers always share a score.

RFM scores (1-5, 5 = best)
    ``score = 1 + floor(5 * below / n)`` where ``below`` is the number of customers strictly
    worse (longer recency; fewer purchases; lower ``monetary_total``) and ``n`` the number of
    customers. With distinct values each score holds 20% of customers; ties share the lower
    score. (``rank() / n`` rather than ``ntile``: ``ntile`` splits ties arbitrarily.)

Named RFM segment (R score x FM score, FM = round-half-up of (F + M) / 2)::

    R \\ FM  1               2                   3                   4            5
    5       new             potential_loyalist  potential_loyalist  champions    champions
    4       promising       potential_loyalist  loyal               champions    champions
    3       about_to_sleep  about_to_sleep      need_attention      loyal        loyal
    2       hibernating     hibernating         at_risk             at_risk      cannot_lose
    1       lost            lost                at_risk             at_risk      cannot_lose

Value tier
    ``high``: the top 20% by ``monetary_total`` (fewer than 20% of customers spent strictly
    more), ``mid``: the next 30% (fewer than 50% spent more), ``low``: the rest.

Activity status (``recency_days`` against two thresholds)
    ``active``: recency < ``active_days`` (default ``inactivity_days / 2``);
    ``silent``: recency < ``inactivity_days`` (default 90, the churn labels' default, so that
    ``lost`` customers are exactly those the non-contractual churn population excludes);
    ``lost``: otherwise.

Lifecycle stage, first matching rule wins
    1. ``new``: ``tenure_days < new_days`` (default 90);
    2. ``lost``: activity status ``lost``;
    3. ``at_risk``: activity status ``silent``;
    4. ``loyal``: active and ``f_score >= 4``;
    5. ``repeat``: ``frequency >= 2``;
    6. ``new``: otherwise (an active single-purchase customer is a new buyer, whatever the
       signup date).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pandas as pd

from crm_models.features.engine import execute, to_ibis
from crm_models.features.snapshot import require_columns

RFM_SEGMENT_GRID: dict[int, tuple[str, str, str, str, str]] = {
    # r_score: segment for fm_score = 1, 2, 3, 4, 5
    5: ("new", "potential_loyalist", "potential_loyalist", "champions", "champions"),
    4: ("promising", "potential_loyalist", "loyal", "champions", "champions"),
    3: ("about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"),
    2: ("hibernating", "hibernating", "at_risk", "at_risk", "cannot_lose"),
    1: ("lost", "lost", "at_risk", "at_risk", "cannot_lose"),
}
"""The R x FM map behind ``rfm_segment`` (see the module docstring)."""

SEGMENT_COLUMNS: tuple[str, ...] = (
    "r_score",
    "f_score",
    "m_score",
    "rfm_segment",
    "value_tier",
    "activity_status",
    "lifecycle_stage",
)

_REQUIRED = ["customer_id", "recency_days", "frequency", "monetary_total", "tenure_days"]


def _score(better_is_higher: ir.Value, n: ir.IntegerValue) -> ir.IntegerValue:
    # ibis.rank() is the 0-based SQL RANK: the number of rows strictly before in this order.
    below = ibis.rank().over(order_by=better_is_higher)
    return (1 + (below * 5) // n).cast("int64")


def rfm_segments_expr(
    features: ir.Table,
    active_days: float | None = None,
    inactivity_days: float = 90,
    new_days: float = 90,
) -> ir.Table:
    """Add the :data:`SEGMENT_COLUMNS` to a customer feature table (rules: module docstring)."""
    require_columns(features, "features", _REQUIRED)
    if active_days is None:
        active_days = inactivity_days / 2
    if not 0 < active_days <= inactivity_days:
        raise ValueError(
            f"need 0 < active_days <= inactivity_days, got {active_days} and {inactivity_days}"
        )
    f = features
    n = f.customer_id.count().over(ibis.window())
    r_score = _score(ibis.desc(f.recency_days), n)
    f_score = _score(f.frequency, n)
    m_score = _score(f.monetary_total, n)
    spent_more = ibis.rank().over(order_by=ibis.desc(f.monetary_total))
    value_tier = ibis.cases(
        (spent_more * 5 < n, "high"),  # share spending strictly more < 20%
        (spent_more * 2 < n, "mid"),  # ... < 50%
        else_="low",
    )
    activity = ibis.cases(
        (f.recency_days < active_days, "active"),
        (f.recency_days < inactivity_days, "silent"),
        else_="lost",
    )
    scored = f.mutate(
        r_score=r_score,
        f_score=f_score,
        m_score=m_score,
        value_tier=value_tier,
        activity_status=activity,
    )
    fm = (scored.f_score + scored.m_score + 1) // 2
    cell = scored.r_score * 10 + fm
    segment = ibis.cases(
        *[
            (cell == r * 10 + fm_value, name)
            for r, row in RFM_SEGMENT_GRID.items()
            for fm_value, name in enumerate(row, start=1)
        ],
        else_=ibis.null("string"),
    )
    lifecycle = ibis.cases(
        (scored.tenure_days < new_days, "new"),
        (scored.activity_status == "lost", "lost"),
        (scored.activity_status == "silent", "at_risk"),
        ((scored.activity_status == "active") & (scored.f_score >= 4), "loyal"),
        (scored.frequency >= 2, "repeat"),
        else_="new",
    )
    out = scored.mutate(rfm_segment=segment, lifecycle_stage=lifecycle)
    return out.select(*features.columns, *SEGMENT_COLUMNS)


def rfm_segments(
    features: pd.DataFrame | ir.Table,
    active_days: float | None = None,
    inactivity_days: float = 90,
    new_days: float = 90,
) -> pd.DataFrame:
    """The feature table with :data:`SEGMENT_COLUMNS` added; pandas frames may be indexed by
    customer_id (as :func:`~crm_models.features.rfm.customer_features` returns them)."""
    if isinstance(features, pd.DataFrame) and "customer_id" not in features.columns:
        features = features.reset_index()
    expr = rfm_segments_expr(
        to_ibis(features),
        active_days=active_days,
        inactivity_days=inactivity_days,
        new_days=new_days,
    )
    return execute(expr)


__all__ = ["RFM_SEGMENT_GRID", "SEGMENT_COLUMNS", "rfm_segments", "rfm_segments_expr"]
