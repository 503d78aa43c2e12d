"""SHAP for the churn models and the CLV regressors: why each customer's prediction is what it is.

Owns :class:`Explanation`, :func:`explain_survival` (one entry point for every churn model),
:func:`explain_regressor` (the xgboost CLV regressors), :func:`top_reasons` (each customer's
strongest drivers) and the beeswarm / bar plots.

Attributions are on the model's input features (after preprocessing) and are additive in the
explained output (``Explanation.output``): ``base_value + values.sum(axis=1) == output``.

Churn models are explained in ``predict_risk`` (higher = leaves sooner):

- Linear models (Cox, Weibull / log-normal AFT), which expose ``risk_coefficients_``: exact
  ``coef * (x - mean(background x))``.
- XGBoost: TreeSHAP from xgboost's own ``pred_contribs`` (last column = bias), times
  ``risk_sign_``, so contributions are in log hazard (cox) or minus log time (aft).
- Anything else (scikit-survival forests and boosting, which shap's TreeExplainer rejects):
  permutation SHAP on ``predict_risk`` against a small background, on a bounded random sample; the
  result says so (``is_sample``, ``n_rows`` of ``n_population``, ``seconds``).

CLV regressors (:mod:`crm_models.models.clv.regressors`) are explained in log expected spend, see
:func:`explain_regressor`: TreeSHAP for the Tweedie model and for each part of the two-part
model; the two-part total uses the rescale rule for the logistic link (exactly additive, not a
Shapley value of log P(buy)).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # plots are files for MLflow, never windows

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from crm_models.errors import ConfigError, ModelInputError

METHOD_LINEAR = "linear-exact"
METHOD_XGBOOST = "tree-shap (xgboost pred_contribs)"
METHOD_SHAP_TREE = "tree-shap (shap TreeExplainer)"
METHOD_PERMUTATION = "permutation (sample)"
METHOD_TWO_PART = "tree-shap (xgboost pred_contribs) + logistic rescale"

OUTPUT_RISK = "predicted risk"
OUTPUT_LOG_SPEND = "log expected spend"
OUTPUT_PURCHASE_LOGIT = "log-odds of a purchase"
OUTPUT_LOG_SPEND_GIVEN_PURCHASE = "log expected spend given a purchase"

_METHODS = ("auto", "linear", "xgboost", "shap-tree", "permutation")
_REGRESSOR_PARTS = ("total", "purchase", "spend")
# objectives whose margin is the log of the expected value
_LOG_LINK_OBJECTIVES = ("reg:tweedie", "reg:gamma", "count:poisson")
_PERMUTATION_CHUNK = 10  # customers per shap call: the granularity of the max_seconds check


@dataclass
class Explanation:
    """SHAP values of a model's output for a set of customers.

    ``values`` and ``data`` are (n_rows, n_features) on the model's input features, indexed like
    the explained rows of X. ``raw_data`` holds the same customers' features before preprocessing
    (pipelines only), so reasons can quote values in their own units. ``output`` names what the
    values add up to (``predict_risk`` for churn models, log expected spend for CLV regressors)
    and ``output_note`` says which way is up.
    """

    values: pd.DataFrame
    base_value: float
    data: pd.DataFrame
    method: str
    n_rows: int
    n_population: int
    seconds: float
    is_sample: bool
    raw_data: pd.DataFrame | None = None
    output: str = OUTPUT_RISK
    output_note: str = "higher = leaves sooner"

    @property
    def title(self) -> str:
        """How the values were computed, and on how many customers."""
        if self.is_sample:
            return (
                f"{self.method}: sample of {self.n_rows:,} of {self.n_population:,} customers"
                f" ({self.seconds:.1f} s)"
            )
        return f"{self.method}: {self.n_rows:,} customers"


def explain_survival(
    pipeline_or_model: Any,
    X: pd.DataFrame,
    background: pd.DataFrame | None = None,
    max_sample: int = 500,
    seed: int = 0,
    method: str = "auto",
    n_background: int = 100,
    max_evals: int = 500,
    max_seconds: float | None = None,
) -> Explanation:
    """SHAP values of ``predict_risk`` for the customers in ``X``.

    Parameters
    ----------
    pipeline_or_model : a fitted ``SurvivalPipeline`` (X holds raw features) or a fitted survival
        model (X holds its input features). A bare ``xgboost.Booster`` with a ``survival:cox`` or
        ``survival:aft`` objective is accepted too.
    X : customers to explain, in the same form as for ``predict_risk``.
    background : reference customers (the training data, same form as X) whose mean prediction
        is ``base_value``; defaults to X. Unused by TreeSHAP, which takes it from the trees.
    max_sample : permutation only: at most this many customers of X are explained (seeded sample).
    seed : seeds the sample, the background subsample and the permutations.
    method : ``"auto"`` (linear if the model has ``risk_coefficients_``, xgboost if it has
        ``booster_``, else permutation), or force ``"linear"``, ``"xgboost"``, ``"shap-tree"``
        (shap's TreeExplainer on the booster) or ``"permutation"``.
    n_background : permutation only: background rows (a seeded random subsample).
    max_evals : permutation only: model evaluations per customer (raised to ``2 * n_features + 1``
        if lower, one forward-and-back permutation); each costs ``n_background`` predictions,
        so a customer costs about ``max_evals * n_background`` rows of ``predict_risk``.
    max_seconds : permutation only: stop explaining (after the current chunk of 10 customers)
        once this budget is spent; ``n_rows`` says how many were explained. The values of the
        explained customers do not depend on the budget, only their number does.
    """
    if method not in _METHODS:
        raise ConfigError(f"unknown SHAP method {method!r}; choose one of {list(_METHODS)}")
    if not isinstance(X, pd.DataFrame):
        raise ModelInputError(f"X must be a pandas DataFrame of customers, got {type(X).__name__}")
    if len(X) == 0:
        raise ModelInputError("X has no rows: there is no customer to explain")
    if max_sample < 1:
        raise ConfigError(f"max_sample must be at least 1, got {max_sample}")

    start = time.perf_counter()
    model, to_model_input = _unwrap(pipeline_or_model)
    if method == "auto":
        if hasattr(model, "risk_coefficients_"):
            method = "linear"
        elif _is_booster(model) or hasattr(model, "booster_"):
            method = "xgboost"
        else:
            method = "permutation"

    n_population = len(X)
    rng = np.random.default_rng(seed)
    if method == "permutation":
        # a seeded random order, so that a prefix cut by max_seconds is still a random sample
        order = rng.permutation(n_population)[:max_sample]
        X_explained = X.iloc[order]
    else:
        X_explained = X
    Xm = to_model_input(X_explained)

    if method == "linear":
        bg = Xm if background is None else to_model_input(background)
        values, base, data, label = _linear(model, Xm, bg)
    elif method in ("xgboost", "shap-tree"):
        values, base, data, label = _tree(model, Xm, use_shap=method == "shap-tree")
    else:
        # the background stands for the whole population, not for the explained sample;
        # subsample before preprocessing so a million-row X costs nothing here
        bg_raw = X if background is None else background
        if len(bg_raw) > n_background:
            bg_raw = bg_raw.iloc[np.sort(rng.choice(len(bg_raw), n_background, replace=False))]
        deadline = None if max_seconds is None else start + max_seconds
        values, base, data, label = _permutation(
            model, Xm, to_model_input(bg_raw), max_evals, seed, deadline
        )
        # back to the population's row order, for tidy tables
        tidy = np.argsort(order[: len(values)], kind="stable")
        values, data = values.iloc[tidy], data.iloc[tidy]
        X_explained = X_explained.iloc[: len(values)].iloc[tidy]

    raw = X_explained if to_model_input is not _as_frame else None
    return Explanation(
        values=values,
        base_value=base,
        data=data,
        method=label,
        n_rows=len(values),
        n_population=n_population,
        seconds=time.perf_counter() - start,
        is_sample=len(values) < n_population,
        raw_data=raw,
    )


def explain_regressor(pipeline_or_model: Any, X: pd.DataFrame, part: str = "total") -> Explanation:
    """TreeSHAP of a CLV regressor for the customers in ``X``, additive in its log-scale output.

    Parameters
    ----------
    pipeline_or_model : a fitted ``CLVPipeline`` (X holds raw features), a fitted
        ``XGBTweedieCLV`` / ``TwoPartCLV`` (X holds its input features), or a bare
        ``xgboost.Booster`` with a log-link objective (``reg:tweedie``, ``reg:gamma``,
        ``count:poisson``).
    X : customers to explain, in the same form as for ``predict``.
    part : what to explain.

        - ``"total"``: log expected spend (``predict_margin``). For the Tweedie model (and a
          bare booster) these are xgboost's ``pred_contribs``, exact TreeSHAP of the margin;
          ``base_value`` includes the model's constant ``margin_offset_`` (its balance factor).
          For the two-part model, log E = log sigmoid(z) + log m with z the purchase logit and
          log m the spend booster's margin plus ``spend_log_offset_`` (smearing and balance,
          a constant that goes to ``base_value``). log m gets its TreeSHAP
          values. log sigmoid is not additive over trees, and the exact Shapley values of
          log sigmoid(z(x)) would need the classifier's output on every coalition of features
          (exponential, or a sampling approximation), so the logit's TreeSHAP values ``phi`` are
          rescaled by the secant slope ``s = (log sigmoid(z) - log sigmoid(z0)) / (z - z0)``
          between the base logit z0 and the customer's z (the rescale rule of DeepLIFT,
          Shrikumar et al. 2017; ``s`` in (0, 1), the derivative ``1 - sigmoid(z0)`` when
          z == z0): ``values = s * phi + psi``, ``base = log sigmoid(z0) + base of log m``.
          Exactly additive in log E, signs and within-part proportions kept; not Shapley
          values of log P(buy).
        - ``"purchase"`` (two-part only): TreeSHAP of the purchase logit (exact Shapley values).
        - ``"spend"`` (two-part only): TreeSHAP of log E[spend | purchase].

    Additivity ``base_value + values.sum(axis=1) == output`` is checked on every explained
    customer against the model's own prediction (xgboost computes in float32: a gap above
    1e-4 * (1 + |output|) is a bug and raises ``RuntimeError``).
    """
    if part not in _REGRESSOR_PARTS:
        raise ConfigError(f"unknown part {part!r}; choose one of {list(_REGRESSOR_PARTS)}")
    if not isinstance(X, pd.DataFrame):
        raise ModelInputError(f"X must be a pandas DataFrame of customers, got {type(X).__name__}")
    if len(X) == 0:
        raise ModelInputError("X has no rows: there is no customer to explain")

    start = time.perf_counter()
    model, to_model_input = _unwrap_regressor(pipeline_or_model)
    Xm = to_model_input(X)
    two_part = hasattr(model, "purchase_booster_")
    if part != "total" and not two_part:
        raise ConfigError(
            f"part={part!r} needs a two-part model; {type(model).__name__} has one output: "
            "use part='total'"
        )

    if two_part:
        data, dm = _booster_input(model, model.purchase_booster_, Xm)
        if part != "spend":
            phi, z0 = _pred_contribs(model.purchase_booster_, dm)
        if part != "purchase":
            psi, m0 = _pred_contribs(model.spend_booster_, dm)
            m0 += float(model.spend_log_offset_)
        if part == "purchase":
            contribs, base, label = phi, z0, METHOD_XGBOOST
            output, note = OUTPUT_PURCHASE_LOGIT, "higher = more likely to buy"
            expected = model.predict_purchase_logit(Xm)
        elif part == "spend":
            contribs, base, label = psi, m0, METHOD_XGBOOST
            output, note = OUTPUT_LOG_SPEND_GIVEN_PURCHASE, "higher = spends more"
            expected = model.predict_log_spend_given_purchase(Xm)
        else:
            z = z0 + phi.sum(axis=1)
            slope = _log_sigmoid_secant(z0, z)
            contribs = slope[:, None] * phi + psi
            base = float(_log_sigmoid(np.array([z0]))[0]) + m0
            label, output, note = METHOD_TWO_PART, OUTPUT_LOG_SPEND, "higher = spends more"
            expected = model.predict_margin(Xm)
    else:
        booster = _log_link_booster(model)
        data, dm = _booster_input(model, booster, Xm)
        contribs, base = _pred_contribs(booster, dm)
        base += float(getattr(model, "margin_offset_", 0.0))  # e.g. XGBTweedieCLV's balance
        label, output, note = METHOD_XGBOOST, OUTPUT_LOG_SPEND, "higher = spends more"
        expected = (
            booster.predict(dm, output_margin=True, validate_features=False)
            if _is_booster(model)
            else model.predict_margin(Xm)
        )

    expected = np.asarray(expected, dtype=float)
    gap = np.abs(base + contribs.sum(axis=1) - expected)
    if np.any(gap > 1e-4 * (1.0 + np.abs(expected))):
        raise RuntimeError(
            f"SHAP values of {type(model).__name__} do not add up to its {output} "
            f"(max gap {gap.max():.3g})"
        )
    values = pd.DataFrame(contribs, index=Xm.index, columns=list(data.columns))
    return Explanation(
        values=values,
        base_value=float(base),
        data=data.set_axis(Xm.index, axis=0),
        method=label,
        n_rows=len(values),
        n_population=len(X),
        seconds=time.perf_counter() - start,
        is_sample=False,
        raw_data=X if to_model_input is not _as_frame else None,
        output=output,
        output_note=note,
    )


def top_reasons(expl: Explanation, k: int = 3) -> pd.DataFrame:
    """Each customer's ``k`` largest contributions to the explained output, largest first.

    The output is ``expl.output``: risk for a churn model (rank 1 = strongest push towards
    leaving), log expected spend for a CLV regressor (rank 1 = strongest push towards spending
    more). One row per customer and rank: ``customer_id`` (the index of X), ``rank``,
    ``feature``, ``value`` and ``contribution``. ``value`` is in the feature's own
    units when the explanation carries raw data with that column (numeric features of a
    pipeline), else the model-input value (a one-hot 0/1, a missing indicator). A customer with
    fewer than ``k`` output-raising features gets its least output-lowering ones at the bottom
    ranks (negative contributions).
    """
    values = expl.values.to_numpy(dtype=float)
    n, n_features = values.shape
    k = min(int(k), n_features)
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    features = np.asarray(expl.values.columns, dtype=object)
    # stable on -values: ties keep column order, so the table is deterministic
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    shown = _display_values(expl)
    return pd.DataFrame(
        {
            "customer_id": np.repeat(expl.values.index.to_numpy(), k),
            "rank": np.tile(np.arange(1, k + 1), n),
            "feature": features[order].ravel(),
            "value": np.take_along_axis(shown, order, axis=1).ravel(),
            "contribution": np.take_along_axis(values, order, axis=1).ravel(),
        }
    )


def plot_beeswarm(expl: Explanation, max_display: int = 15) -> plt.Figure:
    """shap's beeswarm: one dot per customer and feature, coloured by the feature's value."""
    n_shown = min(max_display, expl.values.shape[1])
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.42 * n_shown))
    shap = _shap()
    shap.plots.beeswarm(
        _to_shap(expl), max_display=max_display, ax=ax, show=False, plot_size=None
    )
    note = f" ({expl.output_note})" if expl.output_note else ""
    _decorate(fig, ax, expl, f"contribution to {expl.output}{note}")
    return fig


def plot_bar(expl: Explanation, max_display: int = 15) -> plt.Figure:
    """shap's bar plot of the mean absolute contribution of each feature."""
    n_shown = min(max_display, expl.values.shape[1])
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.42 * n_shown))
    _shap().plots.bar(_to_shap(expl), max_display=max_display, ax=ax, show=False)
    _decorate(fig, ax, expl, f"mean |contribution to {expl.output}|")
    return fig


