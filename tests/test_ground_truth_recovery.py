"""Our Cox model recovers the simulator's known dropout hazard ratios within 10%.

Source of truth: ``ground_truth.json`` (``dropout_effects`` per raw customer column and
``complaint_hazard_factor``). Complaints happen only in the first ``complaint_window_days`` after
signup, so from then on each customer's hazard is constant and proportional in the covariates:
a Cox model on the latent dropout times, counted from the end of that window, is correctly specified.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crm_models.data.synthetic import covariate_matrix, simulate
from crm_models.models.survival import CoxPH


@pytest.fixture(scope="module")
def recovered():
    ds = simulate(n_customers=50_000, seed=2024)
    gt = ds.ground_truth
    truth = pd.DataFrame(gt["customers"]).set_index("customer_id")
    customers = ds.tables["customers"].set_index("customer_id").loc[truth.index]
    window = pd.Timedelta(days=float(gt["complaint_window_days"]))
    obs_end = pd.Timestamp(gt["observation_end"])
    entry = pd.to_datetime(truth["signup_ts"]) + window
    dropout = pd.to_datetime(truth["dropout_ts"])
    at_risk = (dropout > entry) & (entry < obs_end)
    end = dropout.where(dropout < obs_end, obs_end)
    duration = (end - entry).dt.total_seconds() / 86400
    event = (dropout < obs_end).astype(int)

    names = list(gt["dropout_effects"])
    X = pd.DataFrame(covariate_matrix(customers.reset_index(), names), columns=names,
                     index=customers.index)
    X["complained"] = truth["complained"].astype(float)
    X = X[at_risk.to_numpy()]
    model = CoxPH(penalizer=0.0).fit(X, duration[at_risk], event[at_risk])
    true = {**gt["dropout_effects"], "complained": float(np.log(gt["complaint_hazard_factor"]))}
    return model, true, int(at_risk.sum()), int(event[at_risk].sum())


def test_complaint_hazard_factor_is_recovered_within_10_percent(recovered):
    model, true, n, events = recovered
    assert n > 40_000 and events > 15_000
    factor = float(np.exp(model.coef_["complained"]))
    assert factor == pytest.approx(np.exp(true["complained"]), rel=0.10)


def test_every_covariate_hazard_ratio_is_recovered_within_10_percent(recovered):
    model, true, _, _ = recovered
    est = np.exp(model.coef_)
    for name, beta in true.items():
        assert est[name] == pytest.approx(np.exp(beta), rel=0.10), (name, est[name], np.exp(beta))
