"""The experiment runner: a task registry and the pipeline that wires data -> features -> model -> run.

Tasks are plain functions ``(config, data) -> RunArtifacts``; they know nothing of MLflow.
``run_experiment`` loads and validates the data, calls the task inside a tracked run and logs
what it returns.

Tuning protocol (``crm_models.tuning``; every task that can be tuned follows it):

- ``register_task(name, metric=..., direction=..., models=...)`` names the task's primary metric,
  whether to maximize or minimize it (``TASK_METRICS``; ``compare`` ranks by it too) and a function
  returning the task's model registry, ``model.name -> estimator class`` (``TASK_MODELS``; tuning
  checks a search space's parameter names against the estimator's ``get_params()``).
- When ``data.validation`` is set, the task splits customers with ``evaluation_split``: the test
  customers of ``config.split`` are left out entirely and a stratified ``validation.size`` share of
  the training customers is held out. The task fits on the rest, computes its metrics (at least the
  primary one) on the validation customers and may return metrics and params only (no plots,
  tables, SHAP or model). ``run_experiment`` logs them with a ``val_`` prefix.
- When ``data.report`` is set, a model that trains in rounds may call ``data.report(step, value)``
  with the primary metric of the partial model on the validation customers; it raises to stop a
  pruned trial. The churn task wires it for estimators that accept xgboost ``callbacks`` (see
  ``tuning.ValidationReporter``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
    validation: ValidationSplit | None = None
    """Set by tuning: evaluate on a validation share of the training customers, not the test set."""
    report: Callable[[int, float], None] | None = field(default=None, repr=False)
    """Set by tuning: intermediate validation values of models that train in rounds."""
    fingerprint: dict[str, Any] | None = field(default=None, repr=False)
    """Cached ``tracking.data_fingerprint`` of ``tables`` (tuning reuses one load for every trial)."""
    engine_tables: dict[str, Any] | None = field(default=None, repr=False)
    """``engine: spark``: the raw tables as Ibis tables on Spark (``tables`` then collects a
    table to pandas only when a task asks for it)."""
    spark_config: Any = field(default=None, repr=False)

    @property
    def engine(self) -> str:
        return "duckdb" if self.engine_tables is None else "spark"

    def table(self, name: str) -> Any:
        """The raw table for a feature builder: an Ibis table on Spark, else the pandas frame."""
        if self.engine_tables is not None:
            return self.engine_tables[name]
        return self.tables[name]

    def get_table(self, name: str) -> Any:
        """:meth:`table`, or None when there is no such table."""
        source = self.engine_tables if self.engine_tables is not None else self.tables
        return self.table(name) if name in source else None

    def first_ts(self, name: str = "transactions", col: str = "ts") -> pd.Timestamp:
        """The earliest ``col`` of a table (computed on the engine)."""
        if self.engine_tables is not None:
            value = self.engine_tables[name][col].min().to_pyarrow().as_py()
            return pd.Timestamp(value).tz_localize(None) if value is not None else pd.NaT
        return self.tables[name][col].min()


@dataclass(frozen=True)
class ValidationSplit:
    """A stratified, seeded share of the training customers held out for tuning."""

    size: float
    seed: int


@dataclass
class RunResult:
    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    artifacts: tracking.RunArtifacts = field(repr=False)


TaskFn = Callable[[ExperimentConfig, ExperimentData], tracking.RunArtifacts]
TASKS: dict[str, TaskFn] = {}
TASK_METRICS: dict[str, tuple[str, str]] = {}
"""task -> (primary metric, "maximize" | "minimize"): what tuning optimizes and compare ranks by."""
TASK_MODELS: dict[str, Callable[[], dict[str, type]]] = {}
"""task -> function returning its ``model.name -> estimator class`` registry (imported lazily)."""


def register_task(
    name: str,
    metric: str | None = None,
    direction: str = "maximize",
    models: Callable[[], dict[str, type]] | None = None,
) -> Callable[[TaskFn], TaskFn]:
    """Register a task; ``metric``/``direction``/``models`` make it tunable (module docstring)."""
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")

    def deco(fn: TaskFn) -> TaskFn:
        TASKS[name] = fn
        if metric is not None:
            TASK_METRICS[name] = (metric, direction)
        if models is not None:
            TASK_MODELS[name] = models
        return fn

    return deco


# --------------------------------------------------------------------------- data


def load_data(config: ExperimentConfig) -> ExperimentData:
    """Load the config's tables: simulated (generated on first use) or the user's files, validated.

    With ``engine: spark`` the tables are put on Spark (files are read by Spark and checked
    there; simulated and CDNOW tables are registered as temporary views).
    """
    from crm_models.data.validation import load_and_validate

    if config.engine == "spark":
        return _load_spark(config)
    if config.data.source == "synthetic":
        from crm_models.data.synthetic import ensure_synthetic, load_synthetic

        s = config.data.synthetic
        path = ensure_synthetic(s.dir, n_customers=s.customers, seed=s.seed)
        ds = load_synthetic(path)
        obs_end = as_timestamp(config.data.observation_end or ds.ground_truth["observation_end"])
        return ExperimentData(ds.tables, obs_end, ds.ground_truth, Path(path))
    if config.data.source == "cdnow":
        from crm_models.data.cdnow import load_cdnow

        tx = load_cdnow(sample=config.data.cdnow.sample)
        # the log ends on 1998-06-30: the observation ends with that whole day
        obs_end = as_timestamp(config.data.observation_end) or (
            tx["ts"].max().normalize() + pd.Timedelta(days=1)
        )
        return ExperimentData({"transactions": tx}, obs_end)
    tables = load_and_validate(config.data.tables, observation_end=config.data.observation_end)
    obs_end = as_timestamp(config.data.observation_end)
    if obs_end is None:
        # without an explicit end, the data end at the day after the last transaction
        obs_end = tables["transactions"]["ts"].max().normalize() + pd.Timedelta(days=1)
    return ExperimentData(tables, obs_end)


def _load_spark(config: ExperimentConfig) -> ExperimentData:
    from crm_models import spark as S

    S.require_pyspark()
    session = S.spark_session(config.spark)
    if config.data.source != "files":
        # simulated or shipped data are small: load (and validate) them as usual, then hand the
        # same frames to Spark
        local = load_data(config.model_copy(update={"engine": "duckdb"}))
        local.engine_tables = {
            name: S.register_frame(session, f"crm_{name}", df) for name, df in local.tables.items()
        }
        local.spark_config = config.spark
        return local
    raw = {name: S.read_source(session, name, src) for name, src in config.data.tables.items()}
    where = {name: src.path or f"Spark table {src.table}" for name, src in config.data.tables.items()}
    obs_end = as_timestamp(config.data.observation_end)
    typed = S.check_tables(raw, obs_end, where)
    data = ExperimentData(S.CollectOnAccess(typed), pd.NaT, engine_tables=typed)  # type: ignore[arg-type]
    data.spark_config = config.spark
    if obs_end is None:
        last = typed["transactions"]["ts"].max().to_pyarrow().as_py()
        obs_end = pd.Timestamp(last).tz_localize(None).normalize() + pd.Timedelta(days=1)
    data.observation_end = obs_end
    return data


def resolve_cutoff(config: ExperimentConfig, data: ExperimentData) -> pd.Timestamp:
    """The configured cutoff, or observation end minus the horizon (the latest fully labelled one)."""
    horizon = pd.Timedelta(days=config.features.horizon_days)
    cutoff = as_timestamp(config.features.cutoff) or (data.observation_end - horizon)
    if cutoff + horizon > data.observation_end:
        raise ConfigError(
            f"features.cutoff {cutoff.date()} + horizon {config.features.horizon_days} days is after "
            f"the observation end {data.observation_end.date()}: labels would be cut short"
        )
    first = data.first_ts()
    if cutoff <= first:
        raise ConfigError(
            f"features.cutoff {cutoff.date()} is not after the first transaction ({first.date()})"
        )
    return cutoff


# --------------------------------------------------------------------------- runner


def run_experiment(
    config: ExperimentConfig,
    progress: bool = True,
    *,
    data: ExperimentData | None = None,
    validation: ValidationSplit | None = None,
    report: Callable[[int, float], None] | None = None,
    nested: bool = False,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    killed_on: tuple[type[BaseException], ...] = (),
) -> RunResult:
    """Load data, run the config's task inside an MLflow run, log everything; return the run.

    ``data`` reuses already loaded tables; ``validation``/``report`` switch the task to the tuning
    protocol (module docstring; metrics are logged and returned with a ``val_`` prefix and the run
    holds no config/provenance artifacts, only params and tags); ``nested`` opens the run under the
    active one; ``killed_on`` exceptions end the run KILLED instead of FAILED (pruned trials).
    """
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

        if data is None:
            stage("loading and validating data")
            data = load_data(config)
        if data.fingerprint is None:
            if isinstance(data.tables, dict):
                data.fingerprint = tracking.data_fingerprint(data.tables)
            else:  # tables read by Spark: fingerprinted there, never collected for it
                from crm_models import spark as S

                data.fingerprint = S.fingerprint(data.engine_tables or {})
        task_data = replace(data, progress=stage, validation=validation, report=report)
        with tracking.start_run(
            config, run_name=run_name, nested=nested, killed_on=killed_on
        ) as run:
            tracking.log_provenance(config, data.fingerprint, artifacts=validation is None)
            if tags:
                tracking.set_tags(tags)
            artifacts = TASKS[config.task](config, task_data)
            stage("logging to MLflow")
            if validation is not None:
                artifacts.metrics = {f"val_{k}": v for k, v in artifacts.metrics.items()}
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


def evaluation_split(
    config: ExperimentConfig, data: ExperimentData, index: pd.Index, stratify: Any
) -> tuple[pd.Index, pd.Index]:
    """(fit, evaluation) customers: train/test per ``config.split``, or under tuning
    (``data.validation``) the training customers split again into fit/validation, stratified the
    same way; the test customers are then not returned at all."""
    train, test = split_customers(index, stratify, config.split.test_size, config.split.seed)
    v = data.validation
    if v is None:
        return train, test
    strata = pd.Series(np.asarray(stratify), index=index).loc[train]
    return split_customers(train, strata.to_numpy(), v.size, v.seed)


def _survival_models() -> dict[str, type]:
    from crm_models.models.survival import MODELS

    return dict(MODELS)


@register_task("churn_survival", metric="c_index", direction="maximize", models=_survival_models)
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
    data.progress(f"building features at {cutoff.date()}" + _on_engine(data))
    feats, segments = _features_and_segments(config, data, cutoff)
    if fc.churn == "contractual":
        if data.get_table("subscriptions") is None:
            raise DataError("features.churn 'contractual' needs a subscriptions table")
        labels = F.contractual_churn_labels(data.table("subscriptions"), cutoff, fc.horizon_days)
    else:
        labels = F.noncontractual_churn_labels(
            data.table("transactions"), cutoff, fc.horizon_days, fc.inactivity_days
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
    # under tuning "test" is the validation share of the training customers (evaluation_split)
    train_ids, test_ids = evaluation_split(config, data, frame.index, frame["event"])
    train, test = frame.loc[train_ids], frame.loc[test_ids]

    if config.model.name not in MODELS:
        raise ConfigError(f"model.name: unknown survival model {config.model.name!r}; known: {sorted(MODELS)}")
    try:
        estimator = MODELS[config.model.name](**config.model.params)
    except TypeError as exc:
        raise ConfigError(f"model.params: {exc}") from None
    pipe = SurvivalPipeline(estimator, features=feature_cols)
    distributed = config.spark is not None and config.spark.distributed_training
    if distributed:
        if "distributed" not in estimator.get_params():
            raise ConfigError(
                f"spark.distributed_training: model {config.model.name!r} trains on one machine; "
                "distributed training is for the xgboost models (xgb_aft, xgb_cox)"
            )
        from crm_models.spark import SparkBoosterTrainer

        estimator.set_params(distributed=SparkBoosterTrainer(config.spark.num_workers, config.spark))
    if data.report is not None and "callbacks" in estimator.get_params() and not distributed:
        from crm_models.tuning import ValidationReporter

        # the reporter scores partial boosters on validation rows preprocessed like training rows
        estimator.set_params(callbacks=[ValidationReporter(
            test[feature_cols], test["duration_days"], test["event"], data.report,
            every=config.tune.report_every if config.tune else 10,
            transform=lambda X: pipe.preprocessor_.transform(X),
        )])
    where = " on Spark workers" if distributed else ""
    data.progress(f"fitting {config.model.name} on {len(train):,} customers{where}")
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
    if data.validation is not None:  # a tuning trial needs its scores only
        return tracking.RunArtifacts(metrics=metrics, params={"cutoff": str(cutoff)})
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


def _on_engine(data: ExperimentData) -> str:
    return " on Spark" if data.engine == "spark" else ""


def _features_and_segments(
    config: ExperimentConfig, data: ExperimentData, cutoff: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-customer feature table and its RFM segments, computed on the run's engine.

    On Spark both come from one query (the segments are window functions over the feature
    expression) and only this per-customer table is collected; with ``spark.features_path``
    it is also written there as Parquet.
    """
    from crm_models import features as F
    from crm_models.features.engine import execute

    fc = config.features
    if data.engine != "spark":
        feats = F.customer_features(
            data.table("transactions"), cutoff, customers=data.get_table("customers"),
            tickets=data.get_table("tickets"), window_days=fc.window_days,
        )
        return feats, F.rfm_segments(feats, inactivity_days=fc.inactivity_days)
    expr = F.customer_features_expr(
        data.table("transactions"), cutoff, customers=data.get_table("customers"),
        tickets=data.get_table("tickets"), window_days=fc.window_days,
    )
    with_segments = F.rfm_segments_expr(expr, inactivity_days=fc.inactivity_days)
    if data.spark_config is not None and data.spark_config.features_path:
        from crm_models import spark as S

        # collect what was written: reading the Parquet back is cheap, the features are not
        path = data.spark_config.features_path
        S.write_parquet(with_segments, path)
        with_segments = with_segments._find_backend().read_parquet(path)
    both = execute(with_segments)
    return both[[c for c in expr.columns if c != "customer_id"]], both


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


