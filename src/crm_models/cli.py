"""The ``crm-models`` command line: it parses arguments and calls the package, nothing more.

User mistakes (``CrmModelsError``) print a message and exit non-zero without a traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from crm_models.errors import CrmModelsError

app = typer.Typer(
    name="crm-models",
    help="Customer analytics workbench: churn, CLV and attribution experiments tracked in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Validate your tables or simulate a dataset.", no_args_is_help=True)
app.add_typer(data_app, name="data")

F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(fn: F) -> F:
    """Print ``CrmModelsError`` as a message on stderr and exit with its code (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CrmModelsError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@app.command()
@_user_errors
def run(
    config: Annotated[Path, typer.Argument(help="Experiment YAML, e.g. configs/churn_survival.yaml")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value: --set model.params.penalizer=0.1"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run an experiment: load data, build features, fit, evaluate, log to MLflow."""
    _setup_logging(verbose)
    from crm_models.config import load_config
    from crm_models.experiment import run_experiment
    from crm_models.tracking import resolve_tracking_uri

    cfg = load_config(config, set_)
    typer.echo(f"running {cfg.name} (task {cfg.task}) ...")
    result = run_experiment(cfg)
    width = max(len(k) for k in result.metrics)
    typer.echo("")
    typer.echo(f"{'metric':<{width}}  value")
    for key in sorted(result.metrics):
        value = result.metrics[key]
        text = f"{value:,.0f}" if float(value).is_integer() else f"{value:.4f}"
        typer.echo(f"{key:<{width}}  {text}")
    typer.echo("")
    typer.echo(f"run id: {result.run_id}")
    typer.echo(f"tracking: {resolve_tracking_uri(cfg)} (experiment {cfg.tracking.experiment or cfg.name})")


@data_app.command("validate")
@_user_errors
def data_validate(
    transactions: Annotated[Path | None, typer.Option(help="Transactions file (CSV/Parquet/DuckDB)")] = None,
    customers: Annotated[Path | None, typer.Option(help="Customers file")] = None,
    touchpoints: Annotated[Path | None, typer.Option(help="Touchpoints file")] = None,
    channel_spend: Annotated[Path | None, typer.Option("--channel-spend", help="Channel spend file")] = None,
    tickets: Annotated[Path | None, typer.Option(help="Tickets file")] = None,
    subscriptions: Annotated[Path | None, typer.Option(help="Subscriptions file")] = None,
    config: Annotated[
        Path | None, typer.Option(help="Experiment config whose data.tables give mappings/sources")
    ] = None,
    observation_end: Annotated[
        str | None, typer.Option(help="Report rows after this date (ISO)")
    ] = None,
) -> None:
    """Check tables against their contracts; report every problem at once (exit 1) or a summary."""
    from crm_models.config import TableSource, load_config
    from crm_models.data.sources import load_tables
    from crm_models.data.validation import validate_tables

    sources: dict[str, TableSource] = {}
    obs_end: Any = observation_end
    if config is not None:
        cfg = load_config(config)
        sources.update(cfg.data.tables)
        obs_end = obs_end or cfg.data.observation_end
    given = {
        "transactions": transactions, "customers": customers, "touchpoints": touchpoints,
        "channel_spend": channel_spend, "tickets": tickets, "subscriptions": subscriptions,
    }
    for name, path in given.items():
        if path is not None:
            # a path on the command line replaces the config's path but keeps its mapping/options
            base = sources.get(name)
            sources[name] = (
                base.model_copy(update={"path": str(path), "format": "auto"})
                if base is not None
                else TableSource(path=str(path))
            )
    if not sources:
        raise CrmModelsError("nothing to validate: give at least one table, e.g. --transactions FILE")
    report = validate_tables(load_tables(sources), observation_end=obs_end)
    if not report.ok:
        typer.echo(report.format())
        raise typer.Exit(1)
    typer.echo(report.summary())


@data_app.command("synth")
@_user_errors
def data_synth(
    customers: Annotated[int, typer.Option("--customers", "-n", help="Number of customers")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, identical files)")] = 7,
    out: Annotated[Path, typer.Option(help="Output directory")] = Path("data/synthetic/custom"),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory")] = False,
) -> None:
    """Simulate all six tables (Parquet) plus ground_truth.json."""
    import time

    from crm_models.data.synthetic import write_synthetic

    t0 = time.perf_counter()
    path = write_synthetic(out, n_customers=customers, seed=seed, overwrite=overwrite)
    typer.echo(f"wrote {customers:,} simulated customers to {path} in {time.perf_counter() - t0:.1f}s")


@app.command()
@_user_errors
def tune(
    config: Annotated[Path, typer.Argument(help="Experiment YAML with a tune: section")],
    trials: Annotated[int, typer.Option(help="Number of Optuna trials")] = 20,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many seconds")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the study stored under mlruns/")] = False,
) -> None:
    """Tune a config's hyperparameters with Optuna; each trial is a nested MLflow run."""
    raise CrmModelsError("`crm-models tune` is not available yet (planned: issue #6)")


@app.command()
@_user_errors
def export(
    run_id: Annotated[str, typer.Argument(help="MLflow run id to export")],
    name: Annotated[str, typer.Option(help="Registered model name")],
    alias: Annotated[str, typer.Option(help="Registry alias to set")] = "champion",
) -> None:
    """Register a run's model (preprocessing + model) in the MLflow registry."""
    raise CrmModelsError("`crm-models export` is not available yet (planned: issue #6)")


@app.command()
@_user_errors
def serve(
    model: Annotated[str, typer.Argument(help="NAME@ALIAS of a registered model")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 5001,
) -> None:
    """Serve a registered model over HTTP on 127.0.0.1."""
    raise CrmModelsError("`crm-models serve` is not available yet (planned: issue #6)")


@app.command()
@_user_errors
def ui(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 5000,
    backend_store_uri: Annotated[
        str | None, typer.Option(help="Store to show (default: $MLFLOW_TRACKING_URI or the local store)")
    ] = None,
) -> None:
    """Open the MLflow UI on the tracking store, bound to 127.0.0.1."""
    from crm_models.tracking import resolve_tracking_uri

    uri = backend_store_uri or resolve_tracking_uri()
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    if mlflow_bin is None:
        raise CrmModelsError("the `mlflow` command is not on PATH; install the project first")
    typer.echo(f"MLflow UI for {uri} on http://127.0.0.1:{port} (Ctrl-C to stop)")
    cmd = [mlflow_bin, "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    raise typer.Exit(subprocess.call(cmd))


def main() -> None:  # pragma: no cover - entry point for `python -m crm_models.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
