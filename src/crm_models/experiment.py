"""The experiment runner: a task registry and the pipeline that wires data -> features -> model -> run.

Tasks are plain functions ``(config, data) -> RunArtifacts``; they know nothing of MLflow.
``run_experiment`` loads and validates the data, calls the task inside a tracked run and logs
what it returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from crm_models import tracking
from crm_models.config import ExperimentConfig
from crm_models.errors import ConfigError, DataError
from crm_models.features.engine import as_timestamp

log = logging.getLogger(__name__)


@dataclass
class ExperimentData:
    """The validated input tables of a run, plus the simulator's ground truth when there is one."""

    tables: dict[str, pd.DataFrame]
    observation_end: pd.Timestamp
    ground_truth: dict[str, Any] | None = None
    source_dir: Path | None = None
    progress: Callable[[str], None] = field(default=lambda stage: None, repr=False)
    """Tasks call this with the name of each stage they start (drives the progress bar)."""


@dataclass
class RunResult:
    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    artifacts: tracking.RunArtifacts = field(repr=False)


TaskFn = Callable[[ExperimentConfig, ExperimentData], tracking.RunArtifacts]
TASKS: dict[str, TaskFn] = {}


def register_task(name: str) -> Callable[[TaskFn], TaskFn]:
    def deco(fn: TaskFn) -> TaskFn:
        TASKS[name] = fn
        return fn

    return deco


# --------------------------------------------------------------------------- data


def load_data(config: ExperimentConfig) -> ExperimentData:
    """Load the config's tables: simulated (generated on first use) or the user's files, validated."""
    from crm_models.data.validation import load_and_validate

    if config.data.source == "synthetic":
        from crm_models.data.synthetic import ensure_synthetic, load_synthetic

        s = config.data.synthetic
        path = ensure_synthetic(s.dir, n_customers=s.customers, seed=s.seed)
        ds = load_synthetic(path)
        obs_end = as_timestamp(config.data.observation_end or ds.ground_truth["observation_end"])
        return ExperimentData(ds.tables, obs_end, ds.ground_truth, Path(path))
    tables = load_and_validate(config.data.tables, observation_end=config.data.observation_end)
    obs_end = as_timestamp(config.data.observation_end)
    if obs_end is None:
        # without an explicit end, the data end at the day after the last transaction
        obs_end = tables["transactions"]["ts"].max().normalize() + pd.Timedelta(days=1)
    return ExperimentData(tables, obs_end)


def resolve_cutoff(config: ExperimentConfig, data: ExperimentData) -> pd.Timestamp:
    """The configured cutoff, or observation end minus the horizon (the latest fully labelled one)."""
    horizon = pd.Timedelta(days=config.features.horizon_days)
    cutoff = as_timestamp(config.features.cutoff) or (data.observation_end - horizon)
    if cutoff + horizon > data.observation_end:
        raise ConfigError(
            f"features.cutoff {cutoff.date()} + horizon {config.features.horizon_days} days is after "
            f"the observation end {data.observation_end.date()}: labels would be cut short"
        )
    first = data.tables["transactions"]["ts"].min()
    if cutoff <= first:
        raise ConfigError(
            f"features.cutoff {cutoff.date()} is not after the first transaction ({first.date()})"
        )
    return cutoff


# --------------------------------------------------------------------------- runner


def run_experiment(config: ExperimentConfig, progress: bool = True) -> RunResult:
    """Load data, run the config's task inside an MLflow run, log everything; return the run."""
    if config.task not in TASKS:
        raise ConfigError(f"task: unknown task {config.task!r}; known tasks: {sorted(TASKS)}")
    np.random.seed(config.seed)  # libraries that draw from the global generator stay reproducible
    started = time.perf_counter()
    with tqdm(
        total=None, desc=config.name, bar_format="{desc} [{elapsed}]",
        disable=None if progress else True,  # None: only on a terminal, not in CI logs
        leave=False,
    ) as bar:

        def stage(name: str) -> None:
            bar.set_description_str(f"{config.name}: {name}")
            bar.update(1)

        stage("loading and validating data")
        data = load_data(config)
        data.progress = stage
        fingerprint = tracking.data_fingerprint(data.tables)
        with tracking.start_run(config) as run:
            tracking.log_provenance(config, fingerprint)
            artifacts = TASKS[config.task](config, data)
            stage("logging to MLflow")
            artifacts.metrics["runtime_seconds"] = time.perf_counter() - started
            tracking.log_artifacts(artifacts, salt=tracking.id_salt())
            return RunResult(
                run.info.run_id, run.info.experiment_id, dict(artifacts.metrics), artifacts
            )


