"""Benchmark of the BTYD summary: crm_models vs one hand-written DuckDB query vs lifetimes.

Owns one reproducible, single-process comparison on simulated transactions (default 10M rows,
500k customers): (a) ``crm_models.features.btyd_summary`` (pandas in, pandas out), (b) one
hand-written DuckDB SQL query on the same pandas frame (the engine's floor), (c) lifetimes'
``summary_data_from_transaction_data(freq="D")`` scaled to weeks. The three are checked to agree
before anything is timed. Run from the repository root:

    python benchmarks/bench_features.py                  # 10M rows, best of 3
    python benchmarks/bench_features.py --rows 1000000 --customers 50000   # quick look

lifetimes is optional (``benchmarks/requirements.txt``); without it (c) is skipped.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
from collections.abc import Callable
from datetime import date
from typing import NamedTuple

import duckdb
import ibis
import numpy as np
import pandas as pd
from _common import PeakRSS  # benchmarks/ is on sys.path when run as a script

from crm_models.features import btyd_summary

try:
    import psutil
except ImportError:  # pragma: no cover - optional
    psutil = None

START = np.datetime64("2022-01-01T00:00:00", "s")
DAYS = 730
CALIBRATION_END = "2023-06-30"
OBSERVATION_END = "2023-12-31"
COLUMNS = ["frequency", "recency", "T", "monetary_value"]
HOLDOUT = ["frequency_holdout", "monetary_value_holdout", "duration_holdout"]


def simulate(rows: int, customers: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` transactions of ``customers`` customers over two years, in time order.

    Purchase counts are 1 + multinomial over gamma-distributed rates (NBD-like); each customer's
    first purchase is uniform over the first year and later ones uniform up to the end, with a
    time of day; amounts are gamma with a customer-level mean, in cents.
    """
    rng = np.random.default_rng(seed)
    rate = rng.gamma(0.8, 1.0, customers)
    counts = 1 + rng.multinomial(rows - customers, rate / rate.sum())
    cid = np.repeat(np.arange(1, customers + 1, dtype=np.int64), counts)
    span = DAYS * 86_400
    birth = rng.integers(0, span // 2, customers)[cid - 1]
    offset = birth + (rng.random(rows) * (span - birth)).astype(np.int64)
    order = np.argsort(offset, kind="stable")
    spend = rng.gamma(3.0, 10.0, customers)[cid - 1]
    return pd.DataFrame(
        {
            "customer_id": cid[order],
            "ts": (START + offset[order]).astype("datetime64[ns]"),
            "amount": np.round(rng.gamma(2.0, 1.0, rows) * spend, 2)[order],
        }
    )


# (b) The hand-written query: one statement, the shortest plan we know for these definitions.
HAND_SQL = """
WITH days AS (
    SELECT customer_id, CAST(ts AS DATE) AS day, SUM(amount) AS value
    FROM tx
    WHERE ts < DATE '{end}' + INTERVAL 1 DAY
    GROUP BY customer_id, day
)
SELECT
    customer_id,
    COUNT(*) FILTER (WHERE day <= DATE '{cal}') - 1 AS frequency,
    DATE_DIFF('day', MIN(day), MAX(day) FILTER (WHERE day <= DATE '{cal}')) / 7.0 AS recency,
    DATE_DIFF('day', MIN(day), DATE '{cal}') / 7.0 AS "T",
    CASE WHEN COUNT(*) FILTER (WHERE day <= DATE '{cal}') > 1
         THEN (SUM(value) FILTER (WHERE day <= DATE '{cal}') - ARG_MIN(value, day))
              / (COUNT(*) FILTER (WHERE day <= DATE '{cal}') - 1)
         ELSE 0.0 END AS monetary_value{holdout}
FROM days
GROUP BY customer_id
HAVING MIN(day) <= DATE '{cal}'
ORDER BY customer_id
"""
HAND_HOLDOUT = """,
    COUNT(*) FILTER (WHERE day > DATE '{cal}') AS frequency_holdout,
    COALESCE(AVG(value) FILTER (WHERE day > DATE '{cal}'), 0.0) AS monetary_value_holdout,
    DATE_DIFF('day', DATE '{cal}', DATE '{end}') / 7.0 AS duration_holdout"""


def hand_sql(con: duckdb.DuckDBPyConnection, observation_end: str | None) -> pd.DataFrame:
    holdout = (
        HAND_HOLDOUT.format(cal=CALIBRATION_END, end=observation_end) if observation_end else ""
    )
    sql = HAND_SQL.format(
        cal=CALIBRATION_END, end=observation_end or CALIBRATION_END, holdout=holdout
    )
    return con.sql(sql).df().set_index("customer_id")


def lifetimes_summary(df: pd.DataFrame) -> pd.DataFrame:
    """(c) lifetimes with daily periods, then scaled to weeks as in Fader-Hardie."""
    from lifetimes.utils import summary_data_from_transaction_data

    out = summary_data_from_transaction_data(
        df,
        "customer_id",
        "ts",
        monetary_value_col="amount",
        observation_period_end=CALIBRATION_END,
        freq="D",
    )
    out[["recency", "T"]] /= 7.0
    return out.sort_index()


class Run(NamedTuple):
    wall: float
    """Wall-clock seconds."""
    cpu: float
    """CPU seconds of the process, all threads: robust to load from other processes."""
    rss: int
    """Peak RSS growth in bytes."""


def timed(fn: Callable[[], pd.DataFrame]) -> tuple[Run, pd.DataFrame]:
    gc.collect()
    with PeakRSS() as rss:
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return Run(wall, cpu, rss.peak - rss.base), out


def check_same(got: pd.DataFrame, want: pd.DataFrame, columns: list[str], name: str) -> None:
    """Counts and durations exactly equal, money within 1e-9 relative."""
    assert got.index.equals(want.index), f"{name}: customers differ"
    for col in columns:
        g, w = got[col].to_numpy(dtype=float), want[col].to_numpy(dtype=float)
        if col.startswith("monetary"):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9, err_msg=f"{name}: {col}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"{name}: {col}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--customers", type=int, default=500_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-lifetimes", action="store_true", help="skip (c)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    df = simulate(args.rows, args.customers, args.seed)
    print(
        f"simulated {len(df):,} transactions of {df['customer_id'].nunique():,} customers "
        f"({df['ts'].min()} .. {df['ts'].max()}) in {time.perf_counter() - t0:.1f}s"
    )
    con = duckdb.connect()
    con.register("tx", df)

    cases = {
        "calibration": (None, COLUMNS),
        "calibration+holdout": (OBSERVATION_END, COLUMNS + HOLDOUT),
    }
    runs: dict[tuple[str, str], list[Run]] = {}
    outputs: dict[tuple[str, str], pd.DataFrame] = {}
    for case, (obs, cols) in cases.items():
        fns = {
            "a": lambda obs=obs: btyd_summary(df, CALIBRATION_END, obs),
            "b": lambda obs=obs: hand_sql(con, obs),
        }
        # Interleave (a) and (b) so that load from other processes hits both alike.
        for _ in range(args.repeats):
            for key, fn in fns.items():
                run, outputs[case, key] = timed(fn)
                runs.setdefault((case, key), []).append(run)
        check_same(outputs[case, "a"], outputs[case, "b"], cols, f"{case}: (a) vs (b)")
        print(f"{case}: (a) and (b) agree on {len(outputs[case, 'a']):,} customers")

    if not args.no_lifetimes:
        try:
            import lifetimes
        except ImportError:
            print("lifetimes not installed: (c) skipped")
        else:
            run, out = timed(lambda: lifetimes_summary(df))
            check_same(out, outputs["calibration", "a"], COLUMNS, "(c) lifetimes vs (a)")
            print(f"calibration: (c) lifetimes {lifetimes.__version__} agrees with (a)")
            runs["calibration", "c"] = [run]

    print(
        f"\n{date.today()}, {platform.machine()} {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}, Python {platform.python_version()}, duckdb "
        f"{duckdb.__version__}, ibis {ibis.__version__}, pandas {pd.__version__}, "
        f"numpy {np.__version__}; "
        f"{len(df):,} rows, {args.customers:,} customers; best of {args.repeats} for (a), (b)\n"
    )
    print(report(runs, list(cases)))
    for (case, key), rs in runs.items():
        print(
            f"{case} ({key}) wall: "
            + ", ".join(f"{r.wall:.2f}" for r in rs)
            + "; cpu: "
            + ", ".join(f"{r.cpu:.2f}" for r in rs)
        )


def report(runs: dict[tuple[str, str], list[Run]], cases: list[str]) -> str:
    """A markdown table: best wall and CPU seconds, ratios, peak RSS growth."""

    def best(case: str, key: str) -> Run | None:
        rs = runs.get((case, key))
        return (
            None
            if not rs
            else Run(min(r.wall for r in rs), min(r.cpu for r in rs), max(r.rss for r in rs))
        )

    lines = [
        (
            "| case | (a) btyd_summary wall s (cpu s) | (b) hand SQL wall s (cpu s) "
            "| (a)/(b) wall (cpu) | (c) lifetimes wall s (cpu s) | (c)/(a) wall (cpu) "
            "| peak RSS growth MB (a) / (b) / (c) |"
        ),
        "|---|---|---|---|---|---|---|",
    ]

    def fmt_mb(r: Run | None) -> str:
        return f"{r.rss / 2**20:.0f}" if r and psutil else "-"

    for case in cases:
        a, b, c = (best(case, k) for k in "abc")
        c_cells = (
            f"{c.wall:.2f} ({c.cpu:.2f}) | {c.wall / a.wall:.1f}x ({c.cpu / a.cpu:.1f}x)"
            if c
            else "- | -"
        )
        lines.append(
            f"| {case} | {a.wall:.2f} ({a.cpu:.2f}) | {b.wall:.2f} ({b.cpu:.2f}) "
            f"| {a.wall / b.wall:.2f} ({a.cpu / b.cpu:.2f}) | {c_cells} "
            f"| {fmt_mb(a)} / {fmt_mb(b)} / {fmt_mb(c)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
