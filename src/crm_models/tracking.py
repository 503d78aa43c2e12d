"""MLflow tracking: the only module that imports mlflow for logging.

A run logs the resolved config (flattened params + YAML artifact), a data fingerprint, package
versions, the git commit, metrics, plots (PNG), tables, a feature sample with pseudonymized customer
ids, and the fitted model. ``MLFLOW_TRACKING_URI`` overrides the local store
``sqlite:///mlruns/mlflow.db`` (artifacts under ``mlruns/artifacts``).

Also here, because they write to MLflow: nested runs and small run helpers for tuning, model
registration for ``export``, and the leaderboard of logged runs for ``compare``.
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
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crm_models.config import DEFAULT_ARTIFACT_ROOT, DEFAULT_TRACKING_URI, ExperimentConfig
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
    for name in (
        "alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent", "mlflow.pyfunc",
        "mlflow.models.model", "mlflow.tracking._model_registry.client",
    ):
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
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10,
            check=False,
        )
        if commit.returncode != 0:
            return {"git_commit": "unknown"}
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, timeout=10, check=False,
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
        info: dict[str, Any] = {"rows": len(df), "columns": [str(c) for c in df.columns]}
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


def use_store(config: ExperimentConfig | None = None) -> str:
    """Point MLflow at the tracking store (``resolve_tracking_uri``); return its URI."""
    import mlflow

    _quiet_mlflow()
    uri = resolve_tracking_uri(config)
    mlflow.set_tracking_uri(uri)
    return uri


@contextmanager
def start_run(
    config: ExperimentConfig,
    run_name: str | None = None,
    nested: bool = False,
    run_id: str | None = None,
    killed_on: tuple[type[BaseException], ...] = (),
) -> Iterator[Any]:
    """Open an MLflow run for ``config``; a failure inside marks the run FAILED and re-raises.

    ``nested`` opens it under the active run, ``run_id`` reopens an existing run (a resumed
    study's parent); ``killed_on`` exceptions (a pruned trial) end it KILLED instead of FAILED.
    The exception's message is kept in the run's ``error`` tag.
    """
    import mlflow

    _ended.run_id = None
    uri = use_store(config)
    try:
        exp_id = get_or_create_experiment(
            config.tracking.experiment or config.name, config.tracking.artifact_root
        )
    except Exception as exc:  # the store is the user's: a bad URI is a user mistake
        raise CrmModelsError(f"cannot open the MLflow tracking store {uri!r}: {exc}") from exc
    if run_id is not None:
        run = mlflow.start_run(run_id=run_id, nested=nested)
    else:
        run = mlflow.start_run(
            experiment_id=exp_id, run_name=run_name or config.tracking.run_name, nested=nested
        )
    try:
        yield run
    except BaseException as exc:
        killed = isinstance(exc, (KeyboardInterrupt, *killed_on))
        try:
            mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
        finally:
            mlflow.end_run(status="KILLED" if killed else "FAILED")
            _ended.run_id = run.info.run_id
        raise
    else:
        mlflow.end_run(status="FINISHED")
        _ended.run_id = run.info.run_id


# mlflow.last_active_run() returns the *active* parent while nested runs end inside it
_ended = threading.local()


def log_provenance(
    config: ExperimentConfig, fingerprint: dict[str, Any], artifacts: bool = True
) -> None:
    """Resolved config, data fingerprint, package versions and git commit of the active run.

    ``artifacts=False`` (tuning trials) logs the params and tags only, not the config YAML,
    fingerprint and version files.
    """
    import mlflow

    params = {k: _param_value(v) for k, v in config.flat_params().items()}
    _log_params_batched(params)
    versions = package_versions()
    if artifacts:
        mlflow.log_text(config.resolved_yaml(), "config/resolved.yaml")
        mlflow.log_dict(fingerprint, "provenance/data_fingerprint.json")
        mlflow.log_dict(versions, "provenance/package_versions.json")
    tags = {
        **provenance_tags(config),
        "data_sha256": fingerprint["sha256"][:16],
        **git_commit(),
        **{f"version.{k}": v for k, v in versions.items() if k in ("crm-models", "mlflow", "python")},
        **config.tracking.tags,
    }
    mlflow.set_tags(tags)
    _log_params_batched({f"data.rows.{name}": info["rows"] for name, info in fingerprint["tables"].items()})


def provenance_tags(config: ExperimentConfig) -> dict[str, str]:
    """The tags a reviewer filters runs on in the MLflow UI: task, dataset, model family."""
    return {"task": config.task, "model_family": config.model.name, "dataset": _dataset_name(config)}


def _dataset_name(config: ExperimentConfig) -> str:
    if config.data.source == "synthetic":
        s = config.data.synthetic
        return f"synthetic_n{s.customers}_seed{s.seed}"
    if config.data.source == "cdnow":
        return "cdnow_sample" if config.data.cdnow.sample else "cdnow_master"
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
    """Log a models-from-code pyfunc (``serving.PyfuncPackage``) with signature, input example and
    pinned requirements.

    The signature is the package's (built from an in-process prediction: MLflow would otherwise
    re-load the model to infer it); requirements are pinned to the running environment.
    """
    import mlflow
    from mlflow.models import infer_signature

    signature = package.signature or infer_signature(
        package.input_example, package.output_example
    )
    reqs = [f"{p}=={v}" for p, v in package_versions(_MODEL_REQUIREMENTS).items() if p != "python"]
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(package.code_path),
            artifacts=package.write_artifacts(Path(tmp)),
            signature=signature,
            input_example=package.input_example,
            pip_requirements=reqs,
        )


_MODEL_REQUIREMENTS = (
    "crm-models", "mlflow", "numpy", "pandas", "scikit-learn", "scipy", "lifelines", "joblib",
    "xgboost", "scikit-survival",  # unpickling boosted and forest pipelines needs them
)


# --------------------------------------------------------------------------- small run helpers
# (tuning, compare and export log through these: no other module imports mlflow for logging)


def set_tags(tags: dict[str, Any]) -> None:
    """Tags of the active run."""
    import mlflow

    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Finite metrics of the active run (``step`` for a history, e.g. per boosting round)."""
    import mlflow

    finite = {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}
    if finite:
        mlflow.log_metrics(finite, step=step)