# --- methods ---------------------------------------------------------------------------------


def _linear(
    model: Any, Xm: pd.DataFrame, bg: pd.DataFrame
) -> tuple[pd.DataFrame, float, pd.DataFrame, str]:
    coef = getattr(model, "risk_coefficients_", None)
    if coef is None:
        raise ModelInputError(
            f"{type(model).__name__} is not a linear model (no risk_coefficients_); "
            "use method='auto'"
        )
    coef = pd.Series(coef, dtype=float)
    missing = [c for c in coef.index if c not in Xm.columns]
    if missing:
        raise ModelInputError(f"X lacks the model's feature(s) {missing}")
    cols = list(coef.index)
    x = Xm[cols].to_numpy(dtype=float)
    b = bg[cols].to_numpy(dtype=float)
    beta = coef.to_numpy()
    # Independent-features SHAP of a linear function: each feature's term minus its mean term.
    values = (x - b.mean(axis=0)) * beta
    # The mean prediction over the background equals mean(x_bg) @ beta + const, so the
    # attributions add up to predict_risk without knowing how the model centres its constant.
    base = float(np.mean(model.predict_risk(bg)))
    _check_additive(model, Xm, base, values)
    return (
        pd.DataFrame(values, index=Xm.index, columns=cols),
        base,
        Xm[cols],
        METHOD_LINEAR,
    )