# --------------------------------------------------------------------------- task: clv


def _clv_models() -> dict[str, type]:
    from crm_models.models.clv import PURCHASE_MODELS, REGRESSORS

    return {**PURCHASE_MODELS, **REGRESSORS}


def _estimator(registry: dict[str, type], spec: Any, what: str) -> Any:
    if spec.name not in registry:
        raise ConfigError(f"{what}: unknown model {spec.name!r}; known: {sorted(registry)}")
    try:
        return registry[spec.name](**spec.params)
    except TypeError as exc:
        raise ConfigError(f"{what} {spec.name!r} params: {exc}") from None


@register_task("clv", metric="normalized_gini", direction="maximize", models=_clv_models)
def clv(config: ExperimentConfig, data: ExperimentData) -> tracking.RunArtifacts:
    """Customer lifetime value: BTYD models and ML regressors scored on the same holdout window.

    Calibration = every purchase before ``features.cutoff`` (whole days), holdout = the
    ``features.horizon_days`` after it. BTYD models (``bgnbd``, ``mbgnbd``, ``pareto_nbd``, each
    paired with ``clv.spend_model``) are fitted on every customer's calibration summary (they
    never see the holdout); ML regressors (``xgb_tweedie``, ``two_part``) learn holdout spend from
    the features of the training customers. Every model predicts the holdout spend of the same
    held-out customers; ``model`` is the main one (unprefixed metrics), ``clv.compare`` the rest
    (metrics prefixed ``<name>.``), all in ``tables/model_comparison.csv``.
    """
    import matplotlib.pyplot as plt

    from crm_models import features as F
    from crm_models.evaluation import clv as E
    from crm_models.features.btyd import TIME_UNIT_DAYS
    from crm_models.models.clv import PURCHASE_MODELS, REGRESSORS, SPEND_MODELS, CLVPipeline
    from crm_models.models.clv.regressors import holdout_spend

    cc = config.clv
    assert cc is not None  # filled with defaults for task "clv" by the config
    # a comparison run makes ~10 figures per BTYD model; tracking closes each after logging it
    plt.rcParams["figure.max_open_warning"] = 0
    fc = config.features
    cutoff = resolve_cutoff(config, data)
    if cutoff != cutoff.normalize():
        raise ConfigError(
            f"features.cutoff {cutoff}: the clv task counts whole purchase days; use a date "
            "(midnight) cutoff"
        )
    horizon_end = cutoff + pd.Timedelta(days=fc.horizon_days)
    tx = data.table("transactions")  # pandas, or an Ibis table on Spark
    data.progress(f"building the BTYD summary and features at {cutoff.date()}" + _on_engine(data))
    summary = F.btyd_summary(
        tx, cutoff - pd.Timedelta(days=1), horizon_end - pd.Timedelta(days=1),
        time_unit=cc.time_unit,
    )
    feats = F.customer_features(
        tx, cutoff, customers=data.get_table("customers"), tickets=data.get_table("tickets"),
        window_days=fc.window_days,
    )
    ids = summary.index.intersection(feats.index)
    if len(ids) == 0:
        raise DataError(f"no customer bought before the cutoff {cutoff.date()}: nothing to model")
    summary, feats = summary.loc[ids], feats.loc[ids]
    actual = holdout_spend(tx, cutoff, fc.horizon_days, customers=ids)
    buyer = (actual > 0).astype(int)
    if buyer.nunique() < 2:
        raise DataError(
            f"in the holdout [{cutoff.date()}, {horizon_end.date()}) every customer "
            f"{'bought' if buyer.iloc[0] else 'bought nothing'}: nothing to learn spend from"
        )
    feature_cols = [c for c in feats.columns if c != "signup_ts"]
    train_ids, test_ids = evaluation_split(config, data, ids, buyer)

    specs = [config.model, *cc.compare]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"clv.compare repeats a model of {names}: each model once")
    for s in specs:
        if s.name not in PURCHASE_MODELS and s.name not in REGRESSORS:
            raise ConfigError(
                f"model.name {s.name!r} is not a CLV model; BTYD: {sorted(PURCHASE_MODELS)}, "
                f"ML: {sorted(REGRESSORS)}"
            )
    spend_model = None
    # Gamma-Gamma needs a positive mean repeat spend: repeat buyers whose repeat purchases are
    # worth nothing (free orders, returns) are treated as one-time buyers for spend only, i.e.
    # they get the population mean (logged as n_zero_value_repeat_buyers)
    zero_value = (summary["frequency"] > 0) & (summary["monetary_value"] <= 0)
    spend_summary = summary.assign(frequency=summary["frequency"].where(~zero_value, 0))
    # customers first seen on the calibration's last day (T = 0) carry no likelihood: BTYD models
    # are fitted without them and still predict for them
    fit_summary = summary[summary["T"] > 0]
    if any(n in PURCHASE_MODELS for n in names):
        data.progress(f"fitting {cc.spend_model.name} on the repeat buyers")
        spend_model = _estimator(SPEND_MODELS, cc.spend_model, "clv.spend_model")
        spend_model.fit(spend_summary[summary["T"] > 0])

    s_test, X_test = summary.loc[test_ids], feats.loc[test_ids, feature_cols]
    y_test = actual.loc[test_ids]
    predictions: dict[str, np.ndarray] = {}
    fitted: dict[str, Any] = {}
    params: dict[str, Any] = {"cutoff": str(cutoff), "n_features": len(feature_cols)}
    metrics: dict[str, float] = {}
    for spec in specs:
        if spec.name in PURCHASE_MODELS:
            data.progress(f"fitting {spec.name} on {len(fit_summary):,} calibration summaries")
            m = _estimator(PURCHASE_MODELS, spec, "model").fit(fit_summary)
            purchases = np.asarray(m.predict_purchases(s_test, s_test["duration_holdout"]))
            predictions[spec.name] = purchases * spend_model.predict_spend(
                spend_summary.loc[test_ids]
            )
            for k, v in m.params_.items():
                params[f"{spec.name}.{k}"] = round(float(v), 6)
            metrics[f"{spec.name}.log_likelihood"] = float(m.log_likelihood_)
            metrics.update({
                f"{spec.name}.purchases.{k}": v
                for k, v in E.clv_metrics(s_test["frequency_holdout"], purchases).items()
                if k in ("mae", "rmse", "spearman", "aggregate_error")
            })
        else:
            data.progress(f"fitting {spec.name} on {len(train_ids):,} customers")
            m = CLVPipeline(_estimator(REGRESSORS, spec, "model"), features=feature_cols)
            m.fit(feats.loc[train_ids, feature_cols], actual.loc[train_ids])
            predictions[spec.name] = m.predict(X_test)
        fitted[spec.name] = m

    data.progress(f"evaluating on {len(test_ids):,} held-out customers")
    main = config.model.name
    metrics.update(E.clv_metrics(y_test, predictions[main]))
    for name in names[1:]:
        for k, v in E.clv_metrics(y_test, predictions[name]).items():
            metrics[f"{name}.{k}"] = v
    metrics.update(
        n_customers=float(len(ids)), n_train=float(len(train_ids)), n_test=float(len(test_ids)),
        holdout_buyer_rate=float(buyer.mean()), n_zero_value_repeat_buyers=float(zero_value.sum()),
    )
    if data.validation is not None:  # a tuning trial needs its scores only
        return tracking.RunArtifacts(metrics=metrics, params=params)

    comparison = E.compare_models(y_test, predictions)
    tables_out: dict[str, pd.DataFrame] = {
        "tables/model_comparison.csv": comparison.reset_index(),
    }
    figures: dict[str, Any] = {
        "plots/lorenz.png": E.plot_lorenz(y_test, predictions),
        "plots/deciles.png": E.plot_deciles(y_test, predictions),
    }
    for name, pred in predictions.items():
        tables_out[f"tables/deciles_{name}.csv"] = E.decile_table(y_test, pred)

    customer = pd.DataFrame({"actual_holdout_spend": y_test})
    for name, pred in predictions.items():
        customer[f"predicted_{name}"] = pred
    btyd = [n for n in names if n in PURCHASE_MODELS]
    if spend_model is not None:
        for k, v in spend_model.params_.items():
            params[f"{cc.spend_model.name}.{k}"] = round(float(v), 6)
        tables_out[f"tables/params_{cc.spend_model.name}.csv"] = spend_model.summary().reset_index()
    if not btyd:
        tx_population = tx
    elif isinstance(tx, pd.DataFrame):
        tx_population = tx.loc[tx["customer_id"].isin(ids)]
    else:  # on the engine: a semi-join with the population's ids
        import ibis

        tx_population = tx.semi_join(ibis.memtable({"customer_id": ids.to_numpy()}), "customer_id")
    for name in btyd:
        m = fitted[name]
        tables_out[f"tables/params_{name}.csv"] = m.summary().reset_index()
        data.progress(f"Fader-Hardie diagnostics of {name}")
        figures[f"plots/{name}/frequency_histogram.png"] = E.plot_frequency_histogram(m, summary)
        cond = E.conditional_expectations_table(m, summary)
        tables_out[f"tables/{name}_conditional_expectations.csv"] = cond.reset_index()
        figures[f"plots/{name}/conditional_expectations.png"] = E.plot_conditional_expectations(cond)
        track = E.tracking_table(
            m, tx_population, cutoff - pd.Timedelta(days=1),
            horizon_end - pd.Timedelta(days=1), time_unit=cc.time_unit,
        )
        tables_out[f"tables/{name}_tracking.csv"] = track
        figures[f"plots/{name}/tracking_cumulative.png"] = E.plot_tracking_cumulative(track)
        figures[f"plots/{name}/tracking_weekly.png"] = E.plot_tracking_incremental(track)
        for kind in ("purchases", "alive"):
            figures[f"plots/{name}/frequency_recency_{kind}.png"] = (
                E.plot_frequency_recency_matrix(m, summary, t=1, kind=kind)
            )
        customer[f"prob_alive_{name}"] = m.prob_alive(s_test)
        customer[f"clv_{cc.clv_horizon_months}m_{name}"] = spend_model.customer_lifetime_value(
            m, s_test, spend_summary=spend_summary.loc[test_ids], horizon=cc.clv_horizon_months,
            discount_rate=(1.0 + cc.annual_discount_rate) ** (1.0 / 12.0) - 1.0,
            margin=cc.margin, time_unit_days=TIME_UNIT_DAYS[cc.time_unit],
            period_days=365.25 / 12.0,
        )
        if data.ground_truth is not None:
            metrics.update(_clv_truth_metrics(name, m, spend_model, summary, data, cc.time_unit))

    customer_tables: dict[str, pd.DataFrame] = {"tables/customer_predictions.csv": customer}
    regressors = [n for n in names if n in REGRESSORS]
    if config.explain.enabled and regressors:
        from crm_models.explain import explain_regressor, plot_bar, plot_beeswarm, top_reasons

        name = regressors[0]
        data.progress(f"explaining {name} (SHAP)")
        expl = explain_regressor(fitted[name], X_test)
        figures["plots/shap_beeswarm.png"] = plot_beeswarm(expl)
        figures["plots/shap_bar.png"] = plot_bar(expl)
        customer_tables["tables/shap_top_reasons.csv"] = top_reasons(expl, k=config.explain.top_k)
        params.update({
            "shap.model": name, "shap.method": expl.method, "shap.n_rows": expl.n_rows,
            "shap.n_population": expl.n_population, "shap.is_sample": expl.is_sample,
        })
        metrics["shap_seconds"] = expl.seconds
    sample = feats.loc[test_ids[: config.tracking.feature_sample_rows]]
    customer_tables["tables/feature_sample.csv"] = sample.join(customer)
    model = None
    if config.tracking.log_model:
        from crm_models.serving import BTYD_INPUTS, CLVPredictor, clv_package

        if main in PURCHASE_MODELS:
            predictor = CLVPredictor("btyd", purchase_model=fitted[main], spend_model=spend_model)
            example = s_test[BTYD_INPUTS].head(5)
        else:
            predictor = CLVPredictor("ml", pipeline=fitted[main])
            example = X_test.head(5)
        model = clv_package(predictor, example, {
            "horizon": fc.horizon_days / TIME_UNIT_DAYS[cc.time_unit],
            "clv_horizon_months": cc.clv_horizon_months,
            "annual_discount_rate": cc.annual_discount_rate,
            "margin": cc.margin,
            "time_unit_days": TIME_UNIT_DAYS[cc.time_unit],
        })
    winners = comparison.attrs.get("best", {})
    return tracking.RunArtifacts(
        metrics=metrics,
        params=params,
        tags={"models_compared": ",".join(names), **{
            f"best.{k}": str(v) for k, v in winners.items()
        }},
        figures=figures,
        tables=tables_out,
        customer_tables=customer_tables,
        model=model,
    )


