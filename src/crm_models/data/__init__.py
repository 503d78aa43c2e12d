"""Raw data: table contracts, sources, validation, the simulator and public datasets."""

from __future__ import annotations

from crm_models.data.cdnow import load_cdnow
from crm_models.data.contracts import CONTRACTS, TABLE_NAMES, TableContract

__all__ = ["CONTRACTS", "TABLE_NAMES", "TableContract", "load_cdnow"]
