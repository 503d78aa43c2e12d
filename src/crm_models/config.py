"""The experiment config: a pydantic schema, YAML loading and ``--set a.b=c`` overrides.

A config is data: it names the task, the data, the feature window, the model and where to track.
Unknown keys and wrong types are rejected with the key path (``ConfigError``).
"""

from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crm_models.data.contracts import CONTRACTS
from crm_models.errors import ConfigError

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACT_ROOT = "mlruns/artifacts"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TableSource(_Strict):
    """Where one raw table comes from and how its columns map onto the contract.

    ``path`` is a CSV or Parquet file (format from the suffix unless given; with
    ``engine: spark`` also a directory or glob of them, on any file system Spark reads) or a
    DuckDB database file (``.duckdb`` / ``.db``) with ``table`` naming the table in it. With
    ``engine: spark``, ``format: spark`` reads the catalog table named by ``table`` (no path).
    ``columns`` maps contract names to the user's names: ``{customer_id: "Customer ID"}``.
    """

    path: str = ""
    format: Literal["auto", "csv", "parquet", "duckdb", "spark"] = "auto"
    table: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    read_options: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments for the reader (e.g. ``{sep: ";"}`` for CSV)."""

    @model_validator(mode="after")
    def _path_or_table(self) -> TableSource:
        if self.format == "spark" and not self.table:
            raise ValueError("format 'spark' reads a catalog table: set table (db.name)")
        if self.format != "spark" and not self.path:
            raise ValueError("path is required (or format: spark with a table name)")
        return self


class SyntheticData(_Strict):
    """Simulated data, generated on first use under ``dir`` and reused afterwards."""

    customers: int = Field(20_000, ge=10)
    seed: int = 7
    dir: str = "data/synthetic"


class CdnowData(_Strict):
    """The CDNOW transaction log shipped with the package (Fader, Hardie & Lee 2005)."""

    sample: bool = False
    """The 2,357-customer sample of the papers instead of all 23,570 customers."""


class DataConfig(_Strict):
    source: Literal["synthetic", "files", "cdnow"] = "synthetic"
    synthetic: SyntheticData = Field(default_factory=SyntheticData)
    cdnow: CdnowData = Field(default_factory=CdnowData)
    tables: dict[str, TableSource] = Field(default_factory=dict)
    observation_end: datetime | None = None
    """End of the observed data; rows after it are reported by validation."""

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, v: dict[str, TableSource]) -> dict[str, TableSource]:
        unknown = sorted(set(v) - set(CONTRACTS))
        if unknown:
            raise ValueError(f"unknown table(s) {unknown}; expected some of {sorted(CONTRACTS)}")
        return v

    @model_validator(mode="after")
    def _files_need_transactions(self) -> DataConfig:
        if self.source == "files" and "transactions" not in self.tables:
            raise ValueError("source 'files' needs at least data.tables.transactions")
        return self


class FeatureConfig(_Strict):
    cutoff: datetime | None = None
    """Features use rows with ts < cutoff; None = observation end minus the horizon."""
    horizon_days: int = Field(180, gt=0)
    """Labels use rows in [cutoff, cutoff + horizon)."""
    inactivity_days: int = Field(90, gt=0)
    """Non-contractual churn: no purchase for this many days."""
    window_days: int = Field(90, gt=0)
    """Trend window: last vs prior ``window_days`` before the cutoff."""
    churn: Literal["noncontractual", "contractual"] = "noncontractual"


class SplitConfig(_Strict):
    test_size: float = Field(0.3, gt=0, lt=1)
    seed: int = 42


class ModelConfig(_Strict):
    name: str = "cox_ph"
    params: dict[str, Any] = Field(default_factory=dict)


class EvaluationConfig(_Strict):
    horizons_days: list[int] = Field(default_factory=lambda: [90, 180])


class ExplainConfig(_Strict):
    enabled: bool = True
    max_sample: int = Field(500, ge=10)
    """Model-agnostic (permutation) SHAP explains at most this many held-out customers."""
    top_k: int = Field(3, ge=1)
    """Reasons per customer in the reasons table."""
    max_seconds: float | None = Field(300.0, gt=0)
    """Model-agnostic SHAP stops after this budget (the explained rows stay a random sample)."""
    n_background: int = Field(100, ge=5)
    max_evals: int = Field(500, ge=10)


class ClvConfig(_Strict):
    """Customer lifetime value: the calibration window ends at ``features.cutoff`` and the holdout
    spans ``features.horizon_days``; ``model`` is the main model, ``compare`` the others fitted and
    scored on the same holdout in the same run."""

    time_unit: Literal["D", "W", "M"] = "W"
    """Time unit of the BTYD summary (recency, T, rates)."""
    spend_model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(name="gamma_gamma", params={})
    )
    """Spend model paired with a BTYD purchase model (expected spend = purchases x spend)."""
    compare: list[ModelConfig] = Field(default_factory=list)
    """Further models (BTYD or ML) evaluated in the same run and the same comparison table."""
    annual_discount_rate: float = Field(0.10, ge=0)
    """Discount rate per year; the CLV table discounts month by month at the equivalent rate."""
    margin: float = Field(1.0, gt=0)
    """Profit margin applied to spend (1 = revenue)."""
    clv_horizon_months: int = Field(12, ge=1)
    """Months of discounted future value in the per-customer CLV table."""


class BudgetConfig(_Strict):
    total: float | None = Field(None, gt=0)
    """Budget per period to reallocate; None = the current average spend per period."""
    min_share_of_current: float = Field(0.5, ge=0)
    max_share_of_current: float = Field(2.0, gt=0)
    """Per-channel bounds of the proposal, as multiples of the channel's current spend."""
    response_model: Literal["power", "hill"] = "power"


