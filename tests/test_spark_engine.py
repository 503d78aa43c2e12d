"""engine: spark — the same feature builders on Spark local mode give the DuckDB engine's tables.

Marked ``spark`` (pyspark comes with the dev extra, so CI runs these). One local session for the
module; the simulated tables are handed to Spark as temporary views, so both engines read the
same rows. Counts must be equal exactly, sums and means to 1e-9 relative.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.spark

import pyspark  # noqa: F401  (a dev dependency: a missing pyspark fails, never skips)

from crm_models import features as F
from crm_models import spark as S
from crm_models.config import SparkConfig, TableSource
from crm_models.data.synthetic import simulate
from crm_models.data.validation import DataValidationError
from crm_models.features.paths import (
    aggregate_paths,
    build_journeys,
    conversions_from_touchpoints,
)

CUTOFF = pd.Timestamp("2024-07-01")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def session():
    return S.spark_session(SparkConfig(master="local[2]"))


@pytest.fixture(scope="module")
def sim():
    return simulate(3_000, seed=11)


@pytest.fixture(scope="module")
def both(session, sim):
    """(pandas tables for DuckDB, the same tables as Ibis tables on Spark)."""
    spark = {name: S.register_frame(session, f"t_{name}", df) for name, df in sim.tables.items()}
    return sim.tables, spark


def assert_same(duck: pd.DataFrame, spark: pd.DataFrame) -> None:
    """Same index, columns and rows; integer/text/bool/timestamp columns exact, floats 1e-9."""
    assert len(duck) > 0
    assert list(spark.columns) == list(duck.columns)
    assert spark.index.equals(duck.index)
    for col in duck.columns:
        a, b = duck[col], spark[col]
        if pd.api.types.is_float_dtype(a) or pd.api.types.is_float_dtype(b):
            np.testing.assert_allclose(
                b.to_numpy(float), a.to_numpy(float), rtol=1e-9, atol=0, equal_nan=True,
                err_msg=col,
            )
        elif pd.api.types.is_datetime64_any_dtype(a):
            assert (pd.to_datetime(b).to_numpy() == a.to_numpy()).all() or (
                a.isna().equals(b.isna()) and (a.dropna() == pd.to_datetime(b.dropna())).all()
            ), col
        else:
            assert a.isna().equals(b.isna()), col
            assert (a[a.notna()].astype(object) == b[b.notna()].astype(object)).all(), col


def test_customer_features_equal(both):
    duck, spark = both
    a = F.customer_features(duck["transactions"], CUTOFF, customers=duck["customers"],
                            tickets=duck["tickets"], window_days=90)
    b = F.customer_features(spark["transactions"], CUTOFF, customers=spark["customers"],
                            tickets=spark["tickets"], window_days=90)
    assert len(a.columns) >= 20
    assert_same(a, b)


def test_rfm_segments_equal(both):
    duck, spark = both
    a = F.rfm_segments(F.customer_features(duck["transactions"], CUTOFF))
    b = F.rfm_segments(F.customer_features_expr(spark["transactions"], CUTOFF))
    assert {"rfm_segment", "lifecycle_stage", "value_tier"} <= set(a.columns)
    assert a["rfm_segment"].nunique() > 3
    assert_same(a, b)


@pytest.mark.parametrize("holdout", [None, "2024-09-30"])
def test_btyd_summary_equal(both, holdout):
    duck, spark = both
    a = F.btyd_summary(duck["transactions"], "2024-06-30", holdout, time_unit="W")
    b = F.btyd_summary(spark["transactions"], "2024-06-30", holdout, time_unit="W")
    assert (a["frequency"] > 0).mean() > 0.3
    assert_same(a, b)


def test_churn_labels_equal(both):
    duck, spark = both
    a = F.noncontractual_churn_labels(duck["transactions"], CUTOFF, 180, 90)
    b = F.noncontractual_churn_labels(spark["transactions"], CUTOFF, 180, 90)
    assert 0 < a["event"].mean() < 1
    assert_same(a, b)
    a = F.contractual_churn_labels(duck["subscriptions"], CUTOFF, 180)
    b = F.contractual_churn_labels(spark["subscriptions"], CUTOFF, 180)
    assert 0 < a["event"].mean() < 1
    assert_same(a, b)


def test_journeys_and_paths_equal(both):
    duck, spark = both
    conv = conversions_from_touchpoints(duck["touchpoints"], duck["transactions"])
    a = build_journeys(duck["touchpoints"], conv, lookback_days=30, cutoff=CUTOFF)
    b = build_journeys(spark["touchpoints"], conv, lookback_days=30, cutoff=CUTOFF)
    assert a["converted"].sum() > 100
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(aggregate_paths(a), aggregate_paths(b))
    # the journeys kept in the engine (build_journeys_expr, for tables too large for pandas):
    # the same rows on Spark, lists in time order
    from crm_models.features.engine import to_ibis
    from crm_models.features.paths import build_journeys_expr

    expr = build_journeys_expr(spark["touchpoints"], to_ibis(conv), 30, cutoff=CUTOFF)
    c = (expr.to_pyarrow().to_pandas().sort_values(["customer_id", "journey_id"])
         .reset_index(drop=True))
    assert len(c) == len(a)
    assert [list(x) for x in c["channels"]] == [list(x) for x in a["channels"]]
    assert [list(pd.to_datetime(x)) for x in c["timestamps"]] == [
        list(pd.to_datetime(x)) for x in a["timestamps"]]
    np.testing.assert_allclose(c["value"], a["value"], rtol=1e-9)
    assert (c["converted"].to_numpy() == a["converted"].to_numpy()).all()


def test_parquet_source_with_column_mapping_and_checks(session, sim, tmp_path):
    """Files are read by Spark, columns mapped, values checked on Spark with counted examples."""
    tx = sim.tables["transactions"].rename(columns={"customer_id": "cust"})
    good = tmp_path / "tx.parquet"
    tx.assign(ts=tx["ts"].astype("datetime64[us]")).to_parquet(good)
    src = TableSource(path=str(good), columns={"customer_id": "cust"})
    t = S.read_source(session, "transactions", src)
    typed = S.check_tables({"transactions": t})
    assert int(typed["transactions"].count().to_pyarrow().as_py()) == len(tx)

    bad = tx.head(50).copy()
    bad["amount"] = bad["amount"].astype(str)
    bad.loc[3, "amount"] = "abc"
    bad.loc[5, "amount"] = "-2.5"
    bad["ts"] = bad["ts"].astype(str)
    bad.loc[7, "ts"] = "2024-13-45"
    path = tmp_path / "bad.csv"
    bad.drop(columns=["order_id"]).to_csv(path, index=False)
    t = S.read_source(session, "transactions", TableSource(path=str(path),
                                                          columns={"customer_id": "cust"}))
    with pytest.raises(DataValidationError) as err:
        S.check_tables({"transactions": t}, sources={"transactions": str(path)})
    text = str(err.value)
    assert "transactions.amount  wrong type: 1 row is not a valid amount" in text and "'abc'" in text
    assert "transactions.ts  unparseable timestamp: 1 row is" in text and "2024-13-45" in text
    probs = sorted((p.column, p.check, p.message, p.n_rows) for p in err.value.report.problems)
    assert probs == [("amount", "invalid amount", "1 row is negative", 1),
                     ("amount", "wrong type", "1 row is not a valid amount", 1),
                     ("ts", "unparseable timestamp", "1 row is not a valid timestamp", 1)]


def test_default_path_works_without_pyspark(tmp_path):
    """With pyspark unimportable, the package imports and a DuckDB run completes; asking for
    the Spark engine then is a clear ConfigError naming the extra."""
    code = (
        "import sys\n"
        "sys.modules['pyspark'] = None  # any import of pyspark now raises ImportError\n"
        "import crm_models.experiment, crm_models.cli, crm_models.serving, crm_models.tuning\n"
        "from crm_models.config import parse_config\n"
        "from crm_models.errors import ConfigError\n"
        "raw = {'name': 'nospark', 'model': {'name': 'cox_ph'}, 'explain': {'enabled': False},\n"
        "       'data': {'synthetic': {'customers': 600, 'dir': 'syn'}},\n"
        "       'tracking': {'log_model': False}}\n"
        "res = crm_models.experiment.run_experiment(parse_config(raw), progress=False)\n"
        "assert 0.5 < res.metrics['c_index'] <= 1, res.metrics\n"
        "try:\n"
        "    crm_models.experiment.load_data(parse_config({**raw, 'engine': 'spark'}))\n"
        "except ConfigError as exc:\n"
        "    assert 'pip install -e \".[spark]\"' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('no ConfigError')\n"
        "print('ok')\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "CRM_MODELS_ID_SALT": "x"}
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                         text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "ok"


def test_churn_xgb_aft_runs_on_spark_and_logs_to_mlflow(session, store):
    """`crm-models run configs/churn_xgb_aft.yaml --set engine=spark` (the shipped config, 20k
    simulated customers): exit 0, a FINISHED run with engine=spark, and the same metrics as the
    DuckDB run of the same config (the features are equal, so the model is too)."""
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from crm_models.cli import app

    config = str(REPO / "configs" / "churn_xgb_aft.yaml")
    runner = CliRunner()
    ids = {}
    for engine in ("spark", "duckdb"):
        result = runner.invoke(app, ["run", config, "--set", f"engine={engine}",
                                     "--set", "explain.enabled=false"])
        assert result.exit_code == 0, result.output[-3000:]
        ids[engine] = result.output.split("run id:")[1].split()[0]
    client = MlflowClient()
    spark_run, duck_run = (client.get_run(ids[e]) for e in ("spark", "duckdb"))
    assert spark_run.info.status == "FINISHED"
    assert spark_run.data.params["engine"] == "spark"
    assert spark_run.data.params["spark.master"] == "None"
    assert duck_run.data.params["engine"] == "duckdb"
    for key in ("c_index", "integrated_brier_score", "n_customers", "n_train"):
        assert spark_run.data.metrics[key] == pytest.approx(duck_run.data.metrics[key], rel=1e-9)
    assert spark_run.data.metrics["c_index"] > 0.7
    # the simulated tables are the same rows, so the data fingerprint is too
    assert spark_run.data.tags["data_sha256"] == duck_run.data.tags["data_sha256"]
    assert client.list_artifacts(ids["spark"], "model")


@pytest.mark.parametrize("objective", ["aft", "cox"])
def test_distributed_xgboost_matches_single_machine(session, objective):
    """Two Spark workers boosting together (histograms all-reduced) give the single-machine
    model up to the distributed quantile sketch of the bins: risks correlate > 0.995 (4k rows),
    same C-index +-0.005."""
    from lifelines.utils import concordance_index

    from crm_models.models.survival import XGBSurvival

    rng = np.random.default_rng(3)
    n = 4_000
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    t = rng.exponential(60 * np.exp(-0.8 * X["a"] + 0.4 * X["b"]))
    e = rng.random(n) < 0.7
    kw = {"objective": objective, "n_estimators": 40, "max_depth": 3, "subsample": 1.0,
          "colsample_bytree": 1.0, "learning_rate": 0.1}
    local = XGBSurvival(**kw).fit(X, t, e)
    trainer = S.SparkBoosterTrainer(num_workers=2)
    dist = XGBSurvival(**kw, distributed=trainer).fit(X, t, e)
    assert dist.booster_.num_boosted_rounds() == 40
    r0, r1 = local.predict_risk(X), dist.predict_risk(X)
    assert np.corrcoef(r0, r1)[0, 1] > 0.995
    c0, c1 = concordance_index(t, -r0, e), concordance_index(t, -r1, e)
    assert c0 > 0.65 and abs(c0 - c1) < 0.005
    # survival curves come from the same baseline machinery (Breslow for cox, sigma for aft)
    s = dist.predict_survival(X.head(5), [30, 90])
    assert s.shape == (5, 2) and (np.diff(s, axis=1) <= 0).all()
    import pickle

    assert pickle.loads(pickle.dumps(dist)).predict_risk(X.head(3)) == pytest.approx(r1[:3])


def test_distributed_training_run_and_its_config_errors(session, store):
    from mlflow.tracking import MlflowClient

    from crm_models.config import load_config
    from crm_models.errors import ConfigError
    from crm_models.experiment import run_experiment

    overrides = ["engine=spark", "spark.distributed_training=true", "spark.num_workers=2",
                 "data.synthetic.customers=3000", "data.synthetic.dir=data/syn3k",
                 "model.params.n_estimators=30", "explain.enabled=false"]
    cfg = load_config(REPO / "configs" / "churn_xgb_aft.yaml", overrides)
    res = run_experiment(cfg, progress=False)
    run = MlflowClient().get_run(res.run_id)
    assert run.data.params["spark.distributed_training"] == "True"
    assert 0.7 < res.metrics["c_index"] <= 1
    with pytest.raises(ConfigError, match="trains on one machine"):
        run_experiment(load_config(REPO / "configs" / "churn_survival.yaml",
                                   [o for o in overrides if "n_estimators" not in o]),
                       progress=False)
    with pytest.raises(ConfigError, match="needs engine: spark"):
        load_config(REPO / "configs" / "churn_xgb_aft.yaml", ["spark.distributed_training=true"])


@pytest.mark.parametrize("config", ["clv_synthetic.yaml", "attribution_synthetic.yaml"])
def test_clv_and_attribution_tasks_on_spark_equal_duckdb(session, store, config):
    """The CLV task (BTYD summary, features, holdout spend, tracking on Spark) and the
    attribution task (journeys on Spark, only converted touches collected) log the same
    metrics as on DuckDB."""
    from crm_models.config import load_config
    from crm_models.experiment import run_experiment

    base = ["data.synthetic.customers=3000", "data.synthetic.dir=data/syn3k",
            "explain.enabled=false", "tracking.log_model=false"]
    if config.startswith("attribution"):
        base.append("attribution.n_boot=20")
    runs = {e: run_experiment(load_config(REPO / "configs" / config, [*base, f"engine={e}"]),
                              progress=False) for e in ("spark", "duckdb")}
    spark, duck = runs["spark"].metrics, runs["duckdb"].metrics
    keys = [k for k in duck if k != "runtime_seconds" and not k.endswith("_seconds")]
    assert len(keys) > 10
    for k in keys:
        assert spark[k] == pytest.approx(duck[k], rel=1e-9, abs=1e-12), k


def test_files_read_by_spark_run_and_bad_file_stops_before_mlflow(session, store, sim):
    """`data.source: files` with `engine: spark`: Parquet read by Spark (one table under a
    mapped column name), features written to `spark.features_path`, the same metrics as DuckDB
    reading the same files; a bad file is a clear error, exit 1, and no MLflow run."""
    import mlflow
    import yaml
    from typer.testing import CliRunner

    from crm_models.cli import app

    d = store / "files"
    d.mkdir()
    for name in ("transactions", "customers", "tickets"):
        df = sim.tables[name]
        df = df.assign(**{c: df[c].astype("datetime64[us]") for c in df.columns
                          if pd.api.types.is_datetime64_any_dtype(df[c])})
        if name == "transactions":
            df = df.rename(columns={"customer_id": "cust"})
        df.to_parquet(d / f"{name}.parquet")
    tables = {n: {"path": str(d / f"{n}.parquet")} for n in ("transactions", "customers", "tickets")}
    tables["transactions"]["columns"] = {"customer_id": "cust"}
    raw = {"name": "spark_files", "model": {"name": "cox_ph"}, "explain": {"enabled": False},
           "features": {"cutoff": "2024-07-01", "horizon_days": 180},
           "data": {"source": "files", "tables": tables, "observation_end": "2025-01-01"},
           "tracking": {"experiment": "spark_files", "log_model": False}}
    cfg = store / "files.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    out = {}
    for engine in ("spark", "duckdb"):
        extra = ["--set", f"spark.features_path={d / 'features'}"] if engine == "spark" else []
        res = runner.invoke(app, ["run", str(cfg), "--set", f"engine={engine}", *extra])
        assert res.exit_code == 0, res.output[-3000:]
        out[engine] = mlflow.get_run(res.output.split("run id:")[1].split()[0])
    assert out["spark"].data.metrics["c_index"] == pytest.approx(
        out["duckdb"].data.metrics["c_index"], rel=1e-9)
    feats = pd.read_parquet(d / "features")
    assert len(feats) == len(sim.tables["customers"]) and "rfm_segment" in feats.columns
    n_runs = len(mlflow.search_runs(experiment_names=["spark_files"]))

    bad = sim.tables["transactions"].head(100).copy()
    bad["amount"] = bad["amount"].astype(str)
    bad.loc[4, "amount"] = "abc"
    bad.to_csv(d / "bad.csv", index=False)
    raw["data"]["tables"] = {"transactions": {"path": str(d / "bad.csv")}}
    cfg.write_text(yaml.safe_dump(raw))
    res = runner.invoke(app, ["run", str(cfg), "--set", "engine=spark"])
    assert res.exit_code == 1
    assert "transactions.amount  wrong type: 1 row is not a valid amount" in res.output
    assert "'abc'" in res.output
    assert "Traceback" not in res.output
    assert len(mlflow.search_runs(experiment_names=["spark_files"])) == n_runs