def _tree(
    model: Any, Xm: pd.DataFrame, use_shap: bool
) -> tuple[pd.DataFrame, float, pd.DataFrame, str]:
    booster, sign = _booster_and_sign(model)
    data, dmatrix = _booster_input(model, booster, Xm)
    if use_shap:
        # For xgboost with tree_path_dependent, shap 0.51 calls the same C++ TreeSHAP inside
        # xgboost (pred_contribs) and then re-predicts to check additivity: this path measures
        # and checks shap's wrapper, not an independent algorithm.
        explainer = _shap().TreeExplainer(booster)
        contribs = np.asarray(explainer.shap_values(dmatrix), dtype=float)
        bias = float(np.ravel(explainer.expected_value)[0])
        label = METHOD_SHAP_TREE
    else:
        out = np.asarray(
            booster.predict(dmatrix, pred_contribs=True, validate_features=False), dtype=float
        )
        contribs, bias = out[:, :-1], float(out[0, -1])
        label = METHOD_XGBOOST
    values = pd.DataFrame(sign * contribs, index=Xm.index, columns=list(data.columns))
    return values, sign * bias, data, label


def _permutation(
    model: Any,
    Xm: pd.DataFrame,
    bg: pd.DataFrame,
    max_evals: int,
    seed: int,
    deadline: float | None,
) -> tuple[pd.DataFrame, float, pd.DataFrame, str]:
    shap = _shap()
    predict = _risk_function(model)
    cols = list(Xm.columns)

    def f(a: np.ndarray) -> np.ndarray:
        return np.asarray(predict(pd.DataFrame(a, columns=cols)), dtype=float)

    masker = shap.maskers.Independent(bg[cols].to_numpy(dtype=float), max_samples=len(bg))
    evals = max(int(max_evals), 2 * len(cols) + 1)
    x = Xm.to_numpy(dtype=float)
    # shap seeds numpy's global generator; give the caller's state back
    saved = np.random.get_state()
    try:
        explainer = shap.PermutationExplainer(f, masker, seed=seed)
        parts, base = [], np.nan
        for lo in range(0, len(x), _PERMUTATION_CHUNK):
            result = explainer(x[lo : lo + _PERMUTATION_CHUNK], max_evals=evals, silent=True)
            parts.append(np.asarray(result.values, dtype=float))
            base = float(np.ravel(result.base_values)[0])
            if deadline is not None and time.perf_counter() > deadline:
                break
    finally:
        np.random.set_state(saved)
    phi = np.concatenate(parts)
    n = len(phi)
    values = pd.DataFrame(phi, index=Xm.index[:n], columns=cols)
    return values, base, Xm.iloc[:n], METHOD_PERMUTATION


