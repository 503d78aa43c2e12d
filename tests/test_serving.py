"""Export, HTTP serving and batch scoring of a churn run's models-from-code pyfunc.

Acceptance (issue 6): an exported churn run served by the real `mlflow models serve` on a free
loopback port answers the input example with exactly the in-process predictions, and a payload
with a missing or mistyped column gets a 4xx naming the column. Batch scoring equals in-process
predictions chunk by chunk and never leaves a half-written output.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from crm_models.cli import app
from crm_models.config import load_config
from crm_models.errors import CrmModelsError
from crm_models.experiment import run_experiment
from crm_models.serving import export_run, model_uri

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()



@pytest.fixture(scope="module")
def exported(store):
    """A churn run (penalized Cox, 2,000 simulated customers) registered as churn_test@champion."""
    cfg = load_config(
        REPO / "configs" / "churn_survival.yaml",
        [f"data.synthetic.dir={store / 'data'}", "data.synthetic.customers=2000",
         "explain.enabled=false", "tracking.experiment=serving_test"],
    )
    result = run_experiment(cfg, progress=False)
    version = export_run(result.run_id, "churn_test", "champion")
    model = mlflow.pyfunc.load_model("models:/churn_test@champion")
    sample = pd.read_csv(
        MlflowClient().download_artifacts(result.run_id, "tables/feature_sample.csv", str(store))
    )
    return result, version, model, sample


def _features(sample: pd.DataFrame, model) -> pd.DataFrame:
    return sample[model.metadata.get_input_schema().input_names()]


def test_export_registers_a_tagged_version_with_signature_example_and_pinned_requirements(exported):
    result, version, model, _ = exported
    client = MlflowClient()
    mv = client.get_model_version_by_alias("churn_test", "champion")
    assert str(mv.version) == version.version == "1"
    assert mv.run_id == result.run_id
    assert mv.tags["task"] == "churn_survival" and mv.tags["run_id"] == result.run_id
    assert mv.tags["metric"] == "c_index"
    assert float(mv.tags["metric.c_index"]) == pytest.approx(result.metrics["c_index"], rel=1e-5)
    sig = model.metadata.signature
    assert {c.name for c in sig.outputs.inputs} == {
        "risk", "churn_probability_90d", "churn_probability_180d", "expected_lifetime_days",
    }
    assert all(c.required for c in sig.inputs.inputs)
    params = {p.name: p for p in sig.params.params}
    assert params["horizons_days"].default == [90, 180]
    assert isinstance(model.input_example, pd.DataFrame) and len(model.input_example) == 5
    local = Path(mlflow.artifacts.download_artifacts("models:/churn_test@champion"))
    reqs = (local / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in reqs} >= {"mlflow", "pandas", "scikit-learn", "lifelines"}
    assert all("==" in r for r in reqs)


def test_exported_model_reproduces_the_runs_logged_risk(exported):
    _, _, model, sample = exported
    pred = model.predict(_features(sample, model))
    np.testing.assert_allclose(pred["risk"].to_numpy(), sample["risk"].to_numpy(), rtol=1e-9)
    assert pred["churn_probability_180d"].between(0, 1).all()
    assert (pred["churn_probability_180d"] >= pred["churn_probability_90d"] - 1e-12).all()


def test_inference_params_select_the_horizons(exported):
    _, _, model, sample = exported
    X = _features(sample, model).head(50)
    default = model.predict(X)
    picked = model.predict(X, params={"horizons_days": [30, 90]})
    assert list(picked.columns) == [
        "risk", "churn_probability_30d", "churn_probability_90d", "expected_lifetime_days",
    ]
    np.testing.assert_array_equal(picked["churn_probability_90d"], default["churn_probability_90d"])
    assert (picked["churn_probability_30d"] <= picked["churn_probability_90d"] + 1e-12).all()


def test_export_refuses_failed_runs_runs_without_a_model_and_unknown_runs(exported):
    mlflow.set_experiment("serving_test")
    with mlflow.start_run() as failed:
        mlflow.set_tag("task", "churn_survival")
    MlflowClient().set_terminated(failed.info.run_id, status="FAILED")
    with pytest.raises(CrmModelsError, match="is FAILED, not FINISHED"):
        export_run(failed.info.run_id, "churn_test")
    with mlflow.start_run() as no_model:
        mlflow.set_tag("task", "churn_survival")
    with pytest.raises(CrmModelsError, match="has no logged model"):
        export_run(no_model.info.run_id, "churn_test")
    with pytest.raises(CrmModelsError, match="no run"):
        export_run("0" * 32, "churn_test")
    # nothing was registered by the refusals
    versions = MlflowClient().search_model_versions("name='churn_test'")
    assert [str(v.version) for v in versions] == ["1"]


def test_model_uri_forms():
    assert model_uri("churn@champion") == "models:/churn@champion"
    assert model_uri("churn/3") == "models:/churn/3"
    assert model_uri("runs:/abc/model") == "runs:/abc/model"
    with pytest.raises(CrmModelsError, match="NAME@ALIAS"):
        model_uri("churn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, body: dict) -> tuple[int, dict | str]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _split(df: pd.DataFrame) -> dict:
    # json.dumps writes floats with repr (exact round trip); DataFrame.to_json keeps 10 digits
    data = df.astype(object).where(df.notna(), None).to_numpy().tolist()
    return {"dataframe_split": {"columns": list(df.columns), "data": data}}


def test_served_model_answers_like_in_process_and_rejects_bad_payloads(exported, store):
    _, _, model, _ = exported
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crm_models.cli", "serve", "churn_test@champion", "--port", str(port)],
        cwd=store, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        example = model.input_example
        status, body = _post(port, _split(example))
        assert status == 200, body
        served = pd.DataFrame(body["predictions"])
        pd.testing.assert_frame_equal(served, model.predict(example), check_exact=True)

        status, body = _post(port, {**_split(example), "params": {"horizons_days": [30]}})
        assert status == 200 and "churn_probability_30d" in body["predictions"][0]

        status, body = _post(port, _split(example.drop(columns=["recency_days"])))
        assert 400 <= status < 500
        assert "missing inputs ['recency_days']" in body

        mistyped = example.astype({"frequency": object})
        mistyped.loc[mistyped.index[0], "frequency"] = "abc"
        status, body = _post(port, _split(mistyped))
        assert 400 <= status < 500
        assert "frequency" in body and "abc" in body
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    # stopping `crm-models serve` stops MLflow's server and its uvicorn child: the port is free
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


@pytest.fixture()
def feature_file(exported, tmp_path):
    _, _, model, sample = exported
    rows = pd.concat([sample] * 10, ignore_index=True)  # 2,000 rows
    rows["customer_key"] = rows["customer_key"] + "-" + (rows.index // len(sample)).astype(str)
    frame = rows[["customer_key", *model.metadata.get_input_schema().input_names()]]
    return frame, model


def test_score_csv_to_parquet_in_chunks_equals_in_process_predictions(feature_file, tmp_path):
    frame, model = feature_file
    src, dst = tmp_path / "features.csv", tmp_path / "scores.parquet"
    frame.to_csv(src, index=False)
    result = runner.invoke(
        app, ["score", "churn_test@champion", "--input", str(src), "--output", str(dst),
              "--chunk-rows", "700"],
    )
    assert result.exit_code == 0, result.output
    assert "2,000 rows in 3 chunks" in result.output
    out = pd.read_parquet(dst)
    assert list(out["customer_key"]) == list(frame["customer_key"])  # ids pass through, in order
    expected = model.predict(frame.drop(columns="customer_key"))
    pd.testing.assert_frame_equal(
        out.drop(columns="customer_key"), expected.reset_index(drop=True), rtol=1e-12
    )


def test_score_parquet_to_csv_with_params(feature_file, tmp_path):
    frame, model = feature_file
    src, dst = tmp_path / "features.parquet", tmp_path / "scores.csv"
    frame.to_parquet(src, index=False)
    result = runner.invoke(
        app, ["score", "churn_test@champion", "-i", str(src), "-o", str(dst), "--chunk-rows", "512",
              "--params", '{"horizons_days": [30]}'],
    )
    assert result.exit_code == 0, result.output
    out = pd.read_csv(dst)
    assert list(out.columns) == [
        "customer_key", "risk", "churn_probability_30d", "expected_lifetime_days",
    ]
    expected = model.predict(frame.drop(columns="customer_key"), params={"horizons_days": [30]})
    np.testing.assert_allclose(out["churn_probability_30d"], expected["churn_probability_30d"])


def test_score_bad_input_names_the_column_and_row_and_leaves_no_output(feature_file, tmp_path):
    frame, _ = feature_file
    bad = frame.astype({"recency_days": object})
    bad.loc[1500, "recency_days"] = "soon"  # in the third chunk: two chunks were already written
    src, dst = tmp_path / "bad.csv", tmp_path / "out.csv"
    bad.to_csv(src, index=False)
    result = runner.invoke(
        app, ["score", "churn_test@champion", "-i", str(src), "-o", str(dst), "--chunk-rows", "700"]
    )
    assert result.exit_code == 1
    assert "column 'recency_days' must be numeric" in result.output
    assert "row 1501 has 'soon'" in result.output and "Traceback" not in result.output
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]  # no partial file left

    missing = tmp_path / "missing.parquet"
    frame.drop(columns=["tenure_days"]).to_parquet(missing, index=False)
    result = runner.invoke(app, ["score", "churn_test@champion", "-i", str(missing), "-o", str(dst)])
    assert result.exit_code == 1
    assert "missing column(s) ['tenure_days']" in result.output and "Example row 1" in result.output
    assert not dst.exists()


@pytest.mark.filterwarnings("ignore:Found unknown categories:UserWarning")
def test_served_fast_paths_are_active_and_equal_the_pipeline(exported, monkeypatch):
    """The pyfunc's compiled preprocessing and linear risk give the pipeline's own numbers, also
    for missing values and categories never seen in training."""
    from crm_models.serving import churn_predictions

    _, _, model, sample = exported
    churn = model.unwrap_python_model()
    assert churn.transform is not None and churn.risk is not None  # Cox: both fast paths
    pipe = churn.pipeline
    X = _features(sample, model).copy()
    X.loc[X.index[:5], "region"] = "atlantis"  # unknown category
    X.loc[X.index[5:10], "plan"] = None
    X.loc[X.index[10:15], "gap_std_days"] = np.nan
    fast = churn.transform(X)
    slow = pipe.transform(X)
    assert list(fast.columns) == list(slow.columns)
    np.testing.assert_array_equal(fast.to_numpy(), slow.to_numpy())
    monkeypatch.setattr("crm_models.serving.SURVIVAL_BLOCK_ROWS", 37)  # several blocks
    a = churn_predictions(pipe, X, [90, 180], 180)
    b = churn.predict(None, X)
    np.testing.assert_allclose(b["risk"], a["risk"], rtol=1e-12, atol=1e-12)
    pd.testing.assert_frame_equal(b.drop(columns="risk"), a.drop(columns="risk"), check_exact=True)
    # and churn_predictions is the pipeline's own methods (to the last bits: lifelines' products
    # sum in a block-shape-dependent order)
    np.testing.assert_allclose(
        a["churn_probability_90d"], pipe.predict_churn_probability(X, 90), rtol=1e-12, atol=1e-15
    )
    np.testing.assert_allclose(
        a["expected_lifetime_days"], pipe.predict_expected_lifetime(X, 180), rtol=1e-12
    )
