"""The survival model family behind one interface.

Sources: scikit-survival's peers on its own GBSG2 data (Harrell's C of CoxPHSurvivalAnalysis and
GradientBoostingSurvivalAnalysis on one split; sksurv's own survival functions), lifelines' fitters
and published rossi estimates, xgboost's own AFT likelihood, Kaplan-Meier, and invariants (curves
monotone in [0, 1], risk order = survival order, linear risk = X @ coefficients, SHAP additivity).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines import WeibullAFTFitter
from lifelines.datasets import load_rossi
from sklearn.base import clone
from sklearn.model_selection import train_test_split
from sksurv.datasets import load_gbsg2
from sksurv.ensemble import GradientBoostingSurvivalAnalysis
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.preprocessing import OneHotEncoder

from crm_models.errors import ConfigError, ModelInputError
from crm_models.models.survival import (
    MODELS,
    CoxPH,
    GradientBoostingSurvival,
    LogNormalAFT,
    RandomSurvivalForest,
    SurvivalPipeline,
    WeibullAFT,
    XGBSurvival,
    XGBSurvivalAFT,
    XGBSurvivalCox,
)

# small ensembles keep the file fast; the GBSG2 comparisons below use their own fixed settings
# one xgboost thread: on a loaded machine OpenMP's spinning threads make tiny fits take seconds
FAST = {
    "xgb_aft": {"n_estimators": 30, "n_jobs": 1},
    "xgb_cox": {"n_estimators": 30, "n_jobs": 1},
    "rsf": {"n_estimators": 20},
    "gbsa": {"n_estimators": 30},
}
LINEAR = ["cox_ph", "weibull_aft", "lognormal_aft"]
# one fixed setting for both objectives with sksurv's number and depth of trees (100, depth 3); a
# lower learning rate than sksurv's 0.1 because xgboost takes Newton steps where sksurv fits plain
# gradients. Chosen on GBSG2 splits with seeds 1-5, never on the seed-0 split tested here.
XGB_GBSG2 = {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.02, "n_jobs": 1}


def make(name: str, **params):
    return MODELS[name](**{**FAST.get(name, {}), **params})


def harrell(time, event, risk) -> float:
    return concordance_index_censored(np.asarray(event, bool), np.asarray(time, float), risk)[0]


@pytest.fixture(scope="module")
def gbsg2():
    """GBSG2 one-hot encoded as in scikit-survival's docs; one 75/25 split, seed 0."""
    X, y = load_gbsg2()
    X = OneHotEncoder().fit_transform(X)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    return Xtr, Xte, ytr, yte


@pytest.fixture(scope="module")
def fitted(gbsg2):
    """Every registered model, fitted once on the GBSG2 training split."""
    Xtr, _, ytr, _ = gbsg2
    return {name: make(name).fit(Xtr, ytr["time"], ytr["cens"]) for name in MODELS}


@pytest.fixture(scope="module")
def small():
    """60 rossi rows: enough for every model, fast for the degenerate cases."""
    df = load_rossi().sample(60, random_state=1).reset_index(drop=True)
    X = df.drop(columns=["week", "arrest"]).astype(float)
    return X, df["week"].to_numpy(float), df["arrest"].to_numpy()


# -- acceptance on GBSG2 ------------------------------------------------------------------------


