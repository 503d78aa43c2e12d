"""Benchmark of the BTYD purchase models: crm_models' BG/NBD and Pareto/NBD vs the ``lifetimes`` package.

Owns one reproducible comparison of maximum-likelihood fits on the same frequency / recency / T
arrays, handed unchanged to both packages: ``BetaGeo().fit(summary)`` vs
``BetaGeoFitter(penalizer_coef=0).fit(frequency, recency, T)`` and ``ParetoNBD().fit(summary)``
vs ``ParetoNBDFitter(penalizer_coef=0).fit(...)`` (lifetimes 0.11.3, its default optimizers:
BFGS with autograd gradients for BG/NBD, Nelder-Mead from a random start for Pareto/NBD). Data:

- ``cdnow``: the CDNOW master file (23,570 customers), 39-week calibration, weeks
  (``btyd_summary(load_cdnow(), "1997-09-30", time_unit="W")``);
- ``bgnbd_draw`` / ``pareto_draw``: 1M customers drawn exactly from the model itself (numpy,
  continuous time, T ~ U(27, 39) weeks) at the published CDNOW estimates, so parameter recovery
  is checked against the truth;
- ``simulator``: ``crm_models.data.synthetic.simulate(1_000_000, seed=7)``, summarised at its
  observation end (day-granular times in weeks, covariates, complaints: a realistic log that
  neither model generated).

Every fit runs in a fresh subprocess of this script (``--worker``), after an untimed warm-up fit
on 2,000 customers; a lifetimes fit past ``--timeout`` seconds is killed. Runs alternate between
the packages (best of ``--repeats`` for fits under 30 s). Afterwards both packages' optima are
evaluated by BOTH log-likelihood implementations on the same data (in weeks, unpenalized totals),
so "the same log-likelihood" is checked with either one's arithmetic. Run from the repo root:

    benchmarks/.venv/bin/python benchmarks/bench_clv.py            # CDNOW + 1M x 3, ~25-40 min
    benchmarks/.venv/bin/python benchmarks/bench_clv.py --quick    # CDNOW + 100k draws, ~5 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import PeakRSS  # benchmarks/ is on sys.path when run as a script

try:
    import psutil
except ImportError:  # pragma: no cover - optional
    psutil = None

MODELS = ("bgnbd", "pareto_nbd")
PARAM_NAMES = {"bgnbd": ("r", "alpha", "a", "b"), "pareto_nbd": ("r", "alpha", "s", "beta")}
TRUTH = {
    # Fader, Hardie & Lee (2005), Marketing Science 24(2), CDNOW sample, weeks.
    "bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
    # Fader & Hardie, brucehardie.com note 009 / FHL (2005) "RFM and CLV", CDNOW sample, weeks.
    "pareto_nbd": {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669},
}
T_RANGE = (27.0, 39.0)
"""Weeks of observation of drawn customers: first purchases spread over the first 12 weeks of a
39-week calibration period, as in CDNOW."""
REPEAT_BELOW_S = 30.0
"""A fit is repeated (best of ``--repeats``) only while it takes less than this."""
WARMUP_ROWS = 2_000
SAME_LL = 0.1
"""Tolerance of the acceptance criterion "at the same log-likelihood (+-0.1)"."""
TARGET_RATIO = 10.0
CDNOW_CALIBRATION_END = "1997-09-30"


# --------------------------------------------------------------------------- data


def draw_bgnbd(n: int, params: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """``n`` customers drawn exactly from BG/NBD (FHL 2005): lambda ~ Gamma(r, alpha), p ~ Beta(a, b).

    While alive, purchases are Poisson(lambda); she drops out right after the D-th repeat
    purchase, D ~ Geometric(p) on 1, 2, ... So x = min(N(T), D) with N(T) ~ Poisson(lambda T),
    and given N(T) = n the purchase times are n uniform order statistics on [0, T]: the x-th is
    T * Beta(x, n - x + 1).
    """
    rng = np.random.default_rng(seed)
    r, alpha, a, b = (params[k] for k in PARAM_NAMES["bgnbd"])
    T = rng.uniform(*T_RANGE, n)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    n_T = rng.poisson(lam * T)
    x = np.minimum(n_T, rng.geometric(p))
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), n_T - x + 1), 0.0)
    return {"frequency": x.astype(np.int64), "recency": t_x, "T": T}


def draw_pareto_nbd(n: int, params: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """``n`` customers drawn exactly from Pareto/NBD: lambda ~ Gamma(r, alpha), mu ~ Gamma(s, beta).

    Lifetime tau ~ Exp(mu); purchases are Poisson(lambda) on [0, min(tau, T)], so x ~
    Poisson(lambda min(tau, T)) and the last of x uniform times is min(tau, T) * Beta(x, 1).
    """
    rng = np.random.default_rng(seed)
    r, alpha, s, beta = (params[k] for k in PARAM_NAMES["pareto_nbd"])
    T = rng.uniform(*T_RANGE, n)
    lam = rng.gamma(r, 1.0 / alpha, n)
    mu = rng.gamma(s, 1.0 / beta, n)
    window = np.minimum(rng.exponential(1.0, n) / mu, T)
    x = rng.poisson(lam * window)
    t_x = np.where(x > 0, window * rng.beta(np.maximum(x, 1), 1.0), 0.0)
    return {"frequency": x.astype(np.int64), "recency": t_x, "T": T}


def summary_arrays(summary: pd.DataFrame) -> dict[str, np.ndarray]:
    return {
        "frequency": summary["frequency"].to_numpy().astype(np.int64),
        "recency": summary["recency"].to_numpy(dtype=float),
        "T": summary["T"].to_numpy(dtype=float),
    }


def cdnow_arrays() -> dict[str, np.ndarray]:
    from crm_models.data.cdnow import load_cdnow
    from crm_models.features import btyd_summary

    return summary_arrays(btyd_summary(load_cdnow(), CDNOW_CALIBRATION_END, time_unit="W"))


def simulator_arrays(n: int, seed: int) -> dict[str, Any]:
    """The BTYD summary of ``simulate(n, seed)`` at its observation end (runs in a worker)."""
    from crm_models.data.synthetic import SimulationParams, simulate
    from crm_models.features import btyd_summary

    t0 = time.perf_counter()
    data = simulate(n, seed=seed)
    simulate_s = time.perf_counter() - t0
    tx = data.tables["transactions"]
    # Tables hold rows with ts < observation_end: the last full day is the day before.
    end = pd.Timestamp(SimulationParams().observation_end) - pd.Timedelta(days=1)
    t0 = time.perf_counter()
    out = summary_arrays(btyd_summary(tx, end, time_unit="W"))
    return out | {
        "info": {
            "transactions": len(tx),
            "calibration_end": str(end.date()),
            "simulate_s": simulate_s,
            "summary_s": time.perf_counter() - t0,
        }
    }


def unique_rows(d: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Distinct (frequency, recency, T) rows and their counts (lifetimes' ``weights``)."""
    rows, counts = np.unique(
        np.column_stack([d["frequency"], d["recency"], d["T"]]), axis=0, return_counts=True
    )
    out = {"frequency": rows[:, 0].astype(np.int64), "recency": rows[:, 1], "T": rows[:, 2]}
    return out, counts


# --------------------------------------------------------------------------- the two packages


def ours_class(model: str) -> type:
    from crm_models.models.clv import BetaGeo, ParetoNBD

    return {"bgnbd": BetaGeo, "pareto_nbd": ParetoNBD}[model]


def lifetimes_class(model: str) -> type:
    from lifetimes import BetaGeoFitter, ParetoNBDFitter

    return {"bgnbd": BetaGeoFitter, "pareto_nbd": ParetoNBDFitter}[model]


def as_frame(d: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({k: d[k] for k in ("frequency", "recency", "T")})


def ours_log_likelihood(model: str, d: dict[str, np.ndarray], params: dict[str, float]) -> float:
    """crm_models' total log-likelihood at ``params``, by the same steps as ``fit`` (validate,
    compress to unique rows, precompute, per-row likelihood); uses the model's private hooks, as
    the package has no public "log-likelihood at given parameters"."""
    from crm_models.models.clv.base import compress

    m = ours_class(model)()
    data = m._prepare(as_frame(d), fit=True)
    data, w = compress(data, np.ones(len(d["T"])))
    data["weights"] = w
    data = m._precompute(data)
    p = np.array([params[k] for k in PARAM_NAMES[model]], dtype=float)
    with np.errstate(all="ignore"):
        return float(w @ m._log_likelihood(p, data))


def lifetimes_log_likelihood(
    model: str, d: dict[str, np.ndarray], params: dict[str, float]
) -> float:
    """lifetimes' total log-likelihood at ``params`` (weeks, no penalizer), from its own formulas
    evaluated as its ``fit`` does, on times divided by max(T) (BG/NBD's
    ``_negative_log_likelihood``, a per-customer mean, times the customer count; Pareto/NBD's
    ``_conditional_log_likelihood`` summed), then converted to weeks.

    The rescaling matters: evaluated directly in weeks, lifetimes' Pareto/NBD log-likelihood is
    NaN for customers with t_x = T and many purchases (``_log_A_0`` subtracts two infinite
    hyp2f1 terms; 452 customers of the 1M-customer simulator), while on the rescaled times the
    same rows come out finite."""
    cls = lifetimes_class(model)
    p = np.array([params[k] for k in PARAM_NAMES[model]], dtype=float)
    x, t_x, T = d["frequency"], d["recency"], d["T"]
    scale = 1.0 / T.max()  # lifetimes.utils._scale_time
    time_params = {"bgnbd": ("alpha",), "pareto_nbd": ("alpha", "beta")}[model]
    p_scaled = p * [scale if k in time_params else 1.0 for k in PARAM_NAMES[model]]
    with np.errstate(all="ignore"):
        if model == "bgnbd":
            n = len(T)
            mean = cls._negative_log_likelihood(
                np.log(p_scaled), x, t_x * scale, T * scale, np.ones(n), 0.0
            )
            ll_scaled = -mean * n
        else:
            ll_scaled = np.sum(cls._conditional_log_likelihood(p_scaled, x, t_x * scale, T * scale))
    return float(ll_scaled - x.sum() * np.log(T.max()))


def lifetimes_objective_to_ll(
    model: str, objective: float, d: dict[str, np.ndarray], weights: np.ndarray
) -> float:
    """lifetimes' reported optimum as a total log-likelihood in weeks.

    lifetimes fits on times divided by max(T) and minimizes, for BG/NBD, -sum(w ll) / sum(w)
    and, for Pareto/NBD, -sum(w ll) / mean(w) (penalizer 0 here). Each purchase time's density
    scales by max(T) under that change of unit, so ll(weeks) = ll(scaled) - x log max(T).
    """
    norm = weights.sum() if model == "bgnbd" else weights.mean()
    return float(-objective * norm - weights @ d["frequency"] * np.log(d["T"].max()))


# --------------------------------------------------------------------------- worker


def worker(spec_path: str) -> None:
    """One job of a subprocess: ``__simulate__`` or one timed fit of one package."""
    spec = json.loads(Path(spec_path).read_text())
    if spec["package"] == "__simulate__":
        out = simulator_arrays(spec["customers"], spec["seed"])
        info = out.pop("info")
        np.savez(spec["data"], **out)
        Path(spec["out"]).write_text(json.dumps(info))
        return
    model, package = spec["model"], spec["package"]
    with np.load(spec["data"]) as z:
        d = {k: z[k] for k in z.files}
    warm = {k: v[:WARMUP_ROWS] for k, v in d.items()}
    weights = np.ones(len(d["T"]), dtype=np.int64)
    warm_weights = weights[:WARMUP_ROWS]
    if package == "lifetimes_weighted":
        d, weights = unique_rows(d)
        warm, warm_weights = unique_rows(warm)
    calls = [0]
    if package == "ours":

        def make(data: dict[str, np.ndarray], w: np.ndarray) -> Any:
            frame = as_frame(data)
            return lambda: ours_class(model)().fit(frame)

    else:
        cls = lifetimes_class(model)
        objective = cls._negative_log_likelihood

        def counted(*a: Any) -> Any:
            calls[0] += 1
            return objective(*a)

        cls._negative_log_likelihood = staticmethod(counted)

        def make(data: dict[str, np.ndarray], w: np.ndarray) -> Any:
            x, t_x, T = data["frequency"], data["recency"], data["T"]
            weighted = w if package == "lifetimes_weighted" else None

            def fit() -> Any:
                # ParetoNBDFitter starts Nelder-Mead from np.random.normal(1, 0.05): seeded.
                np.random.seed(spec["seed"])
                return cls(penalizer_coef=0.0).fit(x, t_x, T, weights=weighted)

            return fit

    make(warm, warm_weights)()  # imports, caches, autograd's first trace: not timed
    fit = make(d, weights)
    calls[0] = 0
    Path(spec["progress"]).write_text(f"start {time.time()}")
    error = None
    with PeakRSS() as rss:
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            fitted = fit()
        except Exception as exc:  # noqa: BLE001 - a failed fit is a result to report
            fitted, error = None, f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    result: dict[str, Any] = {
        "wall": wall,
        "cpu": cpu,
        "rss_mb": rss.growth_mb if psutil else None,
        "error": error,
        "rows": len(d["T"]),
        "clv_sha": clv_digest(),
    }
    if fitted is not None and package == "ours":
        conv = fitted.convergence_
        result |= {
            "params": dict(fitted.params_),
            "standard_errors": dict(fitted.standard_errors_),
            "log_likelihood": fitted.log_likelihood_,
            "evaluations": conv.function_evaluations,
            "converged": conv.success,
            "message": f"{conv.message}; max|grad| {conv.gradient_norm:.1e}",
            "rows": fitted.n_rows_,
        }
    elif fitted is not None:
        obj = float(fitted._negative_log_likelihood_)
        result |= {
            "params": {k: float(v) for k, v in fitted.params_.items()},
            "objective": obj,
            "log_likelihood": lifetimes_objective_to_ll(model, obj, d, weights),
            "evaluations": calls[0],
            "converged": None,  # ParetoNBDFitter does not check; BetaGeoFitter raises if not
        }
    Path(spec["out"]).write_text(json.dumps(result))


# --------------------------------------------------------------------------- orchestration


@dataclass
class Job:
    """Runs of one package on one model and dataset."""

    dataset: str
    model: str
    package: str
    status: str = "ok"
    """ok, killed (past the timeout), failed (the fit raised or the worker died)."""
    note: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)
    load: list[float] = field(default_factory=list)

    @property
    def done(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if not r.get("error")]

    @property
    def best(self) -> dict[str, float] | None:
        if not self.done:
            return None
        return {k: min(r[k] for r in self.done) for k in ("wall", "cpu")}

    @property
    def result(self) -> dict[str, Any] | None:
        return self.done[-1] if self.done else None


def run_worker(spec: dict[str, Any], work: Path, timeout: float | None) -> tuple[str, dict, str]:
    """Run ``--worker`` on ``spec``; kill it if its fit runs past ``timeout`` seconds."""
    tag = f"{spec['package']}_{spec.get('model', '')}_{time.monotonic_ns()}"
    spec = spec | {"out": str(work / f"{tag}.out.json"), "progress": str(work / f"{tag}.log")}
    spec_path = work / f"{tag}.json"
    spec_path.write_text(json.dumps(spec))
    Path(spec["progress"]).write_text("")
    with open(work / f"{tag}.stderr", "w+") as err:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(spec_path)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,  # ParetoNBD/BetaGeoFitter may print
            stderr=err,
        )
        while proc.poll() is None:
            time.sleep(0.2)
            words = Path(spec["progress"]).read_text().split()
            if timeout and len(words) == 2 and time.time() - float(words[1]) > timeout:
                os.killpg(proc.pid, signal.SIGKILL)  # the worker's own session only
                proc.wait()
                return "killed", {}, f"fit stopped after {timeout:.0f} s"
        err.seek(0)
        lines = err.read().strip().splitlines()
    if proc.returncode != 0:
        return "failed", {}, (lines or [f"exit code {proc.returncode}"])[-1]
    result = json.loads(Path(spec["out"]).read_text())
    if result.get("error"):
        return "failed", result, result["error"]
    return "ok", result, ""


def cross_check(d: dict[str, np.ndarray], model: str, jobs: dict[str, Job]) -> dict[str, Any]:
    """Each package's optimum evaluated by both implementations; parameter differences."""
    out: dict[str, Any] = {}
    optima = {p: j.result["params"] for p, j in jobs.items() if j.result}
    for pkg, params in optima.items():
        out[pkg] = {
            "ll_by_ours": ours_log_likelihood(model, d, params),
            "ll_by_lifetimes": lifetimes_log_likelihood(model, d, params),
            "ll_reported": jobs[pkg].result["log_likelihood"],
        }
    if "ours" in out:
        # The helper mirrors fit() through private hooks: it must reproduce fit's own value.
        o = out["ours"]
        if abs(o["ll_by_ours"] - o["ll_reported"]) > 1e-9 * abs(o["ll_reported"]):
            raise RuntimeError(f"ours_log_likelihood is out of date with fit(): {o}")
    if "ours" in optima and "lifetimes" in optima:
        a, b = out["ours"], out["lifetimes"]
        out["gap_by_ours"] = a["ll_by_ours"] - b["ll_by_ours"]
        out["gap_by_lifetimes"] = a["ll_by_lifetimes"] - b["ll_by_lifetimes"]
        out["max_rel_param_diff"] = max(
            abs(optima["ours"][k] / optima["lifetimes"][k] - 1) for k in PARAM_NAMES[model]
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, help="customers per model draw (default 1M)")
    ap.add_argument("--sim-customers", type=int, help="simulator customers (default 1M; 0: none)")
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--repeats", type=int, default=3, help="best of N for fits under 30 s")
    ap.add_argument("--timeout", type=float, help="seconds a lifetimes fit may take (default 900)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-lifetimes", action="store_true")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "bench_clv")
    ap.add_argument("--quick", action="store_true", help="CDNOW + 100k draws, no simulator")
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return
    n_draw = args.customers or (100_000 if args.quick else 1_000_000)
    n_sim = args.sim_customers if args.sim_customers is not None else (0 if args.quick else 10**6)
    timeout = args.timeout or (300.0 if args.quick else 900.0)
    packages = ["ours"] + ([] if args.no_lifetimes else ["lifetimes"])
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(
            f"[{time.perf_counter() - started:7.1f}s load {os.getloadavg()[0]:.1f}] {msg}",
            flush=True,
        )

    args.cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench_clv_") as tmp:
        work = Path(tmp)
        datasets: dict[str, dict[str, Any]] = {}

        def add(name: str, d: dict[str, np.ndarray], models: list[str], **info: Any) -> None:
            path = work / f"{name}.npz"
            np.savez(path, **d)
            n_unique = len(unique_rows(d)[1])
            datasets[name] = {"path": path, "arrays": d, "models": models, "info": info}
            info |= {"customers": len(d["T"]), "unique_rows": n_unique}
            log(
                f"{name}: {len(d['T']):,} customers, {n_unique:,} distinct (x, t_x, T), mean x "
                f"{d['frequency'].mean():.2f}, max x {d['frequency'].max()}, "
                f"{(d['frequency'] == 0).mean():.1%} with x = 0"
            )

        add("cdnow", cdnow_arrays(), list(args.models), source="CDNOW master, 39 weeks")
        tag = f"{n_draw // 1000}k" if n_draw < 10**6 else f"{n_draw / 1e6:g}M"
        if "bgnbd" in args.models:
            truth = TRUTH["bgnbd"]
            add(f"bgnbd_draw_{tag}", draw_bgnbd(n_draw, truth, args.seed), ["bgnbd"], truth=truth)
        if "pareto_nbd" in args.models:
            truth = TRUTH["pareto_nbd"]
            d = draw_pareto_nbd(n_draw, truth, args.seed)
            add(f"pareto_draw_{tag}", d, ["pareto_nbd"], truth=truth)
        if n_sim:
            from crm_models.data.synthetic import SIMULATOR_VERSION

            cache = args.cache_dir / f"simulator_{n_sim}_{args.seed}_v{SIMULATOR_VERSION}.npz"
            info: dict[str, Any] = {}
            if not cache.exists():
                log(f"simulating {n_sim:,} customers (cached in {cache})")
                spec = {"package": "__simulate__", "customers": n_sim, "seed": args.seed}
                status, info, note = run_worker(spec | {"data": str(cache)}, work, None)
                if status != "ok":
                    raise SystemExit(f"simulation failed: {note}")
                cache.with_suffix(".json").write_text(json.dumps(info))
            info = json.loads(cache.with_suffix(".json").read_text())
            with np.load(cache) as z:
                d = {k: z[k] for k in z.files}
            add(f"simulator_{tag if n_sim == n_draw else n_sim}", d, list(args.models), **info)

        jobs: list[Job] = []
        checks: dict[str, dict[str, Any]] = {}
        for name, ds in datasets.items():
            # lifetimes on the distinct rows with weights, where that saves at least half
            extra = (
                ["lifetimes_weighted"]
                if "lifetimes" in packages
                and (ds["info"]["unique_rows"] < 0.5 * ds["info"]["customers"])
                else []
            )
            for model in ds["models"]:
                group = {p: Job(name, model, p) for p in packages + extra}
                for rep in range(args.repeats):
                    for pkg, job in group.items():
                        if job.status != "ok" or (
                            job.runs and job.runs[-1]["wall"] >= REPEAT_BELOW_S
                        ):
                            continue
                        spec = {
                            "package": pkg,
                            "model": model,
                            "data": str(ds["path"]),
                            "seed": args.seed,
                        }
                        job.load.append(os.getloadavg()[0])
                        limit = None if pkg == "ours" else timeout
                        status, res, note = run_worker(spec, work, limit)
                        job.load.append(os.getloadavg()[0])
                        if status != "ok":
                            job.status, job.note = status, note
                            if res:
                                job.runs.append(res)
                            log(f"{name} {model} {pkg}: {status} ({note})")
                            continue
                        job.runs.append(res)
                        log(
                            f"{name} {model} {pkg} run {rep + 1}: {res['wall']:.2f} s wall, "
                            f"{res['cpu']:.2f} s cpu, ll {res['log_likelihood']:.3f}, "
                            f"{res['evaluations']} evaluations, params "
                            + ", ".join(f"{k} {v:.4g}" for k, v in res["params"].items())
                        )
                jobs.extend(group.values())
                if not args.no_lifetimes:
                    checks[f"{name}/{model}"] = cross_check(ds["arrays"], model, group)
                    log(f"{name} {model} cross-check: {checks[f'{name}/{model}']}")

    meta = machine_facts(jobs)
    print("\n" + meta + "\n")
    print(report(jobs, checks, datasets, timeout))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": meta,
                    "datasets": {k: v["info"] for k, v in datasets.items()},
                    "jobs": [asdict(j) for j in jobs],
                    "checks": checks,
                    "timeout_s": timeout,
                },
                indent=1,
            )
        )
    log("done")


# --------------------------------------------------------------------------- report


def source_snapshot() -> str:
    """Which crm_models was measured: git commit, and a hash of ``models/clv`` as it was on disk
    (the models are still being tuned; uncommitted edits show as ``+ local changes``)."""
    from crm_models.models import clv

    root = Path(clv.__file__).parent
    git = ["git", "-C", str(root)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head, dirty = "unknown", ""
    local = " + local changes" if dirty else ""
    return f"crm_models {head}{local}, models/clv sha256 {clv_digest()}"


def clv_digest() -> str:
    """Short hash of the ``models/clv`` sources on disk (every worker records it: another
    engineer editing them mid-run would show as two hashes)."""
    import hashlib

    from crm_models.models import clv

    digest = hashlib.sha256()
    for path in sorted(Path(clv.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def machine_facts(jobs: list[Job]) -> str:
    loads = [x for j in jobs for x in j.load] or [os.getloadavg()[0]]
    hashes = sorted({r["clv_sha"] for j in jobs if j.package == "ours" for r in j.runs})
    ram = f", {psutil.virtual_memory().total / 2**30:.0f} GB RAM" if psutil else ""
    peers = []
    for pkg in ("lifetimes", "autograd"):
        try:
            peers.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            peers.append(f"{pkg} not installed")
    import scipy

    return (
        f"{date.today()}, {platform.machine()}, {os.cpu_count()} cores{ram}; load average "
        f"(1 min) {min(loads):.1f}-{max(loads):.1f} around the fits; Python "
        f"{platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"pandas {pd.__version__}, " + ", ".join(peers) + f"; {source_snapshot()}"
        f" (hashes seen by the fits: {', '.join(hashes) or '-'})"
    )


def _cells(job: Job | None, timeout: float) -> str:
    if job is None:
        return "-"
    if job.status == "killed":
        return f"> {timeout:.0f} (killed)"
    if job.best is None:
        return f"{job.status}: {job.note[:60]}"
    b = job.best
    return f"{b['wall']:.2f} ({b['cpu']:.2f}) [{len(job.done)}]"


def report(
    jobs: list[Job], checks: dict[str, dict[str, Any]], datasets: dict[str, Any], timeout: float
) -> str:
    """Markdown tables: times and ratios, log-likelihoods by both implementations, parameters."""
    by = {(j.dataset, j.model, j.package): j for j in jobs}
    lines = [
        "Fit time: best wall s (cpu s) [runs]; ratio = lifetimes / ours, wall (cpu)",
        "",
        (
            "| data | customers (distinct rows) | model | ours | lifetimes | ratio "
            "| lifetimes, weighted distinct rows | ratio | evaluations ours / lifetimes "
            "| peak RSS growth MB ours / lifetimes |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def ratio(peer: Job | None, ours: Job | None) -> str:
        if not (peer and ours and ours.best):
            return "-"
        o = ours.best
        if peer.status == "killed":
            return f"> {timeout / o['wall']:.0f}x"
        if not peer.best:
            return "-"
        p = peer.best
        return f"{p['wall'] / o['wall']:.1f}x ({p['cpu'] / o['cpu']:.1f}x)"

    for (name, model, pkg), job in by.items():
        if pkg != "ours":
            continue
        info = datasets[name]["info"]
        lt, lw = by.get((name, model, "lifetimes")), by.get((name, model, "lifetimes_weighted"))
        lines.append(
            f"| {name} | {info['customers']:,} ({info['unique_rows']:,}) | {model} "
            f"| {_cells(job, timeout)} | {_cells(lt, timeout)} | {ratio(lt, job)} "
            f"| {_cells(lw, timeout)} | {ratio(lw, job)} | {_evals(job)} / {_evals(lt)} "
            f"| {_rss(job)} / {_rss(lt)} |"
        )
    lines += [
        "",
        (
            "Log-likelihood (total, weeks) at each package's optimum, by each implementation; "
            f"gap = ours - lifetimes optimum; same = |gap| <= {SAME_LL} under both"
        ),
        "",
        (
            "| data | model | ours' optimum: by ours / by lifetimes | lifetimes' optimum: by "
            "ours / by lifetimes | lifetimes' reported (converted) | gap by ours "
            "| gap by lifetimes | same | max param rel. diff |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, c in checks.items():
        name, model = key.split("/")
        o, lt = c.get("ours"), c.get("lifetimes")
        if not (o and lt):
            lines.append(f"| {name} | {model} | {_ll(o)} | - | - | - | - | - | - |")
            continue
        same = abs(c["gap_by_ours"]) <= SAME_LL and abs(c["gap_by_lifetimes"]) <= SAME_LL
        lines.append(
            f"| {name} | {model} | {_ll(o)} | {_ll(lt)} | {lt['ll_reported']:.3f} "
            f"| {c['gap_by_ours']:+.4f} | {c['gap_by_lifetimes']:+.4f} | {'yes' if same else 'NO'} "
            f"| {c['max_rel_param_diff']:.1e} |"
        )
    lines += ["", "Parameters (truth where the data were drawn from the model; ours +- s.e.)", ""]
    lines += ["| data | model | param | truth | ours | s.e. | z vs truth | lifetimes |"]
    lines += ["|---|---|---|---|---|---|---|---|"]
    for (name, model, pkg), job in by.items():
        if pkg != "ours" or not job.result:
            continue
        truth = datasets[name]["info"].get("truth", {})
        lt = by.get((name, model, "lifetimes"))
        for k in PARAM_NAMES[model]:
            est, se = job.result["params"][k], job.result["standard_errors"][k]
            z = f"{(est - truth[k]) / se:+.2f}" if truth else "-"
            peer = f"{lt.result['params'][k]:.5g}" if lt and lt.result else "-"
            t = f"{truth[k]:g}" if truth else "-"
            lines.append(f"| {name} | {model} | {k} | {t} | {est:.5g} | {se:.3g} | {z} | {peer} |")
    return "\n".join(lines)


def _evals(job: Job | None) -> str:
    """Evaluations on all rows; for crm_models' fits that start from a subsample's fit, that
    fit's evaluations (reported in its convergence message) in brackets."""
    if not (job and job.result):
        return "-"
    out = str(job.result["evaluations"])
    sub = re.search(r"subsample .*?, (\d+) evaluations:", job.result.get("message", ""))
    return f"{out} (+{sub.group(1)})" if sub else out


def _rss(job: Job | None) -> str:
    runs = [r["rss_mb"] for r in job.done if r.get("rss_mb") is not None] if job else []
    return f"{max(runs):.0f}" if runs else "-"


def _ll(c: dict[str, float] | None) -> str:
    if not c:
        return "-"
    return f"{c['ll_by_ours']:.3f} / {c['ll_by_lifetimes']:.3f}"


if __name__ == "__main__":
    main()