def log_dict(data: dict[str, Any], path: str) -> None:
    import mlflow

    mlflow.log_dict(data, path)


def log_files(paths: list[Path], artifact_path: str | None = None) -> None:
    import mlflow

    for path in paths:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def set_run_tags(run_id: str, tags: dict[str, Any]) -> None:
    """Tags of any run (also a finished one)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


def last_run_id() -> str | None:
    """The run most recently ended by ``start_run`` in this thread (e.g. a trial that raised)."""
    return getattr(_ended, "run_id", None)


def get_run(run_id: str) -> Any | None:
    """The run (``mlflow.entities.Run``) or None when it does not exist or was deleted."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException:
        return None
    return run if run.info.lifecycle_stage == "active" else None


def search_runs(
    experiment_names: list[str] | None = None, filter_string: str = ""
) -> pd.DataFrame:
    """Runs of the named experiments (all experiments when None) as MLflow's pandas frame."""
    import mlflow
    from mlflow.tracking import MlflowClient

    if experiment_names is None:
        ids = [e.experiment_id for e in MlflowClient().search_experiments()]
    else:
        ids = []
        for name in experiment_names:
            exp = mlflow.get_experiment_by_name(name)
            if exp is None:
                known = sorted(e.name for e in MlflowClient().search_experiments())
                raise CrmModelsError(
                    f"no MLflow experiment named {name!r} in {mlflow.get_tracking_uri()}; "
                    f"known experiments: {known}"
                )
            ids.append(exp.experiment_id)
    if not ids:
        return pd.DataFrame()
    return mlflow.search_runs(
        experiment_ids=ids, filter_string=filter_string, output_format="pandas",
        max_results=50_000,
    )