def test_cox_c_index_equals_scikit_survival_coxph_on_gbsg2(gbsg2):
    Xtr, Xte, ytr, yte = gbsg2
    ours = CoxPH(penalizer=0.0).fit(Xtr, ytr["time"], ytr["cens"])
    ref = CoxPHSurvivalAnalysis().fit(Xtr, ytr)
    c_ours = harrell(yte["time"], yte["cens"], ours.predict_risk(Xte))
    c_ref = harrell(yte["time"], yte["cens"], ref.predict(Xte))
    assert c_ours == pytest.approx(c_ref, abs=0.005)
    assert c_ours > 0.65  # GBSG2 Cox models reach about 0.69 held out
    np.testing.assert_allclose(ours.coef_[Xtr.columns].to_numpy(), ref.coef_, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("objective", ["aft", "cox"])
def test_xgb_survival_within_002_of_sksurv_gradient_boosting_on_gbsg2(gbsg2, objective):
    Xtr, Xte, ytr, yte = gbsg2
    ref = GradientBoostingSurvivalAnalysis(random_state=0).fit(Xtr, ytr)  # 100 trees, depth 3
    ours = XGBSurvival(objective, **XGB_GBSG2).fit(Xtr, ytr["time"], ytr["cens"])
    c_ref = harrell(yte["time"], yte["cens"], ref.predict(Xte))
    c_ours = harrell(yte["time"], yte["cens"], ours.predict_risk(Xte))
    assert c_ours >= c_ref - 0.02, (c_ours, c_ref)


def test_every_model_ranks_gbsg2_better_than_chance(gbsg2, fitted):
    _, Xte, _, yte = gbsg2
    for name, model in fitted.items():
        assert harrell(yte["time"], yte["cens"], model.predict_risk(Xte)) > 0.62, name


# -- survival curves ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_survival_curves_are_monotone_probabilities_consistent_with_churn(gbsg2, fitted, name):
    _, Xte, ytr, _ = gbsg2
    model = fitted[name]
    t_max = float(ytr["time"].max())
    times = np.array([0.0, 100, 365, 730, 1095, 1825, t_max, 2 * t_max])
    surv = model.predict_survival(Xte, times)
    assert surv.shape == (len(Xte), len(times))
    assert np.all((surv >= 0) & (surv <= 1))
    assert np.all(np.diff(surv, axis=1) <= 1e-12)
    np.testing.assert_allclose(surv[:, 0], 1.0)  # nobody has left at t = 0
    assert surv[:, 5].mean() < 0.9  # and many have by 5 years
    for j, h in [(2, 365.0), (4, 1095.0)]:
        np.testing.assert_allclose(model.predict_churn_probability(Xte, h), 1 - surv[:, j])
    rmst = model.predict_expected_lifetime(Xte, 1095.0)
    assert np.all((rmst > 0) & (rmst <= 1095.0))
    # unsorted and repeated times are evaluated point by point
    np.testing.assert_allclose(model.predict_survival(Xte, [730, 100, 730]), surv[:, [3, 1, 3]])


@pytest.mark.parametrize(
    "name", ["cox_ph", "xgb_cox", "gbsa", "weibull_aft", "lognormal_aft", "xgb_aft"]
)
def test_higher_risk_means_lower_survival_at_the_horizon(gbsg2, fitted, name):
    # PH models: S = S0^exp(risk); AFT models with one scale: S = 1 - F((log t + risk) / sigma)
    _, Xte, _, _ = gbsg2
    model = fitted[name]
    order = np.argsort(model.predict_risk(Xte), kind="stable")
    surv = model.predict_survival(Xte, [730.0])[order, 0]
    assert np.all(np.diff(surv) <= 1e-9)


@pytest.mark.parametrize("name", ["rsf", "gbsa", "xgb_cox"])
def test_step_models_hold_their_last_value_beyond_the_training_times(gbsg2, fitted, name):
    _, Xte, ytr, _ = gbsg2
    t_max = float(ytr["time"].max())
    s = fitted[name].predict_survival(Xte, [t_max, 10 * t_max])
    np.testing.assert_array_equal(s[:, 0], s[:, 1])


def test_xgb_cox_breslow_baseline_agrees_with_kaplan_meier(gbsg2, fitted):
    Xtr, _, ytr, _ = gbsg2
    km_t, km_s = kaplan_meier_estimator(ytr["cens"], ytr["time"])
    times = np.array([365.0, 730.0, 1095.0, 1825.0])
    km = km_s[np.searchsorted(km_t, times, side="right") - 1]
    for model in (
        fitted["xgb_cox"],
        XGBSurvival("cox", **XGB_GBSG2).fit(Xtr, ytr["time"], ytr["cens"]),
    ):
        mean_s = model.predict_survival(Xtr, times).mean(axis=0)
        np.testing.assert_allclose(mean_s, km, atol=0.05)


def test_xgb_aft_starts_from_the_intercept_only_maximum_likelihood(gbsg2, fitted):
    from lifelines import LogNormalFitter, WeibullFitter

    from crm_models.models.survival.xgb import aft_intercept

    _, _, ytr, _ = gbsg2
    t, e = ytr["time"].astype(float), ytr["cens"]
    # lifelines maximises over (location, scale); at its scale our 1-D MLE returns its location
    ln = LogNormalFitter().fit(t, e)
    assert aft_intercept(t, e, "normal", ln.sigma_) == pytest.approx(ln.mu_, abs=1e-3)
    wb = WeibullFitter().fit(t, e)  # log T = log(lambda) + Gumbel_min / rho
    assert aft_intercept(t, e, "extreme", 1 / wb.rho_) == pytest.approx(
        np.log(wb.lambda_), abs=1e-3
    )
    # so the boosted AFT is calibrated in the large: mean S(t) tracks Kaplan-Meier
    km_t, km_s = kaplan_meier_estimator(e, t)
    times = np.array([365.0, 730.0, 1095.0, 1825.0])
    km = km_s[np.searchsorted(km_t, times, side="right") - 1]
    mean_s = fitted["xgb_aft"].predict_survival(gbsg2[0], times).mean(axis=0)
    np.testing.assert_allclose(mean_s, km, atol=0.05)


def test_gradient_boosting_survival_equals_scikit_survival_curves(gbsg2, fitted):
    _, Xte, _, _ = gbsg2
    ours = fitted["gbsa"]
    np.testing.assert_allclose(ours.predict_risk(Xte), ours.sksurv_model_.predict(Xte.to_numpy()))
    times = ours.sksurv_model_.unique_times_
    ref = ours.sksurv_model_.predict_survival_function(Xte.to_numpy()[:25], return_array=True)
    np.testing.assert_allclose(
        ours.predict_survival(Xte.head(25), times), ref, rtol=1e-9, atol=1e-12
    )


def test_random_survival_forest_equals_scikit_survival_step_functions(gbsg2, fitted):
    _, Xte, ytr, _ = gbsg2
    ours = fitted["rsf"]
    times = np.array([ytr["time"].min(), 400.0, 1000.5, 2000.0])
    fns = ours.sksurv_model_.predict_survival_function(Xte.to_numpy()[:10])
    ref = np.vstack([fn(times) for fn in fns])
    np.testing.assert_allclose(ours.predict_survival(Xte.head(10), times), ref)


def test_random_survival_forest_row_chunks_give_the_same_curves(gbsg2, fitted, monkeypatch):
    from crm_models.models.survival import sksurv_models

    _, Xte, _, _ = gbsg2
    times = [100.0, 700.0, 1500.0]
    whole = fitted["rsf"].predict_survival(Xte, times)
    n_grid = len(fitted["rsf"].sksurv_model_.unique_times_)
    monkeypatch.setattr(sksurv_models, "_CELLS_PER_CHUNK", 7 * n_grid)  # chunks of 7 rows
    np.testing.assert_array_equal(fitted["rsf"].predict_survival(Xte, times), whole)


@pytest.mark.parametrize("distribution", ["normal", "logistic", "extreme"])
def test_xgb_aft_survival_is_xgboosts_own_censored_likelihood(gbsg2, distribution):
    """For censored rows xgboost's aft-nloglik is -mean log S(t): our S must reproduce it."""
    import xgboost as xgb

    Xtr, Xte, ytr, yte = gbsg2
    model = XGBSurvival(
        "aft",
        n_estimators=30,
        n_jobs=1,
        aft_loss_distribution=distribution,
        aft_loss_distribution_scale=0.7,
    ).fit(Xtr, ytr["time"], ytr["cens"])
    t = yte["time"].astype(float)
    dm = model.to_dmatrix(Xte)
    dm.set_float_info("label_lower_bound", t)
    dm.set_float_info("label_upper_bound", np.full(len(t), np.inf))
    booster = model.booster_.copy()
    # xgboost 3.2 quirk: a metric first created by Booster.eval() ignores the trained
    # aft_loss_distribution_scale (it uses 1.0) until the parameter is set again
    booster.set_param({"aft_loss_distribution_scale": 0.7})
    xgb_nll = float(re.search(r"aft-nloglik:([-\d.eE+]+)", booster.eval(dm)).group(1))
    s = np.diag(model.predict_survival(Xte, t))
    assert -np.mean(np.log(s)) == pytest.approx(xgb_nll, rel=1e-5)
    assert isinstance(dm, xgb.DMatrix)


# -- attributions -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["xgb_aft", "xgb_cox"])
def test_xgb_margin_contributions_add_up_to_the_risk(gbsg2, fitted, name):
    _, Xte, _, _ = gbsg2
    model = fitted[name]
    contrib = model.booster_.predict(model.to_dmatrix(Xte), pred_contribs=True)
    assert contrib.shape == (len(Xte), len(model.model_features_) + 1)  # + bias column
    np.testing.assert_allclose(
        model.risk_sign_ * contrib.sum(axis=1), model.predict_risk(Xte), rtol=1e-5, atol=1e-5
    )
    assert model.risk_sign_ == (1.0 if name == "xgb_cox" else -1.0)


@pytest.mark.parametrize("name", LINEAR)
def test_linear_risk_is_x_times_risk_coefficients(gbsg2, fitted, name):
    _, Xte, _, _ = gbsg2
    model = fitted[name]
    coef = model.risk_coefficients_
    assert list(coef.index) == list(Xte.columns)
    np.testing.assert_allclose(
        model.predict_risk(Xte), Xte.to_numpy() @ coef.to_numpy() + model.risk_intercept_, atol=1e-9
    )


def test_weibull_aft_equals_lifelines_and_its_published_rossi_estimate():
    df = load_rossi()
    X = df.drop(columns=["week", "arrest"])
    ours = WeibullAFT(penalizer=0.0).fit(X, df["week"], df["arrest"])
    ref = WeibullAFTFitter().fit(df, "week", "arrest")
    np.testing.assert_allclose(
        ours.coef_[X.columns].to_numpy(),
        ref.params_.loc["lambda_"][X.columns].to_numpy(),
        rtol=1e-5,
    )
    # lifelines docs (Weibull AFT on rossi): lambda_ fin = 0.27, rho_ Intercept = 0.34
    assert ours.coef_["fin"] == pytest.approx(0.27, abs=0.005)
    # the Weibull median is exp(linear predictor) * const: risk = -log(median) + const
    gap = ours.predict_risk(X) + np.log(ref.predict_median(X).to_numpy())
    np.testing.assert_allclose(gap, gap[0], atol=1e-9)


def test_lognormal_aft_median_is_exp_of_the_location():
    df = load_rossi()
    X = df.drop(columns=["week", "arrest"])
    m = LogNormalAFT(penalizer=0.0).fit(X, df["week"], df["arrest"])
    med = m.lifelines_model_.predict_median(X).to_numpy()
    np.testing.assert_allclose(np.log(med), m.predict_log_time(X), rtol=1e-6)
    np.testing.assert_allclose(m.predict_survival(X.head(5), med[:5]).diagonal(), 0.5, atol=1e-6)


# -- sklearn conventions and registry -----------------------------------------------------------


def test_registry_names_every_model():
    assert set(MODELS) == {
        "cox_ph",
        "weibull_aft",
        "lognormal_aft",
        "xgb_aft",
        "xgb_cox",
        "rsf",
        "gbsa",
    }
    assert MODELS["xgb_aft"]().objective == "aft" and MODELS["xgb_cox"]().objective == "cox"


@pytest.mark.parametrize("name", list(MODELS))
def test_sklearn_conventions_for_every_model(small, name):
    X, d, e = small
    model = MODELS[name]()
    params = model.get_params()
    assert params and all(getattr(model, k) is v for k, v in params.items())
    key = next(iter(params))
    c = clone(model)
    assert c.get_params() == params
    fitted = make(name).fit(X, d, e)
    assert fitted.feature_names_in_.tolist() == list(X.columns)
    c2 = clone(fitted)
    assert not hasattr(c2, "feature_names_in_") and c2.get_params() == fitted.get_params()
    assert clone(model).set_params(**{key: params[key]}).get_params() == params
    with pytest.raises(ValueError, match="Invalid parameter"):
        model.set_params(not_a_parameter=1)


def test_xgb_objective_is_a_parameter_only_of_the_generic_class():
    m = XGBSurvival(objective="cox", n_estimators=7)
    assert clone(m).get_params()["objective"] == "cox"
    assert "objective" not in XGBSurvivalCox().get_params()
    assert clone(XGBSurvivalCox(max_depth=2)).get_params()["max_depth"] == 2
    with pytest.raises(ValueError, match="Invalid parameter"):
        XGBSurvivalAFT().set_params(objective="cox")
    with pytest.raises(TypeError):
        XGBSurvivalAFT(objective="cox")  # the registry preset cannot be changed by a config


def test_seeds_are_parameters(small):
    X, d, e = small
    for cls in (XGBSurvivalAFT, RandomSurvivalForest):
        a = cls(n_estimators=15, n_jobs=1, random_state=3).fit(X, d, e).predict_risk(X)
        b = cls(n_estimators=15, n_jobs=1, random_state=3).fit(X, d, e).predict_risk(X)
        c = cls(n_estimators=15, n_jobs=1, random_state=4).fit(X, d, e).predict_risk(X)
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)


