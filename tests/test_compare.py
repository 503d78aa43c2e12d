"""`crm-models compare`: a leaderboard of logged runs ranked by the task's primary metric."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from crm_models.cli import app
from crm_models.config import load_config
from crm_models.errors import CrmModelsError
from crm_models.experiment import run_experiment
from crm_models.tracking import leaderboard, metric_direction

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def runs(store):
    """Penalized Cox at three penalizers: two in experiment cmp_a, one in cmp_b."""
    out = {}
    for penalizer, experiment in ((0.01, "cmp_a"), (5.0, "cmp_a"), (0.5, "cmp_b")):
        cfg = load_config(
            REPO / "configs" / "churn_survival.yaml",
            [f"data.synthetic.dir={store / 'data'}", "data.synthetic.customers=2000",
             "explain.enabled=false", "tracking.log_model=false",
             f"tracking.experiment={experiment}", f"model.params.penalizer={penalizer}"],
        )
        out[penalizer] = run_experiment(cfg, progress=False)
    return store, out


def test_leaderboard_ranks_an_experiments_runs_by_the_primary_metric(runs):
    _, results = runs
    board = leaderboard("cmp_a")
    assert (board.metric, board.direction) == ("c_index", "maximize")
    expected = sorted((results[0.01], results[5.0]), key=lambda r: -r.metrics["c_index"])
    assert list(board.frame["run_id"]) == [r.run_id for r in expected]
    assert list(board.frame["c_index"]) == pytest.approx([r.metrics["c_index"] for r in expected])
    assert list(board.frame["rank"]) == [1, 2]
    assert set(board.frame["model.params.penalizer"]) == {"0.01", "5.0"}
    assert set(board.frame["model_family"]) == {"cox_ph"}
    assert set(board.frame["task"]) == {"churn_survival"}
    assert set(board.frame["role"]) == {"run"}
    assert board.frame["dataset"].eq("synthetic_n2000_seed7").all()
    assert board.frame["start_time"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d").all()


def test_leaderboard_of_a_task_spans_experiments_and_minimizes_error_metrics(runs):
    board = leaderboard(task="churn_survival", metric="integrated_brier_score")
    assert board.direction == "minimize"
    assert set(board.experiments) == {"cmp_a", "cmp_b"} and len(board.frame) == 3
    ibs = board.frame["integrated_brier_score"].to_numpy()
    assert list(ibs) == sorted(ibs)
    assert metric_direction("val_c_index") == "maximize"
    assert metric_direction("rmse") == "minimize"


def test_compare_prints_and_writes_csv_and_markdown(runs, tmp_path):
    result = runner.invoke(app, ["compare", "--experiment", "cmp_a", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "ranked by c_index (maximize)" in result.output
    assert "| rank | c_index |" in result.output
    csv = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(csv["rank"]) == [1, 2] and "model.params.penalizer" in csv.columns
    md = (tmp_path / "leaderboard.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 4  # header, separator, two runs
    assert table[0].startswith("| rank | c_index | run_name | run_id |")


def test_compare_logs_a_leaderboard_run_that_later_boards_skip(runs):
    result = runner.invoke(app, ["compare", "--experiment", "cmp_a"])
    assert result.exit_code == 0, result.output
    run_id = result.output.strip().split()[-1]
    run = MlflowClient().get_run(run_id)
    assert run.data.tags["crm_models.role"] == "leaderboard"
    files = {f.path for f in MlflowClient().list_artifacts(run_id)}
    assert files == {"leaderboard.csv", "leaderboard.md"}
    assert run_id not in set(leaderboard("cmp_a").frame["run_id"])


def test_compare_errors_are_clear(runs):
    with pytest.raises(CrmModelsError, match="no MLflow experiment named 'nope'"):
        leaderboard("nope")
    with pytest.raises(CrmModelsError, match="no run has metric 'auc_999d'"):
        leaderboard("cmp_a", metric="auc_999d")
    result = runner.invoke(app, ["compare", "--experiment", "nope"])
    assert result.exit_code == 1 and "Traceback" not in result.output
