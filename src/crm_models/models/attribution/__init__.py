"""Multi-touch attribution: rule-based heuristics, exact Markov removal effects, Shapley values,
and bootstrap intervals. Every model takes the path table of
:func:`crm_models.features.paths.aggregate_paths` (or a journeys table) and returns
``channel, conversions, value, share`` sorted by channel, conversions summing to the total.
"""

from __future__ import annotations

from crm_models.models.attribution.bootstrap import METHODS, bootstrap_attribution
from crm_models.models.attribution.data_driven import data_driven_attribution
from crm_models.models.attribution.heuristics import (
    HEURISTIC_METHODS,
    RESULT_COLUMNS,
    attribution_table,
    heuristic_attribution,
    touch_weights,
)
from crm_models.models.attribution.markov import (
    markov_attribution,
    removal_effects,
    transition_matrix,
)
from crm_models.models.attribution.shapley import (
    coalition_masks,
    coalition_table,
    shapley_attribution,
)

__all__ = [
    "HEURISTIC_METHODS",
    "METHODS",
    "RESULT_COLUMNS",
    "attribution_table",
    "bootstrap_attribution",
    "coalition_masks",
    "coalition_table",
    "data_driven_attribution",
    "heuristic_attribution",
    "markov_attribution",
    "removal_effects",
    "shapley_attribution",
    "touch_weights",
    "transition_matrix",
]
