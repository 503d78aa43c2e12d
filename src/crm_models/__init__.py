"""crm_models: a modelling workbench for customer analytics.

Survival churn, customer lifetime value and channel attribution on point-in-time features,
run from YAML configs and tracked in MLflow.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crm-models")
except PackageNotFoundError:  # pragma: no cover - source checkout without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
