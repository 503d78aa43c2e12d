"""SHAP for the churn models: additive in predict_risk, agreeing across implementations, bounded
where it is expensive, and readable (top reasons, plots).

Sources of truth: the additivity identity base + sum(values) == predict_risk; the closed form of
SHAP for a linear model, coef * (x - mean(background)); shap's own TreeSHAP against xgboost's
pred_contribs; a simulated hazard in which one feature has no effect.
"""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from crm_models.errors import ConfigError, ModelInputError
from crm_models.explain import (
    METHOD_LINEAR,
    METHOD_PERMUTATION,
    METHOD_SHAP_TREE,
    METHOD_XGBOOST,
    explain_survival,
    plot_bar,
    plot_beeswarm,
    top_reasons,
)
from crm_models.models.survival import SurvivalPipeline
from crm_models.models.survival.aft import LogNormalAFT, WeibullAFT
from crm_models.models.survival.cox import CoxPH
from crm_models.models.survival.sksurv_models import GradientBoostingSurvival, RandomSurvivalForest
from crm_models.models.survival.xgb import XGBSurvival

# shap's own colour maps use matplotlib calls due for deprecation
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

# true log hazard ratios of the simulation; "noise" has none
BETA = {"strong": 1.2, "medium": 0.5, "noise": 0.0}


@pytest.fixture(scope="module")
def churn():
    """400 customers with exponential lifetimes, hazard exp(x'BETA + 0.6 [region == south])."""
    rng = np.random.default_rng(7)
    n = 400
    X = pd.DataFrame(
        {
            "strong": rng.normal(size=n),
            "medium": rng.normal(size=n),
            "noise": rng.normal(size=n),
            "region": rng.choice(["north", "south", "east"], size=n),
        },
        index=pd.Index(np.arange(n) * 3 + 100_000, name="customer_id"),
    )
    log_hazard = sum(b * X[c] for c, b in BETA.items()) + 0.6 * (X["region"] == "south")
    t = rng.exponential(30.0 * np.exp(-log_hazard))
    censor = rng.uniform(0, 90, size=n)
    X.loc[X.index[:8], "medium"] = np.nan  # the pipeline imputes and adds a missing indicator
    return X, np.minimum(t, censor), (t <= censor).astype(int)


def _numeric(X: pd.DataFrame) -> pd.DataFrame:
    return X[["strong", "medium", "noise"]].fillna(0.0)


@pytest.mark.parametrize("model_cls", [CoxPH, WeibullAFT, LogNormalAFT])
def test_linear_shap_is_exact_closed_form(churn, model_cls):
    X, d, e = churn
    pipe = SurvivalPipeline(model_cls()).fit(X, d, e)
    train = X.iloc[:300]
    expl = explain_survival(pipe, X.iloc[300:], background=train)
    assert expl.method == METHOD_LINEAR and not expl.is_sample
    assert expl.n_rows == expl.n_population == 100
    risk = pipe.predict_risk(X.iloc[300:])
    np.testing.assert_allclose(expl.base_value + expl.values.sum(axis=1), risk, rtol=0, atol=1e-6)
    # closed form: coef * (x - mean(background x)) in the model's input space
    coef = pipe.model_.risk_coefficients_
    bg_mean = pipe.transform(train).mean()
    expected = (pipe.transform(X.iloc[300:]) - bg_mean) * coef
    np.testing.assert_allclose(expl.values[coef.index], expected[coef.index], atol=1e-12)
    assert expl.base_value == pytest.approx(pipe.predict_risk(train).mean(), abs=1e-12)
    assert list(expl.values.index) == list(X.index[300:])
    assert "missingindicator_medium" in expl.values.columns  # explained after preprocessing


@pytest.mark.parametrize("objective", ["cox", "aft"])
def test_xgboost_tree_shap_is_additive_in_risk(churn, objective):
    X, d, e = churn
    m = XGBSurvival(objective=objective, n_estimators=60, max_depth=3, n_jobs=1)
    m.fit(_numeric(X), d, e)
    expl = explain_survival(m, _numeric(X))
    assert expl.method == METHOD_XGBOOST and not expl.is_sample and expl.n_rows == len(X)
    risk = m.predict_risk(_numeric(X))
    # xgboost computes in float32: exact up to its rounding (|risk| ~ 1)
    np.testing.assert_allclose(
        expl.base_value + expl.values.sum(axis=1), risk, rtol=1e-6, atol=1e-6
    )
    # risk_sign_: cox risk = log hazard (margin), aft risk = -log time (-margin)
    margin_sum = -(expl.base_value + expl.values.sum(axis=1)) if objective == "aft" else None
    if margin_sum is not None:
        np.testing.assert_allclose(margin_sum, m.predict_margin(_numeric(X)), rtol=1e-6, atol=1e-6)
    # the higher a customer's "strong" feature, the larger its push towards leaving, both ways
    corr = np.corrcoef(_numeric(X)["strong"], expl.values["strong"])[0, 1]
    assert corr > 0.8