def _clv_truth_metrics(
    name: str, model: Any, spend_model: Any, summary: pd.DataFrame, data: ExperimentData,
    time_unit: str,
) -> dict[str, float]:
    """BTYD posteriors against the simulator's true per-customer purchase rates and spend means."""
    from scipy.stats import spearmanr

    from crm_models.features.btyd import TIME_UNIT_DAYS

    gt = data.ground_truth
    assert gt is not None
    truth = pd.DataFrame(gt["customers"]).set_index("customer_id").reindex(summary.index)
    out: dict[str, float] = {}
    if hasattr(model, "posterior_purchase_rate"):
        true_rate = truth["purchase_rate"].to_numpy(float) * TIME_UNIT_DAYS[time_unit]
        post = np.asarray(model.posterior_purchase_rate(summary))
        out[f"{name}.truth.rate_spearman"] = float(spearmanr(post, true_rate).statistic)
        out[f"{name}.truth.rate_mean_ratio"] = float(post.mean() / true_rate.mean())
        out[f"{name}.truth.rate_mae"] = float(np.abs(post - true_rate).mean())
    repeat = (summary["frequency"] > 0) & (summary["monetary_value"] > 0)
    spend = np.asarray(spend_model.predict_spend(summary.loc[repeat]))
    true_spend = truth.loc[repeat, "spend_mean"].to_numpy(float)
    out["spend.truth.spearman"] = float(spearmanr(spend, true_spend).statistic)
    out["spend.truth.mean_ratio"] = float(spend.mean() / true_spend.mean())
    return out


