"""Benchmark of feature building on 10M and 50M transactions: DuckDB (out-of-core) vs Spark local.

Owns the engine comparison of issue 8: the same ``crm_models.features`` builders run on
simulated Parquet (part-files per table, written chunk by chunk so generation never holds a whole
table) once through ``ibis.duckdb.connect(memory_limit=..., temp_directory=...)`` and once
through ``crm_models.spark`` in local mode. Every measurement is a fresh subprocess: wall and CPU
seconds of its process tree (the Spark JVM is a child of Python) and the tree's peak RSS, sampled
with psutil; a tree that grows past ``--rss-cap-gb`` is killed and reported as failed (the
machine is shared). Each table both engines built is compared at once — row counts, null counts,
sums of every numeric/boolean/timestamp column (1e-9 relative), value counts of every text
column — and a difference stops the run, so sizes run in ascending order and the smallest one
checks agreement before the large ones are timed. Run from the repository root:

    python benchmarks/bench_engines.py                      # 10M and 50M, both engines
    python benchmarks/bench_engines.py --quick              # 1M rows, for development
    python benchmarks/bench_engines.py --sizes 10000000 --engines duckdb --json out.json
    python benchmarks/bench_engines.py --report out.json    # the tables of a saved run

Data are cached under ``--data-dir`` (default ``$TMPDIR/bench_engines``) and reused when their
row counts match the manifest. Needs pyspark (the ``[spark]`` extra), Java 17 and psutil.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import psutil

CUTOFF = "2024-07-01"
CALIBRATION_END = "2024-06-30"
HOLDOUT_END = "2024-12-31"
HORIZON_DAYS = 180
INACTIVITY_DAYS = 90
WINDOW_DAYS = 90
LOOKBACK_DAYS = 30
# written per chunk of customers; conversions are the touchpoints' converted orders, derived per
# chunk (they need transactions and touchpoints of the same customers) and stored like a table
TABLES = ["transactions", "customers", "tickets", "subscriptions", "touchpoints", "conversions"]
BUILDS = [
    "customer_features",
    "rfm_segments",
    "btyd_summary",
    "noncontractual_churn_labels",
    "contractual_churn_labels",
    "build_journeys",
    "journeys_parquet",
]
QUICK_ROWS = 1_000_000
DEFAULT_SIZES = [10_000_000, 50_000_000]
GB = 1e9
# transactions per simulated customer (default SimulationParams; 1M customers gave 19.3M rows):
# sizes the first chunk, later chunks use the rate seen so far
ROWS_PER_CUSTOMER = 19.3


# --------------------------------------------------------------------------- data


def _chunk(n_customers: int, seed: int, id_offset: int, order_offset: int) -> tuple[dict, int]:
    """One chunk of simulated tables with ids shifted past the previous chunks'; its id span."""
    from crm_models.data.synthetic import simulate
    from crm_models.features.paths import conversions_from_touchpoints

    ds = simulate(n_customers, seed=seed)
    t = {k: ds.tables[k] for k in TABLES if k in ds.tables}
    t["conversions"] = conversions_from_touchpoints(t["touchpoints"], t["transactions"])
    for df in t.values():
        df["customer_id"] += id_offset
        # Spark refuses nanosecond Parquet timestamps; the simulator's are whole seconds
        for col in df.columns:
            if df[col].dtype == "datetime64[ns]":
                df[col] = df[col].astype("datetime64[us]")
    t["transactions"]["order_id"] += order_offset
    t["touchpoints"]["order_id"] += order_offset
    return t, int(ds.ground_truth["n_prospects"])


def _count_rows(directory: Path) -> int:
    import duckdb

    sql = f"SELECT count(*) FROM read_parquet('{directory}/*.parquet')"
    return int(duckdb.connect().execute(sql).fetchall()[0][0])