@pytest.mark.parametrize("objective", ["cox", "aft"])
def test_native_pred_contribs_agree_with_shap_tree_explainer(churn, objective):
    import shap

    X, d, e = churn
    Xn = _numeric(X)
    m = XGBSurvival(objective=objective, n_estimators=60, max_depth=3, n_jobs=1).fit(Xn, d, e)
    native = explain_survival(m, Xn)
    via_shap = explain_survival(m, Xn, method="shap-tree")
    assert via_shap.method == METHOD_SHAP_TREE
    np.testing.assert_allclose(via_shap.values, native.values, atol=1e-6)
    assert via_shap.base_value == pytest.approx(native.base_value, abs=1e-6)
    # shap's public TreeExplainer delegates to xgboost for path-dependent TreeSHAP; force its own
    # C++ implementation (a private switch, test only) to compare two independent algorithms.
    own = shap.TreeExplainer(m.booster_)
    own.model.model_type = "internal"
    phi = own.shap_values(Xn.to_numpy(np.float32), check_additivity=False)
    np.testing.assert_allclose(m.risk_sign_ * phi, native.values, atol=1e-5)


@pytest.mark.filterwarnings("ignore:.*constant feature")
@pytest.mark.parametrize(
    "model",
    [
        CoxPH(),
        XGBSurvival(objective="cox", n_estimators=40, max_depth=2, learning_rate=0.1, n_jobs=1),
    ],
    ids=["cox", "xgb-cox"],
)
def test_no_effect_feature_gets_no_attribution_and_strong_one_ranks_first(churn, model):
    X, d, e = churn
    Xn = _numeric(X)
    # "silent" is constant in training, so the model cannot use it (dropped by Cox, never split
    # on by the trees); it varies among the customers explained
    model.fit(Xn.assign(silent=1.0), d, e)
    silent = np.random.default_rng(0).normal(size=len(Xn))
    expl = explain_survival(model, Xn.assign(silent=silent))
    assert np.all(expl.values["silent"] == 0.0)  # SHAP's dummy axiom, exactly
    importance = expl.values.abs().mean().sort_values(ascending=False)
    assert list(importance.index[:2]) == ["strong", "medium"]
    # "noise" has no true effect; what a model attributes to it is what it overfitted (trees
    # split on noise a little on 400 rows: ~9% of "strong" here)
    assert importance["noise"] < 0.2 * importance["strong"]
    # a customer far out on "strong" has it as the top reason
    reasons = top_reasons(expl, k=1).set_index("customer_id")
    assert reasons.loc[Xn["strong"].idxmax(), "feature"] == "strong"


def test_top_reasons_are_each_customers_largest_contributions(churn):
    X, d, e = churn
    pipe = SurvivalPipeline(CoxPH()).fit(X, d, e)
    expl = explain_survival(pipe, X.iloc[:50])
    reasons = top_reasons(expl, k=3)
    assert list(reasons.columns) == ["customer_id", "rank", "feature", "value", "contribution"]
    assert len(reasons) == 50 * 3
    assert (reasons["rank"].to_numpy().reshape(50, 3) == [1, 2, 3]).all()
    assert list(reasons["customer_id"].iloc[::3]) == list(X.index[:50])
    # descending within each customer, and equal to a brute-force sort of that customer's row
    contrib = reasons["contribution"].to_numpy().reshape(50, 3)
    assert np.all(np.diff(contrib, axis=1) <= 0)
    for cid in X.index[[0, 17, 49]]:
        top = expl.values.loc[cid].sort_values(ascending=False).head(3)
        got = reasons[reasons["customer_id"] == cid]
        assert list(got["feature"]) == list(top.index)
        np.testing.assert_allclose(got["contribution"], top.to_numpy())
    # values are quoted in the customer's own units (raw "strong", not its standardized value)
    strong = reasons[reasons["feature"] == "strong"]
    np.testing.assert_allclose(strong["value"], X.loc[strong["customer_id"], "strong"])
    # one-hot columns show their 0/1 indicator
    assert set(reasons.loc[reasons["feature"].str.startswith("region_"), "value"]) <= {0.0, 1.0}
    assert len(top_reasons(expl, k=99)) == 50 * expl.values.shape[1]