# --- helpers ---------------------------------------------------------------------------------


def _unwrap(obj: Any) -> tuple[Any, Any]:
    """(model, raw X -> model input) for a pipeline or a bare model."""
    if hasattr(obj, "model_") and hasattr(obj, "transform"):
        def to_model_input(X: pd.DataFrame) -> pd.DataFrame:
            return _as_frame(obj.transform(X), X.index)

        return obj.model_, to_model_input
    if not (_is_booster(obj) or hasattr(obj, "predict_risk")):
        raise ModelInputError(
            f"cannot explain a {type(obj).__name__}: pass a fitted SurvivalPipeline or a "
            "survival model with predict_risk"
        )
    return obj, _as_frame


def _as_frame(X: Any, index: pd.Index | None = None) -> pd.DataFrame:
    out = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
    if index is not None and not out.index.equals(index):
        out = out.set_axis(index, axis=0)
    return out


def _is_booster(obj: Any) -> bool:
    return type(obj).__name__ == "Booster" and type(obj).__module__.startswith("xgboost")


def _booster_and_sign(model: Any) -> tuple[Any, float]:
    """The xgboost Booster and the sign turning its margin into risk (+1 cox, -1 aft)."""
    if _is_booster(model):
        objective = json.loads(model.save_config())["learner"]["objective"]["name"]
        if objective == "survival:cox":
            return model, 1.0
        if objective == "survival:aft":
            return model, -1.0  # margin = log time: a longer predicted life is a lower risk
        raise ModelInputError(f"booster objective {objective!r} is not a survival objective")
    booster = getattr(model, "booster_", None)
    if booster is None:
        raise ModelInputError(
            f"{type(model).__name__} has no xgboost booster_: TreeSHAP needs an XGBSurvival model"
        )
    return booster, float(model.risk_sign_)


