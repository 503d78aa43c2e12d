"""Table contracts: the columns, types and keys of the six raw tables a user brings.

This module owns *what* a table must look like. Reading files lives in ``sources.py``,
checking a frame against a contract in ``validation.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnKind = Literal["id", "timestamp", "amount", "float", "int", "bool", "str"]
"""Logical column kinds.

- ``id``: customer / order identifier; integer or string, never null.
- ``timestamp``: parseable date or datetime, never null when required.
- ``amount``: money or cost; numeric, finite and >= 0.
- ``float`` / ``int`` / ``bool`` / ``str``: what they say.
"""


@dataclass(frozen=True)
class TableContract:
    """The contract of one raw table."""

    name: str
    required: dict[str, ColumnKind]
    optional: dict[str, ColumnKind] = field(default_factory=dict)
    key: tuple[str, ...] = ()
    """Columns that must be unique together (checked only when all are present)."""
    ts_columns: tuple[str, ...] = ()
    """Event-time columns: rows after the observation end are reported."""
    references_customers: bool = True
    """Rows must belong to a customer in the customers table (when it is given)."""
    description: str = ""

    @property
    def columns(self) -> dict[str, ColumnKind]:
        return {**self.required, **self.optional}


CONTRACTS: dict[str, TableContract] = {
    c.name: c
    for c in [
        TableContract(
            name="transactions",
            required={"customer_id": "id", "ts": "timestamp", "amount": "amount"},
            optional={
                "order_id": "id",
                "channel": "str",
                "category": "str",
                "quantity": "int",
                "returned": "bool",
            },
            key=("order_id",),
            ts_columns=("ts",),
            description="One row per purchase (or order line).",
        ),
        TableContract(
            name="customers",
            required={"customer_id": "id", "signup_ts": "timestamp"},
            optional={"acquisition_channel": "str", "region": "str"},
            key=("customer_id",),
            ts_columns=("signup_ts",),
            references_customers=False,
            description="One row per customer; any further columns are customer attributes.",
        ),
        TableContract(
            name="touchpoints",
            required={"customer_id": "id", "ts": "timestamp", "channel": "str"},
            optional={"campaign": "str", "cost": "amount", "converted": "bool", "order_id": "id"},
            ts_columns=("ts",),
            # Journeys include prospects who never converted, so their ids need not be customers.
            references_customers=False,
            description="Marketing contacts (impressions, clicks, emails) per prospect or customer.",
        ),
        TableContract(
            name="channel_spend",
            required={"channel": "str", "period_start": "timestamp", "spend": "amount"},
            optional={"period_end": "timestamp"},
            key=("channel", "period_start"),
            ts_columns=("period_start",),
            references_customers=False,
            description="Marketing spend per channel and period.",
        ),
        TableContract(
            name="tickets",
            required={"customer_id": "id", "ts": "timestamp", "kind": "str"},
            optional={"satisfaction": "float", "resolved_ts": "timestamp"},
            ts_columns=("ts",),
            description="Support tickets; kind 'complaint' marks complaints.",
        ),
        TableContract(
            name="subscriptions",
            required={"customer_id": "id", "start_ts": "timestamp"},
            optional={"end_ts": "timestamp"},
            key=("customer_id", "start_ts"),
            ts_columns=("start_ts",),
            description="Contracts; a null end_ts is an active subscription.",
        ),
    ]
}

TABLE_NAMES: tuple[str, ...] = tuple(CONTRACTS)

COMPLAINT_KIND = "complaint"
"""The ``tickets.kind`` value that marks a complaint."""
