"""The ``crm-models`` command line: it parses arguments and calls the package, nothing more.

User mistakes (``CrmModelsError``) print a message and exit non-zero without a traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
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


def _run_server(cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Run a server command until it exits; SIGTERM or Ctrl-C here stops its whole process group.

    ``mlflow ui`` / ``mlflow models serve`` start uvicorn as a child: terminating only this process
    would leave both running and holding the port.
    """
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


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
    trials: Annotated[
        int | None, typer.Option(help="New Optuna trials to run (default: tune.trials)")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the stored study of this config")
    ] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value: --set tune.validation_size=0.25"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Tune a config's model.params with Optuna; trials are nested MLflow runs.

    TPE sampling and median pruning over the config's tune.space. Trials are scored on a validation
    share of the training customers; the best params are then refit and scored on the test set.
    The study lives in SQLite next to the tracking store: --resume continues it.
    """
    _setup_logging(verbose)
    from crm_models.config import load_config
    from crm_models.tuning import tune as run_tuning

    cfg = load_config(config, set_)
    typer.echo(f"tuning {cfg.name} (task {cfg.task}, model {cfg.model.name}) ...")
    r = run_tuning(cfg, trials=trials, timeout=timeout, resume=resume)
    typer.echo("")
    typer.echo(
        f"study {r.study_name}: {r.n_trials} trials ({r.new_trials} new; {r.n_complete} complete, "
        f"{r.n_pruned} pruned, {r.n_failed} failed) in {r.storage}"
    )
    typer.echo(f"best val_{r.metric} ({r.direction}): {r.best_value:.4f}")
    for key, value in sorted(r.best_params.items()):
        typer.echo(f"  {key} = {value}")
    if r.metric in r.test_metrics:
        typer.echo(f"refit on all training customers: test {r.metric} {r.test_metrics[r.metric]:.4f}")
    typer.echo(f"parent run: {r.parent_run_id}   refit run: {r.refit_run_id}")
    typer.echo(f"export it:  crm-models export {r.refit_run_id} --name {r.study_name}")


@app.command()
@_user_errors
def compare(
    experiment: Annotated[
        str | None, typer.Option(help="MLflow experiment (default: every experiment)")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Only runs of this task (tag `task`)")] = None,
    metric: Annotated[
        str | None, typer.Option(help="Rank by this metric (default: the task's primary metric)")
    ] = None,
    direction: Annotated[
        str | None, typer.Option(help="maximize or minimize (default: from the task / metric name)")
    ] = None,
    top: Annotated[int | None, typer.Option(help="Show and write the best N runs only")] = None,
    output: Annotated[
        Path | None,
        typer.Option(help="Write leaderboard.csv/.md to this directory instead of logging a run"),
    ] = None,
) -> None:
    """Leaderboard of finished runs ranked by the task's primary metric, with the key params.

    Written as leaderboard.csv + leaderboard.md: artifacts of a small `leaderboard` run in the
    experiment (default), or files in --output.
    """
    from crm_models.tracking import leaderboard, log_leaderboard

    if direction not in (None, "maximize", "minimize"):
        raise CrmModelsError(f"--direction must be maximize or minimize, got {direction!r}")
    board = leaderboard(experiment, task=task, metric=metric, direction=direction, top=top)
    shown = board.frame
    # the terminal shows params that differ between runs; the files keep them all
    constant = [
        c for c in shown.columns
        if c.startswith("model.params.") and shown[c].astype(str).nunique() <= 1
    ]
    view = type(board)(shown.drop(columns=constant), board.metric, board.direction, board.experiments)
    typer.echo(
        f"{len(shown)} runs of {', '.join(board.experiments)} ranked by {board.metric} "
        f"({board.direction}):"
    )
    typer.echo(view.to_markdown())
    if output is not None:
        paths = board.write(output)
        typer.echo(f"wrote {', '.join(str(p) for p in paths)}")
    else:
        run_id = log_leaderboard(board)
        typer.echo(f"logged leaderboard.csv/.md as artifacts of run {run_id}")


@app.command()
@_user_errors
def export(
    run_id: Annotated[str, typer.Argument(help="MLflow run id to export")],
    name: Annotated[str, typer.Option(help="Registered model name")],
    alias: Annotated[str, typer.Option(help="Registry alias to set")] = "champion",
) -> None:
    """Register a run's model (fitted preprocessing + model pyfunc) and set an alias."""
    from crm_models.serving import export_run

    r = export_run(run_id, name, alias or None)
    typer.echo(f"registered {r.name} version {r.version} from run {r.run_id}")
    for key in sorted(r.tags):
        typer.echo(f"  {key} = {r.tags[key]}")
    typer.echo(f"alias: {r.uri}")
    typer.echo(f"serve it:  crm-models serve {r.name}@{r.alias}" if r.alias else "")


@app.command()
@_user_errors
def serve(
    model: Annotated[str, typer.Argument(help="NAME@ALIAS of a registered model")],
    port: Annotated[int, typer.Option(help="Port to listen on")] = 5001,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default)")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="Server worker processes")] = 1,
) -> None:
    """Serve a registered model over HTTP (`mlflow models serve --env-manager local`).

    POST JSON to /invocations, e.g. {"dataframe_split": {"columns": [...], "data": [[...]]},
    "params": {"horizons_days": [30, 90]}}; GET /ping for health.
    """
    from crm_models.serving import is_loopback, serve_command

    cmd, env = serve_command(model, host=host, port=port, workers=workers)
    if not is_loopback(host):
        typer.echo(f"warning: binding {host}: the model is reachable from other machines", err=True)
    typer.echo(f"serving {cmd[4]} on http://{host}:{port}/invocations (Ctrl-C to stop)")
    raise typer.Exit(_run_server(cmd, env))


@app.command()
@_user_errors
def score(
    model: Annotated[str, typer.Argument(help="NAME@ALIAS of a registered model")],
    input: Annotated[Path, typer.Option("--input", "-i", help="Feature rows: CSV or Parquet")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Predictions: .csv or .parquet")],
    chunk_rows: Annotated[int, typer.Option(help="Rows per chunk (memory is bounded by it)")] = 100_000,
    params: Annotated[
        str | None,
        typer.Option(help='Inference params as JSON, e.g. \'{"horizons_days": [30, 90]}\''),
    ] = None,
) -> None:
    """Batch-score a file with a registered model, chunk by chunk, with a progress bar."""
    import json

    from crm_models.serving import score_file

    parsed = None
    if params:
        try:
            parsed = json.loads(params)
        except json.JSONDecodeError as exc:
            raise CrmModelsError(f"--params is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise CrmModelsError("--params must be a JSON object, e.g. {\"horizons_days\": [30]}")
    r = score_file(model, input, output, chunk_rows=chunk_rows, params=parsed)
    typer.echo(f"scored {r.rows:,} rows in {r.chunks} chunks in {r.seconds:.1f}s -> {r.output}")


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
    raise typer.Exit(_run_server(cmd))


def main() -> None:  # pragma: no cover - entry point for `python -m crm_models.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