def _booster_input(model: Any, booster: Any, Xm: pd.DataFrame) -> tuple[pd.DataFrame, Any]:
    """The features the booster reads, as a float frame (for display) and as its DMatrix."""
    import xgboost as xgb

    if hasattr(model, "to_dmatrix"):
        # XGBSurvival: its own conversion (float32, sanitised feature names, fitted columns)
        data = model._input(Xm)
        return data.set_axis(Xm.index, axis=0), model.to_dmatrix(Xm)
    data = Xm.astype(float)
    names = booster.feature_names
    if names is not None:
        missing = [c for c in names if c not in data.columns]
        if missing:
            raise ModelInputError(f"X lacks the booster's feature(s) {missing}")
        data = data[list(names)]
    return data, xgb.DMatrix(data)


def _risk_function(model: Any) -> Any:
    if _is_booster(model):
        booster, sign = _booster_and_sign(model)
        return lambda X: sign * booster.predict(
            _booster_input(model, booster, X)[1], output_margin=True
        )
    return model.predict_risk


def _unwrap_regressor(obj: Any) -> tuple[Any, Any]:
    """(model, raw X -> model input) for a CLV pipeline, regressor or bare booster."""
    if hasattr(obj, "model_") and hasattr(obj, "transform"):
        return _unwrap(obj)
    if _is_booster(obj) or hasattr(obj, "booster_") or hasattr(obj, "purchase_booster_"):
        return obj, _as_frame
    raise ModelInputError(
        f"cannot explain a {type(obj).__name__}: pass a fitted CLVPipeline, a fitted "
        "XGBTweedieCLV / TwoPartCLV or an xgboost Booster"
    )


