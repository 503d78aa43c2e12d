"""`crm-models tune`: an Optuna study whose trials are nested MLflow runs, resumable from SQLite.

Acceptance (issue 6): 4 trials, then --resume for 2 more, give 6 nested trial runs under the one
parent run. Trials never see the test customers; the refit of the best params is a normal run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import xgboost as xgb
from mlflow.tracking import MlflowClient

from crm_models import tuning
from crm_models.config import load_config
from crm_models.errors import ConfigError, CrmModelsError
from crm_models.evaluation import harrell_c_index
from crm_models.experiment import (
    ExperimentData,
    ValidationSplit,
    evaluation_split,
    run_experiment,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(store):
    """conftest's private store, with the Optuna storage beside it (not a shared one)."""
    mp = pytest.MonkeyPatch()
    mp.delenv(tuning.STORAGE_ENV, raising=False)
    yield store
    mp.undo()


def _config(store: Path, *overrides: str):
    return load_config(
        REPO / "configs" / "churn_xgb_aft.yaml",
        [
            f"data.synthetic.dir={store / 'data'}", "data.synthetic.customers=2000",
            "model.params.n_estimators=30", "explain.enabled=false", "name=tune_test",
            "tracking.experiment=tune_test", *overrides,
        ],
    )


@pytest.fixture(scope="module")
def tuned(store):
    # no pruning here: these tests count completed trials (pruning has its own tests below)
    cfg = _config(store, "tune.prune=false")
    first = tuning.tune(cfg, trials=4, progress=False)
    second = tuning.tune(cfg, trials=2, resume=True, progress=False)
    return cfg, first, second


def _runs(parent_id: str) -> pd.DataFrame:
    import mlflow

    return mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )


def test_four_trials_then_resume_two_gives_six_nested_trials_under_one_parent(tuned):
    _, first, second = tuned
    assert first.parent_run_id == second.parent_run_id
    assert (first.n_trials, first.new_trials, second.n_trials, second.new_trials) == (4, 4, 6, 2)
    children = _runs(first.parent_run_id)
    trials = children[children["tags.crm_models.role"] == "trial"]
    assert len(trials) == 6
    assert sorted(trials["tags.optuna.trial_number"].astype(int)) == list(range(6))
    assert set(trials["tags.optuna.trial_state"]) == {"COMPLETE"}
    assert set(trials["status"]) == {"FINISHED"}
    # one refit per session, each a nested run
    assert (children["tags.crm_models.role"] == "refit").sum() == 2
    study = optuna.load_study(study_name="tune_test", storage=second.storage)
    assert len(study.trials) == 6
    assert study.user_attrs[tuning.PARENT_RUN_ATTR] == first.parent_run_id


def test_every_run_carries_the_filter_tags_and_trial_params(tuned):
    _, first, _ = tuned
    children = _runs(first.parent_run_id)
    parent = MlflowClient().get_run(first.parent_run_id)
    for tags in [*children.filter(like="tags.").to_dict("records")]:
        assert tags["tags.task"] == "churn_survival"
        assert tags["tags.model_family"] == "xgb_aft"
        assert tags["tags.dataset"] == "synthetic_n2000_seed7"
    assert parent.data.tags["task"] == "churn_survival" and parent.data.tags["dataset"]
    trials = children[children["tags.crm_models.role"] == "trial"]
    # each trial logs its sampled params (as model.params.*) and its validation score
    study = optuna.load_study(study_name="tune_test", storage=first.storage)
    by_number = {t.number: t for t in study.trials}
    for _, row in trials.iterrows():
        t = by_number[int(row["tags.optuna.trial_number"])]
        assert row["metrics.val_c_index"] == pytest.approx(t.value)
        assert int(row["params.model.params.max_depth"]) == t.params["max_depth"]
        assert float(row["params.model.params.learning_rate"]) == pytest.approx(
            t.params["learning_rate"]
        )
        assert np.isnan(row.get("metrics.c_index", np.nan))  # no test score in a trial


