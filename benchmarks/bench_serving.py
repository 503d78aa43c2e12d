"""Benchmark of serving: HTTP latency of an exported churn model against the HTTP floor, and
chunked batch scoring time and memory.

Owns one reproducible setup: the main job (``configs/churn_survival.yaml``, penalized Cox) and the
boosted churn model (``configs/churn_xgb_aft.yaml``) fitted on one simulated data set and exported
as ``bench_churn_survival@champion`` / ``bench_churn_xgb_aft@champion``; beside them
``bench_identity@champion``, a models-from-code pyfunc with the same input signature that returns
its input -- the floor of MLflow's scoring server (HTTP, JSON parsing, schema enforcement,
response encoding). Run from the repository root:

    python benchmarks/bench_serving.py          # 500 single-row + 50 batch requests; 0.1M/1M/3M rows
    python benchmarks/bench_serving.py --quick  # 100 + 10 requests; 20k/200k rows (~2 minutes)

Latency: both servers are the real ``crm-models serve NAME@champion`` (``mlflow models serve
--env-manager local``, one uvicorn worker) on loopback ports; requests go over one keep-alive
connection per server, bodies serialized beforehand, churn and identity requests interleaved so
machine load hits both alike. Single-row requests draw different customers; batch requests send
1,000 customers.

Scoring: ``crm_models.serving.score_file`` (what ``crm-models score`` runs) with the main job's
model on Parquet files (and a CSV file of ``--csv-rows`` rows) of
feature rows drawn with replacement from the simulated customers, in a fresh subprocess per file
(``--score-worker``), so the peak RSS is its own. Memory is reported as the peak RSS of the
process and its growth after the model is loaded and warmed up; flat means it stops growing with
the number of rows (1M vs 3M), because every size reads and writes ``--chunk-rows`` rows at a
time (the first chunks also warm up the allocator and Arrow's pool, so 100k is a little lower).
"""

from __future__ import annotations

import argparse
import http.client
import importlib
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any, Self

import numpy as np
from _common import PeakRSS  # benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]

IDENTITY_CODE = textwrap.dedent('''
    """Identity pyfunc for the serving benchmark: returns its input (the HTTP floor)."""
    import mlflow.models
    import mlflow.pyfunc


    class Identity(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input


    mlflow.models.set_model(Identity())
''')


def log(msg: str, started: float = time.perf_counter()) -> None:
    print(f"[{time.perf_counter() - started:7.1f}s load {os.getloadavg()[0]:.1f}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- setup


CONFIGS = ("churn_survival", "churn_xgb_aft")
SCORED = "bench_churn_survival@champion"


def setup(work: Path, customers: int, seed: int) -> Any:
    """Fit and export the churn configs on ``customers`` simulated customers, register the
    identity model; return the feature rows (model input columns) of every customer at the cutoff."""
    import mlflow

    from crm_models import features as F
    from crm_models.config import load_config
    from crm_models.experiment import load_data, resolve_cutoff, run_experiment
    from crm_models.serving import export_run, model_signature

    for name in CONFIGS:
        cfg = load_config(
            REPO / "configs" / f"{name}.yaml",
            [f"data.synthetic.dir={work / 'data'}", f"data.synthetic.customers={customers}",
             f"data.synthetic.seed={seed}", "explain.enabled=false",
             "tracking.experiment=bench_serving"],
        )
        result = run_experiment(cfg, progress=False)
        export_run(result.run_id, f"bench_{name}", "champion")
        log(f"{name}: c_index {result.metrics['c_index']:.4f}; exported bench_{name}@champion")

    model = mlflow.pyfunc.load_model(f"models:/{SCORED}")
    schema = model.metadata.get_input_schema()
    data = load_data(cfg)
    cutoff = resolve_cutoff(cfg, data)
    t = data.tables
    feats = F.customer_features(
        t["transactions"], cutoff, customers=t.get("customers"), tickets=t.get("tickets"),
        window_days=cfg.features.window_days,
    )
    rows = feats.reset_index(drop=True)[schema.input_names()]

    code = work / "identity_model.py"
    code.write_text(IDENTITY_CODE)
    example = rows.head(5)
    mlflow.set_experiment("bench_serving")
    with mlflow.start_run(run_name="identity"):
        mlflow.set_tag("task", "identity")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(code), input_example=example,
            signature=model_signature(example, example, None),
        )
    mv = mlflow.register_model(info.model_uri, "bench_identity")
    mlflow.tracking.MlflowClient().set_registered_model_alias("bench_identity", "champion", mv.version)
    log(f"{len(rows):,} customers' feature rows, {rows.shape[1]} columns; identity model registered")
    return rows