def test_xgb_early_stopping_truncates_the_booster(gbsg2):
    Xtr, _, ytr, _ = gbsg2
    m = XGBSurvival(
        "cox",
        n_jobs=1,
        n_estimators=400,
        learning_rate=0.3,
        early_stopping_rounds=5,
        validation_fraction=0.25,
    ).fit(Xtr, ytr["time"], ytr["cens"])
    assert m.best_iteration_ < 399
    assert m.booster_.num_boosted_rounds() == m.best_iteration_ + 1


def test_pipeline_runs_every_model_on_raw_categorical_features():
    X, y = load_gbsg2()
    X = X.head(200).astype({c: object for c in ["horTh", "menostat", "tgrade"]})
    X.loc[X.index[:5], "tsize"] = np.nan
    for name in MODELS:
        pipe = SurvivalPipeline(make(name)).fit(X, y["time"][:200], y["cens"][:200])
        p = pipe.predict_churn_probability(X, 730.0)
        assert p.shape == (200,) and np.all((p >= 0) & (p <= 1)), name


def test_pipeline_accepts_pandas_category_columns():
    X, y = load_gbsg2()  # horTh, menostat, tgrade are pandas 'category'
    pipe = SurvivalPipeline(CoxPH()).fit(X.head(200), y["time"][:200], y["cens"][:200])
    assert "tgrade_III" in pipe.model_.coef_.index