def _log_link_booster(model: Any) -> Any:
    """The booster of a one-part CLV model, whose margin must be a log expected value."""
    booster = model if _is_booster(model) else getattr(model, "booster_", None)
    if booster is None:
        raise ModelInputError(
            f"{type(model).__name__} is not fitted (no booster_): fit it before explaining"
        )
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective not in _LOG_LINK_OBJECTIVES:
        raise ModelInputError(
            f"booster objective {objective!r} has no log link: its margin is not a log expected "
            f"spend (expected one of {list(_LOG_LINK_OBJECTIVES)})"
        )
    return booster


def _pred_contribs(booster: Any, dmatrix: Any) -> tuple[np.ndarray, float]:
    """xgboost's TreeSHAP values (n, n_features) and its bias (the expected margin)."""
    out = np.asarray(
        booster.predict(dmatrix, pred_contribs=True, validate_features=False), dtype=float
    )
    return out[:, :-1], float(out[0, -1])


def _log_sigmoid(z: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -z)


def _log_sigmoid_secant(z0: float, z: np.ndarray) -> np.ndarray:
    """(log sigmoid(z) - log sigmoid(z0)) / (z - z0); the derivative where z is close to z0."""
    dz = z - z0
    near = np.abs(dz) < 1e-6
    safe = np.where(near, 1.0, dz)
    secant = (_log_sigmoid(z) - _log_sigmoid(np.full_like(z, z0))) / safe
    # d/dz log sigmoid(z) = 1 - sigmoid(z), at the midpoint: error O(dz^2) below 1e-12
    derivative = 1.0 - np.exp(_log_sigmoid(z0 + 0.5 * dz))
    return np.where(near, derivative, secant)