class AttributionConfig(_Strict):
    """Channel attribution on journeys built from touchpoints before ``features.cutoff``."""

    lookback_days: float = Field(30.0, gt=0)
    max_path_length: int | None = Field(None, ge=1)
    methods: list[str] = Field(
        default_factory=lambda: [
            "first", "last", "linear", "time_decay", "position", "markov", "shapley",
            "data_driven",
        ]
    )
    markov_order: int = Field(1, ge=1, le=3)
    half_life_days: float = Field(7.0, gt=0)
    n_boot: int = Field(100, ge=0)
    """Bootstrap resamples of journeys for the shares' confidence intervals (0 = none)."""
    budget: BudgetConfig = Field(default_factory=BudgetConfig)


class ActionTiers(_Strict):
    """Thresholds of the retention action tiers; the first matching rule wins:

    1. ``save_now``: among the top ``save_now_share`` of customers by value at risk and churn
       probability >= ``high_churn_probability``;
    2. ``let_go``: churn probability >= ``high_churn_probability`` and CLV below the
       ``high_value_quantile`` quantile of the scored customers' CLV;
    3. ``nurture``: CLV at or above that quantile (valuable: keep them close);
    4. ``monitor``: the rest (likely to stay, low value).
    """

    save_now_share: float = Field(0.10, gt=0, le=1)
    high_churn_probability: float = Field(0.3, gt=0, lt=1)
    high_value_quantile: float = Field(0.5, ge=0, lt=1)


