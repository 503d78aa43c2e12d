"""Point-in-time: features see only rows before the cutoff, labels only rows in [c, c + H)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crm_models.features import (
    Snapshot,
    contractual_churn_labels,
    customer_features,
    future,
    noncontractual_churn_labels,
    past,
)
from crm_models.features.engine import to_ibis

CUTOFF = pd.Timestamp("2022-07-01")
H, D = 90, 60
LABEL_END = CUTOFF + pd.Timedelta(days=H)
START = pd.Timestamp("2021-01-01")


def _seconds(rng: np.random.Generator, lo: pd.Timestamp, hi: pd.Timestamp, n: int) -> pd.Series:
    span = int((hi - lo) / pd.Timedelta(seconds=1))
    return pd.Series(lo + pd.to_timedelta(rng.integers(0, span, n), unit="s"))


def _world(n_customers: int = 300, seed: int = 5) -> dict[str, pd.DataFrame]:
    """Random tables up to LABEL_END: customers, transactions, tickets, subscriptions."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n_customers + 1)
    signup = _seconds(rng, START, CUTOFF, n_customers)
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_ts": signup,
            "acquisition_channel": rng.choice(["search", "social", "email"], n_customers),
            "region": rng.choice(["north", "south"], n_customers),
            "age": rng.integers(18, 80, n_customers),
        }
    )
    counts = rng.poisson(12, n_customers) + 1
    cid = np.repeat(ids, counts)
    first = np.repeat(signup.to_numpy(), counts)
    offset = pd.to_timedelta(rng.integers(0, 500 * 86_400, cid.size), unit="s")
    ts = pd.Series(first + offset)
    keep = (ts < LABEL_END).to_numpy()
    transactions = pd.DataFrame(
        {
            "customer_id": cid[keep],
            "ts": ts[keep].to_numpy(),
            "amount": np.round(rng.gamma(2.0, 20.0, keep.sum()), 2),
            "returned": rng.random(keep.sum()) < 0.1,
        }
    )
    n_tix = 3 * n_customers
    tickets = pd.DataFrame(
        {
            "customer_id": rng.choice(ids, n_tix),
            "ts": _seconds(rng, START, LABEL_END, n_tix),
            "kind": rng.choice(["complaint", "question", "billing"], n_tix),
        }
    )
    end = _seconds(
        rng, CUTOFF - pd.Timedelta(days=200), LABEL_END + pd.Timedelta(days=50), n_customers
    )
    subscriptions = pd.DataFrame(
        {
            "customer_id": ids,
            "start_ts": signup,
            "end_ts": end.where(rng.random(n_customers) < 0.6),  # 40% open-ended
        }
    )
    return {
        "customers": customers,
        "transactions": transactions,
        "tickets": tickets,
        "subscriptions": subscriptions,
    }


def _features(w: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return customer_features(
        w["transactions"], CUTOFF, customers=w["customers"], tickets=w["tickets"], window_days=60
    )


def _later(
    rng: np.random.Generator, like: pd.DataFrame, ids: np.ndarray, lo: pd.Timestamp
) -> pd.DataFrame:
    """Rows like ``like`` for ``ids`` at ts in [lo, lo + 400 days), the first exactly at lo."""
    rows = like.sample(len(ids), replace=True, random_state=int(rng.integers(1 << 31))).copy()
    rows["customer_id"] = ids
    ts = _seconds(rng, lo, lo + pd.Timedelta(days=400), len(ids))
    ts.iloc[0] = lo
    rows["ts"] = ts.to_numpy()
    return rows.reset_index(drop=True)


def test_rows_after_the_cutoff_change_no_feature():
    w = _world()
    before = _features(w)
    assert len(before) > 250 and before["ticket_count"].sum() > 0

    rng = np.random.default_rng(1)
    new_ids = np.arange(1001, 1051)
    old_ids = rng.choice(w["customers"].customer_id, 400)
    grown = dict(w)
    grown["transactions"] = pd.concat(
        [
            w["transactions"],
            _later(rng, w["transactions"], old_ids, CUTOFF),
            _later(rng, w["transactions"], new_ids, CUTOFF),
        ]
    )
    grown["tickets"] = pd.concat(
        [w["tickets"], _later(rng, w["tickets"], np.r_[old_ids, new_ids], CUTOFF)]
    )
    joiners = _later(rng, w["customers"].rename(columns={"signup_ts": "ts"}), new_ids, CUTOFF)
    grown["customers"] = pd.concat([w["customers"], joiners.rename(columns={"ts": "signup_ts"})])
    after = _features(grown)
    pd.testing.assert_frame_equal(before, after, check_exact=True)


def test_a_change_before_the_cutoff_does_change_features():
    # the converse, so the test above is able to fail
    w = _world()
    before = _features(w)
    tx = w["transactions"].copy()
    row = tx.index[(tx.ts < CUTOFF).to_numpy()][0]
    tx.loc[row, "amount"] += 1.0
    after = _features({**w, "transactions": tx})
    changed = (before != after) & ~(before.isna() & after.isna())
    assert changed.any(axis=1).sum() == 1
    assert changed.loc[tx.loc[row, "customer_id"], "monetary_total"]


def test_labels_ignore_rows_at_or_after_the_horizon():
    w = _world()
    tx = w["transactions"]
    labels = noncontractual_churn_labels(tx, CUTOFF, H, D)
    assert 0.1 < labels["event"].mean() < 0.9

    rng = np.random.default_rng(2)
    ids = rng.choice(w["customers"].customer_id, 300)
    later = pd.concat([tx, _later(rng, tx, ids, LABEL_END)])
    pd.testing.assert_frame_equal(labels, noncontractual_churn_labels(later, CUTOFF, H, D))

    subs = w["subscriptions"]
    contract = contractual_churn_labels(subs, CUTOFF, H)
    assert 0 < contract["event"].sum() < len(contract)
    # open-ended or ending at/after c + H: moving the end anywhere past c + H changes nothing
    moved = subs.copy()
    beyond = moved.end_ts.isna() | (moved.end_ts >= LABEL_END)
    moved.loc[beyond, "end_ts"] = LABEL_END + pd.Timedelta(days=1000)
    late_start = moved.head(20).assign(
        start_ts=LABEL_END, end_ts=pd.NaT, customer_id=np.arange(5001, 5021)
    )
    moved = pd.concat([moved, late_start])
    pd.testing.assert_frame_equal(contract, contractual_churn_labels(moved, CUTOFF, H))


def test_labels_change_only_for_customers_whose_window_rows_change():
    w = _world()
    tx = w["transactions"]
    labels = noncontractual_churn_labels(tx, CUTOFF, H, D)
    in_window = ((tx.ts >= CUTOFF) & (tx.ts < LABEL_END)).to_numpy()
    touched = np.unique(tx.customer_id[in_window])[::3]
    dropped = tx[~(in_window & tx.customer_id.isin(touched).to_numpy())]
    after = noncontractual_churn_labels(dropped, CUTOFF, H, D)
    assert after.index.equals(labels.index)  # the population depends on the past only
    differs = (after != labels).any(axis=1)
    assert differs.any()
    assert set(differs[differs].index) <= set(touched)


def test_snapshot_windows():
    snap = Snapshot("2022-07-01", horizon_days=H)
    assert snap.cutoff == CUTOFF and snap.label_end == LABEL_END
    with pytest.raises(ValueError):
        Snapshot(CUTOFF, 0)
    ts = pd.to_datetime(
        ["2022-06-30T23:59:59", "2022-07-01", "2022-09-28T23:59:59", "2022-09-29"], format="ISO8601"
    )
    t = to_ibis(pd.DataFrame({"ts": ts, "i": range(4)}))
    assert past(t, CUTOFF).to_pandas().i.tolist() == [0]
    assert sorted(future(t, CUTOFF, H).to_pandas().i) == [1, 2]
    assert sorted(snap.future(t).to_pandas().i) == [1, 2]
    dates = to_ibis(pd.DataFrame({"d": ts.date, "i": range(4)}))  # DATE columns work too
    assert sorted(snap.past(dates, ts="d").to_pandas().i) == [0]


def test_simulated_data_point_in_time_and_oracle_labels():
    from crm_models.data.synthetic import noncontractual_churn_labels_np, simulate

    tables = simulate(2_000, seed=3).tables
    cutoff, horizon, inactivity = pd.Timestamp("2024-03-01"), 180, 90
    label_end = cutoff + pd.Timedelta(days=horizon)

    def upto(name: str, end: pd.Timestamp, ts: str = "ts") -> pd.DataFrame:
        t = tables[name]
        return t[t[ts] < end]

    full = customer_features(
        tables["transactions"], cutoff, customers=tables["customers"], tickets=tables["tickets"]
    )
    cut = customer_features(
        upto("transactions", cutoff),
        cutoff,
        customers=upto("customers", cutoff, "signup_ts"),
        tickets=upto("tickets", cutoff),
    )
    pd.testing.assert_frame_equal(full, cut, check_exact=True)
    assert len(full) > 1_000
    assert {"return_rate", "age", "email_opt_in", "plan"} <= set(full.columns)

    tx = tables["transactions"]
    labels = noncontractual_churn_labels(tx, cutoff, horizon, inactivity)
    pd.testing.assert_frame_equal(
        labels,
        noncontractual_churn_labels(upto("transactions", label_end), cutoff, horizon, inactivity),
    )
    ref = noncontractual_churn_labels_np(tx.customer_id, tx.ts, cutoff, horizon, inactivity)
    assert labels.index.equals(ref.index)
    np.testing.assert_array_equal(labels["event"], ref["event"])
    np.testing.assert_allclose(labels["duration_days"], ref["duration_days"], rtol=0, atol=1e-9)
    # every labelled customer has features, and is exactly the "not lost" part of them
    assert labels.index.isin(full.index).all()
    assert set(labels.index) == set(full.index[full["recency_days"] < inactivity])