def test_parent_holds_best_params_best_score_plots_and_the_refit_model(tuned, store):
    import mlflow

    _, _, second = tuned
    study = optuna.load_study(study_name="tune_test", storage=second.storage)
    run = MlflowClient().get_run(second.parent_run_id)
    assert run.info.status == "FINISHED"
    for key, value in study.best_params.items():
        assert run.data.tags[f"best.{key}"] == str(value)
    assert run.data.metrics["best_val_c_index"] == pytest.approx(study.best_value)
    assert second.best_value == pytest.approx(max(t.value for t in study.trials))
    assert run.data.metrics["n_trials"] == 6 and run.data.metrics["n_pruned"] == 0
    assert run.data.tags["refit_run_id"] == second.refit_run_id
    files = {f.path for f in MlflowClient().list_artifacts(second.parent_run_id, "tuning")}
    assert {"tuning/optimization_history.png", "tuning/param_importances.png",
            "tuning/trials.csv", "tuning/best_params.json"} <= files
    # the parent's model is the refit: same predictions on the input example
    parent_model = mlflow.pyfunc.load_model(f"runs:/{second.parent_run_id}/model")
    refit_model = mlflow.pyfunc.load_model(f"runs:/{second.refit_run_id}/model")
    example = parent_model.input_example
    pd.testing.assert_frame_equal(parent_model.predict(example), refit_model.predict(example))
    assert run.data.metrics["test_c_index"] == pytest.approx(second.test_metrics["c_index"])


def test_refit_is_a_normal_run_of_the_best_params_on_the_test_set(tuned, store):
    cfg, _, second = tuned
    refit = MlflowClient().get_run(second.refit_run_id)
    assert refit.data.tags["crm_models.role"] == "refit"
    assert refit.data.metrics["n_test"] == pytest.approx(second.test_metrics["n_test"])
    best = tuning.with_params(cfg, second.best_params, trial=False)
    best.tracking.log_model = False  # the model does not change the metrics; it costs time
    plain = run_experiment(best, progress=False)
    timings = {"runtime_seconds"}
    assert {k: v for k, v in plain.metrics.items() if k not in timings} == pytest.approx(
        second.test_metrics
    )


def test_existing_study_needs_resume_and_resume_needs_a_study(tuned, store):
    cfg, _, _ = tuned
    with pytest.raises(CrmModelsError, match="--resume"):
        tuning.tune(cfg, trials=1, progress=False)
    other = _config(store, "name=never_tuned")
    with pytest.raises(CrmModelsError, match="no study named 'never_tuned'"):
        tuning.tune(other, trials=1, resume=True, progress=False)


def test_study_storage_sits_next_to_the_sqlite_tracking_store(store, monkeypatch):
    assert tuning.optuna_storage(f"sqlite:///{store / 'mlflow.db'}") == (
        f"sqlite:///{store / 'optuna.db'}"
    )
    assert tuning.optuna_storage("http://127.0.0.1:5000") == "sqlite:///mlruns/optuna.db"
    monkeypatch.setenv(tuning.STORAGE_ENV, "sqlite:////elsewhere/o.db")
    assert tuning.optuna_storage() == "sqlite:////elsewhere/o.db"


def test_validation_split_holds_out_training_customers_only():
    cfg = load_config(REPO / "configs" / "churn_xgb_aft.yaml")
    index = pd.Index(np.arange(1000), name="customer_id")
    event = (np.arange(1000) % 3 == 0).astype(int)
    data = ExperimentData({}, pd.Timestamp("2024-01-01"))
    train, test = evaluation_split(cfg, data, index, event)
    data.validation = ValidationSplit(0.2, 42)
    fit, val = evaluation_split(cfg, data, index, event)
    assert set(fit) | set(val) == set(train)  # trials split the training customers only
    assert not (set(fit) | set(val)) & set(test)
    assert len(val) == pytest.approx(0.2 * len(train), abs=1)
    share = pd.Series(event, index=index)
    assert share.loc[val].mean() == pytest.approx(share.loc[train].mean(), abs=0.01)  # stratified


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tune.space.depth={type: int, low: 2, high: 4}", "'depth'] is not a parameter"),
        ("tune.space.max_depth={type: int, low: 4, high: 4}", "must be < high"),
        ("tune.space.max_depth={type: normal, low: 1, high: 4}", "tune.space.max_depth.type"),
        ("tune.space.learning_rate={type: float, low: 0, high: 1, log: true}", "low > 0"),
        ("tune.space.aft_loss_distribution={type: categorical}", "non-empty 'choices'"),
    ],
)
def test_bad_search_spaces_are_config_errors(override, message, store):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cfg = _config(store, override)
        tuning.check_space(cfg)