# -- degenerate input ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda X, d, e: (X, d, np.zeros_like(e)), "no events"),
        (lambda X, d, e: (X, np.where(np.arange(len(d)) == 3, np.nan, d), e), "NaN"),
        (lambda X, d, e: (X, np.where(np.arange(len(d)) == 3, -1.0, d), e), "negative"),
        (lambda X, d, e: (X, np.where(np.arange(len(d)) == 3, np.inf, d), e), "infinite"),
        (lambda X, d, e: (X.head(1), d[:1], e[:1]), "at least 2"),
        (lambda X, d, e: (X.assign(region="north"), d, e), "not numeric"),
        (lambda X, d, e: (X.assign(age=np.where(X.index == 2, np.nan, X["age"])), d, e), "NaN"),
    ],
    ids=[
        "no_events",
        "nan_duration",
        "negative_duration",
        "inf_duration",
        "one_customer",
        "text_feature",
        "nan_feature",
    ],
)
def test_degenerate_input_gets_a_clear_error(small, name, mutate, message):
    X, d, e = mutate(*small)
    with pytest.raises(ModelInputError, match=message):
        make(name).fit(X, d, e)


@pytest.mark.parametrize("name", list(MODELS))
def test_all_events_fit_and_give_valid_curves(small, name):
    # no censoring is a legitimate sample (everyone churned): every model must fit it
    X, d, _ = small
    model = make(name).fit(X, d, np.ones(len(d), dtype=int))
    s = model.predict_survival(X, [0.0, 5.0, 20.0, 52.0])
    assert np.all(np.isfinite(s)) and np.all((s >= 0) & (s <= 1))
    assert np.all(np.diff(s, axis=1) <= 1e-12)
    assert np.isfinite(model.predict_risk(X)).all()


