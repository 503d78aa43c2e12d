"""Customer features and segments: hand-computed examples, a pandas reference, reproducibility."""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest

from crm_models.errors import DataError
from crm_models.features import customer_features, rfm_segments
from crm_models.features.segments import RFM_SEGMENT_GRID, SEGMENT_COLUMNS

CUTOFF = pd.Timestamp("2021-01-01")


def _ts(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"))


@pytest.fixture
def transactions() -> pd.DataFrame:
    # cutoff 2021-01-01, window 30 days: last window [12-02, 01-01), prior [11-02, 12-02)
    return pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 1, 2, 3, 3, 4, 5],
            "ts": _ts(
                "2020-12-01",
                "2020-12-11",
                "2020-12-31",
                "2021-01-01",  # 1: last one at cutoff
                "2020-11-02",  # 2: one purchase, exactly at the prior window's start
                "2020-12-02",
                "2020-12-02T18:00",  # 3: same day, first exactly at cutoff - w
                "2021-01-05",  # 4: only after the cutoff
                "2020-06-01T12:00",  # 5: long ago
            ),
            "amount": [10.0, 20.0, 30.0, 1000.0, 5.0, 7.5, 2.5, 50.0, 0.1],
            "returned": pd.array(
                [True, False, None, True, False, True, True, False, None], dtype="boolean"
            ),
        }
    )


@pytest.fixture
def tickets() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 3, 9],
            "ts": _ts("2020-12-21", "2020-12-30T12:00", "2021-01-01", "2020-10-01", "2020-12-01"),
            "kind": ["complaint", "question", "complaint", "question", "complaint"],
        }
    )


@pytest.fixture
def customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4],
            "signup_ts": _ts("2020-11-01", "2020-01-01", "2021-01-01", "2020-01-01"),
            "region": ["north", "south", "east", "west"],
            "vip": [True, False, True, False],
        }
    )


def test_rfm_and_behaviour_hand_computed(transactions):
    f = customer_features(transactions, CUTOFF, window_days=30)
    assert list(f.index) == [1, 2, 3, 5]  # 4 bought only after the cutoff
    expected = pd.DataFrame(
        {
            "recency_days": [1.0, 60.0, 29.25, 213.5],
            "frequency": [3, 1, 2, 1],
            "purchase_days": [3, 1, 1, 1],
            "monetary_total": [60.0, 5.0, 10.0, 0.1],
            "monetary_mean": [20.0, 5.0, 5.0, 0.1],
            "tenure_days": [31.0, 60.0, 30.0, 213.5],
            "gap_mean_days": [15.0, np.nan, 0.75, np.nan],
            "gap_std_days": [np.sqrt(50.0), np.nan, np.nan, np.nan],  # ddof=1, needs 2 gaps
            "freq_last_w": [2, 0, 2, 0],
            "freq_prior_w": [1, 1, 0, 0],
            "spend_last_w": [50.0, 0.0, 10.0, 0.0],
            "spend_prior_w": [10.0, 5.0, 0.0, 0.0],
            "freq_trend": [1, -1, 2, 0],
            "spend_trend": [40.0, -5.0, 10.0, 0.0],
            "return_rate": [0.5, 0.0, 1.0, np.nan],  # unknown `returned` is left out
        },
        index=pd.Index([1, 2, 3, 5], name="customer_id"),
    )
    pd.testing.assert_frame_equal(f, expected, check_exact=False, rtol=1e-12)


def test_return_rate_is_omitted_without_returned_column(transactions):
    f = customer_features(transactions.drop(columns="returned"), CUTOFF)
    assert "return_rate" not in f.columns
    assert "ticket_count" not in f.columns and "region" not in f.columns


def test_money_sums_are_exact_decimal_sums():
    tx = pd.DataFrame(
        {"customer_id": [1, 1], "ts": _ts("2020-12-01", "2020-12-02"), "amount": [0.1, 0.2]}
    )
    f = customer_features(tx, CUTOFF)
    # a float sum gives 0.30000000000000004; the DECIMAL sum rounds once, at the end
    assert f.loc[1, "monetary_total"] == 0.3
    assert f.loc[1, "spend_prior_w"] == 0.0 and f.loc[1, "spend_last_w"] == 0.3


