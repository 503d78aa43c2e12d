"""End to end: `crm-models run` on simulated data, logged to a real MLflow SQLite store.

Acceptance of the main job: held-out C-index >= 0.70 and within 0.03 of the simulator's oracle,
the run shows params, metrics, PNG plots and the config YAML, and two runs give identical metrics.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from crm_models.config import load_config
from crm_models.experiment import run_experiment

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real MLflow SQLite store and a data directory shared by the runs of this module."""
    root = tmp_path_factory.mktemp("e2e")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.setenv("CRM_MODELS_ID_SALT", "test-salt")
    mp.chdir(root)  # artifacts land under ./mlruns/artifacts of this temporary directory
    yield root
    mp.undo()


def _config(store: Path, *overrides: str):
    return load_config(
        REPO / "configs" / "churn_survival.yaml",
        [f"data.synthetic.dir={store / 'data'}", *overrides],
    )


@pytest.fixture(scope="module")
def main_runs(store):
    """The main job twice, on the default 20k-customer simulation."""
    cfg = _config(store)
    return cfg, run_experiment(cfg), run_experiment(cfg)


def test_main_job_meets_the_c_index_targets(main_runs):
    _, first, _ = main_runs
    m = first.metrics
    assert m["c_index"] >= 0.70, m
    assert m["oracle_c_index"] - m["c_index"] <= 0.03, m
    assert m["n_customers"] >= 5_000


def test_two_runs_with_the_same_config_give_identical_metrics(main_runs):
    _, first, second = main_runs
    timings = {"runtime_seconds", "shap_seconds"}  # wall-clock costs, not results
    a = {k: v for k, v in first.metrics.items() if k not in timings}
    b = {k: v for k, v in second.metrics.items() if k not in timings}
    assert len(a) > 15 and a == b
    assert first.run_id != second.run_id


def test_run_logs_params_metrics_plots_config_and_model(main_runs, store):
    cfg, first, _ = main_runs
    client = MlflowClient()
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.params.penalizer"] == "0.01"
    assert run.data.params["features.horizon_days"] == "180"
    assert float(run.data.metrics["c_index"]) == pytest.approx(first.metrics["c_index"])
    assert run.data.tags["task"] == "churn_survival"
    assert run.data.tags["git_commit"]
    assert run.data.tags["data_sha256"]

    def files(path=""):
        out = []
        for f in client.list_artifacts(first.run_id, path):
            out.extend(files(f.path) if f.is_dir else [f.path])
        return out

    logged = set(files())
    assert "config/resolved.yaml" in logged
    assert {"plots/km_by_segment.png", "plots/risk_distribution.png"} <= logged
    assert "provenance/data_fingerprint.json" in logged
    assert "provenance/package_versions.json" in logged
    assert "tables/feature_sample.csv" in logged

    local = Path(client.download_artifacts(first.run_id, "config/resolved.yaml", str(store / "dl")))
    assert load_config(local).model_dump() == cfg.model_dump()
    png = Path(client.download_artifacts(first.run_id, "plots/km_by_segment.png", str(store / "dl")))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    sample = pd.read_csv(
        client.download_artifacts(first.run_id, "tables/feature_sample.csv", str(store / "dl"))
    )
    assert "customer_id" not in sample.columns
    assert sample["customer_key"].str.fullmatch(r"[0-9a-f]{16}").all()

    model = mlflow.pyfunc.load_model(f"runs:/{first.run_id}/model")
    features = sample.drop(columns=["customer_key", "duration_days", "event", "risk"])
    pred = model.predict(features.head(5))
    assert {"risk", "churn_probability_180d", "expected_lifetime_days"} <= set(pred.columns)
    assert pred["risk"].to_numpy() == pytest.approx(sample["risk"].head(5).to_numpy())
