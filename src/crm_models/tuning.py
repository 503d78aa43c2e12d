"""Hyperparameter tuning with Optuna: a study over a config's ``tune.space`` (``model.params``).

Protocol (see ``experiment``'s docstring): a trial runs the config's task on the training customers
minus a stratified ``tune.validation_size`` share and is scored on that share (``val_<metric>``);
the test customers are never seen while searching. The best params are then refit as a normal
run of the task (all training customers, scored on the test set).

MLflow layout: one parent run per study (``crm_models.role=tune``) holding the best params
(``best.<param>`` tags: tags, because a resumed study may change them and MLflow params are
immutable), the best validation score, trial counts, the optimization-history and
param-importance plots, the refit's test metrics and the refit model; under it one nested run
per trial (params, ``val_<metric>``, ``optuna.trial_number`` and ``optuna.trial_state`` tags;
pruned trials end KILLED, failed ones FAILED) and one nested ``refit`` run.

Storage: ``$CRM_MODELS_OPTUNA_STORAGE``, else ``optuna.db`` next to a SQLite tracking store
(``sqlite:///mlruns/optuna.db`` by default), else -- with a tracking server -- the local
``sqlite:///mlruns/optuna.db``. The study is named after the config; its user attr
``mlflow_parent_run_id`` lets ``--resume`` attach new trials under the same parent run.

Pruning: TPE sampling with median pruning (``tune.prune``, when the study optimizes the task's
primary metric). A model prunes when it reports intermediate values of that metric through
``data.report``: estimators that accept xgboost ``callbacks`` get a ``ValidationReporter``
(Harrell's C of the partial booster on the validation customers every ``tune.report_every``
rounds). Models without it (lifelines, scikit-survival, and the xgboost survival estimators until
they take a ``callbacks`` parameter) run every trial to the end.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from crm_models import tracking
from crm_models.config import DEFAULT_TRACKING_URI, ExperimentConfig, TuneParam
from crm_models.errors import ConfigError, CrmModelsError

log = logging.getLogger(__name__)

STORAGE_ENV = "CRM_MODELS_OPTUNA_STORAGE"
PARENT_RUN_ATTR = "mlflow_parent_run_id"
ROLE_TAG = "crm_models.role"


# --------------------------------------------------------------------------- settings


def optuna_storage(tracking_uri: str | None = None) -> str:
    """Where studies live: ``$CRM_MODELS_OPTUNA_STORAGE``, else beside the SQLite tracking store,
    else (tracking server, file store) ``sqlite:///mlruns/optuna.db`` under the working directory."""
    env = os.environ.get(STORAGE_ENV)
    if env:
        return env
    uri = tracking_uri or tracking.resolve_tracking_uri()
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        return f"sqlite:///{path.with_name('optuna.db')}"
    return f"sqlite:///{Path(DEFAULT_TRACKING_URI.removeprefix('sqlite:///')).with_name('optuna.db')}"


def objective_of(config: ExperimentConfig) -> tuple[str, str]:
    """(metric, direction) a study optimizes: ``tune.metric`` or the task's primary metric."""
    from crm_models.experiment import TASK_METRICS, TASKS

    if config.task not in TASKS:
        raise ConfigError(f"task: unknown task {config.task!r}; known tasks: {sorted(TASKS)}")
    tc = config.tune
    assert tc is not None
    primary = TASK_METRICS.get(config.task)
    metric = tc.metric or (primary[0] if primary else None)
    if metric is None:
        raise ConfigError(
            f"tune.metric: task {config.task!r} declares no primary metric; name one in tune.metric"
        )
    direction = tc.direction or (primary[1] if primary and primary[0] == metric else None)
    if direction is None:
        raise ConfigError(
            f"tune.direction: say whether to 'maximize' or 'minimize' tune.metric {metric!r}"
        )
    return metric, direction


def check_space(config: ExperimentConfig) -> None:
    """Every ``tune.space`` name must be a parameter of the config's estimator (``get_params``)."""
    from crm_models.experiment import TASK_MODELS

    tc = config.tune
    if tc is None:
        raise ConfigError(
            f"config {config.name!r} has no tune: section; add one with a search space, e.g. "
            "tune: {trials: 20, space: {max_depth: {type: int, low: 2, high: 6}}} "
            "(see configs/churn_xgb_aft.yaml)"
        )
    if config.task not in TASK_MODELS:
        raise ConfigError(f"task {config.task!r} does not declare its models: it cannot be tuned")
    models = TASK_MODELS[config.task]()
    if config.model.name not in models:
        raise ConfigError(
            f"model.name: unknown model {config.model.name!r} for task {config.task!r}; "
            f"known: {sorted(models)}"
        )
    valid = set(models[config.model.name]().get_params())
    unknown = sorted(set(tc.space) - valid)
    if unknown:
        raise ConfigError(
            f"tune.space: {unknown} {'is not a parameter' if len(unknown) == 1 else 'are not parameters'} "
            f"of model {config.model.name!r}; its parameters are {sorted(valid)}"
        )


