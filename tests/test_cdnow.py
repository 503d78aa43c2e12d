"""CDNOW loader: the published sizes of the master file and its 1/10 sample (README, FHL 2005)."""

from __future__ import annotations

import pandas as pd
import pytest

from crm_models.data.cdnow import load_cdnow


@pytest.fixture(scope="module")
def master() -> pd.DataFrame:
    return load_cdnow()


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return load_cdnow(sample=True)


def test_master_has_69659_rows_of_23570_customers(master: pd.DataFrame) -> None:
    assert len(master) == 69_659
    assert master["customer_id"].nunique() == 23_570


def test_sample_has_6919_rows_of_2357_customers(sample: pd.DataFrame) -> None:
    assert len(sample) == 6_919
    assert sample["customer_id"].nunique() == 2_357


@pytest.mark.parametrize("is_sample", [False, True])
def test_columns_and_dtypes_follow_the_transactions_contract(is_sample: bool) -> None:
    df = load_cdnow(sample=is_sample)
    assert list(df.columns) == ["customer_id", "ts", "amount", "quantity"]
    assert df["customer_id"].dtype == "int64"
    assert df["ts"].dtype == "datetime64[ns]"
    assert df["amount"].dtype == "float64"
    assert df["quantity"].dtype == "int64"
    assert df.notna().all().all()
    assert (df["amount"] >= 0).all() and (df["quantity"] >= 1).all()


@pytest.mark.parametrize("is_sample", [False, True])
def test_dates_span_the_study_and_first_purchases_fall_in_q1_1997(is_sample: bool) -> None:
    df = load_cdnow(sample=is_sample)
    assert df["ts"].min() == pd.Timestamp("1997-01-01")
    assert df["ts"].max() == pd.Timestamp("1998-06-30")
    first = df.groupby("customer_id")["ts"].min()
    assert first.max() <= pd.Timestamp("1997-03-25")


def test_sample_rows_are_master_rows_with_master_ids(
    master: pd.DataFrame, sample: pd.DataFrame
) -> None:
    # The sample keeps the master id (not the 1..2357 sample id), so every row joins back.
    keys = ["customer_id", "ts", "amount", "quantity"]
    counts_m = master.value_counts(keys)
    counts_s = sample.value_counts(keys)
    joined = counts_s.to_frame("s").join(counts_m.to_frame("m"), how="left")
    assert joined["m"].notna().all()
    assert (joined["s"] <= joined["m"]).all()
    # All of a sampled customer's rows are in the sample (customers are sampled, not rows).
    in_sample = master[master["customer_id"].isin(sample["customer_id"].unique())]
    assert len(in_sample) == len(sample)


def test_first_customer_row_matches_the_file(master: pd.DataFrame) -> None:
    # ' 00002 19970112  1   12.00' and ' 00002 19970112  5   77.00' are the file's rows 2-3.
    rows = master[master["customer_id"] == 2].head(2)
    assert rows["ts"].tolist() == [pd.Timestamp("1997-01-12")] * 2
    assert rows["amount"].tolist() == [12.00, 77.00]
    assert rows["quantity"].tolist() == [1, 5]