# --------------------------------------------------------------------------- latency


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(spec: str, work: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crm_models.cli", "serve", spec, "--port", str(port)],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {spec} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"server for {spec} did not answer /ping within 180 s")


def body(frame: Any) -> bytes:
    return json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}).encode()


def timed_post(conn: http.client.HTTPConnection, payload: bytes) -> float:
    t0 = time.perf_counter()
    conn.request("POST", "/invocations", payload, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - t0
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {data[:300]!r}")
    return elapsed


def latency(rows: Any, work: Path, n_single: int, n_batch: int, batch_rows: int, seed: int) -> dict:
    """Per server: single-row and batch latencies (seconds), interleaved requests."""
    rng = np.random.default_rng(seed)
    singles = [body(rows.iloc[[i]]) for i in rng.integers(0, len(rows), n_single)]
    batches = [body(rows.iloc[rng.integers(0, len(rows), batch_rows)]) for _ in range(5)]
    names = (*CONFIGS, "identity")
    servers = {name: start_server(f"bench_{name}@champion", work) for name in names}
    try:
        conns = {n: http.client.HTTPConnection("127.0.0.1", port, timeout=120) for n, (_, port) in servers.items()}
        for conn in conns.values():  # warm-up: imports, first-request paths, connection
            for payload in singles[:20] + batches[:2]:
                timed_post(conn, payload)
        out: dict[str, dict[str, list[float]]] = {n: {"single": [], "batch": []} for n in conns}
        loads = [os.getloadavg()[0]]
        for i, payload in enumerate(singles):
            order = names if i % 2 == 0 else names[::-1]
            for n in order:
                out[n]["single"].append(timed_post(conns[n], payload))
        for i in range(n_batch):
            order = names if i % 2 == 0 else names[::-1]
            for n in order:
                out[n]["batch"].append(timed_post(conns[n], batches[i % len(batches)]))
        loads.append(os.getloadavg()[0])
        for conn in conns.values():
            conn.close()
        return {"times": out, "load": loads}
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


# --------------------------------------------------------------------------- scoring


def write_feature_file(rows: Any, n: int, path: Path, seed: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, n, 250_000):  # the benchmark's own memory stays moderate too
        m = min(250_000, n - start)
        part = rows.iloc[rng.integers(0, len(rows), m)].reset_index(drop=True)
        part.insert(0, "customer_id", np.arange(start, start + m, dtype=np.int64))
        table = pa.Table.from_pandas(part, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


class RSSTrace(PeakRSS):
    """``PeakRSS`` that also keeps every sample: peak growth by the time a share of the run ended
    tells flat memory (the same at 25% and 100%) from memory that grows with the rows read."""

    def __enter__(self) -> Self:
        self.samples: list[tuple[float, int]] = []
        self.t0 = time.perf_counter()
        return super().__enter__()

    def _poll(self) -> None:
        while self._proc is not None and not self._stop.is_set():
            rss = self._proc.memory_info().rss
            self.peak = max(self.peak, rss)
            self.samples.append((time.perf_counter() - self.t0, rss))
            self._stop.wait(0.005)

    def growth_by(self, share: float) -> float:
        end = self.samples[-1][0] * share
        return (max(r for t, r in self.samples if t <= end) - self.base) / 2**20


def score_worker(spec_path: str) -> None:
    """One scoring job in this fresh process; prints a JSON result line."""
    spec = json.loads(Path(spec_path).read_text())
    from crm_models import tracking
    from crm_models.serving import load_model, score_file

    tracking.use_store()
    model = load_model(SCORED)
    # warm-up outside the measurement: lazy imports (pyarrow.parquet/csv) and first-call caches
    for module in ("pyarrow.csv", "pyarrow.parquet"):
        importlib.import_module(module)

    model.predict(model.input_example)
    with RSSTrace() as peak:
        t0, c0 = time.perf_counter(), time.process_time()
        report = score_file(
            SCORED, spec["input"], spec["output"], chunk_rows=spec["chunk_rows"],
            progress=False, model=model,
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({
        "rows": report.rows, "chunks": report.chunks, "wall": wall, "cpu": cpu,
        "growth_mb": peak.growth_mb, "base_mb": peak.base / 2**20,
        "growth_25_mb": peak.growth_by(0.25), "growth_50_mb": peak.growth_by(0.5),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "output_mb": Path(spec["output"]).stat().st_size / 2**20,
    }))


def scoring(
    rows: Any, work: Path, sizes: list[int], csv_rows: int, chunk_rows: int, seed: int
) -> list[dict]:
    results = []
    for n in sizes:
        for fmt in ("parquet", "csv") if n == csv_rows else ("parquet",):
            src = work / f"features_{n}.{fmt}"
            if fmt == "parquet":
                write_feature_file(rows, n, src, seed)
            else:
                import pyarrow.csv as pacsv
                import pyarrow.parquet as pq

                pacsv.write_csv(pq.read_table(work / f"features_{n}.parquet"), src)
            spec = work / f"score_{n}_{fmt}.json"
            spec.write_text(json.dumps({
                "input": str(src), "output": str(work / f"scores_{n}.{fmt}"), "chunk_rows": chunk_rows,
            }))
            load = os.getloadavg()[0]
            proc = subprocess.run(
                [sys.executable, __file__, "--score-worker", str(spec)], cwd=work,
                capture_output=True, text=True, check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-2000:])
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            res.update(format=fmt, input_mb=src.stat().st_size / 2**20, load=load)
            log(f"scored {n:,} rows ({fmt}): {res['wall']:.1f}s, growth {res['growth_mb']:.0f} MB, "
                f"peak {res['peak_mb']:.0f} MB")
            results.append(res)
    return results


# --------------------------------------------------------------------------- report


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def report(lat: dict, scores: list[dict], args: argparse.Namespace, n_customers: int, n_cols: int) -> str:
    import mlflow
    import pandas as pd

    t = lat["times"]
    lines = [
        (
            f"Latency ({len(t['identity']['single'])} single-row and "
            f"{len(t['identity']['batch'])} {args.batch_rows:,}-row requests per server, "
            f"interleaved; load average {lat['load'][0]:.1f} -> {lat['load'][1]:.1f}):"
        ),
        "",
        "| server | request | p50 ms | p99 ms | mean ms | p50 / floor p50 |",
        "|---|---|---|---|---|---|",
    ]
    for kind, label in (("single", "1 row"), ("batch", f"{args.batch_rows:,} rows")):
        floor = pct(t["identity"][kind], 50)
        for name in (*CONFIGS, "identity"):
            v = t[name][kind]
            who = "identity (HTTP floor)" if name == "identity" else name
            lines.append(
                f"| {who} | {label} | {pct(v, 50):.1f} | {pct(v, 99):.1f} | "
                f"{np.mean(v) * 1000:.1f} | {pct(v, 50) / floor:.2f}x |"
            )
    lines += [
        "",
        f"Batch scoring (`score_file`, chunks of {args.chunk_rows:,} rows, one fresh process per file):",
        "",
        (
            "| rows | format | chunks | wall s | cpu s | rows/s | input MB | RSS growth MB by 25% "
            "/ 50% / 100% of the run | process peak MB | load |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in scores:
        lines.append(
            f"| {r['rows']:,} | {r['format']} | {r['chunks']} | {r['wall']:.1f} | {r['cpu']:.1f} | "
            f"{r['rows'] / r['wall']:,.0f} | {r['input_mb']:.0f} | {r['growth_25_mb']:.0f} / "
            f"{r['growth_50_mb']:.0f} / {r['growth_mb']:.0f} | "
            f"{r['peak_mb']:.0f} | {r['load']:.1f} |"
        )
    try:
        import psutil

        ram = f", {psutil.virtual_memory().total / 2**30:.0f} GB RAM"
    except ImportError:
        ram = ""
    lines += [
        "",
        (
            f"Setup: {n_customers:,} simulated customers' feature rows ({n_cols} columns); "
            f"scoring with {SCORED}. {date.today()}, {platform.machine()}, {os.cpu_count()} "
            f"cores{ram}; Python {platform.python_version()}, mlflow {mlflow.__version__}, "
            f"pandas {pd.__version__}, numpy {np.__version__}."
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100+10 requests, 20k and 200k rows")
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--single", type=int, default=500, help="single-row requests per server")
    ap.add_argument("--batches", type=int, default=50, help="batch requests per server")
    ap.add_argument("--batch-rows", type=int, default=1_000)
    ap.add_argument("--rows", default="100000,1000000,3000000", help="scoring sizes (Parquet)")
    ap.add_argument("--csv-rows", type=int, default=1_000_000, help="also score this size as CSV")
    ap.add_argument("--chunk-rows", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", type=Path, default=None, help="working directory (default: temporary)")
    ap.add_argument("--score-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.score_worker:
        score_worker(args.score_worker)
        return
    if args.quick:
        args.single, args.batches, args.rows, args.customers = 100, 10, "20000,200000", 5_000
        args.chunk_rows, args.csv_rows = min(args.chunk_rows, 20_000), 200_000
    sizes = [int(s) for s in args.rows.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
        os.environ.setdefault("CRM_MODELS_ID_SALT", "bench")
        os.chdir(work)
        rows = setup(work, args.customers, args.seed)
        lat = latency(rows, work, args.single, args.batches, args.batch_rows, args.seed)
        log("latency done")
        scores = scoring(rows, work, sizes, args.csv_rows, args.chunk_rows, args.seed)
        print(report(lat, scores, args, len(rows), rows.shape[1]))


if __name__ == "__main__":
    main()