def test_ticket_features_hand_computed(transactions, tickets):
    f = customer_features(transactions, CUTOFF, tickets=tickets)
    assert list(f.index) == [1, 2, 3, 5]  # 9 has a ticket but no purchase
    got = f[
        ["ticket_count", "complaint_count", "days_since_last_ticket", "days_since_last_complaint"]
    ]
    expected = pd.DataFrame(
        {
            "ticket_count": [2, 0, 1, 0],  # the complaint at the cutoff is the future
            "complaint_count": [1, 0, 0, 0],
            "days_since_last_ticket": [1.5, np.nan, 92.0, np.nan],
            "days_since_last_complaint": [11.0, np.nan, np.nan, np.nan],
        },
        index=pd.Index([1, 2, 3, 5], name="customer_id"),
    )
    pd.testing.assert_frame_equal(got, expected)


def test_customers_give_tenure_population_and_attributes(transactions, customers, tickets):
    f = customer_features(transactions, CUTOFF, customers=customers, tickets=tickets)
    # 3 signs up at the cutoff (not before), 5 is not in customers, 4 has no past purchase
    assert list(f.index) == [1, 2]
    assert f["tenure_days"].tolist() == [61.0, 366.0]  # from signup_ts; 2020 is a leap year
    assert f["region"].tolist() == ["north", "south"]
    assert f["vip"].tolist() == [True, False]
    assert "signup_ts" not in f.columns
    assert list(f.columns[-2:]) == ["region", "vip"]
    assert f.loc[1, "recency_days"] == 1.0 and f.loc[1, "ticket_count"] == 2


def test_ibis_input_matches_pandas_input(transactions, customers, tickets):
    from_pandas = customer_features(transactions, CUTOFF, customers=customers, tickets=tickets)
    from_ibis = customer_features(
        ibis.memtable(transactions),
        "2021-01-01",
        customers=ibis.memtable(customers),
        tickets=ibis.memtable(tickets),
    )
    pd.testing.assert_frame_equal(from_pandas, from_ibis)


def test_user_mistakes_raise_data_error(transactions, customers):
    with pytest.raises(DataError, match=r"transactions.*amount"):
        customer_features(transactions.drop(columns="amount"), CUTOFF)
    with pytest.raises(DataError, match=r"customers.*frequency"):
        customer_features(transactions, CUTOFF, customers=customers.assign(frequency=1))
    with pytest.raises(DataError, match=r"tickets.*kind"):
        customer_features(
            transactions, CUTOFF, tickets=pd.DataFrame({"customer_id": [1], "ts": [CUTOFF]})
        )


