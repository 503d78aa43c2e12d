"""The simulator: determinism, table contracts, and recovery of its own ground truth.

Sources of truth: the simulator's ground_truth.json (Cox effects, purchase rates, channel effects,
spend elasticity), the contracts in ``crm_models.data.contracts``, and hand-computed labels.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.utils import concordance_index
from sklearn.linear_model import LogisticRegression

from crm_models.data import synthetic
from crm_models.data.contracts import COMPLAINT_KIND, CONTRACTS, TABLE_NAMES
from crm_models.data.synthetic import (
    CHANNELS,
    SIMULATOR_VERSION,
    SimulationParams,
    covariate_matrix,
    ensure_synthetic,
    load_synthetic,
    noncontractual_churn_labels_np,
    oracle_churn_risk,
    oracle_churn_summary,
    simulate,
    write_synthetic,
)
from crm_models.errors import ConfigError, DataError

N = 5_000


@pytest.fixture(scope="module")
def ds():
    return simulate(N, seed=11)


@pytest.fixture(scope="module")
def truth(ds) -> pd.DataFrame:
    """Per-customer ground truth joined to the customers table (same order)."""
    gt = pd.DataFrame(ds.ground_truth["customers"]).set_index("customer_id")
    cust = ds.tables["customers"].set_index("customer_id")
    return cust.join(gt, rsuffix="_gt")


# --------------------------------------------------------------------------- determinism / files


def test_same_seed_gives_byte_identical_files_and_other_seed_differs(tmp_path):
    a = write_synthetic(tmp_path / "a", n_customers=800, seed=3)
    b = write_synthetic(tmp_path / "b", n_customers=800, seed=3)
    c = write_synthetic(tmp_path / "c", n_customers=800, seed=4)
    names = [f"{t}.parquet" for t in TABLE_NAMES] + ["ground_truth.json"]
    assert sorted(os.listdir(a)) == sorted(names)
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "transactions.parquet").read_bytes() != (c / "transactions.parquet").read_bytes()
    assert (a / "ground_truth.json").read_bytes() != (c / "ground_truth.json").read_bytes()
    # nothing left behind by the atomic writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]


def test_load_synthetic_round_trips_the_frames_exactly(tmp_path):
    out = write_synthetic(tmp_path / "d", n_customers=500, seed=1)
    mem = simulate(500, seed=1)
    disk = load_synthetic(out)
    for name in TABLE_NAMES:
        pd.testing.assert_frame_equal(disk.tables[name], mem.tables[name], check_exact=True)
    assert disk.ground_truth == json.loads(json.dumps(mem.ground_truth))


def test_existing_directory_is_never_overwritten_without_permission(tmp_path):
    out = write_synthetic(tmp_path / "d", n_customers=300, seed=1)
    before = (out / "transactions.parquet").read_bytes()
    with pytest.raises(DataError, match=str(out)):
        write_synthetic(out, n_customers=300, seed=2)
    assert (out / "transactions.parquet").read_bytes() == before
    write_synthetic(out, n_customers=300, seed=2, overwrite=True)
    assert (out / "transactions.parquet").read_bytes() != before
    assert json.loads((out / "ground_truth.json").read_text())["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_load_synthetic_names_missing_files(tmp_path):
    with pytest.raises(DataError, match="transactions.parquet"):
        load_synthetic(tmp_path)


def test_ensure_synthetic_reuses_and_regenerates_stale_data(tmp_path):
    path = ensure_synthetic(tmp_path, n_customers=300, seed=5)
    assert path == tmp_path / "n300_seed5"
    gt_file = path / "ground_truth.json"
    stamp = (path / "transactions.parquet").stat().st_mtime_ns
    assert ensure_synthetic(tmp_path, 300, 5) == path
    assert (path / "transactions.parquet").stat().st_mtime_ns == stamp  # reused
    gt = json.loads(gt_file.read_text())
    assert gt["simulator_version"] == SIMULATOR_VERSION
    gt["simulator_version"] = "0.0.old"
    gt_file.write_text(json.dumps(gt))
    ensure_synthetic(tmp_path, 300, 5)
    assert json.loads(gt_file.read_text())["simulator_version"] == SIMULATOR_VERSION
    assert ensure_synthetic(tmp_path, 301, 5) == tmp_path / "n301_seed5"


def test_bad_arguments_raise_user_errors():
    with pytest.raises(ConfigError):
        simulate(0)
    with pytest.raises(ConfigError, match="spend_q"):
        SimulationParams(spend_q=1.0)
    p = SimulationParams(spend_elasticity=0.5)
    assert SimulationParams.from_dict(p.to_dict()) == p


# --------------------------------------------------------------------------- contracts


_DTYPE_CHECK = {
    "id": lambda s: pd.api.types.is_integer_dtype(s),
    "timestamp": lambda s: s.dtype == np.dtype("datetime64[ns]"),
    "amount": lambda s: pd.api.types.is_float_dtype(s),
    "float": lambda s: pd.api.types.is_float_dtype(s),
    "int": lambda s: pd.api.types.is_integer_dtype(s),
    "bool": lambda s: pd.api.types.is_bool_dtype(s),
    "str": lambda s: pd.api.types.is_object_dtype(s) and s.map(type).eq(str).all(),
}


def test_every_table_fills_its_contract(ds):
    end = pd.Timestamp(ds.ground_truth["observation_end"])
    for name in TABLE_NAMES:
        df, contract = ds.tables[name], CONTRACTS[name]
        for col, kind in contract.columns.items():
            assert col in df.columns, (name, col)
            assert _DTYPE_CHECK[kind](df[col]), (name, col, df[col].dtype)
            if col in contract.required:
                assert df[col].notna().all(), (name, col)
        for col in contract.ts_columns:
            assert (df[col] < end).all(), (name, col)
        if contract.key:
            assert not df.duplicated(list(contract.key)).any(), name
    tx, cust = ds.tables["transactions"], ds.tables["customers"]
    assert tx["customer_id"].dtype == np.int64 and cust["customer_id"].dtype == np.int64
    assert (tx["amount"] > 0).all() and (tx["amount"] == tx["amount"].round(2)).all()
    assert (tx["quantity"] >= 1).all()
    assert cust["customer_id"].is_unique and len(cust) == N
    ids = set(cust["customer_id"])
    for name in ("transactions", "tickets", "subscriptions"):
        assert set(ds.tables[name]["customer_id"]) <= ids, name
    assert set(cust["region"]) == {"north", "south", "east", "west"}
    assert cust["age"].between(18, 80).all()
    assert set(cust["plan"]) == {"none", "subscription"}
    assert set(ds.tables["tickets"]["kind"]) == {COMPLAINT_KIND, "question", "billing"}
    assert ds.tables["touchpoints"]["cost"].gt(0).all()
    assert ds.tables["tickets"]["satisfaction"].between(1, 5).all()


def test_the_funnel_and_first_purchase_are_consistent(ds):
    tx, cust, tp = ds.tables["transactions"], ds.tables["customers"], ds.tables["touchpoints"]
    first = tx.sort_values(["customer_id", "ts"]).groupby("customer_id").first()
    cust = cust.set_index("customer_id")
    # the first purchase is the signup (BTYD birth)
    assert (first["ts"] == cust["signup_ts"]).all()
    # exactly one converting touch per customer: its last touch, carrying the first order's id
    conv = tp[tp["converted"]].set_index("customer_id")
    assert conv.index.is_unique and set(conv.index) == set(cust.index)
    assert (conv["order_id"].astype("int64") == first.loc[conv.index, "order_id"]).all()
    assert tp.loc[~tp["converted"], "order_id"].isna().all()
    last_touch = tp.sort_values(["customer_id", "ts"]).groupby("customer_id").last()
    assert (last_touch.loc[conv.index, "ts"] == conv["ts"]).all()
    assert (conv["channel"] == cust.loc[conv.index, "acquisition_channel"]).all()
    assert (conv["ts"] < cust.loc[conv.index, "signup_ts"]).all()
    gaps = (cust.loc[conv.index, "signup_ts"] - conv["ts"]) / pd.Timedelta(hours=1)
    assert gaps.max() < 24
    # journeys have 1-6 touches; prospects that did not convert keep theirs
    n_touch = tp.groupby("customer_id").size()
    assert n_touch.between(1, 6).all()
    assert tp["customer_id"].nunique() == ds.ground_truth["n_prospects"] > N
    # several purchases on one calendar day exist
    assert tx.assign(day=tx["ts"].dt.normalize()).duplicated(["customer_id", "day"]).any()


def test_channel_spend_is_weekly_and_sums_touch_costs(ds):
    spend, tp = ds.tables["channel_spend"], ds.tables["touchpoints"]
    assert (spend["period_start"].dt.dayofweek == 0).all()
    assert ((spend["period_end"] - spend["period_start"]) == pd.Timedelta(days=7)).all()
    assert spend.groupby("channel").size().nunique() == 1 and set(spend["channel"]) == set(CHANNELS)
    week = tp["ts"].dt.normalize() - pd.to_timedelta(tp["ts"].dt.dayofweek, unit="D")
    by_week = tp.groupby([tp["channel"], week.rename("period_start")])["cost"].sum()
    merged = spend.set_index(["channel", "period_start"])["spend"]
    assert np.allclose(by_week, merged.reindex(by_week.index), rtol=1e-9)
    assert np.isclose(merged.sum(), tp["cost"].sum(), rtol=1e-9)


def test_subscriptions_end_at_the_true_dropout(ds, truth):
    subs = ds.tables["subscriptions"].set_index("customer_id")
    end = pd.Timestamp(ds.ground_truth["observation_end"])
    assert set(subs.index) == set(truth.index[truth["plan"] == "subscription"])
    share = len(subs) / N
    assert 0.22 < share < 0.28
    dropout = pd.to_datetime(truth.loc[subs.index, "dropout_ts"].where(
        truth.loc[subs.index, "dropout_ts"] < end.isoformat()))
    ended = subs["end_ts"].notna()
    assert (ended == dropout.notna()).all()
    diff = (subs.loc[ended, "end_ts"] - dropout[ended]).abs()
    assert diff.max() <= pd.Timedelta(seconds=1)
    assert (subs["start_ts"] == truth.loc[subs.index, "signup_ts"]).all()


def test_no_purchase_or_ticket_after_dropout_and_complaints_in_window(ds, truth):
    tx = ds.tables["transactions"].merge(
        truth["dropout_ts"].reset_index(), on="customer_id", how="left"
    )
    assert (tx["ts"] <= pd.to_datetime(tx["dropout_ts"].where(tx["dropout_ts"] < "2262"))
            .fillna(pd.Timestamp.max)).all()
    tix = ds.tables["tickets"]
    comp = tix[tix["kind"] == COMPLAINT_KIND].set_index("customer_id")
    assert comp.index.is_unique and set(comp.index) == set(truth.index[truth["complained"]])
    days_in = (comp["ts"] - truth.loc[comp.index, "signup_ts"]) / pd.Timedelta(days=1)
    assert days_in.between(0, 60).all()
    assert 0.13 < truth["complained"].mean() < 0.21
    other = tix.loc[tix["kind"] != COMPLAINT_KIND, "satisfaction"]
    assert comp["satisfaction"].mean() < other.mean() - 1


# --------------------------------------------------------------------------- ground truth recovered


def test_cox_on_true_dropout_times_recovers_dropout_effects_and_complaint_factor(ds, truth):
    """Cox on the true lifetimes of customers alive at the end of the 60-day complaint window.

    From that moment complaint status is fixed and, the true baseline hazard being constant, time
    can be counted from the window's end: an ordinary Cox model then recovers every effect and
    log(complaint factor). (The equivalent start/stop fit with delayed entry is ~30x slower in
    lifelines.)
    """
    gt = ds.ground_truth
    effects = gt["dropout_effects"]
    window = gt["complaint_window_days"]
    end = pd.Timestamp(gt["observation_end"])
    life = truth["lifetime_days"].to_numpy()
    horizon = ((end - truth["signup_ts"]) / pd.Timedelta(days=1)).to_numpy()
    at_risk = life > window
    assert at_risk.mean() > 0.85
    x = pd.DataFrame(covariate_matrix(truth.reset_index(), list(effects)), columns=list(effects))
    x["complaint"] = truth["complained"].to_numpy(float)
    x["duration"] = np.minimum(life, horizon) - window
    x["event"] = (life <= horizon).astype(int)
    fit = CoxPHFitter().fit(x[at_risk], duration_col="duration", event_col="event")
    true = pd.Series({**effects, "complaint": np.log(gt["complaint_hazard_factor"])})
    est, se = fit.params_[true.index], fit.standard_errors_[true.index]
    z = ((est - true) / se).abs()
    assert (z < 4).all(), pd.DataFrame({"est": est, "true": true, "z": z})
    assert abs(est["complaint"] - np.log(2.0)) < 0.2
    assert abs(est["age"] - effects["age"]) < 0.005
    assert np.corrcoef(est, true)[0, 1] > 0.95


def test_purchase_counts_match_the_true_rates(ds, truth):
    end = pd.Timestamp(ds.ground_truth["observation_end"])
    tx = ds.tables["transactions"]
    repeats = tx.groupby("customer_id").size().reindex(truth.index) - 1
    alive_end = np.minimum(truth["lifetime_days"],
                           (end - truth["signup_ts"]) / pd.Timedelta(days=1))
    expected = truth["purchase_rate"] * alive_end
    assert abs(repeats.sum() / expected.sum() - 1) < 0.03
    # Poisson given the rate: dispersion of (count - expected) / sqrt(expected) is ~1
    z = (repeats - expected) / np.sqrt(expected.clip(lower=1e-9))
    assert 0.9 < z[expected > 1].var() < 1.1
    # the email opt-in rate effect (age is independent of opt-in, so it cancels)
    rate = (repeats.groupby(truth["email_opt_in"]).sum()
            / alive_end.groupby(truth["email_opt_in"]).sum())
    effect = ds.ground_truth["purchase_effects"]["email_opt_in"]
    assert abs(np.log(rate[True] / rate[False]) - effect) < 0.08
    # the mean gap of the reference customer (~25 days) and Gamma-Gamma spend (~$40)
    assert 1 / ds.ground_truth["purchase_rate_reference"] == pytest.approx(25.0)
    assert tx["amount"].mean() == pytest.approx(40, rel=0.1)
    spent = tx.groupby("customer_id")["amount"].mean().reindex(truth.index)
    n_tx = repeats + 1
    big = n_tx >= 10
    assert np.corrcoef(spent[big], truth.loc[big, "spend_mean"])[0, 1] > 0.9


def test_dropout_probability_is_mu_over_lambda_plus_mu(truth):
    lam, mu = truth["purchase_rate"], truth["dropout_hazard"]
    assert np.allclose(truth["dropout_probability"], mu / (lam + mu), rtol=1e-6)
    base = mu.where(~truth["complained"], mu / 2.0)
    assert np.allclose(mu[truth["complained"]] / base[truth["complained"]], 2.0)


def test_logistic_regression_on_journeys_recovers_channel_effects(ds):
    tp = ds.tables["touchpoints"]
    seen = pd.crosstab(tp["customer_id"], tp["channel"]).reindex(columns=list(CHANNELS)) > 0
    converted = tp.groupby("customer_id")["converted"].any().reindex(seen.index)
    assert converted.sum() == N
    fit = LogisticRegression(C=np.inf, max_iter=1000).fit(seen.to_numpy(float), converted)
    est = pd.Series(fit.coef_[0], index=list(CHANNELS))
    true = pd.Series(ds.ground_truth["channel_conversion_effects"])[list(CHANNELS)]
    assert (est - true).abs().max() < 0.15, pd.DataFrame({"est": est, "true": true})
    assert abs(fit.intercept_[0] - ds.ground_truth["conversion_base"]) < 0.15
    assert est.rank().corr(true.rank(), method="spearman") > 0.9


def test_weekly_touches_grow_with_spend_at_the_true_elasticity(ds):
    tp, spend = ds.tables["touchpoints"], ds.tables["channel_spend"]
    week = tp["ts"].dt.normalize() - pd.to_timedelta(tp["ts"].dt.dayofweek, unit="D")
    n = tp.groupby([tp["channel"], week.rename("period_start")]).size().rename("n")
    df = spend.join(n, on=["channel", "period_start"]).dropna()
    df = df[df["n"] >= 30]
    y = np.log(df["spend"]) - np.log(df["spend"]).groupby(df["channel"]).transform("mean")
    x = np.log(df["n"]) - np.log(df["n"]).groupby(df["channel"]).transform("mean")
    inverse_slope = (x * y).sum() / (x * x).sum()  # log spend = const + (1/e) log touches
    assert 1 / inverse_slope == pytest.approx(ds.ground_truth["spend_elasticity"], abs=0.04)


# --------------------------------------------------------------------------- labels and oracle


def test_inactivity_labels_match_hand_computed_cases():
    c = pd.Timestamp("2024-01-01")
    d = pd.Timedelta(days=1)
    rows = {
        1: [-10, 5, 50],        # 5 -> 50 is a 45-day gap: churn at 5 + 30
        2: [-40],               # inactive 40 >= 30 days at the cutoff: not in the population
        3: [-5],                # nothing after: churn at -5 + 30
        4: [-1, 60, 80],        # churn at -1 + 30 before the purchase at 60
        5: [-2, 20, 45, 75],    # a gap of exactly 30 days counts as churn: 45 + 30
        6: [-2, 20, 45, 72, 101],  # 72 + 30 > horizon and 101 is outside it: censored
        7: [-30],               # exactly D inactive: not in the population
        8: [10],                # no purchase before the cutoff
    }
    cid = np.concatenate([[k] * len(v) for k, v in rows.items()])
    ts = np.concatenate([[c + t * d for t in v] for v in rows.values()])
    perm = np.random.default_rng(0).permutation(cid.size)  # order must not matter
    lab = noncontractual_churn_labels_np(cid[perm], ts[perm], c, 100, 30)
    assert lab.index.tolist() == [1, 3, 4, 5, 6]
    assert lab["duration_days"].tolist() == [35.0, 25.0, 29.0, 75.0, 100.0]
    assert lab["event"].tolist() == [1, 1, 1, 1, 0]


@pytest.fixture(scope="module")
def ds_default():
    return simulate(20_000, seed=7)


def test_oracle_is_calibrated_and_ranks_churn_well(ds_default):
    ds = ds_default
    gt, tx = ds.ground_truth, ds.tables["transactions"]
    cutoff = pd.Timestamp(gt["observation_end"]) - pd.Timedelta(days=180)
    lab = noncontractual_churn_labels_np(tx["customer_id"], tx["ts"], cutoff, 180, 90)
    summary = oracle_churn_summary(gt, tx, cutoff, 180, 90)
    assert summary.index.equals(lab.index)
    # the oracle knows the true process: its expected event share matches the realised one
    assert summary["event_probability"].mean() == pytest.approx(lab["event"].mean(), abs=0.015)
    assert summary["expected_duration_days"].mean() == pytest.approx(
        lab["duration_days"].mean(), abs=2.0)
    risk = oracle_churn_risk(gt, tx, cutoff, 180, 90)
    assert risk.equals(summary["risk"].rename("risk"))
    c_index = concordance_index(lab["duration_days"], -risk.reindex(lab.index), lab["event"])
    print(f"oracle C-index {c_index:.4f}, event share {lab['event'].mean():.4f}, n {len(lab)}")
    assert c_index > 0.7
    # future rows do not change the oracle (it reads only purchases before the cutoff)
    assert oracle_churn_risk(gt, tx[tx["ts"] < cutoff], cutoff, 180, 90).equals(risk)


def test_oracle_chunks_agree_and_early_cutoffs_warn(ds_default, monkeypatch):
    gt, tx = ds_default.ground_truth, ds_default.tables["transactions"]
    cutoff = pd.Timestamp(gt["observation_end"]) - pd.Timedelta(days=180)
    whole = oracle_churn_summary(gt, tx, cutoff, 180, 90, n_draws=100)
    monkeypatch.setattr(synthetic, "_ORACLE_PATHS_PER_CHUNK", 50_000)
    chunked = oracle_churn_summary(gt, tx, cutoff, 180, 90, n_draws=100)
    assert chunked.index.equals(whole.index)
    assert chunked["event_probability"].mean() == pytest.approx(
        whole["event_probability"].mean(), abs=0.005)
    assert np.corrcoef(chunked["risk"], whole["risk"])[0, 1] > 0.95
    # a cutoff inside the signup year meets customers still in their complaint window
    with pytest.warns(UserWarning, match="complaint window"):
        oracle_churn_risk(gt, tx, pd.Timestamp("2023-06-01"), 180, 90, n_draws=5)
    with pytest.raises(DataError, match="no ground truth"):
        other = tx.assign(customer_id=tx["customer_id"] + 10**9)
        oracle_churn_risk(gt, other, cutoff, 180, 90, n_draws=5)