def test_config_without_tune_section_is_a_config_error(store):
    cfg = load_config(REPO / "configs" / "churn_survival.yaml")
    with pytest.raises(ConfigError, match="no tune: section"):
        tuning.tune(cfg, trials=1, progress=False)


def _survival_data(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Exponential times whose log-rate is linear in x0 (x1 is noise); censored at 3."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x0": rng.normal(size=n), "x[1]": rng.normal(size=n)})
    t = rng.exponential(np.exp(-1.5 * X["x0"].to_numpy()))
    return X, np.minimum(t, 3.0), (t < 3.0).astype(int)


def _aft_matrix(X: pd.DataFrame, d: np.ndarray, e: np.ndarray) -> xgb.DMatrix:
    names = [tuning._xgb_feature_name(c) for c in X.columns]
    return xgb.DMatrix(
        X.to_numpy(np.float32), label_lower_bound=d, label_upper_bound=np.where(e, d, np.inf),
        feature_names=names,
    )


def test_validation_reporter_reports_the_c_index_and_median_pruning_stops_a_bad_trial():
    X, d, e = _survival_data(1500, seed=1)
    Xv, dv, ev = _survival_data(500, seed=2)
    params = {"objective": "survival:aft", "eta": 0.1, "max_depth": 2, "seed": 0}
    reported: list[tuple[int, float]] = []
    booster = xgb.train(
        params, _aft_matrix(X, d, e), num_boost_round=20,
        callbacks=[tuning.ValidationReporter(Xv, dv, ev, lambda s, v: reported.append((s, v)), 5)],
    )
    assert [s for s, _ in reported] == [5, 10, 15, 20]
    # the last report is the C-index of the final booster (risk = minus predicted log-time)
    final = booster.predict(_aft_matrix(Xv, dv, ev), output_margin=True)
    assert reported[-1][1] == pytest.approx(harrell_c_index(dv, ev, -final))
    assert reported[-1][1] > 0.7  # the signal in x0 is strong

    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1)
    )

    def objective(trial: optuna.Trial) -> float:
        # trial 1 trains on shuffled labels: no signal, C ~ 0.5, below the median of trial 0
        labels = (d, e) if trial.number == 0 else (d[::-1].copy(), e[::-1].copy())

        last: list[float] = []

        def report(step: int, value: float) -> None:
            last.append(value)
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        xgb.train(params, _aft_matrix(X, *labels), num_boost_round=20,
                  callbacks=[tuning.ValidationReporter(Xv, dv, ev, report, 5)])
        return last[-1]

    study.optimize(objective, n_trials=2)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED"]
    assert max(study.trials[1].intermediate_values) == 5  # stopped at the first report


def test_trials_that_fail_are_failed_runs_and_a_study_without_a_result_is_an_error(store):
    import mlflow

    cfg = _config(
        store, "name=all_fail", "tracking.experiment=all_fail",
        "tune.space={aft_loss_distribution: {type: categorical, choices: [bogus]}}",
    )
    with pytest.raises(CrmModelsError, match="none of the study's 2 trials completed"):
        tuning.tune(cfg, trials=2, progress=False)
    runs = mlflow.search_runs(experiment_names=["all_fail"])
    trials = runs[runs["tags.crm_models.role"] == "trial"]
    assert len(trials) == 2 and set(trials["status"]) == {"FAILED"}
    assert set(trials["tags.optuna.trial_state"]) == {"FAIL"}
    assert trials["tags.error"].str.contains("aft_loss_distribution").all()
    assert runs.loc[runs["tags.crm_models.role"] == "tune", "status"].item() == "FAILED"


class _Rounds:
    """A stand-in estimator for the protocol test: only its parameter names matter."""

    def __init__(self, quality: float = 0.5) -> None:
        self.quality = quality

    def get_params(self, deep: bool = True) -> dict:
        return {"quality": self.quality}