def _random_transactions(n_rows: int, n_customers: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    secs = rng.integers(0, 720 * 86_400, n_rows)
    return pd.DataFrame(
        {
            "customer_id": rng.integers(0, n_customers, n_rows),
            "ts": pd.Timestamp("2019-06-01") + pd.to_timedelta(secs, unit="s"),
            "amount": np.round(rng.gamma(2.0, 25.0, n_rows), 2),
            "returned": rng.random(n_rows) < 0.1,
        }
    )


def test_features_match_a_pandas_reference_on_random_data():
    tx = _random_transactions(6_000, 400, seed=3)
    f = customer_features(tx, CUTOFF, window_days=45)
    past = tx[tx.ts < CUTOFF].sort_values(["customer_id", "ts"])
    g = past.groupby("customer_id")
    day = pd.Timedelta(days=1)
    gaps = g.ts.diff() / day
    w = pd.Timedelta(days=45)
    last = past.ts >= CUTOFF - w
    prior = (past.ts >= CUTOFF - 2 * w) & ~last
    ref = pd.DataFrame(
        {
            "recency_days": (CUTOFF - g.ts.max()) / day,
            "frequency": g.size(),
            "purchase_days": g.ts.agg(lambda s: s.dt.normalize().nunique()),
            "monetary_total": g.amount.sum(),
            "tenure_days": (CUTOFF - g.ts.min()) / day,
            "gap_mean_days": gaps.groupby(past.customer_id).mean(),
            "gap_std_days": gaps.groupby(past.customer_id).std(ddof=1),
            "freq_last_w": last.groupby(past.customer_id).sum(),
            "freq_prior_w": prior.groupby(past.customer_id).sum(),
            "spend_last_w": past.amount.where(last, 0.0).groupby(past.customer_id).sum(),
            "return_rate": g.returned.mean(),
        }
    )
    assert f.index.equals(ref.index)
    for col in ref.columns:
        np.testing.assert_allclose(f[col], ref[col], rtol=1e-9, atol=1e-9, err_msg=col)


def test_two_runs_are_bit_identical_on_a_large_input():
    # Float sums only depend on thread order with >= 3 partial aggregates per group
    # (a + b == b + a): 400k rows are 4 DuckDB row groups, scanned by 4 threads. On this input
    # plain float SUMs differed within 5 runs in 7 of 10 trials; the DECIMAL sums never did.
    tx = _random_transactions(400_000, 2_000, seed=11)
    con = ibis.get_backend()
    threads = con.raw_sql("SELECT current_setting('threads')").fetchone()[0]
    con.raw_sql("SET threads = 4")
    try:
        runs = [customer_features(tx, CUTOFF) for _ in range(5)]
    finally:
        con.raw_sql(f"SET threads = {int(threads)}")
    for other in runs[1:]:
        pd.testing.assert_frame_equal(runs[0], other, check_exact=True)
        for col in runs[0].columns:
            a, b = runs[0][col].to_numpy(), other[col].to_numpy()
            assert a.tobytes() == b.tobytes(), col


# ----------------------------------------------------------------------------- segments


def _features(**cols) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    base = {
        "recency_days": np.full(n, 10.0),
        "frequency": np.ones(n, dtype=np.int64),
        "monetary_total": np.full(n, 100.0),
        "tenure_days": np.full(n, 365.0),
    }
    base.update(cols)
    return pd.DataFrame(base, index=pd.Index(np.arange(1, n + 1), name="customer_id"))


def test_scores_are_quintiles_with_five_best():
    f = _features(
        recency_days=np.arange(10, dtype=float),  # smaller recency = better
        frequency=np.arange(10, 20),
        monetary_total=np.arange(10, dtype=float)[::-1].copy(),
    )
    s = rfm_segments(f)
    assert s["r_score"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert s["f_score"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert s["m_score"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    # high = top 20%, mid = next 30%, low = the rest
    assert s["value_tier"].tolist() == ["high"] * 2 + ["mid"] * 3 + ["low"] * 5
    assert list(s.columns) == [*f.columns, *SEGMENT_COLUMNS]


def test_tied_customers_share_a_score_and_tier():
    f = _features(
        frequency=np.array([1, 1, 1, 1, 1, 1, 2, 2, 3, 4]),
        monetary_total=np.array([5.0, 5.0, 1, 1, 1, 1, 1, 1, 1, 1]),
    )
    s = rfm_segments(f)
    # 1 + floor(5 * (#customers strictly lower) / n)
    assert s["f_score"].tolist() == [1] * 6 + [4, 4, 5, 5]
    assert s["m_score"].tolist() == [5, 5] + [1] * 8
    assert s["r_score"].tolist() == [1] * 10
    # 8 tied at the bottom: only 20% spent strictly more, so all are "mid"
    assert s["value_tier"].tolist() == ["high", "high"] + ["mid"] * 8
    # ties straddling the 20% line all go up: 3 of 10 share the top spend
    s3 = rfm_segments(_features(monetary_total=np.array([9.0, 9, 9, 5, 4, 3, 2, 1, 0, 0])))
    assert s3["value_tier"].tolist() == ["high"] * 3 + ["mid"] * 2 + ["low"] * 5


def test_rfm_segment_hand_picked_cells():
    # 5 customers: each score equals rank + 1; FM = round-half-up((F + M) / 2)
    r = np.array([5, 1, 4, 3, 2])
    fs = np.array([5, 1, 2, 3, 4])
    ms = np.array([4, 2, 1, 5, 3])
    f = _features(recency_days=(10.0 - r), frequency=fs, monetary_total=ms.astype(float))
    s = rfm_segments(f)
    assert s["r_score"].tolist() == r.tolist()
    assert s["rfm_segment"].tolist() == [
        "champions",  # R5 FM5 (5+4 -> 4.5 -> 5)
        "lost",  # R1 FM2 (1+2 -> 1.5 -> 2)
        "potential_loyalist",  # R4 FM2
        "loyal",  # R3 FM4
        "at_risk",  # R2 FM4
    ]


def test_rfm_segment_covers_the_whole_grid():
    k = np.arange(25)
    r_group, fm_group = k // 5 + 1, k % 5 + 1  # 5 customers per R and per FM score
    f = _features(
        recency_days=(1000.0 - 100 * r_group - k),
        frequency=100 * fm_group + k,
        monetary_total=(100.0 * fm_group + k),
    )
    s = rfm_segments(f)
    assert s["r_score"].tolist() == r_group.tolist()
    assert s["f_score"].tolist() == fm_group.tolist() == s["m_score"].tolist()
    expected = [RFM_SEGMENT_GRID[r][fm - 1] for r, fm in zip(r_group, fm_group, strict=True)]
    assert s["rfm_segment"].tolist() == expected
    assert set(expected) == {
        "champions",
        "loyal",
        "potential_loyalist",
        "new",
        "promising",
        "need_attention",
        "about_to_sleep",
        "at_risk",
        "cannot_lose",
        "hibernating",
        "lost",
    }
    assert RFM_SEGMENT_GRID[5][0] == "new" and RFM_SEGMENT_GRID[1][4] == "cannot_lose"


def test_activity_status_thresholds():
    f = _features(recency_days=np.array([0.0, 44.9, 45.0, 89.99, 90.0, 400.0]))
    s = rfm_segments(f)  # defaults: inactivity 90, active = inactivity / 2
    assert s["activity_status"].tolist() == ["active", "active", "silent", "silent", "lost", "lost"]
    s = rfm_segments(f, active_days=30, inactivity_days=60)
    assert s["activity_status"].tolist() == ["active", "silent", "silent", "lost", "lost", "lost"]
    with pytest.raises(ValueError, match="active_days"):
        rfm_segments(f, active_days=100, inactivity_days=60)


def test_lifecycle_stage_precedence():
    f = _features(
        #                new   new*  lost  at_risk loyal repeat else
        tenure_days=np.array([10.0, 10.0, 200, 200, 200, 200, 200]),
        recency_days=np.array([5.0, 95.0, 100, 60, 10, 10, 10]),
        frequency=np.array([1, 1, 20, 30, 100, 2, 1]),
    )
    s = rfm_segments(f)
    assert s["f_score"].tolist() == [1, 1, 3, 4, 5, 3, 1]
    # new* : tenure < new_days wins over lost; at_risk has f_score 4 but is silent
    assert s["lifecycle_stage"].tolist() == [
        "new",
        "new",
        "lost",
        "at_risk",
        "loyal",
        "repeat",
        "new",
    ]
    s = rfm_segments(f, new_days=5)
    assert s["lifecycle_stage"].tolist()[:2] == ["new", "lost"]


def test_segments_accept_ibis_and_reject_missing_columns(transactions):
    f = customer_features(transactions, CUTOFF)
    from_pandas = rfm_segments(f)
    from_ibis = rfm_segments(ibis.memtable(f.reset_index()))
    pd.testing.assert_frame_equal(from_pandas, from_ibis)
    pd.testing.assert_frame_equal(from_pandas[f.columns], f)
    with pytest.raises(DataError, match="tenure_days"):
        rfm_segments(f.drop(columns="tenure_days"))