def ensure_data(base: Path, rows: int, chunk_customers: int, seed: int) -> tuple[Path, dict]:
    """Simulated Parquet of about ``rows`` transactions under ``base/tx<rows>``, reused if complete.

    Chunks of ``chunk_customers`` customers (seed ``seed + k``) are simulated and appended as
    part-files until the transaction count reaches ``rows``; the last chunk is sized from the
    rows per customer seen so far.
    """
    d = base / f"tx{rows}"
    manifest_path = d / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if _count_rows(d / "transactions") == manifest["rows"]["transactions"]:
            print(f"reusing {d}: {manifest['rows']['transactions']:,} transactions")
            return d, manifest
        print(f"{d}: row count differs from its manifest; regenerating")
    if d.exists():
        shutil.rmtree(d)
    for name in TABLES:
        (d / name).mkdir(parents=True)
    t0 = time.perf_counter()
    counts = dict.fromkeys(TABLES, 0)
    id_offset = customers = k = 0
    while counts["transactions"] < rows:
        per_customer = counts["transactions"] / customers if customers else ROWS_PER_CUSTOMER
        n = min(chunk_customers, max(1, math.ceil((rows - counts["transactions"]) / per_customer)))
        tables, span = _chunk(n, seed + k, id_offset, counts["transactions"])
        for name, df in tables.items():
            df.to_parquet(d / name / f"part-{k:05d}.parquet", index=False)
            counts[name] += len(df)
        id_offset += span
        customers += n
        k += 1
        print(
            f"  chunk {k}: {customers:,} customers, {counts['transactions']:,} transactions "
            f"({time.perf_counter() - t0:.0f}s)",
            flush=True,
        )
    manifest = {
        "target_rows": rows, "seed": seed, "chunk_customers": chunk_customers, "chunks": k,
        "customers": customers, "rows": counts, "seconds": round(time.perf_counter() - t0, 1),
        "bytes": sum(f.stat().st_size for f in d.rglob("*.parquet")),
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    print(f"wrote {d}: {counts} in {manifest['seconds']}s, {manifest['bytes'] / GB:.2f} GB")
    return d, manifest


# --------------------------------------------------------------------------- builders


def build(name: str, t: dict[str, Any]) -> pd.DataFrame:
    """Run one feature builder on engine tables ``t``; pandas out."""
    from crm_models import features as F

    if name == "customer_features":
        return F.customer_features(t["transactions"], CUTOFF, customers=t["customers"],
                                   tickets=t["tickets"], window_days=WINDOW_DAYS)
    if name == "rfm_segments":
        return F.rfm_segments(F.customer_features_expr(
            t["transactions"], CUTOFF, customers=t["customers"], tickets=t["tickets"],
            window_days=WINDOW_DAYS))
    if name == "btyd_summary":
        return F.btyd_summary(t["transactions"], CALIBRATION_END, HOLDOUT_END, time_unit="W")
    if name == "noncontractual_churn_labels":
        return F.noncontractual_churn_labels(t["transactions"], CUTOFF, HORIZON_DAYS,
                                             INACTIVITY_DAYS)
    if name == "contractual_churn_labels":
        return F.contractual_churn_labels(t["subscriptions"], CUTOFF, HORIZON_DAYS)
    if name == "build_journeys":
        return F.build_journeys(t["touchpoints"], t["conversions"], lookback_days=LOOKBACK_DAYS,
                                cutoff=CUTOFF)
    if name == "journeys_parquet":
        return journeys_to_parquet(t)
    raise ValueError(f"unknown build {name!r}")


def journeys_to_parquet(t: dict[str, Any]) -> pd.DataFrame:
    """The journeys table kept in the engine: ``build_journeys_expr`` (one row per journey, the
    channel and timestamp lists collected in time order) written as Parquet by the engine, the
    out-of-core route for tables too large for a pandas result. Returns a one-row summary read
    back from the written files (rows, converted, touches, value), for the agreement check."""
    from crm_models.features.paths import build_journeys_expr

    expr = build_journeys_expr(t["touchpoints"], t["conversions"], lookback_days=LOOKBACK_DAYS,
                               cutoff=CUTOFF)
    con = expr._find_backend()
    out = Path(tempfile.mkdtemp(prefix="journeys_", dir=os.environ.get("BENCH_ENGINES_OUT")))
    try:
        path = out / "j.parquet"  # a file from DuckDB, a directory of part-files from Spark
        con.to_parquet(expr, path)
        j = con.read_parquet(path)
        summary = j.aggregate(
            journeys=j.count(), converted=j.converted.cast("int64").sum(),
            touches=j.n_touches.sum(), listed=j.channels.length().sum(),
            value=j.value.sum(), customers=j.customer_id.nunique(),
        )
        return summary.to_pyarrow().to_pandas()
    finally:
        shutil.rmtree(out, ignore_errors=True)


NEEDS = {
    "customer_features": ["transactions", "customers", "tickets"],
    "rfm_segments": ["transactions", "customers", "tickets"],
    "btyd_summary": ["transactions"],
    "noncontractual_churn_labels": ["transactions"],
    "contractual_churn_labels": ["subscriptions"],
    "build_journeys": ["touchpoints", "conversions"],
    "journeys_parquet": ["touchpoints", "conversions"],
}


def checksum(df: pd.DataFrame) -> dict[str, Any]:
    """Rows, per numeric/bool/timestamp column its null count and float sum, per text column
    its value counts (list columns: the sum of lengths)."""
    df = df.reset_index() if df.index.name else df
    out: dict[str, Any] = {"rows": len(df), "sums": {}, "nulls": {}, "counts": {}}
    for col in df.columns:
        s = df[col]
        out["nulls"][col] = int(s.isna().sum())
        if pd.api.types.is_datetime64_any_dtype(s):
            v = s.dropna().astype("datetime64[us]").to_numpy().view("int64")
            out["sums"][col] = float(v.astype(np.float64).sum())
        elif pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            out["sums"][col] = float(s.dropna().to_numpy(dtype=np.float64).sum())
        else:
            first = s.dropna().iloc[0] if s.notna().any() else None
            if isinstance(first, (list, tuple, np.ndarray)):
                out["sums"][f"len({col})"] = float(s.dropna().map(len).sum())
            else:
                out["counts"][col] = {str(k): int(v) for k, v in s.value_counts().items()}
    return out


def compare(a: dict[str, Any], b: dict[str, Any], rtol: float = 1e-9) -> list[str]:
    """Differences between two checksums (empty: the engines agree)."""
    bad = []
    if a["rows"] != b["rows"]:
        bad.append(f"rows {a['rows']} != {b['rows']}")
    for key in ("nulls", "counts"):
        for col in set(a[key]) | set(b[key]):
            if a[key].get(col) != b[key].get(col):
                bad.append(f"{key}[{col}] differ")
    for col in set(a["sums"]) | set(b["sums"]):
        x, y = a["sums"].get(col), b["sums"].get(col)
        if x is None or y is None or not math.isclose(x, y, rel_tol=rtol, abs_tol=1e-9):
            bad.append(f"sum[{col}] {x!r} != {y!r}")
    return bad


# --------------------------------------------------------------------------- measurement


class TreeMeter:
    """Wall, CPU (user + system of this process and its live children) and peak RSS of the
    process tree while the block runs; RSS polled every ``interval`` s, plus the peak size of
    ``watch_dir`` (DuckDB's spill directory) every tenth poll."""

    def __init__(self, interval: float = 0.02, watch_dir: Path | None = None):
        self.interval, self.watch_dir = interval, watch_dir
        self.proc = psutil.Process()

    def _tree(self) -> list[psutil.Process]:
        return [self.proc, *self.proc.children(recursive=True)]

    def _cpu(self) -> float:
        total = 0.0
        for p in self._tree():
            try:
                c = p.cpu_times()
                total += c.user + c.system
            except psutil.NoSuchProcess:
                pass
        return total

    def rss(self) -> int:
        total = 0
        for p in self._tree():
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def _dir_bytes(self) -> int:
        if self.watch_dir is None or not self.watch_dir.exists():
            return 0
        return sum(f.stat().st_size for f in self.watch_dir.rglob("*") if f.is_file())

    def _poll(self) -> None:
        i = 0
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            if i % 10 == 0:
                self.spill = max(self.spill, self._dir_bytes())
            i += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self.base = self.peak = self.rss()
        self.spill = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self.cpu0, self.t0 = self._cpu(), time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = self._cpu() - self.cpu0
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def open_engine(engine: str, data: Path, names: list[str], args: argparse.Namespace) -> dict:
    """The raw tables on ``engine`` as Ibis tables (lazy: nothing is read yet)."""
    if engine == "duckdb":
        import ibis

        con = ibis.duckdb.connect(memory_limit=args.duckdb_memory,
                                  temp_directory=str(args.spill_dir))
        return {n: con.read_parquet(f"{data / n}/*.parquet", table_name=n) for n in names}
    from crm_models import spark as S
    from crm_models.config import SparkConfig, TableSource

    session = S.spark_session(SparkConfig(master=args.spark_master, conf=spark_conf(args)))
    return {n: S.read_source(session, n, TableSource(path=str(data / n))) for n in names}


def spark_conf(args: argparse.Namespace) -> dict[str, str]:
    conf = {
        # the driver is the executor in local mode; its heap must be set before the JVM starts
        "spark.driver.memory": args.spark_memory,
        # build_journeys collects every journey touch to the driver (>1 GB at 50M rows)
        "spark.driver.maxResultSize": "0",
    }
    if args.spark_master.startswith("local"):
        # shuffle files next to the data; a cluster manager sets its executors' own directories
        conf["spark.local.dir"] = str(args.spill_dir)
    conf.update(dict(kv.split("=", 1) for kv in args.spark_conf))
    return conf


def worker(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints one ``RESULT {json}`` line."""
    args.spill_dir.mkdir(parents=True, exist_ok=True)
    meter0 = TreeMeter()
    t0 = time.perf_counter()
    tables = open_engine(args.engine, args.data, NEEDS[args.build], args)
    setup = time.perf_counter() - t0
    rss_before = meter0.rss()
    with TreeMeter(watch_dir=args.spill_dir if args.engine == "duckdb" else None) as m:
        out = build(args.build, tables)
    result = {
        "engine": args.engine, "build": args.build, "data": str(args.data),
        "wall": m.wall, "cpu": m.cpu, "peak_rss": m.peak, "rss_before": rss_before,
        "spill_bytes": m.spill, "setup": setup, "out_rows": len(out),
        "checksum": checksum(out), "load": os.getloadavg()[0],
    }
    print("RESULT " + json.dumps(result), flush=True)


def measure(engine: str, build_name: str, data: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--engine", engine, "--build", build_name,
           "--data", str(data), "--duckdb-memory", args.duckdb_memory, "--spark-memory",
           args.spark_memory, "--spark-master", args.spark_master,
           "--spill-dir", str(args.spill_dir / engine)]
    for kv in args.spark_conf:
        cmd += ["--spark-conf", kv]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tree = psutil.Process(proc.pid)
    failed = None
    while True:
        try:
            stdout, stderr = proc.communicate(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            # the cap protects a shared machine: a build whose result does not fit is killed
            # and reported as such, instead of taking other processes down with it
            rss = _tree_rss(tree)
            if rss > args.rss_cap_gb * GB:
                failed = f"killed at {rss / GB:.1f} GB RSS (cap {args.rss_cap_gb:g} GB)"
            elif time.perf_counter() - t0 > args.timeout:
                failed = f"timeout {args.timeout:.0f}s"
            if failed:
                _kill_tree(tree)
                stdout, stderr = proc.communicate()
                break
    if failed:
        print(f"  {engine:6s} {build_name:28s} FAILED: {failed}", flush=True)
        return {"engine": engine, "build": build_name, "failed": failed,
                "process_wall": time.perf_counter() - t0, "load_before": load}
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        # a failure (e.g. out of memory) is a result too: record it and go on
        tail = (stderr or "").strip().splitlines()[-3:]
        print(f"  {engine:6s} {build_name:28s} FAILED (exit {proc.returncode}): {tail}", flush=True)
        return {"engine": engine, "build": build_name, "failed": f"exit {proc.returncode}: {tail}",
                "process_wall": time.perf_counter() - t0, "load_before": load}
    res = json.loads(lines[-1][7:])
    res["process_wall"] = time.perf_counter() - t0
    res["load_before"] = load
    print(f"  {engine:6s} {build_name:28s} wall {res['wall']:7.2f}s  cpu {res['cpu']:7.2f}s  "
          f"peak RSS {res['peak_rss'] / GB:5.2f} GB  spill {res['spill_bytes'] / GB:5.2f} GB  "
          f"rows {res['out_rows']:,}  (process {res['process_wall']:.0f}s, load {load:.1f})",
          flush=True)
    return res


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _kill_tree(proc: psutil.Process) -> None:
    for p in [*proc.children(recursive=True), proc]:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


# --------------------------------------------------------------------------- report


def best(runs: list[dict]) -> dict:
    return {"wall": min(r["wall"] for r in runs), "cpu": min(r["cpu"] for r in runs),
            "peak_rss": max(r["peak_rss"] for r in runs), "n": len(runs),
            "spill": max(r["spill_bytes"] for r in runs)}


def report(results: list[dict], engines: list[str], size: int, target_gb: float) -> str:
    """A markdown table for one size: best wall / CPU, highest peak RSS, DuckDB/Spark ratio."""
    rows = [r for r in results if r["size"] == size]
    head = "| table built |"
    sep = "|---|"
    for e in engines:
        head += f" {e} wall s | {e} CPU s | {e} peak RSS GB |"
        sep += "---:|---:|---:|"
    if len(engines) == 2:
        head += " duckdb/spark wall (CPU) |"
        sep += "---:|"
    lines = [head, sep]
    for b in BUILDS:
        cells = {e: [r for r in rows if r["build"] == b and r["engine"] == e] for e in engines}
        if not any(cells.values()):
            continue
        line = f"| {b} |"
        ok = {e: [r for r in rs if "failed" not in r] for e, rs in cells.items()}
        bests = {e: best(rs) for e, rs in ok.items() if rs}
        for e in engines:
            x = bests.get(e)
            failed = [r["failed"] for r in cells[e] if "failed" in r]
            line += (f" {x['wall']:.1f} | {x['cpu']:.1f} | {x['peak_rss'] / GB:.2f} |" if x
                     else f" failed ({failed[0][:40]}) | - | - |" if failed else " - | - | - |")
        if len(engines) == 2 and len(bests) == 2:
            d, s = bests["duckdb"], bests["spark"]
            line += f" {d['wall'] / s['wall']:.2f} ({d['cpu'] / s['cpu']:.2f}) |"
        elif len(engines) == 2:
            line += " - |"
        lines.append(line)
    duck = [r for r in rows if r["engine"] == "duckdb" and "failed" not in r]
    if duck:
        peak = max(r["peak_rss"] for r in duck) / GB
        spill = max(r["spill_bytes"] for r in duck) / GB
        verdict = "met" if peak < target_gb else "NOT met"
        lines.append(f"\nDuckDB peak RSS over all tables: {peak:.2f} GB (target < {target_gb:g} "
                     f"GB: {verdict}); largest spill directory seen: {spill:.2f} GB")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    sizes = [QUICK_ROWS] if args.quick else sorted(args.sizes)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    args.spill_dir = args.data_dir / "spill"
    data = {s: ensure_data(args.data_dir, s, args.chunk_customers, args.seed) for s in sizes}
    builds = args.builds or BUILDS
    spark_builds = args.spark_builds or builds
    results: list[dict] = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    env = (f"{date.today()}, run started {started}, {platform.machine()} {os.cpu_count()} cores, "
           f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM; Python "
           f"{platform.python_version()}, {versions()}")

    def save() -> None:
        # after every measurement, so an interrupted run keeps what it measured
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"environment": env, "command": sys.argv, "engines": args.engines,
                 "manifests": {s: data[s][1] for s in sizes}, "results": results},
                indent=1, default=str))

    for size in sizes:
        path, manifest = data[size]
        repeats = args.repeats if size <= 10_000_000 else args.repeats_large
        print(f"\n{manifest['rows']['transactions']:,} transactions, "
              f"{manifest['customers']:,} customers; {repeats} round(s)", flush=True)
        for rep in range(repeats):
            for b in builds:
                # alternate which engine goes first, so load from other jobs hits both alike
                order = args.engines if rep % 2 == 0 else args.engines[::-1]
                got = {}
                for e in order:
                    if e == "spark" and b not in spark_builds:
                        continue
                    got[e] = measure(e, b, path, args)
                    results.append({**got[e], "size": size, "round": rep,
                                    "transactions": manifest["rows"]["transactions"]})
                    save()
                if len(got) == 2 and not any("failed" in r for r in got.values()):
                    diff = compare(got["duckdb"]["checksum"], got["spark"]["checksum"])
                    if diff:
                        raise SystemExit(f"engines disagree on {b} at {size:,}: {diff[:10]}")
            if rep == 0 and len(args.engines) == 2:
                print(f"round 1 at {size:,}: both engines agree on every table they both built "
                      "(rows, numeric sums to 1e-9, text value counts)", flush=True)
    print_report(env, results, args.engines, args.target_gb)
    if args.json:
        print(f"\nwrote {args.json}")


def print_report(env: str, results: list[dict], engines: list[str], target_gb: float) -> None:
    ok = [r for r in results if "load_before" in r]
    loads = [r["load_before"] for r in ok] or [0.0]
    print(f"\n{env}; load average before measurements {min(loads):.1f}-{max(loads):.1f}")
    for size in sorted({r["size"] for r in results}):
        rows = next(r["transactions"] for r in results if r["size"] == size)
        print(f"\n### {rows:,} transactions\n")
        print(report(results, engines, size, target_gb))


def report_from(paths: list[str], target_gb: float) -> None:
    """Print the tables of saved ``--json`` files (one environment line per file)."""
    for p in paths:
        saved = json.loads(Path(p).read_text())
        print_report(saved["environment"], saved["results"], saved.get("engines",
                     ["duckdb", "spark"]), target_gb)


def versions() -> str:
    import duckdb
    import ibis
    import pyarrow

    out = [f"duckdb {duckdb.__version__}", f"ibis {ibis.__version__}",
           f"pyarrow {pyarrow.__version__}", f"pandas {pd.__version__}"]
    try:
        import pyspark

        java = subprocess.run(["java", "-version"], check=False, capture_output=True,
                              text=True).stderr
        out += [f"pyspark {pyspark.__version__}", java.splitlines()[0] if java else "java ?"]
    except ImportError:
        pass
    return ", ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES,
                    help="transaction counts (default 10M 50M)")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows only")
    ap.add_argument("--engines", nargs="+", default=["duckdb", "spark"],
                    choices=["duckdb", "spark"])
    ap.add_argument("--builds", nargs="+", choices=BUILDS, help="default: all")
    ap.add_argument("--spark-builds", nargs="+", choices=BUILDS,
                    help="builds Spark runs (default: --builds); e.g. to fit 50M into a time box")
    ap.add_argument("--repeats", type=int, default=2, help="rounds at <= 10M rows (best of)")
    ap.add_argument("--repeats-large", type=int, default=1, help="rounds above 10M rows")
    ap.add_argument("--data-dir", type=Path,
                    default=Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "bench_engines")
    ap.add_argument("--chunk-customers", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--duckdb-memory", default="6GB", help="DuckDB memory_limit")
    ap.add_argument("--spark-memory", default="6g", help="spark.driver.memory")
    ap.add_argument("--spark-master", default="local[2]")
    ap.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--target-gb", type=float, default=8.0, help="peak RSS target of DuckDB")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    ap.add_argument("--rss-cap-gb", type=float, default=14.0,
                    help="kill a measurement whose process tree's RSS exceeds this")
    ap.add_argument("--json", help="write every measurement here")
    ap.add_argument("--report", nargs="+", metavar="JSON", help="print the tables of saved runs")
    # internal: one measurement in a fresh process
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    ap.add_argument("--build", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--spill-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
    elif args.report:
        report_from(args.report, args.target_gb)
    else:
        run(args)


if __name__ == "__main__":
    main()
