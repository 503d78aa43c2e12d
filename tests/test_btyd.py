"""btyd_summary: Fader-Hardie CDNOW figures, a pandas reference, point-in-time and input errors."""

from __future__ import annotations

import duckdb
import ibis
import numpy as np
import pandas as pd
import pytest

from crm_models.data.cdnow import load_cdnow
from crm_models.errors import DataError
from crm_models.features import btyd_summary, btyd_summary_expr
from crm_models.features.btyd import CALIBRATION_COLUMNS, HOLDOUT_COLUMNS, TIME_UNIT_DAYS

CAL_END = "1997-09-30"
OBS_END = "1998-06-30"


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return load_cdnow(sample=True)


def reference_summary(
    tx: pd.DataFrame, calibration_end: str, observation_end: str | None, unit_days: float
) -> pd.DataFrame:
    """The definitions computed directly in pandas (the mean of repeat days, not a difference)."""
    cal = pd.Timestamp(calibration_end)
    end = pd.Timestamp(observation_end) if observation_end else cal
    tx = tx.assign(day=tx["ts"].dt.normalize())
    days = tx[tx["day"] <= end].groupby(["customer_id", "day"], as_index=False)["amount"].sum()
    in_cal = days[days["day"] <= cal]
    g = in_cal.groupby("customer_id")["day"]
    first, last, n = g.min(), g.max(), g.size()
    repeat = in_cal[in_cal["day"] > in_cal["customer_id"].map(first)]
    out = pd.DataFrame(
        {
            "frequency": n - 1,
            "recency": (last - first).dt.days / unit_days,
            "T": (cal - first).dt.days / unit_days,
            "monetary_value": repeat.groupby("customer_id")["amount"].mean(),
        }
    ).fillna({"monetary_value": 0.0})
    if observation_end:
        hold = days[(days["day"] > cal) & days["customer_id"].isin(out.index)]
        hg = hold.groupby("customer_id")["amount"]
        out["frequency_holdout"] = hg.size().reindex(out.index, fill_value=0)
        out["monetary_value_holdout"] = hg.mean().reindex(out.index, fill_value=0.0)
        out["duration_holdout"] = (end - cal).days / unit_days
    return out.sort_index()


def assert_matches_reference(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got.index.equals(want.index)
    assert list(got.columns) == list(want.columns)
    for col in ("frequency", "recency", "T", "frequency_holdout", "duration_holdout"):
        if col in want:
            np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy(), err_msg=col)
    for col in ("monetary_value", "monetary_value_holdout"):
        if col in want:
            np.testing.assert_allclose(got[col], want[col], rtol=0, atol=1e-9, err_msg=col)


# --- Fader, Hardie & Lee (2005) design on the 2,357-customer sample --------------------------


def test_cdnow_sample_matches_fader_hardie_figures(cdnow: pd.DataFrame) -> None:
    s = btyd_summary(cdnow, CAL_END, OBS_END, time_unit="W")
    assert len(s) == 2_357
    assert s["frequency"].sum() == 2_457
    jan1 = cdnow.loc[cdnow["ts"] == "1997-01-01", "customer_id"].unique()
    assert len(jan1) > 0
    assert (s.loc[jan1, "T"].round(2) == 38.86).all()
    # 39-week calibration and holdout periods.
    assert (s["duration_holdout"] == 39.0).all()
    assert s["T"].max() == 272 / 7  # 1997-01-01 .. 1997-09-30


def test_output_is_sorted_typed_and_indexed_by_customer(cdnow: pd.DataFrame) -> None:
    s = btyd_summary(cdnow, CAL_END, OBS_END)
    assert s.index.name == "customer_id"
    assert s.index.is_monotonic_increasing and s.index.is_unique
    assert list(s.columns) == [*CALIBRATION_COLUMNS, *HOLDOUT_COLUMNS]
    assert s["frequency"].dtype == "int64" and s["frequency_holdout"].dtype == "int64"
    assert (s["recency"] <= s["T"]).all() and (s["recency"] >= 0).all()
    assert ((s["frequency"] == 0) == (s["monetary_value"] == 0)).all()
    assert ((s["frequency"] == 0) <= (s["recency"] == 0)).all()


