"""Customer lifetime value models: the BTYD family (BG/NBD, MBG/NBD, Pareto/NBD, BG/BB) and the
Gamma-Gamma spend model, fitted by maximum likelihood on a ``btyd_summary``."""

from __future__ import annotations

from crm_models.models.clv.base import BTYDModel, ConvergenceReport, ModelFitError
from crm_models.models.clv.bgbb import BetaGeoBetaBinom
from crm_models.models.clv.bgnbd import BetaGeo
from crm_models.models.clv.gamma_gamma import GammaGamma
from crm_models.models.clv.mbgnbd import ModifiedBetaGeo
from crm_models.models.clv.pareto_nbd import ParetoNBD

__all__ = [
    "BTYDModel",
    "BetaGeo",
    "BetaGeoBetaBinom",
    "ConvergenceReport",
    "GammaGamma",
    "ModelFitError",
    "ModifiedBetaGeo",
    "ParetoNBD",
]

# --- registries a config names models by (task "clv"); ML regressors live in regressors.py ---
from crm_models.models.clv.regressors import (
    REGRESSORS,
    CLVPipeline,
    TwoPartCLV,
    XGBTweedieCLV,
)

PURCHASE_MODELS: dict[str, type[BTYDModel]] = {
    "bgnbd": BetaGeo,
    "mbgnbd": ModifiedBetaGeo,
    "pareto_nbd": ParetoNBD,
}
"""Continuous-time BTYD purchase models a config may use under ``model.name``."""
SPEND_MODELS: dict[str, type[BTYDModel]] = {"gamma_gamma": GammaGamma}
"""Spend models paired with a purchase model (``clv.spend_model``)."""

__all__ += [
    "PURCHASE_MODELS",
    "REGRESSORS",
    "SPEND_MODELS",
    "CLVPipeline",
    "TwoPartCLV",
    "XGBTweedieCLV",
]
