"""Tracking helpers: pseudonymized ids, data fingerprints, provenance."""

from __future__ import annotations

import pandas as pd

from crm_models import tracking


def test_pseudonymize_is_salted_stable_and_hides_the_id():
    ids = [1, 2, 3, 1]
    a = tracking.pseudonymize(ids, "salt-a")
    assert a[0] == a[3] and len(set(a)) == 3
    assert list(tracking.pseudonymize(ids, "salt-a")) == list(a)
    assert set(tracking.pseudonymize(ids, "salt-b")).isdisjoint(a)
    assert all("1" != h and len(h) == 16 for h in a)


def test_pseudonymize_frame_replaces_the_index():
    df = pd.DataFrame({"x": [1.0, 2.0]}, index=pd.Index([10, 20], name="customer_id"))
    out = tracking.pseudonymize_frame(df, "s")
    assert list(out.columns) == ["customer_key", "x"]
    assert not out["customer_key"].astype(str).isin(["10", "20"]).any()


def test_id_salt_is_created_once_and_env_wins(tmp_path, monkeypatch):
    monkeypatch.delenv(tracking.SALT_ENV, raising=False)
    s1 = tracking.id_salt(tmp_path)
    assert s1 == tracking.id_salt(tmp_path) and len(s1) == 32
    monkeypatch.setenv(tracking.SALT_ENV, "from-env")
    assert tracking.id_salt(tmp_path) == "from-env"


def test_fingerprint_tracks_content_rows_and_time_range():
    t = pd.DataFrame(
        {"customer_id": [1, 2], "ts": pd.to_datetime(["2024-01-01", "2024-02-01"]), "amount": [1.0, 2.0]}
    )
    fp = tracking.data_fingerprint({"transactions": t})
    info = fp["tables"]["transactions"]
    assert info["rows"] == 2 and info["ts_min"].startswith("2024-01-01")
    assert tracking.data_fingerprint({"transactions": t.copy()})["sha256"] == fp["sha256"]
    t2 = t.assign(amount=[1.0, 2.01])
    assert tracking.data_fingerprint({"transactions": t2})["sha256"] != fp["sha256"]


def test_package_versions_and_git_commit():
    v = tracking.package_versions()
    assert "mlflow" in v and "pandas" in v and "python" in v
    assert "git_commit" in tracking.git_commit()