def experiment_name(experiment_id: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient().get_experiment(experiment_id).name


# --------------------------------------------------------------------------- registry


def run_model_info(run_id: str) -> Any | None:
    """``ModelInfo`` of the run's logged ``model`` (signature, input example), or None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.models.get_model_info(f"runs:/{run_id}/model")
    except (MlflowException, OSError):
        return None


def register_run_model(run_id: str, name: str, alias: str | None, tags: dict[str, Any]) -> Any:
    """Register the run's logged ``model`` as a new version of ``name``, tag it, set ``alias``."""
    import mlflow
    from mlflow.tracking import MlflowClient

    info = run_model_info(run_id)
    # MLflow 3 keeps logged models apart from run artifacts: registering runs:/RUN_ID/model
    # works but warns; the logged model's own URI is the same model
    source = info.model_uri if info is not None else f"runs:/{run_id}/model"
    version = mlflow.register_model(source, name, tags={k: str(v) for k, v in tags.items()})
    if alias:
        MlflowClient().set_registered_model_alias(name, alias, version.version)
    return version


# --------------------------------------------------------------------------- leaderboard

_LOWER_IS_BETTER = ("brier", "error", "rmse", "mae", "mse", "loss", "nll", "runtime", "seconds")


@dataclass
class Leaderboard:
    """Runs ranked by one metric (``frame``: one row per run, best first)."""

    frame: pd.DataFrame
    metric: str
    direction: str
    experiments: list[str]

    def to_markdown(self, max_rows: int | None = None) -> str:
        df = self.frame if max_rows is None else self.frame.head(max_rows)
        cols = [str(c) for c in df.columns]
        rows = [[_cell(v) for v in row] for row in df.itertuples(index=False)]
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)

    def write(self, directory: str | Path) -> list[Path]:
        """``leaderboard.csv`` and ``leaderboard.md`` in ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        csv_path, md_path = out / "leaderboard.csv", out / "leaderboard.md"
        self.frame.to_csv(csv_path, index=False)
        md_path.write_text(
            f"# Leaderboard: {', '.join(self.experiments)}\n\nRanked by `{self.metric}` "
            f"({self.direction}).\n\n{self.to_markdown()}\n"
        )
        return [csv_path, md_path]


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v).replace("|", "\\|")


def metric_direction(metric: str, task: str | None = None) -> str:
    """The task's direction for its primary metric (also ``val_``/``test_`` variants), else a
    name heuristic: errors, losses, Brier scores and timings are minimized."""
    from crm_models.experiment import TASK_METRICS

    base = metric
    for prefix in ("best_val_", "val_", "test_"):
        base = base.removeprefix(prefix)
    for name, (primary, direction) in TASK_METRICS.items():
        if base == primary and (task is None or task == name):
            return direction
    return "minimize" if any(k in base.lower() for k in _LOWER_IS_BETTER) else "maximize"


def leaderboard(
    experiment: str | None = None,
    task: str | None = None,
    metric: str | None = None,
    direction: str | None = None,
    top: int | None = None,
) -> Leaderboard:
    """FINISHED runs of ``experiment`` (or of every experiment, filtered by ``task``) that carry
    ``metric`` (default: the task's primary metric), best first, with their key params.

    Tuning trials log ``val_<metric>`` and the study's parent ``best_val_<metric>``, so the default
    board holds normal runs and tuning refits; ``--metric val_c_index`` ranks the trials.
    """
    from crm_models.experiment import TASK_METRICS

    use_store()
    runs = search_runs([experiment] if experiment else None, "attributes.status = 'FINISHED'")
    if runs.empty:
        raise CrmModelsError(f"no finished runs in {experiment or 'any experiment'}")
    def tag(frame: pd.DataFrame, name: str) -> pd.Series:
        return frame.get(f"tags.{name}", pd.Series(None, index=frame.index, dtype=object))

    runs = runs[tag(runs, "crm_models.role").fillna("") != "leaderboard"]
    if task is not None:
        runs = runs[tag(runs, "task") == task]
        if runs.empty:
            raise CrmModelsError(f"no finished runs of task {task!r} in {experiment or 'any experiment'}")
    tasks = sorted(set(runs["tags.task"].dropna())) if "tags.task" in runs.columns else []
    if metric is None:
        if len(tasks) != 1 or tasks[0] not in TASK_METRICS:
            raise CrmModelsError(
                f"runs of tasks {tasks}: pass --task to pick one or --metric to rank by"
            )
        metric = TASK_METRICS[tasks[0]][0]
    direction = direction or metric_direction(metric, tasks[0] if len(tasks) == 1 else None)
    col = f"metrics.{metric}"
    if col not in runs.columns or runs[col].notna().sum() == 0:
        known = sorted(c.removeprefix("metrics.") for c in runs.columns if c.startswith("metrics."))
        raise CrmModelsError(f"no run has metric {metric!r}; metrics logged: {known}")
    runs = runs[runs[col].notna()].sort_values(col, ascending=direction == "minimize", kind="stable")
    if top is not None:
        runs = runs.head(top)
    exp_names = {i: experiment_name(i) for i in runs["experiment_id"].unique()}
    frame = pd.DataFrame({
        "rank": np.arange(1, len(runs) + 1),
        metric: runs[col].to_numpy(dtype=float),
        "run_name": runs.get("tags.mlflow.runName", pd.Series("", index=runs.index)).to_numpy(),
        "run_id": runs["run_id"].to_numpy(),
        "experiment": runs["experiment_id"].map(exp_names).to_numpy(),
        "start_time": pd.to_datetime(runs["start_time"]).dt.strftime("%Y-%m-%d %H:%M").to_numpy(),
    })
    for name in ("task", "dataset", "model_family"):
        frame[name] = tag(runs, name).fillna("").to_numpy()
    # run = a plain `crm-models run`; refit / trial / tune come from tuning
    frame["role"] = tag(runs, "crm_models.role").fillna("run").to_numpy()
    param_cols = sorted(c for c in runs.columns if c.startswith("params.model.params."))
    for c in param_cols:
        if runs[c].notna().any():
            frame[c.removeprefix("params.")] = runs[c].fillna("").to_numpy()
    return Leaderboard(frame, metric, direction, sorted(set(exp_names.values())))


def log_leaderboard(board: Leaderboard) -> str:
    """Log the board's CSV and markdown as artifacts of a small ``leaderboard`` run: in the
    board's experiment, or in the ``leaderboards`` experiment when it spans several. Run id."""
    import mlflow

    use_store()
    name = board.experiments[0] if len(board.experiments) == 1 else "leaderboards"
    exp_id = get_or_create_experiment(name, DEFAULT_ARTIFACT_ROOT)
    with mlflow.start_run(experiment_id=exp_id, run_name="leaderboard") as run:
        mlflow.set_tags({
            "crm_models.role": "leaderboard", "leaderboard.metric": board.metric,
            "leaderboard.direction": board.direction,
            "leaderboard.experiments": ",".join(board.experiments),
        })
        with tempfile.TemporaryDirectory() as tmp:
            for path in board.write(tmp):
                mlflow.log_artifact(str(path))
        return run.info.run_id
