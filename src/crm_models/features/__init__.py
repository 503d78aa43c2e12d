"""Point-in-time feature builders (Ibis over DuckDB; the same expressions run on Spark).

Every builder takes raw contract tables and a cutoff: features use only rows with ts < cutoff,
labels only rows in [cutoff, cutoff + horizon).
"""

from __future__ import annotations

# --- btyd summary (btyd.py) ---
from crm_models.features.btyd import btyd_summary, btyd_summary_expr

# --- RFM, behaviour, segments, churn labels (rfm.py, behaviour.py, segments.py, labels.py) ---
# (exports added by those modules' author)

__all__ = [
    "btyd_summary",
    "btyd_summary_expr",
]