class RetentionConfig(_Strict):
    """Value at risk: a survival churn model and a BTYD CLV model scored on the same customers at
    the same cutoff (``features.cutoff``, default the observation end).

    The churn model is, in order of precedence: the pyfunc logged by the MLflow run
    ``churn_run_id`` (used as is; its churn definition and feature window are read from the run's
    params); the ``model`` and churn settings (``features.churn``, ``horizon_days``,
    ``inactivity_days``, ``window_days``) of the churn config at ``churn_config``; else this
    config's own ``model`` and ``features``. A churn model that is not loaded is fitted at
    ``cutoff - horizon_days`` on the labels that end at the cutoff. The CLV model is the pyfunc
    logged by the clv run ``clv_run_id`` (a BTYD model, used as is with that run's time unit,
    discount rate and margin), or the BTYD ``model`` / ``clv.spend_model`` / ``clv.time_unit`` of
    the clv config at ``clv_config``, else ``clv_model`` + ``spend_model`` + ``time_unit``; those
    are fitted on every purchase before the cutoff. Paths are relative to the working directory.
    """

    churn_config: str | None = None
    churn_run_id: str | None = None
    clv_config: str | None = None
    clv_run_id: str | None = None
    clv_model: ModelConfig = Field(default_factory=lambda: ModelConfig(name="bgnbd", params={}))
    """BTYD purchase model (bgnbd, mbgnbd, pareto_nbd)."""
    spend_model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(name="gamma_gamma", params={})
    )
    time_unit: Literal["D", "W", "M"] = "W"
    """Time unit of the BTYD summary for ``clv_model`` (a clv config or run brings its own)."""
    value_horizon_months: int = Field(12, ge=1)
    """Months of discounted expected value (CLV) per customer."""
    annual_discount_rate: float = Field(0.10, ge=0)
    """Discount rate per year, applied month by month at the equivalent monthly rate (not used
    with ``clv_run_id``: the run's own)."""
    margin: float = Field(1.0, gt=0)
    """Profit margin applied to spend (1 = revenue; with ``clv_run_id`` the run's own)."""
    tiers: ActionTiers = Field(default_factory=ActionTiers)

    @model_validator(mode="after")
    def _one_source_each(self) -> RetentionConfig:
        if self.churn_config and self.churn_run_id:
            raise ValueError("give churn_config or churn_run_id, not both")
        if self.clv_config and self.clv_run_id:
            raise ValueError("give clv_config or clv_run_id, not both")
        return self


class TuneParam(_Strict):
    """One dimension of a search space over ``model.params``: a float/int range or categorical choices."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    """Sample on a log scale (low > 0; not with ``step``)."""
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TuneParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("categorical takes 'choices' only (no low/high/step/log)")
            return self
        if self.choices is not None:
            raise ValueError(f"{self.type} takes low/high, not 'choices'")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs both 'low' and 'high'")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be < high ({self.high})")
        if self.log and self.step is not None:
            raise ValueError("'log' and 'step' cannot be combined (Optuna samples one or the other)")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0 (got {self.low})")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be > 0 (got {self.step})")
        if self.type == "int":
            for key in ("low", "high", "step"):
                value = getattr(self, key)
                if value is not None and float(value) != int(value):
                    raise ValueError(f"int range needs an integer {key} (got {value})")
        return self


class TuneConfig(_Strict):
    """Hyperparameter search (``crm-models tune``) over ``model.params``.

    Trials fit on the training customers minus a stratified ``validation_size`` share and are
    scored on that share; the test customers are only used by the final refit of the best params.
    """

    metric: str | None = None
    """Metric to optimize; None = the task's primary metric (``experiment.TASK_METRICS``)."""
    direction: Literal["maximize", "minimize"] | None = None
    """None = the task's direction for its primary metric (required for another metric)."""
    trials: int = Field(20, ge=1)
    """Default for ``--trials``."""
    timeout: float | None = Field(None, gt=0)
    """Default for ``--timeout`` (seconds)."""
    validation_size: float = Field(0.2, gt=0, lt=1)
    sampler_seed: int = 42
    prune: bool = True
    """Median pruning of trials whose model reports intermediate values (see ``tuning``)."""
    report_every: int = Field(10, ge=1)
    """Boosting rounds between intermediate reports (models that report them)."""
    startup_trials: int = Field(3, ge=0)
    """Trials completed before the median pruner may prune."""
    space: dict[str, TuneParam] = Field(min_length=1)
    """``model.params`` name -> search dimension."""


class SparkConfig(_Strict):
    """The Spark session of ``engine: spark`` (pyspark is the optional extra ``[spark]``)."""

    master: str | None = None
    """Spark master URL; default ``$SPARK_MASTER``, else ``local[*]``."""
    app_name: str = "crm-models"
    conf: dict[str, str] = Field(default_factory=dict)
    """Extra Spark settings (``spark.executor.memory`` ...), applied when the session starts."""
    features_path: str | None = None
    """Also write the per-customer feature table here as Parquet (a directory)."""
    distributed_training: bool = False
    """Train xgboost survival models with ``xgboost.spark`` on the cluster (model xgb_cox)."""
    num_workers: int = Field(0, ge=0)
    """xgboost.spark workers; 0 = the cluster's default parallelism."""


