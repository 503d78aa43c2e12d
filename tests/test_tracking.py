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


def test_start_run_ends_failed_or_killed_with_the_error_and_nests_under_the_parent(tmp_path, monkeypatch):
    import mlflow
    import pytest as _pytest
    from mlflow.tracking import MlflowClient

    from crm_models.config import parse_config

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    cfg = parse_config({"name": "t", "tracking": {"experiment": "tracking_test"}})

    class Pruned(Exception):
        pass

    with tracking.start_run(cfg, run_name="parent") as parent:
        with _pytest.raises(ValueError), tracking.start_run(cfg, run_name="bad", nested=True):
            raise ValueError("boom")
        failed = tracking.last_run_id()
        with _pytest.raises(Pruned), tracking.start_run(
            cfg, run_name="pruned", nested=True, killed_on=(Pruned,)
        ):
            raise Pruned("at round 10")
        killed = tracking.last_run_id()
        assert mlflow.active_run().info.run_id == parent.info.run_id
    client = MlflowClient()
    bad, pruned = client.get_run(failed), client.get_run(killed)
    assert (bad.info.status, pruned.info.status) == ("FAILED", "KILLED")
    assert bad.data.tags["error"] == "ValueError: boom"
    assert pruned.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    # a finished run can be reopened (a resumed study's parent)
    with tracking.start_run(cfg, run_id=parent.info.run_id) as again:
        assert again.info.run_id == parent.info.run_id
