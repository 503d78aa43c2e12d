"""MLflow tracking: the only module that imports mlflow for logging.

A run logs the resolved config (flattened params + YAML artifact), a data fingerprint, package
versions, the git commit, metrics, plots (PNG), tables, a feature sample with pseudonymized customer
ids, and the fitted model. ``MLFLOW_TRACKING_URI`` overrides the local store
``sqlite:///mlruns/mlflow.db`` (artifacts under ``mlruns/artifacts``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crm_models.config import DEFAULT_TRACKING_URI, ExperimentConfig
from crm_models.errors import CrmModelsError

log = logging.getLogger(__name__)

TRACKED_PACKAGES = (
    "crm-models", "numpy", "pandas", "pyarrow", "duckdb", "ibis-framework", "scikit-learn",
    "scipy", "lifelines", "mlflow", "pydantic", "pandera", "matplotlib",
    "xgboost", "scikit-survival", "shap", "optuna",
)
SALT_ENV = "CRM_MODELS_ID_SALT"


@dataclass
class RunArtifacts:
    """What a task hands to tracking: everything here is plain data, no MLflow objects."""

    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    """artifact file name (``plots/km_by_segment.png``) -> matplotlib Figure."""
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    """artifact file name (``tables/coefficients.csv`` / ``.parquet``) -> frame."""
    customer_tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Like ``tables`` but indexed by customer_id: ids are pseudonymized before logging."""
    model: Any = None
    """A ``serving.PyfuncPackage`` (models-from-code pyfunc) or None."""


# --------------------------------------------------------------------------- store


def resolve_tracking_uri(config: ExperimentConfig | None = None) -> str:
    """``$MLFLOW_TRACKING_URI``, else the config's ``tracking.tracking_uri``, else the local store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or (
        config.tracking.tracking_uri if config is not None else None
    )
    uri = uri or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def _quiet_mlflow() -> None:
    # MLflow's own artifact progress bars would interleave with ours
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # alembic prints every schema migration on first use of a new SQLite store
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="mlflow")


def get_or_create_experiment(name: str, artifact_root: str) -> str:
    """Experiment id for ``name``; new experiments store artifacts under ``artifact_root/<name>``."""
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if not _is_remote(mlflow.get_tracking_uri()):
        location = (Path(artifact_root) / _safe_name(name)).resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def _is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


# --------------------------------------------------------------------------- provenance


def package_versions(packages: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def git_commit(cwd: str | Path | None = None) -> dict[str, str]:
    """The commit and whether the work tree has uncommitted changes ('unknown' outside git)."""
    here = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return {"git_commit": "unknown"}
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, timeout=10,
        )
        return {"git_commit": commit.stdout.strip(), "git_dirty": str(bool(dirty.stdout.strip()))}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown"}


def frame_hash(df: pd.DataFrame) -> str:
    """Content hash of a frame (values and column names, not the index)."""
    h = hashlib.sha256()
    h.update(json.dumps([str(c) for c in df.columns]).encode())
    if len(df):
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def data_fingerprint(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Row counts, time ranges and content hashes of the input tables."""
    out: dict[str, Any] = {}
    for name, df in sorted(tables.items()):
        info: dict[str, Any] = {"rows": int(len(df)), "columns": [str(c) for c in df.columns]}
        for col in df.columns:
            if pd.api.types.is_datetime64_any_dtype(df[col]) and len(df):
                info[f"{col}_min"] = str(df[col].min())
                info[f"{col}_max"] = str(df[col].max())
        info["sha256"] = frame_hash(df)
        out[name] = info
    combined = hashlib.sha256("".join(v["sha256"] for v in out.values()).encode()).hexdigest()
    return {"tables": out, "sha256": combined}


# --------------------------------------------------------------------------- pseudonymization


