"""CoxPH behind the survival interface: equals lifelines on its own data; degenerate input is refused."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import CoxPHFitter
from lifelines.datasets import load_rossi
from sklearn.base import clone

from crm_models.errors import ModelInputError
from crm_models.models.survival import CoxPH, SurvivalPipeline


@pytest.fixture(scope="module")
def rossi():
    df = load_rossi()
    return df.drop(columns=["week", "arrest"]), df["week"].to_numpy(float), df["arrest"].to_numpy()


def test_coefficients_equal_lifelines_on_rossi(rossi):
    X, d, e = rossi
    ours = CoxPH(penalizer=0.0).fit(X, d, e)
    ref = CoxPHFitter().fit(X.assign(week=d, arrest=e), "week", "arrest")
    np.testing.assert_allclose(ours.coef_.to_numpy(), ref.params_.to_numpy(), rtol=1e-6)
    # published lifelines docs value for the rossi model: fin coef = -0.38
    assert ours.coef_["fin"] == pytest.approx(-0.38, abs=0.005)


def test_predictions_are_consistent(rossi):
    X, d, e = rossi
    m = CoxPH().fit(X, d, e)
    surv = m.predict_survival(X.head(20), [10, 30, 52])
    assert surv.shape == (20, 3)
    assert np.all(np.diff(surv, axis=1) <= 1e-12)  # survival never increases
    p = m.predict_churn_probability(X.head(20), 52)
    np.testing.assert_allclose(p, 1 - surv[:, 2])
    rmst = m.predict_expected_lifetime(X.head(20), 52)
    assert np.all((rmst > 0) & (rmst <= 52))
    # a higher risk means a lower survival at every horizon
    risk = m.predict_risk(X.head(20))
    order = np.argsort(risk)
    assert np.all(np.diff(surv[order, 2]) <= 1e-12)


def test_sklearn_conventions(rossi):
    X, d, e = rossi
    m = CoxPH(penalizer=0.1, l1_ratio=0.5)
    assert m.get_params() == {"penalizer": 0.1, "l1_ratio": 0.5, "strata": None}
    c = clone(m).set_params(penalizer=0.2)
    assert c.penalizer == 0.2 and not hasattr(c, "lifelines_model_")
    assert m.fit(X, d, e) is m


def test_pipeline_handles_categories_and_missing_values(rossi):
    X, d, e = rossi
    X = X.copy()
    X["region"] = np.where(X["race"] == 1, "north", "south")
    X.loc[X.index[:10], "age"] = np.nan
    pipe = SurvivalPipeline(CoxPH()).fit(X, d, e)
    risk = pipe.predict_risk(X)
    assert np.isfinite(risk).all() and len(risk) == len(X)
    assert "region_south" in pipe.model_.coef_.index


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d, e: (d, np.zeros_like(e)), "no events"),
        (lambda d, e: (np.where(np.arange(len(d)) == 3, np.nan, d), e), "NaN"),
        (lambda d, e: (np.where(np.arange(len(d)) == 3, -1.0, d), e), "negative"),
    ],
)
def test_degenerate_input_gets_a_clear_error(rossi, mutate, message):
    X, d, e = rossi
    d2, e2 = mutate(d.copy(), e.copy())
    with pytest.raises(ModelInputError, match=message):
        CoxPH().fit(X, d2, e2)


def test_one_customer_is_refused(rossi):
    X, d, e = rossi
    with pytest.raises(ModelInputError, match="at least 2"):
        CoxPH().fit(X.head(1), d[:1], e[:1])


@pytest.mark.parametrize("strata", [None, ["race"]])
def test_risk_is_linear_in_the_features_for_linear_shap(rossi, strata):
    X, d, e = rossi
    m = CoxPH(strata=strata).fit(X, d, e)
    coef = m.risk_coefficients_
    assert list(coef.index) == list(X.columns)
    if strata:
        assert coef["race"] == 0.0  # a stratum shifts the baseline, not the risk score
    np.testing.assert_allclose(coef.drop(strata or []), m.coef_[coef.drop(strata or []).index])
    np.testing.assert_allclose(
        m.predict_risk(X), X.to_numpy(float) @ coef.to_numpy() + m.risk_intercept_, atol=1e-9
    )


def test_constant_feature_is_dropped_with_a_warning_not_a_convergence_crash(rossi):
    X, d, e = rossi
    with pytest.warns(UserWarning, match="constant"):
        m = CoxPH(penalizer=0.0).fit(X.assign(always=1.0), d, e)
    ref = CoxPH(penalizer=0.0).fit(X, d, e)
    np.testing.assert_allclose(m.coef_.to_numpy(), ref.coef_.to_numpy())
    assert m.risk_coefficients_["always"] == 0.0


def test_all_events_fit(rossi):
    # every customer churned: the partial likelihood is still defined
    X, d, _ = rossi
    m = CoxPH().fit(X, d, np.ones(len(d), dtype=int))
    assert np.isfinite(m.coef_).all()