# --------------------------------------------------------------------------- task: attribution


@register_task("attribution")
def attribution(config: ExperimentConfig, data: ExperimentData) -> tracking.RunArtifacts:
    """Channel attribution, ROI and budget: journeys before the cutoff, every configured method.

    Journeys come from ``touchpoints`` (and the conversions they record: the converting touch's
    ``order_id`` valued from ``transactions``, else each customer's first purchase). Every method
    of ``attribution.methods`` credits the same journeys (bootstrap intervals with ``n_boot``
    resamples); ``model.name`` names the method whose credit drives ROI curves and the budget
    proposal. On the simulator each method's shares are scored against the true incremental
    credit (total variation distance and Spearman).
    """
    from crm_models.evaluation import attribution as EA
    from crm_models.features import paths as P
    from crm_models.models import attribution as A
    from crm_models.models.attribution import budget as B

    ac = config.attribution
    assert ac is not None  # filled with defaults for task "attribution" by the config
    tables = data.tables
    if "touchpoints" not in tables or (
        data.engine == "duckdb" and tables["touchpoints"].empty
    ):
        raise DataError("task 'attribution' needs a non-empty touchpoints table")
    methods = list(dict.fromkeys(ac.methods))
    known = A.METHODS
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ConfigError(f"attribution.methods: unknown {unknown}; known: {list(known)}")
    primary = config.model.name
    if primary not in methods:
        raise ConfigError(
            f"model.name {primary!r} must be one of attribution.methods {methods}: it names the "
            "method whose credit drives ROI curves and the budget proposal"
        )
    cutoff = as_timestamp(config.features.cutoff) or data.observation_end
    data.progress(f"building journeys before {cutoff.date()}" + _on_engine(data))
    conversions = _conversions(data)
    journeys = P.build_journeys(
        data.table("touchpoints"), conversions, lookback_days=ac.lookback_days,
        max_path_length=ac.max_path_length, cutoff=cutoff,
    )
    if journeys.empty or not journeys["converted"].any():
        raise DataError(f"no converting journey before {cutoff.date()}: nothing to attribute")
    paths = P.aggregate_paths(journeys)
    touches_before = functools.cache(lambda: _touches_before(data, cutoff))

    results = []
    for method in methods:
        data.progress(f"attribution: {method}")
        kwargs: dict[str, Any] = {}
        if method == "markov":
            kwargs["order"] = ac.markov_order
        if method == "time_decay":
            kwargs["half_life"] = ac.half_life_days
        source = journeys if method == "time_decay" else paths  # only time decay needs timing
        if ac.n_boot >= 2:
            table = A.bootstrap_attribution(
                source, method, n_boot=ac.n_boot, seed=config.seed, **kwargs
            )
        else:
            table = _attribute(A, source, method, kwargs)
        results.append(table.assign(method=method))
    long = pd.concat(results, ignore_index=True)
    cols = ["method", *[c for c in long.columns if c != "method"]]
    long = long[cols]

    n_conv = float(journeys["converted"].sum())
    metrics: dict[str, float] = {
        "n_journeys": float(len(journeys)),
        "n_conversions": n_conv,
        "conversion_rate": n_conv / len(journeys),
        "n_paths": float(len(paths)),
        "conversion_value": float(journeys["value"].sum()),
        "mean_touches": float(journeys["n_touches"].mean()),
    }
    params: dict[str, Any] = {"cutoff": str(cutoff), "primary_method": primary}
    tables_out: dict[str, pd.DataFrame] = {
        "tables/attribution_by_method.csv": long,
        "tables/paths_top.csv": paths.head(1000),
    }
    truth = None
    if data.ground_truth is not None:
        data.progress("scoring methods against the simulator's true credit")
        # the simulator converts on whole journeys: the truth uses every touch before the cutoff
        truth = EA.true_channel_shares(touches_before(), data.ground_truth)
        errors = EA.attribution_errors(long[["method", "channel", "share"]], truth)
        tables_out["tables/true_shares.csv"] = truth
        tables_out["tables/attribution_errors.csv"] = errors
        for row in errors.itertuples():
            metrics[f"{row.method}.tvd"] = float(row.tvd)
            metrics[f"{row.method}.spearman"] = float(row.spearman)
        metrics["tvd"] = metrics[f"{primary}.tvd"]
        metrics["spearman"] = metrics[f"{primary}.spearman"]

    figures: dict[str, Any] = {
        "plots/shares_by_method.png": EA.plot_shares_by_method(long, truth=truth),
    }
    tm = A.transition_matrix(paths, order=1)
    tables_out["tables/transition_matrix.csv"] = tm.reset_index()
    figures["plots/transition_heatmap.png"] = EA.plot_transition_heatmap(tm)

    spend = tables.get("channel_spend")
    if spend is not None and not spend.empty:
        data.progress("ROI and budget")
        start = pd.to_datetime(journeys["timestamps"].map(lambda t: t[0] if len(t) else pd.NaT)).min()
        spend_window = spend[
            (pd.to_datetime(spend["period_start"]) >= start.floor("D") - pd.Timedelta(days=7))
            & (pd.to_datetime(spend["period_start"]) < cutoff)
        ]
        outcomes = B.outcomes_per_period(
            touches_before(), spend_window, outcome="touches",
            attribution=long[["method", "channel", "conversions"]],
        )
        curves = B.fit_response_curves(spend_window, outcomes, model=ac.budget.response_model)
        roi = B.roi_table(long, spend_window, curves=curves, start=start, end=cutoff)
        tables_out["tables/response_curves.csv"] = curves
        tables_out["tables/roi.csv"] = roi
        figures["plots/roi.png"] = EA.plot_roi(roi)
        pc = curves[curves["method"] == primary] if "method" in curves.columns else curves
        current = dict(zip(pc["channel"], pc["mean_spend"], strict=True))
        total = ac.budget.total or float(sum(current.values()))
        bounds = {
            c: (ac.budget.min_share_of_current * s, ac.budget.max_share_of_current * s)
            for c, s in current.items()
        }
        realloc = B.reallocate_budget(pc, total, bounds=bounds, current=current)
        tables_out["tables/budget_proposal.csv"] = realloc
        figures["plots/budget.png"] = EA.plot_budget(realloc)
        before, after = float(realloc["expected_before"].sum()), float(realloc["expected_after"].sum())
        metrics.update({
            "budget.total_per_period": total,
            "budget.expected_before": before,
            "budget.expected_after": after,
            "budget.uplift": after / before - 1.0 if before > 0 else float("nan"),
        })
        params["budget.response_model"] = ac.budget.response_model
    return tracking.RunArtifacts(
        metrics=metrics, params=params, tags={"methods": ",".join(methods)},
        figures=figures, tables=tables_out,
    )