@pytest.mark.parametrize("time_unit", sorted(TIME_UNIT_DAYS))
@pytest.mark.parametrize("observation_end", [None, OBS_END])
def test_cdnow_sample_equals_pandas_reference(
    cdnow: pd.DataFrame, time_unit: str, observation_end: str | None
) -> None:
    got = btyd_summary(cdnow, CAL_END, observation_end, time_unit=time_unit)
    want = reference_summary(cdnow, CAL_END, observation_end, TIME_UNIT_DAYS[time_unit])
    assert_matches_reference(got, want)


def test_cdnow_master_equals_pandas_reference() -> None:
    master = load_cdnow()
    got = btyd_summary(master, CAL_END, OBS_END)
    assert len(got) == 23_570
    assert_matches_reference(got, reference_summary(master, CAL_END, OBS_END, 7.0))


# --- hand-computed ground truth ----------------------------------------------------------------


def _tx(rows: list[tuple[int, str, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["customer_id", "ts", "amount"])
    return df.assign(ts=pd.to_datetime(df["ts"], format="ISO8601"))


def test_rows_of_one_day_are_one_purchase_and_the_calibration_day_counts_whole() -> None:
    tx = _tx(
        [
            (1, "2020-01-01 08:00", 10.0),
            (1, "2020-01-01 20:00", 5.0),  # same day: one purchase worth 15
            (1, "2020-01-08 12:00", 7.0),
            (1, "2020-01-15 23:59:59", 3.0),  # on the calibration end day: included
            (1, "2020-01-16 00:00", 100.0),  # next day: holdout
            (1, "2020-01-16 09:00", 1.0),  # same holdout day: one purchase worth 101
            (1, "2020-01-20", 9.0),
            (1, "2020-01-30", 1000.0),  # after observation_end day
            (2, "2020-01-15 10:00", 4.0),  # first purchase on the last calibration day
            (3, "2020-01-16", 6.0),  # first purchase after calibration: excluded
        ]
    )
    s = btyd_summary(tx, "2020-01-15", "2020-01-22", time_unit="D")
    assert s.index.tolist() == [1, 2]
    assert s.loc[1, "frequency"] == 2
    assert s.loc[1, "recency"] == 14.0
    assert s.loc[1, "T"] == 14.0
    assert s.loc[1, "monetary_value"] == pytest.approx((7.0 + 3.0) / 2)
    assert s.loc[1, "frequency_holdout"] == 2
    assert s.loc[1, "monetary_value_holdout"] == pytest.approx((101.0 + 9.0) / 2)
    assert s.loc[1, "duration_holdout"] == 7.0
    assert s.loc[2].tolist() == [0, 0.0, 0.0, 0.0, 0, 0.0, 7.0]


def test_time_units_scale_days() -> None:
    tx = _tx([(1, "2020-01-01", 1.0), (1, "2020-03-01", 2.0)])
    days = 60  # 2020 is a leap year
    for unit, per_day in TIME_UNIT_DAYS.items():
        s = btyd_summary(tx, "2020-04-01", time_unit=unit)
        assert s.loc[1, "recency"] == days / per_day
        assert s.loc[1, "T"] == 91 / per_day
    assert TIME_UNIT_DAYS["M"] == 365.25 / 12


def test_boundaries_accept_timestamps_and_drop_the_time_of_day(cdnow: pd.DataFrame) -> None:
    iso = btyd_summary(cdnow, CAL_END, OBS_END)
    ts = btyd_summary(
        cdnow, pd.Timestamp("1997-09-30 13:45"), pd.Timestamp("1998-06-30 01:00", tz="UTC")
    )
    pd.testing.assert_frame_equal(iso, ts)


# --- point-in-time -----------------------------------------------------------------------------


@pytest.mark.parametrize("observation_end", [None, OBS_END])
def test_rows_after_calibration_end_change_no_calibration_column(
    cdnow: pd.DataFrame, observation_end: str | None
) -> None:
    before = btyd_summary(cdnow, CAL_END, observation_end)
    rng = np.random.default_rng(3)
    n = 5_000
    later = pd.DataFrame(
        {
            # existing customers and brand-new ones
            "customer_id": rng.choice(
                np.r_[cdnow["customer_id"].unique(), np.arange(10**6, 10**6 + 500)], n
            ),
            "ts": pd.Timestamp("1997-10-01")
            + pd.to_timedelta(rng.integers(0, 600 * 86_400, n), unit="s"),
            "amount": rng.gamma(2.0, 20.0, n),
            "quantity": 1,
        }
    )
    after = btyd_summary(pd.concat([cdnow, later], ignore_index=True), CAL_END, observation_end)
    assert after.index.equals(before.index)
    cols = list(CALIBRATION_COLUMNS)
    pd.testing.assert_frame_equal(after[cols], before[cols], check_exact=True)
    if observation_end is not None:
        # ...while the holdout does see them: the test data reach into it.
        assert after["frequency_holdout"].sum() > before["frequency_holdout"].sum()


# --- engines -----------------------------------------------------------------------------------


def test_ibis_table_on_a_duckdb_connection_gives_the_same_summary(cdnow: pd.DataFrame) -> None:
    # A persistent DuckDB table, not a memtable. (ibis 12's create_table from pandas emits
    # `DROP VIEW IF EXISTS` without a name, which DuckDB 2.0 rejects, so load it in SQL.)
    duck = duckdb.connect()
    duck.register("cdnow_frame", cdnow)
    duck.execute("CREATE TABLE tx AS SELECT * FROM cdnow_frame")
    duck.unregister("cdnow_frame")
    table = ibis.duckdb.from_connection(duck).table("tx")
    from_pandas = btyd_summary(cdnow, CAL_END, OBS_END)
    from_table = btyd_summary(table, CAL_END, OBS_END)
    pd.testing.assert_frame_equal(from_table, from_pandas)


def test_renamed_columns_and_date_typed_ts() -> None:
    tx = _tx([(1, "2020-01-01", 1.0), (1, "2020-01-03", 2.0), (2, "2020-01-02", 5.0)])
    user = tx.rename(columns={"customer_id": "cust", "ts": "day", "amount": "usd"}).assign(
        day=lambda d: d["day"].dt.date
    )
    table = ibis.memtable(user).mutate(day=ibis._.day.cast("date"))
    s = btyd_summary(table, "2020-01-05", time_unit="D", customer_id="cust", ts="day", amount="usd")
    assert s.index.name == "cust"
    assert s["frequency"].tolist() == [1, 0]
    assert s["T"].tolist() == [4.0, 3.0]
    assert s["monetary_value"].tolist() == [2.0, 0.0]


def test_expression_compiles_for_spark(
    cdnow: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The PySpark compiler reads an option that only `import pyspark` registers.
    class PySparkOptions(ibis.config.Config):
        treat_nan_as_null: bool = False

    monkeypatch.setattr(ibis.options, "pyspark", PySparkOptions())
    sql = ibis.to_sql(btyd_summary_expr(ibis.memtable(cdnow), CAL_END, OBS_END), "pyspark")
    assert "MIN_BY" in sql and "DATEDIFF" in sql


# --- user errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"calibration_end": "1996-12-31"}, "earliest row is customer_id=4, ts=1997-01-01"),
        ({"calibration_end": CAL_END, "observation_end": CAL_END}, "must be after"),
        ({"calibration_end": CAL_END, "observation_end": "1997-01-01"}, "must be after"),
        ({"calibration_end": CAL_END, "time_unit": "Y"}, "unknown time_unit 'Y'"),
        ({"calibration_end": "not a date"}, "calibration_end='not a date' is not a date"),
    ],
)
def test_bad_arguments_raise_data_error(cdnow: pd.DataFrame, kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        btyd_summary(cdnow, **kwargs)


def test_bad_columns_raise_data_error(cdnow: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"missing column\(s\) \['amount'\]"):
        btyd_summary(cdnow.drop(columns="amount"), CAL_END)
    with pytest.raises(DataError, match="transactions.ts: expected a timestamp"):
        btyd_summary(cdnow.assign(ts=cdnow["ts"].dt.strftime("%Y%m%d")), CAL_END)
    with pytest.raises(DataError, match="transactions.amount: expected a numeric"):
        btyd_summary(cdnow.assign(amount=cdnow["amount"].astype(str)), CAL_END)
    with pytest.raises(DataError, match="the table is empty"):
        btyd_summary(cdnow.iloc[:0], CAL_END)