def suggest(trial: Any, space: dict[str, TuneParam]) -> dict[str, Any]:
    """One point of the search space, sampled by the trial."""
    params: dict[str, Any] = {}
    for name, p in space.items():
        if p.type == "categorical":
            params[name] = trial.suggest_categorical(name, p.choices)
        elif p.type == "int":
            params[name] = trial.suggest_int(
                name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
            )
        else:
            params[name] = trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
    return params


def with_params(config: ExperimentConfig, params: dict[str, Any], trial: bool) -> ExperimentConfig:
    """``config`` with ``model.params`` updated; trials also skip SHAP and the model."""
    raw = config.model_dump()
    raw["model"]["params"] = {**raw["model"]["params"], **params}
    if trial:
        raw["explain"]["enabled"] = False
        raw["tracking"]["log_model"] = False
    return ExperimentConfig.model_validate(raw)


# --------------------------------------------------------------------------- intermediate values


def _xgb_feature_name(name: Any) -> str:
    # the same renaming as the survival estimators' DMatrix (xgboost refuses [, ] and <)
    from crm_models.models.survival.xgb import _xgb_name

    return _xgb_name(name)


class ValidationReporter(xgb.callback.TrainingCallback):
    """xgboost callback: every ``every`` rounds, Harrell's C of the partial booster on validation
    customers is passed to ``report(step, value)`` (which raises to stop a pruned trial).

    ``transform`` maps the raw validation rows to the booster's inputs (the fitted preprocessing);
    columns are matched to ``booster.feature_names``. Risk is the margin for ``survival:cox`` and
    minus the margin (log-time) for ``survival:aft``.
    """

    def __init__(
        self,
        X: pd.DataFrame,
        duration: Any,
        event: Any,
        report: Callable[[int, float], None],
        every: int = 10,
        transform: Callable[[pd.DataFrame], Any] | None = None,
    ) -> None:
        super().__init__()
        self.X = X
        self.duration = np.asarray(duration, dtype=float)
        self.event = np.asarray(event, dtype=bool)
        self.report = report
        self.every = max(int(every), 1)
        self.transform = transform
        self._dmatrix: xgb.DMatrix | None = None

    def __deepcopy__(self, memo: dict) -> ValidationReporter:
        # sklearn.clone deep-copies estimator params: the hook (and its trial) must stay shared
        return self

    def before_training(self, model: xgb.Booster) -> xgb.Booster:
        self._dmatrix = None
        return model

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: Any) -> bool:
        from crm_models.evaluation import harrell_c_index

        step = epoch + 1
        if step % self.every:
            return False
        margin = model.predict(self._matrix(model), output_margin=True).astype(float)
        objective = json.loads(model.save_config())["learner"]["objective"]["name"]
        sign = 1.0 if objective == "survival:cox" else -1.0
        self.report(step, harrell_c_index(self.duration, self.event, sign * margin))
        return False

    def _matrix(self, model: xgb.Booster) -> xgb.DMatrix:
        if self._dmatrix is None:
            X = pd.DataFrame(self.transform(self.X) if self.transform else self.X)
            X.columns = [_xgb_feature_name(c) for c in X.columns]
            names = list(model.feature_names or X.columns)
            self._dmatrix = xgb.DMatrix(X[names].to_numpy(np.float32), feature_names=names)
        return self._dmatrix


# --------------------------------------------------------------------------- the study


@dataclass
class TuneResult:
    study_name: str
    storage: str
    metric: str
    direction: str
    parent_run_id: str
    refit_run_id: str
    best_params: dict[str, Any]
    best_value: float
    """Best validation score (``val_<metric>``) over all the study's trials."""
    test_metrics: dict[str, float]
    """Metrics of the refit on the test customers."""
    n_trials: int
    n_complete: int
    n_pruned: int
    n_failed: int
    new_trials: int
    """Trials run by this call (the study may hold earlier ones; a timeout may stop it early)."""