@pytest.mark.parametrize("name", list(MODELS))
def test_zero_durations_are_accepted(small, name):
    X, d, e = small
    d = d.copy()
    d[:4] = 0.0
    e = e.copy()
    e[:2] = 1  # two churned on day 0, two censored on day 0
    e[2:4] = 0
    model = make(name).fit(X, d, e)
    s = model.predict_survival(X, [0.0, 10.0, 52.0])
    assert np.all(np.isfinite(s)) and np.all(np.diff(s, axis=1) <= 1e-12)
    assert np.isfinite(model.predict_risk(X)).all()


@pytest.mark.parametrize("name", ["weibull_aft", "lognormal_aft", "xgb_aft"])
def test_log_time_models_refuse_all_zero_durations(small, name):
    X, d, e = small
    with pytest.raises(ModelInputError, match="every duration is 0"):
        make(name).fit(X, np.zeros_like(d), e)


@pytest.mark.parametrize("name", LINEAR)
def test_linear_models_drop_a_constant_feature_with_a_warning(small, name):
    X, d, e = small
    Xc = X.assign(const=1.0)
    with pytest.warns(UserWarning, match=r"dropping constant feature\(s\) \['const'\]"):
        model = make(name).fit(Xc, d, e)
    ref = make(name).fit(X, d, e)
    assert model.risk_coefficients_["const"] == 0.0
    np.testing.assert_allclose(model.predict_risk(Xc), ref.predict_risk(X), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ["xgb_aft", "xgb_cox", "rsf", "gbsa"])