@pytest.fixture()
def rounds_task():
    """A task that trains in 5 rounds and reports ``quality * round / 5`` through ``data.report``."""
    from crm_models import experiment
    from crm_models.tracking import RunArtifacts

    @experiment.register_task(
        "test_rounds", metric="score", direction="maximize", models=lambda: {"rounds": _Rounds}
    )
    def rounds(config, data):
        quality = float(config.model.params["quality"])
        # trials (and only they) are evaluated on validation customers and may report
        assert (data.report is not None) == (data.validation is not None)
        for step in range(1, 6):
            if data.report is not None:
                data.report(step, quality * step / 5)
        return RunArtifacts(metrics={"score": quality})

    yield "test_rounds"
    for registry in (experiment.TASKS, experiment.TASK_METRICS, experiment.TASK_MODELS):
        registry.pop("test_rounds", None)


def test_trials_reporting_intermediate_values_are_median_pruned_and_marked(store, rounds_task):
    import mlflow

    cfg = _config(
        store, f"task={rounds_task}", "name=pruning", "tracking.experiment=pruning",
        "model.name=rounds", "model.params={quality: 0.5}", "data.synthetic.customers=200",
        "tune.startup_trials=1", "tune.sampler_seed=3",
        "tune.space={quality: {type: float, low: 0.0, high: 1.0}}",
    )
    result = tuning.tune(cfg, trials=8, progress=False)
    study = optuna.load_study(study_name="pruning", storage=result.storage)
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert result.n_pruned == len(pruned) >= 1
    first = study.trials[0].params["quality"]
    # a pruned trial was stopped at a round where it was below the median of the earlier trials
    assert all(max(t.intermediate_values) < 5 for t in pruned)
    assert all(t.params["quality"] < max(first, result.best_value) for t in pruned)
    runs = mlflow.search_runs(experiment_names=["pruning"])
    trials = runs[runs["tags.crm_models.role"] == "trial"].set_index("tags.optuna.trial_number")
    for t in study.trials:
        row = trials.loc[str(t.number)]
        assert row["tags.optuna.trial_state"] == t.state.name
        assert row["status"] == ("KILLED" if t.state.name == "PRUNED" else "FINISHED")
    history = MlflowClient().get_metric_history(
        trials.loc[str(pruned[0].number), "run_id"], "val_score_by_round"
    )
    assert [m.step for m in history] == sorted(pruned[0].intermediate_values)
    parent = MlflowClient().get_run(result.parent_run_id)
    assert parent.data.metrics["n_pruned"] == len(pruned)
    assert result.best_params["quality"] == pytest.approx(
        max(t.params["quality"] for t in study.trials if t.state.name == "COMPLETE")
    )


def test_tune_command_prints_the_best_params_and_the_export_command(store):
    from typer.testing import CliRunner

    from crm_models.cli import app

    args = [
        "tune", str(REPO / "configs" / "churn_xgb_aft.yaml"), "--trials", "1",
        "--set", f"data.synthetic.dir={store / 'data'}", "--set", "data.synthetic.customers=2000",
        "--set", "model.params.n_estimators=10", "--set", "explain.enabled=false",
        "--set", "name=cli_tune", "--set", "tracking.experiment=cli_tune",
        "--set", "tracking.log_model=false",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "study cli_tune: 1 trials (1 new; 1 complete, 0 pruned, 0 failed)" in result.output
    assert "best val_c_index (maximize):" in result.output and "  max_depth = " in result.output
    refit_id = result.output.split("crm-models export ")[1].split()[0]
    assert MlflowClient().get_run(refit_id).data.tags["crm_models.role"] == "refit"
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "pass --resume" in again.output


def test_xgboost_trials_report_validation_c_index_every_k_rounds(store):
    # the xgboost survival models take tuning's callback: each trial reports its partial model's
    # validation C-index every `report_every` rounds (what the median pruner compares)
    cfg = _config(
        store, "name=xgb_rounds", "tracking.experiment=xgb_rounds", "tune.report_every=10",
        "tune.startup_trials=10",  # nothing pruned: every trial reports all its rounds
    )
    result = tuning.tune(cfg, trials=2, progress=False)
    study = optuna.load_study(study_name="xgb_rounds", storage=result.storage)
    for t in study.trials:
        assert t.state.name == "COMPLETE"
        steps = sorted(t.intermediate_values)
        assert len(steps) == 3 and steps[-1] <= 30  # 30 trees, reports every 10 rounds
        assert all(0.5 < v <= 1.0 for v in t.intermediate_values.values())
        # the last report is the full model's validation C-index, the trial's value
        assert t.intermediate_values[steps[-1]] == pytest.approx(t.value, abs=1e-9)