def tune(
    config: ExperimentConfig,
    trials: int | None = None,
    timeout: float | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TuneResult:
    """Run (or with ``resume`` continue) the config's Optuna study and refit the best params.

    ``trials``/``timeout`` default to ``tune.trials``/``tune.timeout``; ``trials`` counts the new
    trials of this call. Without ``resume`` an existing study of the same name is an error.
    """
    from tqdm.auto import tqdm

    from crm_models.experiment import TASK_METRICS, ValidationSplit, load_data, run_experiment

    check_space(config)
    tc = config.tune
    assert tc is not None
    metric, direction = objective_of(config)
    n_new = tc.trials if trials is None else trials
    if n_new < 1:
        raise ConfigError(f"--trials must be >= 1, got {n_new}")
    timeout = tc.timeout if timeout is None else timeout

    storage_uri = optuna_storage(tracking.use_store(config))
    study, done = _open_study(config, storage_uri, resume, metric, direction)
    name = config.name
    data = load_data(config)
    split = ValidationSplit(tc.validation_size, config.split.seed)
    parent_id = study.user_attrs.get(PARENT_RUN_ATTR)
    reopen = parent_id if parent_id and tracking.get_run(parent_id) is not None else None
    with tracking.start_run(config, run_name=f"tune-{name}", run_id=reopen) as parent:
        if reopen is None:
            tracking.log_provenance(config, _fingerprint(data))
            tracking.set_tags({
                ROLE_TAG: "tune", "optuna.study": name, "optuna.storage": _redact(storage_uri),
                "optuna.metric": f"val_{metric}", "optuna.direction": direction,
            })
            study.set_user_attr(PARENT_RUN_ATTR, parent.info.run_id)
        # models report intermediate values of the task's primary metric only
        prune = tc.prune and metric == TASK_METRICS.get(config.task, ("",))[0]
        objective = _objective(config, data, split, metric, name, prune=prune)
        with tqdm(
            total=n_new, desc=f"tuning {name}", unit="trial", disable=None if progress else True
        ) as bar:

            def advance(study: Any, trial: Any) -> None:
                bar.update(1)
                try:
                    bar.set_postfix_str(f"best val_{metric}={study.best_value:.4f}")
                except ValueError:  # no completed trial yet
                    pass

            study.optimize(
                objective, n_trials=n_new, timeout=timeout, catch=(CrmModelsError,),
                callbacks=[advance],
            )
        states = pd.Series([t.state.name for t in study.trials])
        counts = {
            "n_trials": len(states),
            "n_complete": int((states == "COMPLETE").sum()),
            "n_pruned": int((states == "PRUNED").sum()),
            "n_failed": int((states == "FAIL").sum()),
        }
        tracking.log_metrics({k: float(v) for k, v in counts.items()}, step=counts["n_trials"])
        if counts["n_complete"] == 0:
            raise CrmModelsError(
                f"none of the study's {counts['n_trials']} trials completed ({counts['n_pruned']} "
                f"pruned, {counts['n_failed']} failed): see the trial runs' error tags"
            )
        best = study.best_trial
        refit_cfg = with_params(config, best.params, trial=False)
        refit = run_experiment(
            refit_cfg, progress=progress, data=data, nested=True, run_name="refit",
            tags={ROLE_TAG: "refit", "optuna.study": name, "optuna.best_trial": best.number},
        )
        test_metrics = {k: v for k, v in refit.metrics.items() if k != "runtime_seconds"}
        tracking.set_tags({
            **{f"best.{k}": v for k, v in best.params.items()},
            "optuna.best_trial": best.number, "refit_run_id": refit.run_id,
        })
        tracking.log_metrics(
            {
                "best_value": float(best.value),
                f"best_val_{metric}": float(best.value),
                **({f"test_{metric}": test_metrics[metric]} if metric in test_metrics else {}),
            },
            step=counts["n_trials"],
        )
        _log_study_artifacts(study, best, metric)
        if refit.artifacts.model is not None:
            tracking.log_pyfunc_model(refit.artifacts.model)
        return TuneResult(
            study_name=name, storage=storage_uri, metric=metric, direction=direction,
            parent_run_id=parent.info.run_id, refit_run_id=refit.run_id,
            best_params=dict(best.params), best_value=float(best.value), test_metrics=test_metrics,
            new_trials=counts["n_trials"] - done, **counts,
        )


def _open_study(
    config: ExperimentConfig, storage_uri: str, resume: bool, metric: str, direction: str
) -> tuple[Any, int]:
    """The config's study (created, or loaded with ``resume``) and its number of earlier trials."""
    import optuna

    tc = config.tune
    assert tc is not None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _mkdir_for(storage_uri)
    try:
        storage = optuna.storages.RDBStorage(storage_uri)
    except Exception as exc:
        raise CrmModelsError(f"cannot open the Optuna storage {storage_uri!r}: {exc}") from exc
    name = config.name
    exists = name in optuna.get_all_study_names(storage)
    if exists and not resume:
        raise CrmModelsError(
            f"a study named {name!r} already exists in {storage_uri}: pass --resume to continue it, "
            "or give the config another name (--set name=...) to start a new one"
        )
    if resume and not exists:
        raise CrmModelsError(
            f"--resume: no study named {name!r} in {storage_uri} (run `crm-models tune` without "
            "--resume first)"
        )
    done = len(storage.get_all_trials(storage.get_study_id_from_name(name))) if exists else 0
    # a fresh seed per session: the same seed again would repeat the first session's samples
    sampler = optuna.samplers.TPESampler(seed=tc.sampler_seed + done)
    pruner: Any = (
        optuna.pruners.MedianPruner(n_startup_trials=tc.startup_trials, n_warmup_steps=0)
        if tc.prune
        else optuna.pruners.NopPruner()
    )
    if not exists:
        study = optuna.create_study(
            study_name=name, storage=storage, direction=direction, sampler=sampler, pruner=pruner
        )
        study.set_user_attr("metric", metric)
        return study, 0
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"study {name!r} {study.direction.name.lower()}s; this config says {direction}"
        )
    return study, done