def test_tree_models_fit_a_constant_feature_and_never_use_it(small, name):
    X, d, e = small
    Xc = X.assign(const=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning needed: a tree never splits on a constant
        model = make(name).fit(Xc, d, e)
    assert "const" in model.model_features_
    if name.startswith("xgb"):
        contrib = model.booster_.predict(model.to_dmatrix(Xc), pred_contribs=True)
        np.testing.assert_array_equal(contrib[:, model.model_features_.index("const")], 0.0)
    else:
        changed = Xc.assign(const=5.0)  # outside the training value, same (only) side of no split
        np.testing.assert_array_equal(model.predict_risk(changed), model.predict_risk(Xc))


def test_every_feature_constant_is_refused_for_linear_models(small):
    _, d, e = small
    with (
        pytest.warns(UserWarning),
        pytest.raises(ModelInputError, match="every feature is constant"),
    ):
        CoxPH().fit(pd.DataFrame({"a": np.ones(len(d))}), d, e)


def test_prediction_input_is_checked(small):
    X, d, e = small
    model = GradientBoostingSurvival(n_estimators=10).fit(X, d, e)
    with pytest.raises(ModelInputError, match="lacks"):
        model.predict_risk(X.drop(columns=["age"]))
    with pytest.raises(ModelInputError, match="NaN"):
        model.predict_risk(X.assign(age=np.nan))
    # a bare array in the fitted column order is accepted
    np.testing.assert_allclose(model.predict_risk(X.to_numpy()), model.predict_risk(X))


def test_bad_xgb_settings_are_config_errors(small):
    X, d, e = small
    with pytest.raises(ConfigError, match="objective"):
        XGBSurvival(objective="poisson").fit(X, d, e)
    with pytest.raises(ConfigError, match="aft_loss_distribution"):
        XGBSurvival(aft_loss_distribution="gamma").fit(X, d, e)


def test_forest_time_resolution_coarsens_event_times_without_losing_discrimination():
    from crm_models.models.survival import RandomSurvivalForest

    df = load_rossi()
    X = df.drop(columns=["week", "arrest"])
    d = df["week"].to_numpy(float) - np.random.default_rng(0).random(len(df))  # fractional times
    e = df["arrest"].to_numpy()
    fine = RandomSurvivalForest(n_estimators=30, min_samples_leaf=10, random_state=0).fit(X, d, e)
    coarse = RandomSurvivalForest(
        n_estimators=30, min_samples_leaf=10, random_state=0, time_resolution=7.0
    ).fit(X, d, e)
    assert len(coarse.sksurv_model_.unique_times_) < len(fine.sksurv_model_.unique_times_) / 3
    c_fine = concordance_index_censored(e.astype(bool), d, fine.predict_risk(X))[0]
    c_coarse = concordance_index_censored(e.astype(bool), d, coarse.predict_risk(X))[0]
    assert abs(c_fine - c_coarse) < 0.03


def _strong_effect_data(n: int = 5000) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    t = rng.exponential(100 * np.exp(-2 * X["a"].to_numpy()))
    return X, np.minimum(t, 180.0), t < 180.0


def test_xgb_cox_caps_each_newton_step_by_default():
    # survival:cox's Newton step is unbounded: on 448k simulated churners the first tree reached
    # margins of 21 and the fit degenerated (benchmarks/README.md). One tree at learning rate 1
    # shows the cap: leaves within 0.7 with the default, ~20 without it.
    X, d, e = _strong_effect_data()
    one_tree = {"n_estimators": 1, "max_depth": 3, "learning_rate": 1.0, "subsample": 1.0,
                "colsample_bytree": 1.0}
    capped = XGBSurvival(objective="cox", **one_tree).fit(X, d, e)
    assert np.abs(capped.predict_margin(X)).max() <= 0.7 + 1e-6
    uncapped = XGBSurvival(objective="cox", max_delta_step=0, **one_tree).fit(X, d, e)
    assert np.abs(uncapped.predict_margin(X)).max() > 5
    # AFT's steps are bounded by its loss already: no cap unless asked for
    assert XGBSurvival(objective="aft")._xgb_params()["max_delta_step"] == 0.0


def test_a_diverged_xgb_cox_fit_is_a_clear_error_not_nan_risks():
    X, d, e = _strong_effect_data()
    model = XGBSurvival(objective="cox", n_estimators=50, learning_rate=100.0, max_delta_step=0)
    with pytest.raises(ModelInputError, match="diverged.*max_delta_step"):
        model.fit(X, d, e)
    with pytest.raises(ConfigError, match="max_delta_step must be >= 0"):
        XGBSurvival(objective="cox", max_delta_step=-1).fit(X, d, e)