def _conversions(data: ExperimentData) -> pd.DataFrame:
    """The conversions the journeys end in: converted touches (valued by their order in
    transactions) or each customer's first purchase. On Spark only the converted touches and
    their orders are collected."""
    from crm_models.features import paths as P

    tp, tx = data.table("touchpoints"), data.get_table("transactions")
    if "converted" in tp.columns:
        has_orders = tx is not None and "order_id" in tp.columns and "order_id" in tx.columns
        if isinstance(tp, pd.DataFrame):
            return P.conversions_from_touchpoints(tp, tx if has_orders else None)
        from crm_models import spark as S

        conv = tp.filter(tp.converted.fill_null(False))
        orders = tx.semi_join(conv.select("order_id"), "order_id") if has_orders else None
        return P.conversions_from_touchpoints(
            S.collect(conv), None if orders is None else S.collect(orders)
        )
    if tx is None:
        raise DataError(
            "touchpoints has no 'converted' column and there is no transactions table: "
            "nothing says which journeys converted"
        )
    if not isinstance(tx, pd.DataFrame):
        tx = data.tables["transactions"]
    return P.conversions_from_transactions(tx, first_only=True)


def _touches_before(data: ExperimentData, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Touchpoints before the cutoff, in pandas (collected from the engine when needed)."""
    tp = data.table("touchpoints")
    if isinstance(tp, pd.DataFrame):
        return tp[pd.to_datetime(tp["ts"]) < cutoff]
    from crm_models import spark as S
    from crm_models.features.engine import lit_ts

    return S.collect(tp.filter(tp.ts < lit_ts(cutoff)))


def _attribute(A: Any, source: pd.DataFrame, method: str, kwargs: dict[str, Any]) -> pd.DataFrame:
    if method == "markov":
        return A.markov_attribution(source, **kwargs)
    if method == "shapley":
        return A.shapley_attribution(source, **kwargs)
    if method == "data_driven":
        return A.data_driven_attribution(source, **kwargs)
    return A.heuristic_attribution(source, method=method, **kwargs)


# --------------------------------------------------------------------------- task: retention

RETENTION_TIERS: tuple[str, ...] = ("save_now", "nurture", "monitor", "let_go")
"""Action tiers of the retention task, in priority order (rules: ``config.ActionTiers``)."""


@dataclass
class _ChurnSource:
    """A retention run's churn model: a spec to fit or a loaded pipeline, and its churn settings."""

    origin: str
    churn: str
    horizon_days: int
    inactivity_days: int
    window_days: int
    spec: Any = None
    pipeline: Any = None


@register_task("retention")
def retention(config: ExperimentConfig, data: ExperimentData) -> tracking.RunArtifacts:
    """Value at risk: whom to act on first, why, and how.

    At the cutoff ``s`` (``features.cutoff``, default the observation end; nothing after it is
    read) every customer of the churn model's population (inactivity churn: last purchase less
    than ``inactivity_days`` ago; contractual: a subscription active at ``s``) gets:
    ``churn_probability`` = P(churn within the churn horizon) from the survival model,
    ``clv`` = discounted expected value over ``retention.value_horizon_months`` from the BTYD
    purchase model x the spend model, ``value_at_risk = churn_probability x clv``, the RFM
    segment and lifecycle stage, the top-k churn reasons (SHAP of ``predict_risk``) and an action
    tier (``config.ActionTiers``). Where the models come from: ``config.RetentionConfig``.

    On the simulator the rankings by value at risk, by churn probability alone and by CLV alone
    are scored against the true lost value (:func:`true_lost_value`): the share of it held by
    each ranking's top decile (``truth.capture_top_decile.*``).
    """
    from crm_models import features as F
    from crm_models.evaluation import clv as E
    from crm_models.features.btyd import TIME_UNIT_DAYS

    rc = config.retention
    assert rc is not None  # filled with defaults for task "retention" by the config
    tables = data.tables
    tx = tables["transactions"]
    cutoff = as_timestamp(config.features.cutoff) or data.observation_end
    if cutoff != cutoff.normalize():
        raise ConfigError(
            f"features.cutoff {cutoff}: the retention task counts whole purchase days (BTYD); "
            "use a date (midnight) cutoff"
        )
    if cutoff > data.observation_end:
        raise ConfigError(
            f"features.cutoff {cutoff.date()} is after the observation end "
            f"{data.observation_end.date()}"
        )
    clv_spec = _retention_clv_spec(config)  # before any fitting: a wrong CLV source fails fast
    src = _retention_churn_source(config)
    metrics: dict[str, float] = {}
    params: dict[str, Any] = {
        "cutoff": str(cutoff), "churn.source": src.origin, "churn.definition": src.churn,
        "churn.horizon_days": src.horizon_days, "churn.inactivity_days": src.inactivity_days,
        "churn.window_days": src.window_days,
    }

    pipe, background = src.pipeline, None
    if pipe is None:
        pipe, background, fit_info = _retention_fit_churn(data, src, cutoff)
        params.update(fit_info.pop("params"))
        metrics.update(fit_info)

    data.progress(f"scoring customers at {cutoff.date()}")
    feats = F.customer_features(
        tx, cutoff, customers=tables.get("customers"), tickets=tables.get("tickets"),
        window_days=src.window_days,
    )
    feature_cols = [str(c) for c in pipe.feature_names_in_]
    missing = [c for c in feature_cols if c not in feats.columns]
    if missing:
        raise DataError(
            f"the churn model ({src.origin}) reads feature(s) {missing} that the customer features "
            f"at {cutoff.date()} lack (a table it was trained with is missing here?)"
        )
    population = _churn_labels(tables, src, cutoff).index.intersection(feats.index)
    if len(population) == 0:
        raise DataError(f"no customer of the churn population is active at {cutoff.date()}")
    ids = pd.Index(np.sort(population.to_numpy()), name=feats.index.name)
    segments = F.rfm_segments(feats, inactivity_days=src.inactivity_days).reindex(ids)
    X = feats.loc[ids, feature_cols]
    churn_prob = np.asarray(pipe.predict_churn_probability(X, float(src.horizon_days)), float)

    data.progress("expected customer value (CLV)")
    summary = F.btyd_summary(tx, cutoff - pd.Timedelta(days=1), time_unit=clv_spec.time_unit)
    clv, prob_alive, clv_info = _retention_clv(config, clv_spec, summary, ids, TIME_UNIT_DAYS)
    params.update(clv_info)

    value_at_risk = churn_prob * clv
    tiers = action_tiers(churn_prob, clv, value_at_risk, rc.tiers)
    table = pd.DataFrame(
        {
            "value_at_risk": value_at_risk,
            "churn_probability": churn_prob,
            "clv": clv,
            "prob_alive": prob_alive,
            "action_tier": tiers,
            "rfm_segment": segments["rfm_segment"].to_numpy(),
            "lifecycle_stage": segments["lifecycle_stage"].to_numpy(),
            "value_tier": segments["value_tier"].to_numpy(),
        },
        index=ids,
    )
    if config.explain.enabled:
        ex = config.explain
        from crm_models.explain import explain_survival, top_reasons

        data.progress("churn reasons (SHAP)")
        expl = explain_survival(
            pipe, X, background=X if background is None else background,
            max_sample=ex.max_sample, seed=config.seed, n_background=ex.n_background,
            max_evals=ex.max_evals, max_seconds=ex.max_seconds,
        )
        table = table.join(_wide_reasons(top_reasons(expl, k=ex.top_k)))
        params.update({
            "shap.method": expl.method, "shap.n_rows": expl.n_rows,
            "shap.n_population": expl.n_population, "shap.is_sample": expl.is_sample,
        })
        metrics["shap_seconds"] = expl.seconds
    rfm_cols = ["recency_days", "frequency", "monetary_total", "tenure_days"]
    table = table.join(feats.loc[ids, [c for c in rfm_cols if c in feats.columns]])
    # highest value at risk first; ties in customer id order, so the file is deterministic
    table = table.iloc[np.lexsort((np.arange(len(table)), -table["value_at_risk"].to_numpy()))]
    table.insert(0, "priority", np.arange(1, len(table) + 1))

    total = float(value_at_risk.sum())
    sorted_var = table["value_at_risk"].to_numpy()
    n80 = customers_holding(sorted_var, 0.8)
    metrics.update(
        n_customers=float(len(ids)),
        n_not_in_population=float(len(feats) - len(ids)),
        mean_churn_probability=float(churn_prob.mean()),
        total_clv=float(clv.sum()),
        total_value_at_risk=total,
        value_at_risk_share_top_decile=top_share_captured(value_at_risk, value_at_risk, 0.1),
        n_customers_80pct_value_at_risk=float(n80),
        share_customers_80pct_value_at_risk=n80 / len(ids),
    )
    tier_summary = (
        table.groupby("action_tier")
        .agg(n=("value_at_risk", "size"), value_at_risk=("value_at_risk", "sum"),
             mean_churn_probability=("churn_probability", "mean"), mean_clv=("clv", "mean"))
        .reindex(list(RETENTION_TIERS)).fillna({"n": 0, "value_at_risk": 0.0})
    )
    tier_summary["value_at_risk_share"] = (
        tier_summary["value_at_risk"] / total if total > 0 else np.nan
    )
    for tier, row in tier_summary.iterrows():  # four tiers, not customers
        metrics[f"n_tier.{tier}"] = float(row["n"])
        metrics[f"value_at_risk_share.{tier}"] = float(row["value_at_risk_share"])
    by_segment = (
        table.groupby(["rfm_segment", "action_tier"]).agg(
            n=("value_at_risk", "size"), value_at_risk=("value_at_risk", "sum")
        ).reset_index()
    )
    figures: dict[str, Any] = {
        "plots/value_at_risk_by_segment.png": _plot_value_at_risk_by_segment(table),
        "plots/cumulative_value_at_risk.png": _plot_cumulative_value_at_risk(sorted_var, n80),
    }
    tables_out: dict[str, pd.DataFrame] = {
        "tables/tier_summary.csv": tier_summary.reset_index(),
        "tables/value_at_risk_by_segment.csv": by_segment,
    }
    if data.ground_truth is not None:
        data.progress("scoring the rankings against the simulator's lost value")
        horizon_days = rc.value_horizon_months * 365.25 / 12.0
        truth = true_lost_value(data.ground_truth, ids, cutoff, horizon_days)
        scores = {"value_at_risk": value_at_risk, "churn_probability": churn_prob, "clv": clv}
        for kind in ("expected", "realized"):
            actual = truth[kind].to_numpy()
            prefix = "truth" if kind == "expected" else "truth.realized"
            metrics[f"{prefix}.total_lost_value"] = float(actual.sum())
            for name, score in {**scores, "perfect": actual}.items():
                metrics[f"{prefix}.capture_top_decile.{name}"] = top_share_captured(
                    actual, score, 0.1
                )
            # the whole ranking, not just its top decile (1 = the true order, 0 = random)
            for name, score in scores.items():
                metrics[f"{prefix}.normalized_gini.{name}"] = E.normalized_gini(actual, score)
        metrics["truth.alive_share"] = float(truth["alive"].mean())
        metrics["truth.dropout_share_in_horizon"] = float(truth["dropout_in_horizon"].mean())
        figures["plots/truth_capture.png"] = E.plot_lorenz(
            truth["expected"].to_numpy(), scores,
            title="Simulator's expected lost value captured, by ranking",
        )
    return tracking.RunArtifacts(
        metrics=metrics,
        params=params,
        tags={
            "model_family": f"{_spec_name(src)}+{clv_info['clv.model']}",
            "churn_definition": src.churn,
        },
        figures=figures,
        tables=tables_out,
        customer_tables={"tables/retention_priorities.parquet": table},
    )


def action_tiers(
    churn_probability: Any, clv: Any, value_at_risk: Any, tiers: Any
) -> np.ndarray:
    """Each customer's action tier from ``tiers`` (a ``config.ActionTiers``; first rule wins):
    ``save_now`` (top ``save_now_share`` by value at risk and high churn), ``let_go`` (high churn,
    CLV below the ``high_value_quantile`` quantile), ``nurture`` (CLV at or above it), ``monitor``.
    """
    p = np.asarray(churn_probability, dtype=float)
    value = np.asarray(clv, dtype=float)
    var = np.asarray(value_at_risk, dtype=float)
    n = len(var)
    if not (len(p) == len(value) == n):
        raise ValueError("churn_probability, clv and value_at_risk must have the same length")
    if n == 0:
        return np.array([], dtype=object)
    top = np.zeros(n, dtype=bool)
    # ties in value at risk keep row order: the tier of a row never depends on a random draw
    top[np.lexsort((np.arange(n), -var))[: int(np.ceil(tiers.save_now_share * n))]] = True
    high_churn = p >= tiers.high_churn_probability
    high_value = value >= np.quantile(value, tiers.high_value_quantile)
    return np.select(
        [top & high_churn, high_churn & ~high_value, high_value],
        ["save_now", "let_go", "nurture"],
        default="monitor",
    ).astype(object)


def top_share_captured(actual: Any, score: Any, share: float = 0.1) -> float:
    """Share of the total ``actual`` held by the top ``share`` of customers ranked by ``score``
    (``ceil(share * n)`` customers, highest score first; ties in row order)."""
    a = np.asarray(actual, dtype=float)
    s = np.asarray(score, dtype=float)
    total = a.sum()
    if len(a) == 0 or total <= 0:
        return float("nan")
    top = np.lexsort((np.arange(len(s)), -s))[: int(np.ceil(share * len(a)))]
    return float(a[top].sum() / total)


def customers_holding(sorted_values: Any, share: float = 0.8) -> int:
    """How many customers, largest values first, hold ``share`` of the total (0 if none)."""
    v = np.sort(np.asarray(sorted_values, dtype=float))[::-1]
    total = v.sum()
    if len(v) == 0 or total <= 0:
        return 0
    return int(np.searchsorted(np.cumsum(v), share * total * (1 - 1e-12)) + 1)


def true_lost_value(
    ground_truth: dict[str, Any], customer_ids: Any, cutoff: Any, horizon_days: float
) -> pd.DataFrame:
    """The simulator's lost value over ``[cutoff, cutoff + horizon_days)`` per customer.

    A customer alive at the cutoff (true dropout time tau after it) spends at the rate
    ``purchase_rate x spend_mean`` (``lambda_i m_i``, per day) until tau: dropping out within the
    horizon loses ``lambda_i m_i (horizon - (tau - cutoff))`` of spend.

    - ``realized``: that loss for the simulated tau (0 if tau is after the horizon).
    - ``expected``: its expectation under the true constant hazard mu_i (``dropout_hazard``),
      ``lambda_i m_i (H - (1 - exp(-mu_i H)) / mu_i)``: the truth without the coin flip of who
      happens to drop out (a top-decile share of it varies far less from seed to seed).

    Customers already gone at the cutoff have nothing left to save: 0 in both. Undiscounted
    revenue, like the simulator's spend. ``alive`` and ``dropout_in_horizon`` are indicators.
    """
    gt = pd.DataFrame(ground_truth["customers"]).set_index("customer_id")
    ids = pd.Index(customer_ids)
    unknown = ids.difference(gt.index)
    if len(unknown):
        raise DataError(f"customers {unknown[:5].tolist()} are not in the simulator's ground truth")
    truth = gt.reindex(ids)
    cut = pd.Timestamp(cutoff)
    # signup + lifetime rather than dropout_ts: a far-future dropout overflows datetime64[ns]
    signup = (pd.to_datetime(truth["signup_ts"]) - cut) / pd.Timedelta(days=1)
    tau = signup.to_numpy(float) + truth["lifetime_days"].to_numpy(float)
    rate = truth["purchase_rate"].to_numpy(float) * truth["spend_mean"].to_numpy(float)
    mu = truth["dropout_hazard"].to_numpy(float)
    h = float(horizon_days)
    alive = tau > 0
    in_horizon = alive & (tau < h)
    realized = np.where(in_horizon, rate * (h - tau), 0.0)
    survive_part = -np.expm1(-mu * h) / np.where(mu > 0, mu, 1.0)
    expected = np.where(alive, rate * (h - np.where(mu > 0, survive_part, h)), 0.0)
    return pd.DataFrame(
        {"alive": alive, "dropout_in_horizon": in_horizon, "realized": realized,
         "expected": expected},
        index=ids,
    )


def _spec_name(src: _ChurnSource) -> str:
    if src.spec is not None:
        return str(src.spec.name)
    return type(getattr(src.pipeline, "model_", src.pipeline)).__name__


def _retention_churn_source(config: ExperimentConfig) -> _ChurnSource:
    """The churn model a retention run uses (precedence: ``config.RetentionConfig``)."""
    from crm_models.config import load_config

    rc, fc = config.retention, config.features
    assert rc is not None
    if rc.churn_run_id:
        run_id = rc.churn_run_id
        run = tracking.get_run(run_id)
        if run is None:
            raise ConfigError(f"retention.churn_run_id: no MLflow run {run_id!r} in this store")
        task = run.data.tags.get("task")
        if task != "churn_survival":
            raise ConfigError(
                f"retention.churn_run_id: run {run_id} is a {task!r} run; it must be a "
                "churn_survival run"
            )
        if tracking.run_model_info(run_id) is None:
            raise ConfigError(
                f"retention.churn_run_id: run {run_id} logged no model (tracking.log_model was "
                "false?); give retention.churn_config or use this config's model"
            )
        from crm_models.serving import load_model

        inner = load_model(f"runs:/{run_id}/model").unwrap_python_model()
        pipe = getattr(inner, "pipeline", None)
        if pipe is None or not hasattr(pipe, "predict_churn_probability"):
            raise ConfigError(
                f"retention.churn_run_id: the model of run {run_id} is not a crm_models churn "
                "pyfunc (no survival pipeline inside)"
            )
        p = run.data.params
        return _ChurnSource(
            origin=f"run {run_id}",
            churn=p.get("features.churn", fc.churn),
            horizon_days=int(float(p.get("features.horizon_days", fc.horizon_days))),
            inactivity_days=int(float(p.get("features.inactivity_days", fc.inactivity_days))),
            window_days=int(float(p.get("features.window_days", fc.window_days))),
            pipeline=pipe,
        )
    if rc.churn_config:
        cc = load_config(rc.churn_config)
        if cc.task != "churn_survival":
            raise ConfigError(
                f"retention.churn_config: {rc.churn_config} is a {cc.task!r} config; it must be "
                "a churn_survival config"
            )
        f = cc.features
        return _ChurnSource(
            rc.churn_config, f.churn, f.horizon_days, f.inactivity_days, f.window_days,
            spec=cc.model,
        )
    return _ChurnSource(
        "config", fc.churn, fc.horizon_days, fc.inactivity_days, fc.window_days, spec=config.model
    )


def _churn_labels(
    tables: dict[str, pd.DataFrame], src: _ChurnSource, cutoff: pd.Timestamp
) -> pd.DataFrame:
    from crm_models import features as F

    if src.churn == "contractual":
        if "subscriptions" not in tables:
            raise DataError("churn definition 'contractual' needs a subscriptions table")
        return F.contractual_churn_labels(tables["subscriptions"], cutoff, src.horizon_days)
    return F.noncontractual_churn_labels(
        tables["transactions"], cutoff, src.horizon_days, src.inactivity_days
    )


def _retention_fit_churn(
    data: ExperimentData, src: _ChurnSource, cutoff: pd.Timestamp
) -> tuple[Any, pd.DataFrame, dict[str, Any]]:
    """Fit the churn model at ``cutoff - horizon`` on every labelled customer: its labels end at
    the cutoff, so the retention run reads nothing after it."""
    from crm_models import features as F
    from crm_models.models.survival import MODELS, SurvivalPipeline

    tables = data.tables
    tx = tables["transactions"]
    train_cutoff = cutoff - pd.Timedelta(days=src.horizon_days)
    if train_cutoff <= tx["ts"].min():
        raise DataError(
            f"the churn model is fitted at cutoff - horizon = {train_cutoff.date()}, not after "
            f"the first transaction ({tx['ts'].min().date()}): move features.cutoff later or "
            "shorten the churn horizon"
        )
    data.progress(f"fitting the churn model at {train_cutoff.date()}")
    feats = F.customer_features(
        tx, train_cutoff, customers=tables.get("customers"), tickets=tables.get("tickets"),
        window_days=src.window_days,
    )
    frame = _churn_labels(tables, src, train_cutoff).join(feats, how="inner")
    if frame.empty or frame["event"].nunique() < 2:
        raise DataError(
            f"at the churn model's cutoff {train_cutoff.date()} the labelled customers are "
            f"{len(frame)} with events {sorted(frame['event'].unique().tolist())}: a survival "
            "model needs both churned and censored customers"
        )
    feature_cols = [c for c in feats.columns if c != "signup_ts"]
    estimator = _estimator(MODELS, src.spec, "model")
    pipe = SurvivalPipeline(estimator, features=feature_cols)
    pipe.fit(frame[feature_cols], frame["duration_days"], frame["event"])
    info: dict[str, Any] = {
        "params": {"churn.training_cutoff": str(train_cutoff), "churn.model": src.spec.name},
        "churn.n_train": float(len(frame)),
        "churn.train_event_rate": float(frame["event"].mean()),
    }
    return pipe, frame[feature_cols], info


@dataclass
class _ClvSpec:
    """A retention run's CLV model: a logged pyfunc (``run_id``) or BTYD specs to fit."""

    origin: str
    time_unit: str
    run_id: str | None = None
    purchase: Any = None
    spend: Any = None


def _retention_clv_spec(config: ExperimentConfig) -> _ClvSpec:
    """Where the CLV model comes from (``config.RetentionConfig``), checked before any fitting."""
    from crm_models.config import load_config
    from crm_models.models.clv import PURCHASE_MODELS, REGRESSORS, SPEND_MODELS

    rc = config.retention
    assert rc is not None
    if rc.clv_run_id:
        run_id = rc.clv_run_id
        run = tracking.get_run(run_id)
        if run is None:
            raise ConfigError(f"retention.clv_run_id: no MLflow run {run_id!r} in this store")
        if tracking.run_model_info(run_id) is None:
            raise ConfigError(
                f"retention.clv_run_id: run {run_id} has no logged model; use "
                "retention.clv_model or retention.clv_config instead"
            )
        p = run.data.params
        if run.data.tags.get("task") != "clv" or p.get("model.name") not in PURCHASE_MODELS:
            raise ConfigError(
                f"retention.clv_run_id: run {run_id} is not a clv run of a BTYD model (task "
                f"{run.data.tags.get('task')!r}, model {p.get('model.name')!r}); an ML "
                "regressor predicts spend over its training horizon, not discounted CLV"
            )
        return _ClvSpec(f"run {run_id}", p.get("clv.time_unit", rc.time_unit), run_id=run_id)
    spec = _ClvSpec("config", rc.time_unit, purchase=rc.clv_model, spend=rc.spend_model)
    if rc.clv_config:
        cc = load_config(rc.clv_config)
        if cc.task != "clv" or cc.clv is None:
            raise ConfigError(
                f"retention.clv_config: {rc.clv_config} is a {cc.task!r} config; it must be a clv "
                "config"
            )
        spec = _ClvSpec(
            rc.clv_config, cc.clv.time_unit, purchase=cc.model, spend=cc.clv.spend_model
        )
    if spec.purchase.name not in PURCHASE_MODELS:
        kind = "an ML regressor of holdout spend" if spec.purchase.name in REGRESSORS else "unknown"
        raise ConfigError(
            f"retention CLV model {spec.purchase.name!r} ({spec.origin}) is {kind}; the retention "
            f"task needs a BTYD purchase model: {sorted(PURCHASE_MODELS)}"
        )
    if spec.spend.name not in SPEND_MODELS:
        raise ConfigError(
            f"retention spend model {spec.spend.name!r} ({spec.origin}) is unknown; known: "
            f"{sorted(SPEND_MODELS)}"
        )
    return spec


def _retention_clv(
    config: ExperimentConfig,
    spec: _ClvSpec,
    summary: pd.DataFrame,
    ids: pd.Index,
    time_unit_days: dict[str, float],
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(clv, prob_alive, params) of the customers ``ids``: the logged CLV pyfunc, or the BTYD
    model fitted on every customer's purchases before the cutoff (``summary``, in
    ``spec.time_unit``)."""
    from crm_models.models.clv import PURCHASE_MODELS, SPEND_MODELS

    rc = config.retention
    assert rc is not None
    missing = ids.difference(summary.index)
    if len(missing):  # cannot happen with one transactions table; guards a mismatched summary
        raise DataError(f"customers {missing[:5].tolist()} have no purchase before the cutoff")
    if spec.run_id is not None:
        return _clv_from_run(spec.run_id, summary.loc[ids], rc.value_horizon_months)
    purchase, spend = spec.purchase, spec.spend
    model = _estimator(PURCHASE_MODELS, purchase, "retention.clv_model").fit(summary)
    # as in task clv: repeat buyers whose repeat purchases are worth nothing get the mean spend
    zero_value = (summary["frequency"] > 0) & (summary["monetary_value"] <= 0)
    spend_summary = summary.assign(frequency=summary["frequency"].where(~zero_value, 0))
    spend_model = _estimator(SPEND_MODELS, spend, "retention.spend_model").fit(spend_summary)
    clv = spend_model.customer_lifetime_value(
        model, summary.loc[ids], spend_summary=spend_summary.loc[ids],
        horizon=rc.value_horizon_months,
        discount_rate=(1.0 + rc.annual_discount_rate) ** (1.0 / 12.0) - 1.0,
        margin=rc.margin, time_unit_days=time_unit_days[spec.time_unit],
        period_days=365.25 / 12.0,
    )
    alive = np.asarray(model.prob_alive(summary.loc[ids]), dtype=float)
    info: dict[str, Any] = {
        "clv.source": spec.origin, "clv.model": purchase.name, "clv.spend_model": spend.name,
        "clv.time_unit": spec.time_unit,
        **{f"clv.{purchase.name}.{k}": round(float(v), 6) for k, v in model.params_.items()},
        **{f"clv.{spend.name}.{k}": round(float(v), 6) for k, v in spend_model.params_.items()},
    }
    return np.asarray(clv, dtype=float), alive, info


def _clv_from_run(
    run_id: str, summary: pd.DataFrame, months: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """CLV over ``months`` and P(alive) from a clv run's logged BTYD pyfunc
    (``serving.CLVModel``: btyd summary rows in; discount rate and margin are the run's)."""
    from crm_models.serving import BTYD_INPUTS, load_model

    model = load_model(f"runs:/{run_id}/model")
    out = model.predict(summary[BTYD_INPUTS], params={"clv_horizon_months": int(months)})
    if not isinstance(out, pd.DataFrame) or "clv" not in out.columns or len(out) != len(summary):
        raise ConfigError(
            f"retention.clv_run_id: the model of run {run_id} does not return a 'clv' column "
            "per customer (not a crm_models BTYD CLV pyfunc?)"
        )
    alive = out["prob_alive"] if "prob_alive" in out.columns else np.nan
    info = {"clv.source": f"run {run_id}", "clv.model": "pyfunc", "clv.spend_model": ""}
    return (
        out["clv"].to_numpy(dtype=float),
        np.broadcast_to(np.asarray(alive, dtype=float), (len(out),)).copy(),
        info,
    )


def _wide_reasons(long: pd.DataFrame) -> pd.DataFrame:
    """``top_reasons`` (one row per customer and rank) as one row per customer: ``reason_<k>``
    (feature), ``reason_<k>_value`` and ``reason_<k>_contribution``."""
    k = int(long["rank"].max())
    n = len(long) // k
    cols: dict[str, Any] = {}
    fields = (("feature", ""), ("value", "_value"), ("contribution", "_contribution"))
    for field_name, suffix in fields:
        block = long[field_name].to_numpy().reshape(n, k)
        for j in range(k):
            cols[f"reason_{j + 1}{suffix}"] = block[:, j]
    order = [f"reason_{j + 1}{s}" for j in range(k) for s in ("", "_value", "_contribution")]
    index = pd.Index(long["customer_id"].to_numpy()[::k], name="customer_id")
    return pd.DataFrame(cols, index=index)[order]


def _plot_value_at_risk_by_segment(table: pd.DataFrame) -> Any:
    """Total value at risk per RFM segment and per lifecycle stage, stacked by action tier."""
    import matplotlib.pyplot as plt

    colors = {"save_now": "tab:red", "nurture": "tab:green", "monitor": "tab:gray",
              "let_go": "tab:orange"}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), layout="constrained")
    for ax, by, title in (
        (axes[0], "rfm_segment", "by RFM segment"),
        (axes[1], "lifecycle_stage", "by lifecycle stage"),
    ):
        pivot = table.pivot_table(
            index=by, columns="action_tier", values="value_at_risk", aggfunc="sum", fill_value=0.0
        ).reindex(columns=list(RETENTION_TIERS), fill_value=0.0)
        pivot = pivot.loc[pivot.sum(axis=1).sort_values().index]
        counts = table[by].value_counts()
        left = np.zeros(len(pivot))
        for tier in RETENTION_TIERS:
            ax.barh(pivot.index.astype(str), pivot[tier], left=left, color=colors[tier], label=tier)
            left += pivot[tier].to_numpy()
        for y, (name, total) in enumerate(zip(pivot.index, left, strict=True)):
            ax.text(total, y, f"  n={counts.get(name, 0):,}", va="center", fontsize=8)
        ax.set_xlabel("total value at risk")
        ax.set_title(f"Value at risk {title}")
        ax.grid(axis="x", alpha=0.3)
    axes[1].legend(title="action tier", loc="lower right", fontsize="small")
    return fig


def _plot_cumulative_value_at_risk(sorted_values: np.ndarray, n80: int) -> Any:
    """Cumulative share of the total value at risk vs customers contacted, highest first."""
    import matplotlib.pyplot as plt

    total = sorted_values.sum()
    cumulative = np.r_[0.0, np.cumsum(sorted_values)]
    share = cumulative / total if total > 0 else np.zeros_like(cumulative)
    n = np.arange(len(share))
    fig, ax = plt.subplots(figsize=(7, 5), layout="constrained")
    ax.plot(n, share, lw=2, label="ranked by value at risk")
    ax.plot([0, n[-1]], [0, 1], ls="--", color="grey", lw=1, label="random order")
    ax.axhline(0.8, color="tab:red", lw=0.8, ls=":")
    ax.axvline(n80, color="tab:red", lw=0.8, ls=":")
    ax.annotate(
        f"{n80:,} customers ({n80 / max(len(sorted_values), 1):.0%}) hold 80%",
        (n80, 0.8), xytext=(10, -25), textcoords="offset points", color="tab:red",
    )
    ax.set_xlabel("customers contacted, highest value at risk first")
    ax.set_ylabel("share of total value at risk")
    ax.set_title("Cumulative value at risk")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig
