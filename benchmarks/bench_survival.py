"""Benchmark of the survival churn models: fit time, peak memory, held-out C-index and SHAP time.

Owns one reproducible comparison on the simulator (``crm_models.data.synthetic.simulate``):
point-in-time features at observation end - 180 days (``customer_features``), inactivity churn
labels (``noncontractual_churn_labels``, 90 days), one-hot categories, a stratified 30% held-out
split. Five models side by side: ``XGBSurvival`` (aft and cox), lifelines ``CoxPH``,
scikit-survival's ``GradientBoostingSurvivalAnalysis`` (``GradientBoostingSurvival``) and
``RandomSurvivalForest``. Boosted models share one tree setting (scikit-survival's defaults:
100 trees of depth 3, learning rate 0.1). Run from the repository root:

    python benchmarks/bench_survival.py                  # 100k and 1M customers, ~30-40 minutes
    python benchmarks/bench_survival.py --quick          # 10k customers, tiny ladder, ~2 minutes

Every fit runs in a fresh subprocess of this script (``--worker``): its peak RSS is its own, not
the leftovers of the 1M-customer simulation or of an earlier model, and a fit that passes the time
limit can be killed. Data are prepared once per size in a subprocess and handed over as ``.npy``.

- Full-size fits: XGBSurvival (aft, cox) and CoxPH on every training row of each size.
- Ladder: nested random subsets of the largest size's training rows (``--ladder``), all five
  models; scikit-survival's two stop at the first rung whose fit would pass ``--limit`` seconds
  (extrapolated from the previous rungs, or killed there).
- SHAP: ``explain_survival`` with xgboost's native ``pred_contribs`` and with shap's
  TreeExplainer on ``--shap-rows`` held-out customers of the largest size.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from _common import PeakRSS  # benchmarks/ is on sys.path when run as a script

try:
    import psutil
except ImportError:  # pragma: no cover - optional
    psutil = None

HORIZON_DAYS = 180
INACTIVITY_DAYS = 90
WINDOW_DAYS = 90
TEST_SIZE = 0.3
MIN_FEATURES = 30
XGB_THREADS = 2
# scikit-survival's GradientBoostingSurvivalAnalysis defaults; XGBSurvival gets the same
TREES = {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.1}
LIMITED = ("gbsa", "rsf")
"""Models run on the ladder only, each stopped at the first rung past the time limit."""
FULL = ("xgb_aft", "xgb_cox", "cox_ph")
"""Models fitted on every training row of every size."""
MODELS = FULL + LIMITED
REPEAT_BELOW_S = 30.0
"""A fit is repeated (best of ``--repeats``) only while it takes less than this."""


def make_model(name: str, seed: int) -> Any:
    """The benchmarked estimator ``name`` (``crm_models.models.survival``)."""
    from crm_models.models.survival import (
        CoxPH,
        GradientBoostingSurvival,
        RandomSurvivalForest,
        XGBSurvival,
    )

    if name in ("xgb_aft", "xgb_cox"):
        # no row/column subsampling and unit min_child_weight: scikit-survival's boosting has none
        return XGBSurvival(
            objective=name.removeprefix("xgb_"),
            **TREES,
            subsample=1.0,
            colsample_bytree=1.0,
            min_child_weight=1.0,
            n_jobs=XGB_THREADS,
            random_state=seed,
        )
    if name == "cox_ph":
        return CoxPH(penalizer=0.01)
    if name == "gbsa":
        return GradientBoostingSurvival(**TREES, random_state=seed)
    if name == "rsf":
        # configs/churn_rsf.yaml's setting: day-resolution durations, leaves of >= 20 customers
        return RandomSurvivalForest(
            n_estimators=100,
            min_samples_leaf=20,
            max_features="sqrt",
            n_jobs=2,
            random_state=seed,
            time_resolution=1.0,
        )
    raise ValueError(f"unknown model {name!r}")


# --------------------------------------------------------------------------- data (subprocess)


def prepare(n_customers: int, seed: int, out: Path, eval_rows: int) -> dict[str, Any]:
    """Simulate, build features and labels, split, preprocess; write arrays to ``out``.

    Training rows are stored in a seeded random order, so the first n rows are a random subset
    and the ladder's subsets are nested. ``X_eval`` is a seeded sample of at most ``eval_rows``
    held-out customers (C-index); ``X_test`` is the whole held-out set (SHAP).
    """
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from crm_models import features as F
    from crm_models.data.synthetic import simulate
    from crm_models.models.preprocessing import make_preprocessor, split_feature_types

    t0 = time.perf_counter()
    ds = simulate(n_customers, seed=seed)
    t_sim = time.perf_counter() - t0
    tables = ds.tables
    cutoff = pd.Timestamp(ds.ground_truth["observation_end"]) - pd.Timedelta(days=HORIZON_DAYS)
    t0 = time.perf_counter()
    feats = F.customer_features(
        tables["transactions"],
        cutoff,
        customers=tables["customers"],
        tickets=tables["tickets"],
        window_days=WINDOW_DAYS,
    )
    labels = F.noncontractual_churn_labels(
        tables["transactions"], cutoff, HORIZON_DAYS, INACTIVITY_DAYS
    )
    frame = labels.join(feats, how="inner")
    t_feat = time.perf_counter() - t0
    n_transactions = len(tables["transactions"])
    del ds, tables, feats, labels
    gc.collect()

    cols = [c for c in frame.columns if c not in ("signup_ts", "duration_days", "event")]
    train, test = train_test_split(
        frame, test_size=TEST_SIZE, random_state=seed, stratify=frame["event"]
    )
    numeric, categorical = split_feature_types(train[cols])
    pre = make_preprocessor(numeric, categorical)
    X_train = pre.fit_transform(train[cols]).astype(float)
    X_test = pre.transform(test[cols]).astype(float)
    noise: list[str] = []
    if X_train.shape[1] < MIN_FEATURES:
        # too few real inputs (tiny data, a one-hot level absent): pad with seeded noise columns
        rng = np.random.default_rng(seed)
        for k in range(MIN_FEATURES - X_train.shape[1]):
            noise.append(f"noise_{k}")
            X_train[noise[-1]] = rng.standard_normal(len(X_train))
            X_test[noise[-1]] = rng.standard_normal(len(X_test))

    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(train))
    eval_idx = np.sort(rng.choice(len(test), size=min(eval_rows, len(test)), replace=False))
    out.mkdir(parents=True, exist_ok=True)
    arrays = {
        "X_train": X_train.to_numpy()[order],
        "d_train": train["duration_days"].to_numpy(float)[order],
        "e_train": train["event"].to_numpy(bool)[order],
        "X_test": X_test.to_numpy(),
        "d_test": test["duration_days"].to_numpy(float),
        "e_test": test["event"].to_numpy(bool),
        "eval_idx": eval_idx,
    }
    for key, arr in arrays.items():
        np.save(out / f"{key}.npy", np.ascontiguousarray(arr))
    info = {
        "n_customers": n_customers,
        "n_transactions": n_transactions,
        "n_rows": len(frame),
        "n_train": len(train),
        "n_test": len(test),
        "n_eval": len(eval_idx),
        "event_rate": float(frame["event"].mean()),
        "columns": list(X_train.columns),
        "raw_features": {"numeric": numeric, "categorical": categorical},
        "noise_features": noise,
        "simulate_s": t_sim,
        "features_s": t_feat,
    }
    (out / "info.json").write_text(json.dumps(info))
    return info


# --------------------------------------------------------------------------- one fit (subprocess)


    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def _measure(fn: Any) -> tuple[dict[str, float], Any]:
    gc.collect()
    with PeakRSS() as mem:
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall": wall, "cpu": cpu, "rss_mb": mem.growth_mb}, out


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Fit one model (best of ``repeats`` if fast), score the held-out sample, optionally SHAP."""
    import warnings

    import pandas as pd

    from crm_models.evaluation import harrell_c_index

    warnings.filterwarnings("ignore")  # lifelines / sksurv chatter; results are checked below
    data = Path(spec["data"])
    cols = json.loads((data / "info.json").read_text())["columns"]
    rows = spec["rows"]

    def load(key: str, sl: slice | np.ndarray = slice(None)) -> np.ndarray:
        return np.array(np.load(data / f"{key}.npy", mmap_mode="r")[sl])

    X = pd.DataFrame(load("X_train", slice(rows)), columns=cols)
    d, e = load("d_train", slice(rows)), load("e_train", slice(rows))
    eval_idx = load("eval_idx")
    X_eval = pd.DataFrame(load("X_test", eval_idx), columns=cols)
    d_eval, e_eval = load("d_test", eval_idx), load("e_test", eval_idx)
    progress = Path(spec["progress"])

    fits, model = [], None
    for _ in range(spec["repeats"]):
        model = make_model(spec["model"], spec["seed"])
        with progress.open("a") as f:
            f.write(f"start {time.time()}\n")
        run, _ = _measure(lambda m=model: m.fit(X, d, e))
        with progress.open("a") as f:
            f.write(f"end {time.time()}\n")
        fits.append(run)
        if run["wall"] >= REPEAT_BELOW_S:
            break
    result: dict[str, Any] = {
        "fits": fits,
        "process_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "n_train": len(X),
        "n_eval": len(X_eval),
    }
    t0 = time.perf_counter()
    risk = model.predict_risk(X_eval)
    result["predict_s"] = time.perf_counter() - t0
    # a diverged model (NaN or inf risks) is a result to report, not a reason to crash
    result["nonfinite_risks"] = int((~np.isfinite(risk)).sum())
    result["c_index"] = (
        harrell_c_index(d_eval, e_eval, risk) if not result["nonfinite_risks"] else math.nan
    )
    np.save(spec["out"] + ".risk.npy", risk)  # paired comparisons of models, in the parent
    risk_train = model.predict_risk(X.iloc[: len(X_eval)])
    result["c_index_train"] = (
        harrell_c_index(d[: len(X_eval)], e[: len(X_eval)], risk_train)
        if np.isfinite(risk_train).all()
        else math.nan
    )
    if spec.get("shap_rows"):
        result["shap"] = shap_job(
            model,
            pd.DataFrame(load("X_test", slice(spec["shap_rows"])), columns=cols),
            spec["repeats"],
        )
    return result


def shap_job(model: Any, X: Any, repeats: int) -> dict[str, Any]:
    """Time ``explain_survival`` both ways on ``X``; check additivity and that the two agree."""
    from crm_models.explain import explain_survival

    out: dict[str, Any] = {"rows": len(X)}
    values = {}
    for method in ("xgboost", "shap-tree"):
        runs = []
        for _ in range(repeats):
            run, expl = _measure(lambda m=method: explain_survival(model, X, method=m))
            runs.append(run)
            if run["wall"] >= REPEAT_BELOW_S:
                break
        out[method] = runs
        values[method] = expl.values.to_numpy()
        # additive in predict_risk up to xgboost's float32 arithmetic
        err = np.abs(values[method].sum(axis=1) + expl.base_value - model.predict_risk(X))
        out[f"{method}_max_additivity_error"] = float(err.max())
    out["max_abs_difference"] = float(np.abs(values["xgboost"] - values["shap-tree"]).max())
    return out


def worker(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    if spec["model"] == "__prepare__":
        result = prepare(spec["customers"], spec["seed"], Path(spec["data"]), spec["eval_rows"])
    else:
        result = run_job(spec)
    Path(spec["out"]).write_text(json.dumps(result))


# --------------------------------------------------------------------------- orchestration


@dataclass
class Job:
    """One fit (or a data preparation) and what came out of it."""

    size: int
    model: str
    rows: int | None
    status: str = "ok"
    """ok, skipped (predicted past the limit), killed (past the limit), failed."""
    note: str = ""
    load: list[float] = field(default_factory=list)
    """1-minute load average before and after the job (the machine is shared)."""
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> dict[str, float]:
        fits = self.result.get("fits", [])
        return {k: min(f[k] for f in fits) for k in ("wall", "cpu")} | {
            "rss_mb": max(f["rss_mb"] for f in fits),
            "n": len(fits),
        }


def run_subprocess(spec: dict[str, Any], work: Path, limit: float | None) -> tuple[str, dict, str]:
    """Run ``--worker`` on ``spec``; kill it if one fit runs past ``limit`` seconds."""
    tag = f"{spec['model']}_{spec.get('rows') or 'all'}_{time.monotonic_ns()}"
    spec = spec | {"out": str(work / f"{tag}.out.json"), "progress": str(work / f"{tag}.log")}
    spec_path = work / f"{tag}.json"
    spec_path.write_text(json.dumps(spec))
    Path(spec["progress"]).touch()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", str(spec_path)],
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
    reader.start()
    while proc.poll() is None:
        time.sleep(0.5)
        lines = Path(spec["progress"]).read_text().split()
        fitting = limit and len(lines) >= 2 and lines[-2] == "start"
        if fitting and time.time() - float(lines[-1]) > limit:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker's own session only
            proc.wait()
            return "killed", {}, f"fit passed {limit:.0f} s"
    reader.join()
    if proc.returncode != 0:
        lines = "".join(stderr).strip().splitlines() or [f"exit code {proc.returncode}"]
        return "failed", {"stderr": "\n".join(lines[-30:])}, lines[-1]
    result = json.loads(Path(spec["out"]).read_text())
    if spec["model"] != "__prepare__":
        result["risk"] = spec["out"] + ".risk.npy"
    return "ok", result, ""


def by_key(jobs: list[Job], size: int, model: str, rows: int | None) -> Job | None:
    """The last job of ``model`` on ``rows`` training rows of ``size`` customers."""
    found = [j for j in jobs if (j.size, j.model, j.rows) == (size, model, rows)]
    return found[-1] if found else None


def extrapolate(history: list[tuple[int, float]], rows: int) -> float | None:
    """Predicted fit seconds at ``rows`` from earlier rungs: a power law through the last two.

    The exponent is clamped to [1, 3] (scikit-survival's Cox gradient is quadratic in rows);
    with one rung it is 1, an optimistic guess that the kill at the limit backs up.
    """
    if not history:
        return None
    n1, t1 = history[-1]
    alpha = 1.0
    if len(history) >= 2:
        n0, t0 = history[-2]
        alpha = min(3.0, max(1.0, math.log(t1 / t0) / math.log(n1 / n0)))
    return t1 * (rows / n1) ** alpha


def paired_c_difference(
    d: np.ndarray, e: np.ndarray, risk_a: np.ndarray, risk_b: np.ndarray, chunks: int = 20
) -> tuple[float, float]:
    """C(a) - C(b) on the same customers, and its standard error from disjoint chunks.

    Harrell's C is a U-statistic, so its variance falls as 1/n: the spread of the difference
    over ``chunks`` disjoint random parts, divided by sqrt(chunks), estimates the standard error
    of the difference on the whole set at the cost of one C-index per model (a bootstrap would
    cost hundreds).
    """
    from crm_models.evaluation import harrell_c_index

    diff = harrell_c_index(d, e, risk_a) - harrell_c_index(d, e, risk_b)
    parts = np.array_split(np.random.default_rng(0).permutation(len(d)), chunks)
    per_chunk = [
        harrell_c_index(d[p], e[p], risk_a[p]) - harrell_c_index(d[p], e[p], risk_b[p])
        for p in parts  # a handful of chunks, each one vectorized C-index
    ]
    return diff, float(np.std(per_chunk, ddof=1) / math.sqrt(chunks))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", help="simulated customers (default 100k 1M)")
    ap.add_argument(
        "--ladder",
        type=int,
        nargs="+",
        help="training rows of the ladder, drawn from the largest size (default 5k..100k)",
    )
    ap.add_argument(
        "--models", nargs="+", choices=MODELS, help="run only these models (default: all five)"
    )
    ap.add_argument("--limit", type=float, help="seconds a fit may take (default 600)")
    ap.add_argument("--repeats", type=int, default=3, help="best of N for fits under 30 s")
    ap.add_argument("--shap-rows", type=int, default=100_000)
    ap.add_argument("--eval-rows", type=int, default=50_000, help="held-out sample for C-index")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="10k customers, tiny ladder, ~2 min")
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return
    quick = args.quick
    sizes = args.sizes or ([10_000] if quick else [100_000, 1_000_000])
    ladder = args.ladder or (
        [1_000, 3_000] if quick else [5_000, 10_000, 20_000, 30_000, 50_000, 100_000]
    )
    limit = args.limit or (60.0 if quick else 600.0)
    selected = [m for m in MODELS if m in (args.models or MODELS)]
    repeats = min(args.repeats, 2) if quick else args.repeats
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(
            f"[{time.perf_counter() - started:7.1f}s load {os.getloadavg()[0]:.1f}] {msg}",
            flush=True,
        )

    jobs: list[Job] = []
    infos: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_survival_") as tmp:
        work = Path(tmp)

        def run(size: int, model: str, rows: int | None, **extra: Any) -> Job:
            job = Job(size, model, rows, load=[os.getloadavg()[0]])
            spec = {
                "data": str(work / f"data_{size}"),
                "model": model,
                "rows": rows,
                "repeats": repeats,
                "seed": args.seed,
            } | extra
            job.status, job.result, job.note = run_subprocess(spec, work, limit)
            job.load.append(os.getloadavg()[0])
            jobs.append(job)
            if job.status == "ok":
                b = job.best
                log(
                    f"{size:,} customers, {model}, {job.result['n_train']:,} rows: fit "
                    f"{b['wall']:.2f}s (cpu {b['cpu']:.2f}s, best of {b['n']}), "
                    f"+{b['rss_mb']:.0f} MB, C {job.result['c_index']:.4f}"
                )
            else:
                n = f"{rows:,}" if rows else "all"
                log(f"{size:,} customers, {model}, {n} rows: {job.status} ({job.note})")
            return job

        for size in sizes:
            spec = {
                "model": "__prepare__",
                "customers": size,
                "seed": args.seed,
                "data": str(work / f"data_{size}"),
                "eval_rows": args.eval_rows,
            }
            status, infos[size], note = run_subprocess(spec, work, None)
            if status != "ok":
                raise SystemExit(f"data preparation for {size:,} customers failed:\n{note}")
            i = infos[size]
            log(
                f"{size:,} customers: {i['n_transactions']:,} transactions, {i['n_rows']:,} "
                f"active at the cutoff ({i['event_rate']:.1%} churn), {i['n_train']:,} train / "
                f"{i['n_test']:,} held-out, {len(i['columns'])} features; simulate "
                f"{i['simulate_s']:.0f}s, features {i['features_s']:.1f}s"
            )

        largest = max(sizes)
        rungs = [n for n in ladder if n <= infos[largest]["n_train"]]
        history: dict[str, list[tuple[int, float]]] = {m: [] for m in LIMITED}
        stopped: dict[str, str] = {}
        # rungs outside, models inside: models compared at one rung run minutes apart, not hours
        for rows in rungs:
            for model in selected:
                if model in stopped:
                    continue
                if model in LIMITED:
                    guess = extrapolate(history[model], rows)
                    if guess is not None and guess > limit:
                        job = Job(
                            largest,
                            model,
                            rows,
                            "skipped",
                            f"predicted {guess:.0f} s > {limit:.0f} s",
                        )
                        jobs.append(job)
                        stopped[model] = job.note
                        log(f"{model} at {rows:,} rows skipped: {job.note}")
                        continue
                job = run(largest, model, rows)
                if model in LIMITED:
                    if job.status == "ok":
                        history[model].append((rows, job.best["wall"]))
                    else:
                        stopped[model] = job.note
        data = work / f"data_{largest}"
        eval_idx = np.load(data / "eval_idx.npy")
        d_eval = np.load(data / "d_test.npy")[eval_idx]
        e_eval = np.load(data / "e_test.npy")[eval_idx]
        for rows in rungs:
            g = by_key(jobs, largest, "gbsa", rows)
            for model in ("xgb_cox", "xgb_aft"):
                x = by_key(jobs, largest, model, rows)
                ok = g and x and g.status == x.status == "ok"
                if ok and not (g.result["nonfinite_risks"] or x.result["nonfinite_risks"]):
                    diff, se = paired_c_difference(
                        d_eval, e_eval, np.load(x.result["risk"]), np.load(g.result["risk"])
                    )
                    x.result["vs_gbsa"] = {"c_difference": diff, "se": se}
        for size in sizes:
            for model in (m for m in FULL if m in selected):
                shap = args.shap_rows if size == largest and model.startswith("xgb") else 0
                run(size, model, None, shap_rows=shap)

    for j in jobs:
        j.result.pop("risk", None)  # the temporary directory is gone
    meta = machine_facts(jobs)
    print("\n" + meta + "\n")
    print(report(jobs, infos, sizes, largest, rungs, limit))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": meta,
                    "data": infos,
                    "jobs": [asdict(j) for j in jobs],
                    "limit_s": limit,
                    "ladder": rungs,
                },
                indent=1,
            )
        )
    log("done")


# --------------------------------------------------------------------------- report


def machine_facts(jobs: list[Job]) -> str:
    import lifelines
    import pandas as pd
    import shap
    import sklearn
    import sksurv
    import xgboost

    loads = [x for j in jobs for x in j.load]
    ram = f", {psutil.virtual_memory().total / 2**30:.0f} GB RAM" if psutil else ""
    return (
        f"{date.today()}, {platform.machine()}, {os.cpu_count()} cores{ram}; load average "
        f"(1 min) {min(loads):.1f}-{max(loads):.1f} during the fits; Python "
        f"{platform.python_version()}, xgboost {xgboost.__version__} (nthread={XGB_THREADS}), "
        f"scikit-survival {sksurv.__version__}, scikit-learn {sklearn.__version__}, lifelines "
        f"{lifelines.__version__}, shap {shap.__version__}, numpy {np.__version__}, pandas "
        f"{pd.__version__}"
    )


def _fit_cells(job: Job) -> str:
    if job.status != "ok":
        return f"{job.status}: {job.note}"
    b = job.best
    return f"{b['wall']:.2f} ({b['cpu']:.2f})"


def report(
    jobs: list[Job],
    infos: dict[int, dict[str, Any]],
    sizes: list[int],
    largest: int,
    rungs: list[int],
    limit: float,
) -> str:
    """Markdown tables: full-size fits, the ladder, the two targets."""
    out = []
    by = {(j.size, j.model, j.rows): j for j in jobs}
    ok = [j for j in jobs if j.status == "ok"]

    def row(j: Job, label: str) -> str:
        r = j.result
        bad = r["nonfinite_risks"]
        c_test = f"{r['c_index']:.4f}" if not bad else f"{bad:,} non-finite risks"
        return (
            f"| {label} | {r['n_train']:,} | {_fit_cells(j)} | {j.best['rss_mb']:.0f} | "
            f"{r['process_peak_mb']:.0f} | {c_test} | {r['c_index_train']:.4f} | "
            f"{r['predict_s']:.2f} | {j.load[0]:.1f} |"
        )

    head = (
        "| model | train rows | fit wall s (cpu s) | fit RSS growth MB | process peak MB "
        "| held-out C | train C | predict s | load |\n|---|---|---|---|---|---|---|---|---|"
    )
    for size in sizes:
        i = infos[size]
        out.append(
            f"**{size:,} simulated customers**: {i['n_rows']:,} active at the cutoff, "
            f"{i['n_train']:,} train / {i['n_test']:,} held-out (C-index on {i['n_eval']:,}), "
            f"{len(i['columns'])} features, churn rate {i['event_rate']:.1%}\n\n{head}"
        )
        for model in FULL:
            j = by.get((size, model, None))
            if j and j.status == "ok":
                out.append(row(j, model))
            elif j:
                out.append(f"| {model} | all | {_fit_cells(j)} | | | | | | |")
        if size == largest:
            for model in LIMITED:
                done = [j for j in ok if j.model == model]
                if done:
                    j = max(done, key=lambda j: j.rows)
                    out.append(row(j, f"{model} (largest rung within {limit:.0f} s)"))
        out.append("")

    out.append(
        f"**Ladder** (nested random subsets of the {largest:,}-customer training rows, C-index "
        f"on its {infos[largest]['n_eval']:,} held-out sample): fit wall s / held-out C\n"
    )
    out.append("| train rows | " + " | ".join(MODELS) + " |\n|---|" + "---|" * len(MODELS))
    for rows in rungs:
        cells = []
        for model in MODELS:
            j = by.get((largest, model, rows))
            if j is None:
                cells.append("-")
            elif j.status != "ok":
                cells.append(j.status)
            else:
                cells.append(f"{j.best['wall']:.2f} / {j.result['c_index']:.4f}")
        out.append(f"| {rows:,} | " + " | ".join(cells) + " |")
    for model in LIMITED:
        for j in jobs:
            if j.model == model and j.status != "ok":
                out.append(f"\n{model} stopped at {j.rows:,} rows: {j.status}, {j.note}")

    out.append(
        "\n**Target 1**: XGBSurvival >= 20x faster than GradientBoostingSurvivalAnalysis, same "
        f"trees ({TREES['n_estimators']} x depth {TREES['max_depth']}, learning rate "
        f"{TREES['learning_rate']}), at an equal or better held-out C-index\n"
    )
    out.append(
        "| train rows | xgb | GBSA wall s (cpu s) | xgb wall s (cpu s) | speed-up wall (cpu) "
        "| C GBSA | C xgb | C xgb - GBSA (se) | met |\n|---|---|---|---|---|---|---|---|---|"
    )
    for rows in rungs:
        g = by.get((largest, "gbsa", rows))
        if not g or g.status != "ok":
            continue
        for model in ("xgb_cox", "xgb_aft"):
            x = by.get((largest, model, rows))
            if not x or x.status != "ok":
                continue
            gw, xw = g.best, x.best
            speed = gw["wall"] / xw["wall"]
            if "vs_gbsa" not in x.result:  # non-finite risks: no C-index to compare
                out.append(f"| {rows:,} | {model} | | | {speed:.0f}x | | | diverged | no |")
                continue
            dc, se = x.result["vs_gbsa"]["c_difference"], x.result["vs_gbsa"]["se"]
            # "equal or better": not worse by more than two standard errors of the difference
            met = "yes" if speed >= 20 and dc >= -2 * se else "no"
            out.append(
                f"| {rows:,} | {model} | {gw['wall']:.2f} ({gw['cpu']:.2f}) | {xw['wall']:.2f} "
                f"({xw['cpu']:.2f}) | {speed:.0f}x ({gw['cpu'] / xw['cpu']:.0f}x) | "
                f"{g.result['c_index']:.4f} | {x.result['c_index']:.4f} | {dc:+.4f} ({se:.4f}) "
                f"| {met} |"
            )

    out.append("\n**Target 2**: SHAP for the held-out rows takes less time than the fit\n")
    out.append(
        "| model | rows explained | pred_contribs s | shap TreeExplainer s | fit s "
        "(train rows) | SHAP / fit | max \\|difference\\| | met |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    for model in ("xgb_cox", "xgb_aft"):
        j = by.get((largest, model, None))
        if not j or j.status != "ok" or "shap" not in j.result:
            continue
        s, fit = j.result["shap"], j.best["wall"]
        native = min(r["wall"] for r in s["xgboost"])
        tree = min(r["wall"] for r in s["shap-tree"])
        met = "yes" if max(native, tree) < fit else ("native only" if native < fit else "no")
        out.append(
            f"| {model} | {s['rows']:,} | {native:.2f} | {tree:.2f} | {fit:.2f} "
            f"({j.result['n_train']:,}) | {native / fit:.2f} / {tree / fit:.2f} | "
            f"{s['max_abs_difference']:.1e} | {met} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()
