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

    ``path`` is a CSV or Parquet file (format from the suffix unless given) or a DuckDB
    database file (``.duckdb`` / ``.db``) with ``table`` naming the table in it.
    ``columns`` maps contract names to the user's names: ``{customer_id: "Customer ID"}``.
    """

    path: str
    format: Literal["auto", "csv", "parquet", "duckdb"] = "auto"
    table: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    read_options: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments for the reader (e.g. ``{sep: ";"}`` for CSV)."""


class SyntheticData(_Strict):
    """Simulated data, generated on first use under ``dir`` and reused afterwards."""

    customers: int = Field(20_000, ge=10)
    seed: int = 7
    dir: str = "data/synthetic"


class DataConfig(_Strict):
    source: Literal["synthetic", "files"] = "synthetic"
    synthetic: SyntheticData = Field(default_factory=SyntheticData)
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
    data: DataConfig = Field(default_factory=DataConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    def resolved_yaml(self) -> str:
        """The config with every default filled in, as YAML."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def flat_params(self) -> dict[str, Any]:
        """Flattened ``a.b.c -> value`` view for MLflow params."""
        return flatten(self.model_dump(mode="json"))


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