def id_salt(store_dir: str | Path = "mlruns") -> str:
    """The salt for customer-id hashing: ``$CRM_MODELS_ID_SALT``, else a secret kept beside the store.

    The local secret is created once (never logged), so ids hash the same way across runs.
    """
    env = os.environ.get(SALT_ENV)
    if env:
        return env
    path = Path(store_dir) / ".id_salt"
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_hex(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(salt)
    return salt


def pseudonymize(ids: Any, salt: str) -> np.ndarray:
    """Salted BLAKE2b hashes (16 hex chars) of customer ids; the same id gives the same hash."""
    key = salt.encode()[:64]
    return np.array(
        [hashlib.blake2b(str(i).encode(), key=key, digest_size=8).hexdigest() for i in ids],
        dtype=object,
    )


def pseudonymize_frame(df: pd.DataFrame, salt: str, id_name: str = "customer_id") -> pd.DataFrame:
    """Replace the customer-id index (or column) with salted hashes named ``customer_key``."""
    out = df.copy()
    if id_name in out.columns:
        out = out.set_index(id_name)
    out.index = pd.Index(pseudonymize(out.index, salt), name="customer_key")
    return out.reset_index()


# --------------------------------------------------------------------------- logging a run


@contextmanager
def start_run(config: ExperimentConfig) -> Iterator[Any]:
    """Open an MLflow run for ``config``; a failure inside marks the run FAILED and re-raises."""
    import mlflow

    _quiet_mlflow()
    uri = resolve_tracking_uri(config)
    mlflow.set_tracking_uri(uri)
    try:
        exp_id = get_or_create_experiment(
            config.tracking.experiment or config.name, config.tracking.artifact_root
        )
    except Exception as exc:  # the store is the user's: a bad URI is a user mistake
        raise CrmModelsError(f"cannot open the MLflow tracking store {uri!r}: {exc}") from exc
    run = mlflow.start_run(experiment_id=exp_id, run_name=config.tracking.run_name)
    try:
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


def log_provenance(config: ExperimentConfig, fingerprint: dict[str, Any]) -> None:
    """Resolved config, data fingerprint, package versions and git commit of the active run."""
    import mlflow

    params = {k: _param_value(v) for k, v in config.flat_params().items()}
    _log_params_batched(params)
    mlflow.log_text(config.resolved_yaml(), "config/resolved.yaml")
    mlflow.log_dict(fingerprint, "provenance/data_fingerprint.json")
    versions = package_versions()
    mlflow.log_dict(versions, "provenance/package_versions.json")
    tags = {
        "task": config.task,
        "model_family": config.model.name,
        "dataset": _dataset_name(config),
        "data_sha256": fingerprint["sha256"][:16],
        **git_commit(),
        **{f"version.{k}": v for k, v in versions.items() if k in ("crm-models", "mlflow", "python")},
        **config.tracking.tags,
    }
    mlflow.set_tags(tags)
    for name, info in fingerprint["tables"].items():
        mlflow.log_param(f"data.rows.{name}", info["rows"])


def _dataset_name(config: ExperimentConfig) -> str:
    if config.data.source == "synthetic":
        s = config.data.synthetic
        return f"synthetic_n{s.customers}_seed{s.seed}"
    return Path(config.data.tables["transactions"].path).stem


def _param_value(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _log_params_batched(params: dict[str, Any], batch: int = 100) -> None:
    import mlflow

    items = list(params.items())
    for i in range(0, len(items), batch):
        mlflow.log_params(dict(items[i : i + batch]))


def log_artifacts(result: RunArtifacts, salt: str) -> None:
    """Metrics, params, tags, plots, tables and the model of the active run."""
    import matplotlib.pyplot as plt
    import mlflow

    if result.params:
        _log_params_batched({k: _param_value(v) for k, v in result.params.items()})
    if result.tags:
        mlflow.set_tags(result.tags)
    finite = {k: float(v) for k, v in result.metrics.items() if v is not None and np.isfinite(v)}
    mlflow.log_metrics(finite)
    for path, fig in result.figures.items():
        mlflow.log_figure(fig, path)
        plt.close(fig)
    with tempfile.TemporaryDirectory() as tmp:
        tables = {**result.tables}
        tables.update({k: pseudonymize_frame(v, salt) for k, v in result.customer_tables.items()})
        for path, df in tables.items():
            local = Path(tmp) / path
            local.parent.mkdir(parents=True, exist_ok=True)
            if path.endswith(".parquet"):
                df.to_parquet(local, index=False)
            else:
                df.to_csv(local, index=False)
            mlflow.log_artifact(str(local), artifact_path=str(Path(path).parent) or None)
    if result.model is not None:
        log_pyfunc_model(result.model)


def log_pyfunc_model(package: Any) -> None:
    """Log a models-from-code pyfunc (``serving.PyfuncPackage``) with signature and pinned requirements.

    The signature comes from an in-process prediction (MLflow would otherwise re-load the model to
    infer it); requirements are pinned to the running environment.
    """
    import mlflow
    from mlflow.models import infer_signature

    signature = infer_signature(package.input_example, package.output_example)
    reqs = [f"{p}=={v}" for p, v in package_versions(_MODEL_REQUIREMENTS).items() if p != "python"]
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(package.code_path),
            artifacts=package.write_artifacts(Path(tmp)),
            signature=signature,
            pip_requirements=reqs,
        )


_MODEL_REQUIREMENTS = (
    "crm-models", "mlflow", "numpy", "pandas", "scikit-learn", "scipy", "lifelines", "joblib",
)