def _fingerprint(data: Any) -> dict[str, Any]:
    if data.fingerprint is None:
        data.fingerprint = tracking.data_fingerprint(data.tables)
    return data.fingerprint


def _redact(uri: str) -> str:
    """The storage URI without a password (``postgresql://user:secret@host/db``)."""
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest:
        creds, _, host = rest.rpartition("@")
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return uri


def _mkdir_for(storage_uri: str) -> None:
    if storage_uri.startswith("sqlite:///"):
        Path(storage_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def _objective(
    config: ExperimentConfig, data: Any, split: Any, metric: str, study_name: str, prune: bool
) -> Callable[[Any], float]:
    import optuna

    from crm_models.experiment import run_experiment

    key = f"val_{metric}"

    def objective(trial: optuna.Trial) -> float:
        cfg = with_params(config, suggest(trial, config.tune.space), trial=True)  # type: ignore[union-attr]

        def report(step: int, value: float) -> None:
            tracking.log_metrics({f"{key}_by_round": value}, step=step)
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at round {step}: {key} {value:.4f}")

        tags = {ROLE_TAG: "trial", "optuna.study": study_name, "optuna.trial_number": trial.number}
        previous = tracking.last_run_id()
        try:
            result = run_experiment(
                cfg, progress=False, data=data, validation=split,
                report=report if prune else None, nested=True, run_name=f"trial-{trial.number}",
                tags=tags, killed_on=(optuna.TrialPruned,),
            )
        except optuna.TrialPruned:
            _tag_trial_run(previous, {"optuna.trial_state": "PRUNED"})
            raise
        except BaseException:
            _tag_trial_run(previous, {"optuna.trial_state": "FAIL"})
            raise
        value = result.metrics.get(key)
        trial.set_user_attr("mlflow_run_id", result.run_id)
        if value is None or not math.isfinite(value):
            tracking.set_run_tags(result.run_id, {"optuna.trial_state": "FAIL"})
            raise CrmModelsError(f"trial {trial.number} gave no finite {key} ({value!r})")
        tracking.set_run_tags(result.run_id, {"optuna.trial_state": "COMPLETE"})
        return float(value)

    return objective


def _tag_trial_run(previous: str | None, tags: dict[str, Any]) -> None:
    """Tag the trial's run after it raised (none when it failed before its run started)."""
    run_id = tracking.last_run_id()
    if run_id is not None and run_id != previous:
        tracking.set_run_tags(run_id, tags)


def _log_study_artifacts(study: Any, best: Any, metric: str) -> None:
    """Trials table, best params and the optimization-history / param-importance plots."""
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    figures: dict[str, Any] = {}
    complete = sum(t.state.name == "COMPLETE" for t in study.trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = ovm.plot_optimization_history(study, target_name=f"val_{metric}")
        figures["tuning/optimization_history.png"] = ax.figure
        if complete >= 2:  # importances of fewer trials are all equal (optuna warns)
            try:
                ax = ovm.plot_param_importances(study, target_name=f"val_{metric}")
                figures["tuning/param_importances.png"] = ax.figure
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                log.info("no param-importance plot: %s", exc)
    trials = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
    tracking.log_dict({"best_trial": best.number, "best_value": best.value, "params": best.params},
                      "tuning/best_params.json")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trials.csv"
        trials.to_csv(path, index=False)
        tracking.log_files([path], "tuning")
    tracking.log_artifacts(tracking.RunArtifacts(figures=figures), salt="")
    plt.close("all")