def test_permutation_sample_is_bounded_seeded_and_reports_its_cost(churn):
    X, d, e = churn
    Xn = _numeric(X)
    gbs = GradientBoostingSurvival(n_estimators=30, max_depth=2).fit(Xn, d, e)
    expl = explain_survival(gbs, Xn, max_sample=12, n_background=20, max_evals=40, seed=3)
    assert expl.method == METHOD_PERMUTATION
    assert expl.is_sample and expl.n_rows == 12 and expl.n_population == len(X)
    assert expl.values.shape == (12, 3) and expl.values.index.isin(X.index).all()
    assert expl.seconds > 0
    assert "sample of 12 of 400 customers" in expl.title
    # permutation SHAP telescopes: additive in predict_risk exactly
    risk = gbs.predict_risk(Xn.loc[expl.values.index])
    np.testing.assert_allclose(expl.base_value + expl.values.sum(axis=1), risk, atol=1e-9)
    again = explain_survival(gbs, Xn, max_sample=12, n_background=20, max_evals=40, seed=3)
    pd.testing.assert_frame_equal(again.values, expl.values)
    other = explain_survival(gbs, Xn, max_sample=12, n_background=20, max_evals=40, seed=4)
    assert not other.values.index.equals(expl.values.index)
    # a time budget cuts the seeded order after a chunk of 10; the values do not change
    cut = explain_survival(
        gbs, Xn, max_sample=12, n_background=20, max_evals=40, seed=3, max_seconds=0.0
    )
    assert cut.is_sample and cut.n_rows == 10 and cut.values.index.isin(expl.values.index).all()
    pd.testing.assert_frame_equal(cut.values, expl.values.loc[cut.values.index])
    # a population within the bound is explained whole, and says so
    small = explain_survival(gbs, Xn.iloc[:10], max_sample=12, n_background=20, max_evals=40)
    assert not small.is_sample and small.n_rows == small.n_population == 10


def test_random_survival_forest_takes_the_sample_path(churn):
    X, d, e = churn
    Xn = _numeric(X)
    rsf = RandomSurvivalForest(n_estimators=10, max_depth=4, min_samples_leaf=10, n_jobs=1)
    expl = explain_survival(rsf.fit(Xn, d, e), Xn, max_sample=4, n_background=10, max_evals=14)
    assert expl.method == METHOD_PERMUTATION and expl.is_sample and expl.n_rows == 4
    risk = rsf.predict_risk(Xn.loc[expl.values.index])
    np.testing.assert_allclose(expl.base_value + expl.values.sum(axis=1), risk, rtol=1e-9)


def test_permutation_equals_the_closed_form_on_a_linear_model(churn):
    # with an independent masker, SHAP of a linear function is coef * (x - mean(background))
    # whatever the permutation: the sampler must reproduce the exact values
    X, d, e = churn
    pipe = SurvivalPipeline(CoxPH()).fit(X, d, e)
    background = X.iloc[:20]
    perm = explain_survival(
        pipe, X, background=background, method="permutation", max_sample=15, n_background=20,
        max_evals=1,
    )
    exact = explain_survival(pipe, X.loc[perm.values.index], background=background)
    np.testing.assert_allclose(perm.values, exact.values, atol=1e-9)
    assert perm.base_value == pytest.approx(exact.base_value, abs=1e-9)


def test_plots_render_to_png_with_method_and_sample_size_in_title(churn):
    X, d, e = churn
    pipe = SurvivalPipeline(CoxPH()).fit(X, d, e)
    perm = explain_survival(
        pipe, X, method="permutation", max_sample=15, n_background=20, max_evals=1
    )
    for expl in (explain_survival(pipe, X), perm):
        for plot in (plot_beeswarm, plot_bar):
            fig = plot(expl, max_display=4)
            title = fig.axes[0].get_title()
            assert expl.method in title
            assert ("sample of 15 of 400 customers" in title) == expl.is_sample
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
            assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n" and len(buf.getvalue()) > 5_000
            plt.close(fig)


def test_bad_requests_get_clear_errors(churn):
    X, d, e = churn
    Xn = _numeric(X)
    xgb_model = XGBSurvival(objective="cox", n_estimators=5, n_jobs=1).fit(Xn, d, e)
    with pytest.raises(ConfigError, match="unknown SHAP method"):
        explain_survival(xgb_model, Xn, method="kernel")
    with pytest.raises(ModelInputError, match="not a linear model"):
        explain_survival(xgb_model, Xn, method="linear")
    with pytest.raises(ModelInputError, match="no rows"):
        explain_survival(xgb_model, Xn.iloc[:0])
    with pytest.raises(ModelInputError, match="cannot explain"):
        explain_survival(object(), Xn)
