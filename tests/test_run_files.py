"""`crm-models run` on the user's own files: column mapping, three source kinds, bad data refused.

The simulator's tables are written as a CSV with the user's own column names, a Parquet file and a
table in a DuckDB database; the config maps them onto the contracts without code.
"""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest
import yaml
from mlflow.tracking import MlflowClient

from crm_models.config import load_config
from crm_models.data.synthetic import simulate
from crm_models.experiment import run_experiment


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    ds = simulate(n_customers=1500, seed=11)
    tx = ds.tables["transactions"].rename(
        columns={"customer_id": "Customer ID", "ts": "Order Date", "amount": "Value"}
    )
    tx.to_csv(root / "orders.csv", sep=";", index=False)
    ds.tables["customers"].to_parquet(root / "customers.parquet", index=False)
    with duckdb.connect(str(root / "crm.duckdb")) as con:
        con.register("tickets_df", ds.tables["tickets"])
        con.execute("CREATE TABLE support_tickets AS SELECT * FROM tickets_df")
    config = {
        "name": "churn_files",
        "data": {
            "source": "files",
            "observation_end": ds.ground_truth["observation_end"],
            "tables": {
                "transactions": {
                    "path": str(root / "orders.csv"),
                    "read_options": {"sep": ";"},
                    "columns": {"customer_id": "Customer ID", "ts": "Order Date", "amount": "Value"},
                },
                "customers": {"path": str(root / "customers.parquet")},
                "tickets": {"path": str(root / "crm.duckdb"), "table": "support_tickets"},
            },
        },
        "tracking": {"log_model": False},
    }
    path = root / "churn_files.yaml"
    path.write_text(yaml.safe_dump(config))
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.chdir(root)
    yield root, path, ds
    mp.undo()


def test_run_on_mapped_user_files(user_files):
    _root, path, ds = user_files
    result = run_experiment(load_config(path))
    run = MlflowClient().get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["data.rows.transactions"] == str(len(ds.tables["transactions"]))
    assert run.data.params["data.rows.tickets"] == str(len(ds.tables["tickets"]))
    # no ground truth for user data: no oracle, but a real model
    assert "oracle_c_index" not in result.metrics
    assert result.metrics["c_index"] > 0.65


def test_bad_user_file_fails_before_any_run_is_logged(user_files):
    root, path, _ = user_files
    bad = root / "orders_bad.csv"
    lines = (root / "orders.csv").read_text().splitlines()
    first = lines[1].split(";")
    header = lines[0].split(";")
    first[header.index("Value")] = "twelve"
    lines[1] = ";".join(first)
    bad.write_text("\n".join(lines) + "\n")
    before = len(MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()]))
    proc = subprocess.run(
        [sys.executable, "-m", "crm_models.cli", "run", str(path),
         "--set", f"data.tables.transactions.path={bad}"],
        check=False, capture_output=True, text=True, cwd=root, timeout=300,
    )
    assert proc.returncode == 1
    assert "transactions.amount" in proc.stderr and "twelve" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    after = len(MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()]))
    assert after == before