class TrackingConfig(_Strict):
    experiment: str | None = None
    """MLflow experiment name; defaults to the config's ``name``."""
    tracking_uri: str | None = None
    """Defaults to ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns/mlflow.db``."""
    artifact_root: str = DEFAULT_ARTIFACT_ROOT
    run_name: str | None = None
    log_model: bool = True
    feature_sample_rows: int = Field(200, ge=0)
    tags: dict[str, str] = Field(default_factory=dict)


class ExperimentConfig(_Strict):
    """One experiment: what to run on which data, and where to track it."""

    name: str
    task: str = "churn_survival"
    seed: int = 42
    description: str = ""
    engine: Literal["duckdb", "spark"] = "duckdb"
    """Where feature tables are computed: embedded DuckDB, or Spark (``spark`` section)."""
    spark: SparkConfig | None = None
    """Engine ``spark`` only (defaults filled in when it is chosen)."""
    data: DataConfig = Field(default_factory=DataConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    clv: ClvConfig | None = None
    """Task ``clv`` only (defaults filled in when that task runs)."""
    attribution: AttributionConfig | None = None
    """Task ``attribution`` only (defaults filled in when that task runs)."""
    retention: RetentionConfig | None = None
    """Task ``retention`` only (defaults filled in when that task runs)."""
    tune: TuneConfig | None = None
    """Search space and settings of ``crm-models tune`` (ignored by ``crm-models run``)."""
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _task_section_defaults(self) -> ExperimentConfig:
        # a task's own section is filled with its defaults, so the resolved config shows them
        if self.task == "clv" and self.clv is None:
            self.clv = ClvConfig()
        if self.task == "attribution" and self.attribution is None:
            self.attribution = AttributionConfig()
        if self.task == "retention" and self.retention is None:
            self.retention = RetentionConfig()
        if self.engine == "spark" and self.spark is None:
            self.spark = SparkConfig()
        if self.engine != "spark":
            if self.spark is not None and self.spark.distributed_training:
                raise ValueError("spark.distributed_training needs engine: spark")
            spark_tables = [n for n, t in self.data.tables.items() if t.format == "spark"]
            if spark_tables:
                raise ValueError(f"data.tables {spark_tables}: format 'spark' needs engine: spark")
        return self

    def _dump(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        for section in _TASK_SECTIONS:  # another task's empty section is noise in the run
            if d.get(section) is None:
                d.pop(section, None)
        return d

    def resolved_yaml(self) -> str:
        """The config with every default filled in, as YAML."""
        return yaml.safe_dump(self._dump(), sort_keys=False)

    def flat_params(self) -> dict[str, Any]:
        """Flattened ``a.b.c -> value`` view for MLflow params."""
        return flatten(self._dump())


_TASK_SECTIONS = ("clv", "attribution", "retention", "tune", "spark")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; values are parsed as YAML (``0.1``, ``true``, ``[1,2]``)."""
    out = copy.deepcopy(raw)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        path, _, value_text = item.partition("=")
        keys = [k for k in path.strip().split(".") if k]
        if not keys:
            raise ConfigError(f"--set {item!r}: empty key path")
        try:
            value = yaml.safe_load(value_text) if value_text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from None
        node = out
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {k!r} is not a section")
            node = child
        node[keys[-1]] = value
    return out


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {loc}: {msg} (got {err.get('input')!r})")
    return "\n".join(lines)


def parse_config(raw: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping")
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a YAML experiment config, apply ``--set`` overrides and validate it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {p} is not valid YAML: {exc}") from None
    if isinstance(raw, dict):
        raw.setdefault("name", p.stem)
    return parse_config(apply_overrides(raw, overrides), source=str(p))
