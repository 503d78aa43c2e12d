"""Churn labels: hand-computed edge cases and agreement with the simulator's numpy oracle."""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest

from crm_models.data.synthetic import noncontractual_churn_labels_np
from crm_models.errors import DataError
from crm_models.features import contractual_churn_labels, noncontractual_churn_labels

CUTOFF = pd.Timestamp("2021-01-01")
H, D = 60, 30  # label window [2021-01-01, 2021-03-02)


def _frame(rows: list[tuple[int, str]]) -> pd.DataFrame:
    ids, ts = zip(*rows, strict=True)
    return pd.DataFrame(
        {"customer_id": ids, "ts": pd.to_datetime(list(ts), format="ISO8601"), "amount": 1.0}
    )


NONCONTRACTUAL_CASES = [
    # (customer, purchases, expected (duration_days, event) or None when outside the population)
    # one purchase, no future purchase: churns at L0 + D
    (1, ["2020-12-20"], (18.0, 1)),
    # the gap that churns starts before the cutoff
    (2, ["2020-12-25", "2021-01-30"], (23.0, 1)),
    # c - L0 = 31 >= D: already churned at the cutoff
    (3, ["2020-12-01", "2021-01-10"], None),
    # c - L0 = D exactly: already churned (the population needs c - L0 < D)
    (4, ["2020-12-02"], None),
    # last purchase + D = c + H exactly: not a churn (needs p + D < c + H)
    (5, ["2020-12-31", "2021-01-20", "2021-01-31"], (60.0, 0)),
    # ... one second earlier it is
    (6, ["2020-12-31", "2021-01-20", "2021-01-30T23:59:59"], (60.0 - 1 / 86_400, 1)),
    # purchases at the same instant, before and after the cutoff
    (7, ["2020-12-31T12:00", "2020-12-31T12:00", "2021-01-05", "2021-01-05"], (34.0, 1)),
    # active through the window; the purchase after c + H is not seen
    (8, ["2020-12-25", "2021-01-20", "2021-02-15", "2021-03-20"], (60.0, 0)),
    # next purchase exactly D later is not in the open interval (p, p + D): churn at p + D
    (9, ["2020-12-31", "2021-01-10", "2021-02-09"], (39.0, 1)),
    # no purchase before the cutoff: not in the population
    (10, ["2021-01-02", "2021-01-03"], None),
    # durations come from timestamps, not dates
    (11, ["2020-12-31T18:00"], (29.75, 1)),
    # rows at or after c + H are not seen
    (12, ["2020-06-01", "2020-12-31", "2021-03-02", "2021-03-03"], (29.0, 1)),
]


def test_noncontractual_labels_hand_computed():
    tx = _frame([(cid, ts) for cid, stamps, _ in NONCONTRACTUAL_CASES for ts in stamps])
    got = noncontractual_churn_labels(tx, CUTOFF, horizon_days=H, inactivity_days=D)
    expected = {cid: exp for cid, _, exp in NONCONTRACTUAL_CASES if exp is not None}
    assert got.index.tolist() == sorted(expected)
    assert got.index.name == "customer_id"
    assert got["event"].dtype == np.int64 and got["duration_days"].dtype == np.float64
    for cid, (duration, event) in expected.items():
        assert got.loc[cid, "event"] == event, cid
        assert got.loc[cid, "duration_days"] == pytest.approx(duration, abs=1e-9), cid


def test_noncontractual_labels_accept_ibis_and_string_cutoff():
    tx = _frame([(cid, ts) for cid, stamps, _ in NONCONTRACTUAL_CASES for ts in stamps])
    a = noncontractual_churn_labels(tx, CUTOFF, H, D)
    b = noncontractual_churn_labels(ibis.memtable(tx), "2021-01-01", H, D)
    pd.testing.assert_frame_equal(a, b)


def _random_purchases(
    n_customers: int, seed: int, horizon: float, inactivity: float
) -> pd.DataFrame:
    """Purchases in [c - 2D, c + H + D) at second resolution, some at repeated instants; about
    1.5 purchases per D days on average (Gamma-mixed), so both events and censoring occur."""
    rng = np.random.default_rng(seed)
    lo, hi = -2 * inactivity, horizon + inactivity
    counts = rng.poisson(rng.gamma(1.0, 1.5 * (hi - lo) / inactivity, n_customers)) + 1
    ids = np.repeat(np.arange(n_customers), counts)
    secs = rng.integers(int(lo * 86_400), int(hi * 86_400), ids.size)
    dup = rng.random(ids.size) < 0.05
    secs[1:][dup[1:]] = secs[:-1][dup[1:]]
    return pd.DataFrame(
        {"customer_id": ids, "ts": CUTOFF + pd.to_timedelta(secs, unit="s"), "amount": 1.0}
    )


@pytest.mark.parametrize(("horizon", "inactivity"), [(60, 30), (90, 45), (180, 90), (30.5, 10.25)])
def test_noncontractual_labels_match_the_simulator_oracle(horizon, inactivity):
    tx = _random_purchases(500, int(horizon * 10), horizon, inactivity)
    got = noncontractual_churn_labels(tx, CUTOFF, horizon, inactivity)
    ref = noncontractual_churn_labels_np(tx.customer_id, tx.ts, CUTOFF, horizon, inactivity)
    assert len(ref) >= 200 and 0.1 < ref.event.mean() < 0.9  # the case mix is not degenerate
    assert got.index.equals(ref.index)
    np.testing.assert_array_equal(got["event"], ref["event"])
    np.testing.assert_allclose(got["duration_days"], ref["duration_days"], rtol=0, atol=1e-9)


def test_noncontractual_labels_reject_bad_input():
    tx = _frame([(1, "2020-12-20")])
    with pytest.raises(DataError, match=r"transactions.*ts"):
        noncontractual_churn_labels(tx.drop(columns="ts"), CUTOFF, H, D)
    with pytest.raises(ValueError, match="horizon_days"):
        noncontractual_churn_labels(tx, CUTOFF, 0, D)


def _subscriptions() -> pd.DataFrame:
    rows = [
        (1, "2019-01-01", "2020-06-01"),  # ended before c ...
        (1, "2020-07-01", "2021-01-21"),  # ... the active one ends inside the horizon
        (2, "2020-01-01", None),  # open-ended
        (3, "2021-01-01", None),  # starts at c: not active at c
        (4, "2020-01-01", "2021-01-01"),  # ends exactly at c: active, churns at 0
        (5, "2020-01-01", "2021-03-02"),  # ends exactly at c + H: censored
        (6, "2020-01-01", "2020-12-31T23:59"),  # ended before c
        (7, "2020-01-01", None),  # two active: the latest start wins
        (7, "2020-06-01", "2021-01-11"),
        (8, "2020-02-01", "2021-03-01T12:00"),
    ]
    ids, start, end = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "start_ts": pd.to_datetime(list(start), format="ISO8601"),
            "end_ts": pd.to_datetime(list(end), format="ISO8601"),
        }
    )


def test_contractual_labels_hand_computed():
    got = contractual_churn_labels(_subscriptions(), CUTOFF, horizon_days=H)
    expected = pd.DataFrame(
        {
            "duration_days": [20.0, 60.0, 0.0, 60.0, 10.0, 59.5],
            "event": [1, 0, 1, 0, 1, 1],
        },
        index=pd.Index([1, 2, 4, 5, 7, 8], name="customer_id"),
    )
    pd.testing.assert_frame_equal(got, expected)


def test_contractual_labels_without_end_ts_are_all_censored():
    got = contractual_churn_labels(_subscriptions().drop(columns="end_ts"), CUTOFF, H)
    # without end dates every started subscription is active; none ends
    assert got.index.tolist() == [1, 2, 4, 5, 6, 7, 8]
    assert (got["event"] == 0).all() and (got["duration_days"] == H).all()


def test_contractual_labels_reject_bad_input():
    with pytest.raises(DataError, match=r"subscriptions.*start_ts"):
        contractual_churn_labels(_subscriptions().drop(columns="start_ts"), CUTOFF, H)
    with pytest.raises(ValueError, match="horizon_days"):
        contractual_churn_labels(_subscriptions(), CUTOFF, -1)