def _check_additive(model: Any, Xm: pd.DataFrame, base: float, values: np.ndarray) -> None:
    """Guard the linear contract on a few rows: a violated one is a bug, not a user error."""
    head = slice(0, min(len(Xm), 64))
    risk = np.asarray(model.predict_risk(Xm.iloc[head]), dtype=float)
    gap = np.abs(base + values[head].sum(axis=1) - risk)
    scale = 1.0 + np.abs(risk)
    if np.any(gap > 1e-6 * scale):
        raise RuntimeError(
            f"{type(model).__name__}.predict_risk is not linear in risk_coefficients_ "
            f"(max gap {gap.max():.3g}); linear SHAP would be wrong"
        )


def _display_values(expl: Explanation) -> np.ndarray:
    """Feature values for the reasons table: raw units where the raw column exists."""
    shown = expl.data.reindex(columns=expl.values.columns).to_numpy(dtype=float)
    raw = expl.raw_data
    if raw is None:
        return shown
    # raw_data holds the explained rows in the same order as values (see explain_survival)
    for j, col in enumerate(expl.values.columns):
        if col in raw.columns and pd.api.types.is_numeric_dtype(raw[col]):
            shown[:, j] = raw[col].to_numpy(dtype=float, na_value=np.nan)
    return shown


def _to_shap(expl: Explanation) -> Any:
    return _shap().Explanation(
        values=expl.values.to_numpy(dtype=float),
        base_values=np.full(len(expl.values), expl.base_value),
        data=expl.data.reindex(columns=expl.values.columns).to_numpy(dtype=float),
        feature_names=[str(c) for c in expl.values.columns],
    )


def _decorate(fig: plt.Figure, ax: plt.Axes, expl: Explanation, xlabel: str) -> None:
    ax.set_title(f"SHAP, {expl.title}", fontsize=12)
    ax.set_xlabel(xlabel)
    fig.tight_layout()


def _shap() -> Any:
    # shap imports numba and takes seconds: load it only when explaining
    import shap

    return shap
