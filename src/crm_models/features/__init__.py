"""Point-in-time feature builders (Ibis over DuckDB; the same expressions run on Spark).

Every builder takes raw contract tables and a cutoff: features use only rows with ts < cutoff,
labels only rows in [cutoff, cutoff + horizon).

- BTYD summary (``btyd.py``); RFM, behaviour, segments, churn labels (``rfm.py``,
  ``behaviour.py``, ``segments.py``, ``labels.py``); snapshots (``snapshot.py``);
- journeys and path tables (``paths.py``).
"""

from __future__ import annotations

from crm_models.features.behaviour import purchase_behaviour_expr, ticket_features_expr
from crm_models.features.btyd import btyd_summary, btyd_summary_expr
from crm_models.features.labels import (
    contractual_churn_labels,
    contractual_churn_labels_expr,
    noncontractual_churn_labels,
    noncontractual_churn_labels_expr,
)
from crm_models.features.paths import aggregate_paths, build_journeys
from crm_models.features.rfm import customer_features, customer_features_expr, rfm_expr
from crm_models.features.segments import rfm_segments, rfm_segments_expr
from crm_models.features.snapshot import Snapshot, future, past

__all__ = [
    "Snapshot",
    "aggregate_paths",
    "btyd_summary",
    "btyd_summary_expr",
    "build_journeys",
    "contractual_churn_labels",
    "contractual_churn_labels_expr",
    "customer_features",
    "customer_features_expr",
    "future",
    "noncontractual_churn_labels",
    "noncontractual_churn_labels_expr",
    "past",
    "purchase_behaviour_expr",
    "rfm_expr",
    "rfm_segments",
    "rfm_segments_expr",
    "ticket_features_expr",
]