# --------------------------------------------------------------------------- tasks


def split_customers(
    index: pd.Index, stratify: Any, test_size: float, seed: int
) -> tuple[pd.Index, pd.Index]:
    """Customer-level train/test split (stratified on the event so both sides see churners)."""
    if len(index) < 10:
        raise DataError(f"only {len(index)} customers in the modelling population; need at least 10")
    train, test = train_test_split(
        np.asarray(index), test_size=test_size, random_state=seed, stratify=stratify
    )
    return pd.Index(np.sort(train), name=index.name), pd.Index(np.sort(test), name=index.name)


@register_task("churn_survival")
def churn_survival(config: ExperimentConfig, data: ExperimentData) -> tracking.RunArtifacts:
    """Survival churn: features at the cutoff, duration/event labels after it, a survival model."""
    from crm_models import features as F
    from crm_models.evaluation import (
        calibration_table,
        harrell_c_index,
        plot_calibration,
        plot_km_by_segment,
        plot_risk_distribution,
        plot_survival_curves,
        select_customers_by_risk,
        survival_metrics,
    )
    from crm_models.models.survival import MODELS, SurvivalPipeline
    from crm_models.serving import churn_package

    fc = config.features
    cutoff = resolve_cutoff(config, data)
    tables = data.tables
    data.progress(f"building features at {cutoff.date()}")
    feats = F.customer_features(
        tables["transactions"], cutoff, customers=tables.get("customers"),
        tickets=tables.get("tickets"), window_days=fc.window_days,
    )
    segments = F.rfm_segments(feats, inactivity_days=fc.inactivity_days)
    if fc.churn == "contractual":
        if "subscriptions" not in tables:
            raise DataError("features.churn 'contractual' needs a subscriptions table")
        labels = F.contractual_churn_labels(tables["subscriptions"], cutoff, fc.horizon_days)
    else:
        labels = F.noncontractual_churn_labels(
            tables["transactions"], cutoff, fc.horizon_days, fc.inactivity_days
        )
    frame = labels.join(feats, how="inner")
    if frame.empty:
        raise DataError(f"no customers are active at the cutoff {cutoff.date()}: nothing to model")
    if frame["event"].nunique() < 2:
        raise DataError(
            f"at cutoff {cutoff.date()} every customer has event={int(frame['event'].iloc[0])}: "
            "a survival model needs both churned and censored customers"
        )

    feature_cols = [c for c in feats.columns if c not in ("signup_ts",)]
    train_ids, test_ids = split_customers(
        frame.index, frame["event"], config.split.test_size, config.split.seed
    )
    train, test = frame.loc[train_ids], frame.loc[test_ids]

    if config.model.name not in MODELS:
        raise ConfigError(f"model.name: unknown survival model {config.model.name!r}; known: {sorted(MODELS)}")
    try:
        estimator = MODELS[config.model.name](**config.model.params)
    except TypeError as exc:
        raise ConfigError(f"model.params: {exc}") from None
    pipe = SurvivalPipeline(estimator, features=feature_cols)
    data.progress(f"fitting {config.model.name} on {len(train):,} customers")
    pipe.fit(train[feature_cols], train["duration_days"], train["event"])

    data.progress(f"evaluating on {len(test):,} held-out customers")
    X_test = test[feature_cols]
    risk_test = pipe.predict_risk(X_test)
    horizons = config.evaluation.horizons_days
    metrics: dict[str, float] = survival_metrics(
        train["duration_days"], train["event"], test["duration_days"], test["event"],
        risk_test, lambda t: pipe.predict_survival(X_test, t), horizons,
    )
    metrics.update(
        c_index_train=harrell_c_index(
            train["duration_days"], train["event"], pipe.predict_risk(train[feature_cols])
        ),
        n_customers=float(len(frame)),
        n_train=float(len(train)),
        n_test=float(len(test)),
        event_rate=float(frame["event"].mean()),
    )
    churn_prob = {h: pipe.predict_churn_probability(X_test, h) for h in horizons}
    for h, p in churn_prob.items():
        metrics[f"mean_churn_probability_{h}d"] = float(np.mean(p))
    if data.ground_truth is not None:
        oracle = _oracle_risk(config, data, cutoff)
        metrics["oracle_c_index"] = harrell_c_index(
            test["duration_days"], test["event"], oracle.reindex(test.index).to_numpy()
        )

    seg_test = segments.reindex(test.index)
    figures = {
        "plots/km_by_segment.png": plot_km_by_segment(
            test["duration_days"], test["event"], seg_test["rfm_segment"],
            title=f"Held-out customers: Kaplan-Meier by RFM segment (cutoff {cutoff.date()})",
        ),
        "plots/km_by_value_tier.png": plot_km_by_segment(
            test["duration_days"], test["event"], seg_test["value_tier"],
            title="Held-out customers: Kaplan-Meier by value tier",
        ),
        "plots/risk_distribution.png": plot_risk_distribution(risk_test, test["event"]),
    }
    tables_out: dict[str, pd.DataFrame] = {}
    for h in horizons:
        # the horizon actually evaluated (just inside the follow-up) keeps the table honest
        t_eval = metrics.get(f"eval_time_{h}d", float(h))
        table = calibration_table(
            test["duration_days"], test["event"],
            1.0 - pipe.predict_survival(X_test, [t_eval])[:, 0], t_eval,
        )
        tables_out[f"tables/calibration_{h}d.csv"] = table
        figures[f"plots/calibration_{h}d.png"] = plot_calibration(table, h)
    picked = select_customers_by_risk(risk_test)
    grid = np.linspace(0.0, float(fc.horizon_days), 181)
    figures["plots/survival_curves.png"] = plot_survival_curves(
        grid, pipe.predict_survival(X_test.iloc[picked], grid),
        labels=[f"risk percentile {int((risk_test < risk_test[i]).mean() * 100)}" for i in picked],
        title="Predicted survival of sample held-out customers (from low to high risk)",
    )
    params: dict[str, Any] = {"cutoff": str(cutoff), "n_features": len(feature_cols)}
    customer_tables: dict[str, pd.DataFrame] = {}
    if config.explain.enabled:
        from crm_models.explain import explain_survival, plot_bar, plot_beeswarm, top_reasons

        ex = config.explain
        data.progress("explaining predictions (SHAP)")
        expl = explain_survival(
            pipe, X_test, background=train[feature_cols], max_sample=ex.max_sample,
            seed=config.seed, n_background=ex.n_background, max_evals=ex.max_evals,
            max_seconds=ex.max_seconds,
        )
        figures["plots/shap_beeswarm.png"] = plot_beeswarm(expl)
        figures["plots/shap_bar.png"] = plot_bar(expl)
        customer_tables["tables/shap_top_reasons.csv"] = top_reasons(expl, k=ex.top_k)
        # the sample size and cost are logged so nobody mistakes a sample for the population
        params.update({
            "shap.method": expl.method, "shap.n_rows": expl.n_rows,
            "shap.n_population": expl.n_population, "shap.is_sample": expl.is_sample,
        })
        metrics["shap_seconds"] = expl.seconds
    if hasattr(pipe.model_, "summary"):
        tables_out["tables/coefficients.csv"] = pipe.model_.summary().reset_index()
    sample = frame.loc[test_ids[: config.tracking.feature_sample_rows]]
    pred = pd.DataFrame({"risk": risk_test}, index=test.index).loc[sample.index]
    model = None
    if config.tracking.log_model:
        model = churn_package(
            pipe, config.evaluation.horizons_days, fc.horizon_days, test[feature_cols].head(5)
        )
    customer_tables["tables/feature_sample.csv"] = sample.join(pred)
    return tracking.RunArtifacts(
        metrics=metrics,
        params=params,
        tags={"churn_definition": fc.churn},
        figures=figures,
        tables=tables_out,
        customer_tables=customer_tables,
        model=model,
    )


def _oracle_risk(config: ExperimentConfig, data: ExperimentData, cutoff: pd.Timestamp) -> pd.Series:
    """The simulator's true risk at the cutoff, for the configured churn definition.

    Contractual churn is the latent dropout itself, whose hazard is constant after the complaint
    window: the true hazard ranks customers perfectly in expectation. Inactivity churn also
    depends on purchase timing: the simulator scores it from the true rates (see
    ``oracle_churn_risk``).
    """
    from crm_models.data.synthetic import oracle_churn_risk

    gt = data.ground_truth
    assert gt is not None
    if config.features.churn == "contractual":
        truth = pd.DataFrame(gt["customers"]).set_index("customer_id")
        return np.log(truth["dropout_hazard"].astype(float))
    data.progress("scoring the simulator's oracle")
    fc = config.features
    return oracle_churn_risk(
        gt, data.tables["transactions"], cutoff, fc.horizon_days, fc.inactivity_days,
        seed=config.seed,
    )
