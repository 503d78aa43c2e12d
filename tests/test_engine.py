"""The feature engine's edges: pandas in, Ibis/DuckDB in the middle, pandas out."""

from __future__ import annotations

import pandas as pd

from crm_models.features import customer_features
from crm_models.features.engine import as_timestamp, to_ibis


def test_nanosecond_timestamps_are_accepted():
    ts = pd.Timestamp("2024-01-01") + pd.to_timedelta([0.123456789, 3.5], unit="D")
    t = pd.DataFrame({"customer_id": [1, 1], "ts": ts, "amount": [5.0, 7.0]})
    assert t["ts"].dt.nanosecond.iloc[0] != 0
    out = customer_features(t, "2024-02-01")
    assert out.loc[1, "frequency"] == 2
    assert out.loc[1, "monetary_total"] == 12.0
    # the input frame is not modified
    assert t["ts"].dt.nanosecond.iloc[0] != 0
    assert to_ibis(t).count().to_pyarrow().as_py() == 2


def test_as_timestamp_accepts_strings_dates_and_aware_timestamps():
    assert as_timestamp("2024-03-01") == pd.Timestamp("2024-03-01")
    assert as_timestamp(pd.Timestamp("2024-03-01T01:00", tz="Europe/Berlin")) == pd.Timestamp(
        "2024-03-01T00:00"
    )
    assert as_timestamp(None) is None
