"""Apache Spark as the feature engine (``engine: spark``): the session, tables, checks, collection.

The feature builders are Ibis expressions (``crm_models.features``), so Spark runs the *same* code
as DuckDB: this module only puts the raw tables on Spark (Parquet/CSV paths, catalog tables, or
pandas frames registered as temporary views) and wraps the session in Ibis's PySpark backend.
Nothing here imports pyspark at import time; it is the optional extra ``pip install -e
".[spark]"`` and never on the default (DuckDB) path.

Spark sessions start in UTC (``spark.sql.session.timeZone``): contract timestamps are naive
UTC, and any other session zone would shift every cutoff comparison.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from crm_models.config import SparkConfig, TableSource
from crm_models.data.contracts import CONTRACTS, ColumnKind
from crm_models.data.validation import (
    CHECK_AFTER_END,
    CHECK_AMOUNT,
    CHECK_DUPLICATE,
    CHECK_EMPTY,
    CHECK_MISSING,
    CHECK_NULL,
    CHECK_TIMESTAMP,
    CHECK_TYPE,
    DataValidationError,
    Problem,
    ValidationReport,
    _plain_value,
)
from crm_models.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

DEFAULT_MASTER = "local[*]"
MASTER_ENV = "SPARK_MASTER"

_LOCAL_DEFAULTS = {
    # a local session's shuffles are small: Spark's default 200 partitions cost more in task
    # scheduling than the work (20k customers: 7 s -> 2 s per feature table)
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}
_ALWAYS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


def require_pyspark() -> Any:
    """Import pyspark or raise a ConfigError that says how to install it."""
    try:
        import pyspark
    except ImportError:
        raise ConfigError(
            "engine 'spark' needs pyspark, the optional extra: pip install -e \".[spark]\""
        ) from None
    return pyspark


def master_url(config: SparkConfig | None = None) -> str:
    """The master: the config's, else ``$SPARK_MASTER``, else ``local[*]``."""
    if config is not None and config.master:
        return config.master
    return os.environ.get(MASTER_ENV) or DEFAULT_MASTER


def spark_session(config: SparkConfig | None = None) -> SparkSession:
    """Get or start the Spark session of ``config`` (master: :func:`master_url`).

    A session that is already running is reused (Spark allows one per process); its time zone
    is set to UTC either way.
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    config = config or SparkConfig()
    master = master_url(config)
    active = SparkSession.getActiveSession()
    if active is not None:
        active.conf.set("spark.sql.session.timeZone", "UTC")
        return active
    builder = SparkSession.builder.master(master).appName(config.app_name)
    settings = dict(_LOCAL_DEFAULTS) if master.startswith("local") else {}
    if master.startswith("local"):
        # Python workers (xgboost.spark, pandas UDFs) must run this interpreter, whose
        # environment has the package; Spark's default is whatever `python3` is on PATH
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings.update(config.conf)
    settings.update(_ALWAYS)
    for key, value in settings.items():
        builder = builder.config(key, value)
    log.info("starting Spark (%s)", master)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def backend(session: SparkSession) -> Any:
    """Ibis's PySpark backend on ``session``."""
    return ibis.pyspark.connect(session)


# --------------------------------------------------------------------------- tables


def register_frame(session: SparkSession, name: str, df: pd.DataFrame) -> ir.Table:
    """A pandas frame as a Spark temporary view ``name``, returned as an Ibis table.

    A temporary view, not ``create_table``: a managed table would be written under
    ``spark-warehouse/`` in the working directory.
    """
    from crm_models.features.engine import _microsecond_timestamps

    session.createDataFrame(_microsecond_timestamps(df)).createOrReplaceTempView(name)
    return backend(session).table(name)


def _read(session: SparkSession, name: str, src: TableSource) -> SparkDataFrame:
    from pyspark.errors import AnalysisException

    fmt = src.format
    if fmt == "spark":
        try:
            return session.table(str(src.table))
        except AnalysisException as exc:
            raise DataError(f"{name}: Spark table {src.table!r} cannot be read ({_first_line(exc)})")
    path = src.path
    if fmt == "auto":
        low = path.lower().rstrip("/")
        fmt = "csv" if low.endswith((".csv", ".csv.gz", ".txt", ".tsv")) else "parquet"
    if fmt == "duckdb":
        raise ConfigError(f"data.tables.{name}: engine 'spark' cannot read DuckDB files; use Parquet")
    options = {str(k): v for k, v in src.read_options.items()}
    if fmt == "csv":
        options.setdefault("header", True)
        if path.lower().endswith(".tsv"):
            options.setdefault("sep", "\t")
        # types come from the contract (cast below), not from a second pass over the file
        options.setdefault("inferSchema", False)
    try:
        return session.read.format(fmt).options(**options).load(path)
    except AnalysisException as exc:
        raise DataError(f"{name}: {path} cannot be read by Spark ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300]


def read_source(session: SparkSession, name: str, src: TableSource) -> ir.Table:
    """Read one raw table on Spark and map its columns onto the contract (``src.columns``)."""
    df = _read(session, name, src)
    renames = {user: contract for contract, user in src.columns.items()}
    missing = [u for u in renames if u not in df.columns]
    if missing:
        raise DataError(
            f"{name}: mapped column(s) {missing} not in {src.path or src.table} "
            f"(columns: {df.columns[:20]})"
        )
    if renames:
        df = df.withColumnsRenamed(renames)
    view = f"crm_{name}"
    df.createOrReplaceTempView(view)
    return backend(session).table(view)


# --------------------------------------------------------------------------- checks

_TS_TYPES = ("timestamp", "date")


def _typed_column(t: ir.Table, col: str, kind: ColumnKind) -> tuple[ir.Value, ir.BooleanValue | None]:
    """The column cast to its contract type, and where the cast failed (None: cannot fail)."""
    raw = t[col]
    dtype = raw.type()
    if kind == "timestamp":
        if dtype.is_timestamp() or dtype.is_date():
            return raw.cast("timestamp"), None
        parsed = raw.cast("string").try_cast("timestamp")
        return parsed, raw.notnull() & parsed.isnull()
    if kind in ("amount", "float"):
        if dtype.is_numeric():
            return raw.cast("float64"), None
        parsed = raw.cast("string").try_cast("float64")
        return parsed, raw.notnull() & parsed.isnull()
    if kind == "int":
        if dtype.is_integer():
            return raw, None
        parsed = raw.cast("string").try_cast("int64")
        return parsed, raw.notnull() & parsed.isnull()
    if kind == "id":
        if dtype.is_integer() or dtype.is_string():
            return raw, None
        return raw.cast("string"), None
    if kind == "bool":
        if dtype.is_boolean():
            return raw, None
        parsed = raw.cast("string").try_cast("boolean")
        return parsed, raw.notnull() & parsed.isnull()
    return raw, None


def check_table(
    t: ir.Table, name: str, observation_end: pd.Timestamp | None = None
) -> tuple[ir.Table | None, list[Problem], int]:
    """Check one table against its contract on the engine; return it typed, problems, row count.

    The checks of the pandas validator that scale as aggregations: missing columns, values that
    do not parse as their contract type, nulls in required columns, negative or NaN amounts,
    duplicate keys and rows after the observation end; each with a count and an example row.
    One aggregation pass per table (plus one per failed check for its example).
    """
    contract = CONTRACTS[name]
    problems: list[Problem] = []
    missing = [c for c in contract.required if c not in t.columns]
    for col in missing:
        problems.append(Problem(name, col, CHECK_MISSING,
                                f"required column not found (columns: {list(t.columns)[:20]})", 0))
    cols = {c: k for c, k in contract.columns.items() if c in t.columns}
    typed: dict[str, ir.Value] = {}
    checks: dict[str, tuple[str, str, str, ir.BooleanValue]] = {}
    for col, kind in cols.items():
        value, bad = _typed_column(t, col, kind)
        typed[col] = value
        if bad is not None:
            check = CHECK_TIMESTAMP if kind == "timestamp" else CHECK_TYPE
            checks[f"{col}:type"] = (col, check, f"not a valid {kind}", bad)
        if col in contract.required:
            checks[f"{col}:null"] = (col, CHECK_NULL, "required value is missing",
                                     t[col].isnull())
        if kind == "amount":
            v = value
            checks[f"{col}:neg"] = (col, CHECK_AMOUNT, "negative", v < 0)
            checks[f"{col}:nan"] = (col, CHECK_AMOUNT, "NaN or infinite", v.isnan() | v.isinf())
        if (observation_end is not None and kind == "timestamp"
                and col in contract.ts_columns):
            from crm_models.features.engine import lit_ts

            checks[f"{col}:late"] = (col, CHECK_AFTER_END,
                                     f"after the observation end {observation_end}",
                                     value > lit_ts(observation_end))
    aggs = {key: c[3].fill_null(False).cast("int64").sum() for key, c in checks.items()}
    aggs["__rows"] = t.count()
    counts = t.aggregate(**aggs).to_pyarrow().to_pylist()[0]
    n_rows = int(counts.pop("__rows"))
    for key, (col, check, message, cond) in checks.items():
        n = int(counts[key] or 0)
        if n:
            example = t.filter(cond.fill_null(False)).limit(1).to_pyarrow().to_pylist()[0]
            problems.append(Problem(name, col, check, f"{_rows(n)} {message}", n,
                                    {k: _plain_value(v) for k, v in example.items()}))
    key = [c for c in contract.key if c in t.columns]
    if key and len(key) == len(contract.key) and not missing:
        dups = t.group_by(key).aggregate(n=t.count()).filter(lambda d: d.n > 1)
        n_dup = int(dups.count().to_pyarrow().as_py())
        if n_dup:
            ex = dups.limit(1).to_pyarrow().to_pylist()[0]
            problems.append(Problem(name, ",".join(key), CHECK_DUPLICATE,
                                    f"{n_dup:,} key values occur more than once", n_dup,
                                    {k: _plain_value(v) for k, v in ex.items()}))
    if missing or any(p.check in (CHECK_TYPE, CHECK_TIMESTAMP) for p in problems):
        return None, problems, n_rows
    out = t.mutate(**{c: v for c, v in typed.items() if v is not t[c]}) if typed else t
    return out, problems, n_rows


def _rows(n: int) -> str:
    return f"{n:,} row is" if n == 1 else f"{n:,} rows are"


def check_tables(
    tables: Mapping[str, ir.Table],
    observation_end: pd.Timestamp | None = None,
    sources: Mapping[str, str] | None = None,
) -> dict[str, ir.Table]:
    """:func:`check_table` for each table; raise DataValidationError with every problem."""
    problems: list[Problem] = []
    counts: dict[str, int] = {}
    typed: dict[str, ir.Table] = {}
    for name, t in tables.items():
        out, found, n = check_table(t, name, observation_end)
        problems += found
        counts[name] = n
        if out is not None:
            typed[name] = out
        if n == 0:
            problems.append(Problem(name, None, CHECK_EMPTY, "the table has no rows", 0))
    report = ValidationReport(problems, counts, dict(sources or {}))
    if not report.ok:
        raise DataValidationError(report)
    return typed


# --------------------------------------------------------------------------- fingerprint and collection


def fingerprint(tables: Mapping[str, ir.Table]) -> dict[str, Any]:
    """Row counts, time ranges and an order-independent content hash per table, on Spark.

    The hash is the sum of Spark's 64-bit xxhash of every row (as DECIMAL, so no overflow): the
    same rows in any order or partitioning give the same value.
    """
    from pyspark.sql import functions as SF

    out: dict[str, Any] = {}
    for name, t in sorted(tables.items()):
        df = _spark_frame(t)
        aggs = [SF.count(SF.lit(1)).alias("rows"),
                SF.sum(SF.xxhash64(*df.columns).cast("decimal(38,0)")).alias("h")]
        ts_cols = [f.name for f in df.schema.fields
                   if f.dataType.typeName() in ("timestamp", "timestamp_ntz", "date")]
        for c in ts_cols:
            aggs += [SF.min(c).alias(f"{c}_min"), SF.max(c).alias(f"{c}_max")]
        row = df.agg(*aggs).collect()[0].asDict()
        info: dict[str, Any] = {"rows": int(row["rows"]), "columns": list(df.columns)}
        for c in ts_cols:
            info[f"{c}_min"], info[f"{c}_max"] = str(row[f"{c}_min"]), str(row[f"{c}_max"])
        info["sha256"] = hashlib.sha256(f"{row['h']}|{','.join(df.columns)}".encode()).hexdigest()
        out[name] = info
    combined = hashlib.sha256("".join(v["sha256"] for v in out.values()).encode()).hexdigest()
    return {"tables": out, "sha256": combined, "engine": "spark"}


def _spark_frame(t: ir.Table) -> SparkDataFrame:
    """The Spark DataFrame behind an Ibis expression on the PySpark backend."""
    con = t._find_backend()
    return con._session.sql(con.compile(t))


def write_parquet(t: ir.Table, path: str) -> None:
    """Write an expression's result as Parquet (a directory) from Spark, replacing ``path``."""
    _spark_frame(t).write.mode("overwrite").parquet(path)


# --------------------------------------------------------------------------- distributed xgboost

_CHUNK = 1 << 20  # booster JSON travels back to the driver in rows of at most 1 MB


class SparkBoosterTrainer:
    """Train an xgboost survival booster on Spark workers (``XGBSurvival(distributed=...)``).

    Each of ``num_workers`` barrier tasks builds a DMatrix from its partition and joins xgboost's
    collective (a Rabit tracker on the driver): histograms are all-reduced, so every worker grows
    the same trees, as in ``xgboost.spark``. Written with xgboost's public collective API
    rather than ``xgboost.spark.SparkXGBRegressor`` because that estimator cannot pass interval
    labels (``label_lower_bound`` / ``label_upper_bound``), which survival:aft needs, and
    always evaluates a training metric, which survival:cox refuses in distributed mode.

    survival:aft's loss is a sum over customers, so distributed AFT fits the same model as a
    single machine (up to the distributed quantile sketch of the histogram bins). survival:cox's
    partial likelihood is computed within each worker's rows (risk sets per partition, i.e. a
    Cox model stratified by a random partition); the task then fits the Breslow baseline on all
    training rows on the driver.
    """

    def __init__(self, num_workers: int = 0, config: SparkConfig | None = None):
        self.num_workers = num_workers
        self.config = config

    def workers(self, session: SparkSession) -> int:
        return self.num_workers or max(1, int(session.sparkContext.defaultParallelism))

    def train(
        self, params: dict[str, Any], X: Any, duration: Any, event: Any, num_boost_round: int
    ) -> Any:
        import numpy as np
        import xgboost as xgb
        from xgboost.tracker import RabitTracker

        session = spark_session(self.config)
        n_workers = self.workers(session)
        X = np.asarray(X, dtype=np.float32)
        duration = np.asarray(duration, dtype=float)
        event = np.asarray(event, dtype=bool)
        if len(X) < n_workers:
            raise DataError(f"distributed training: {len(X)} rows for {n_workers} workers")
        aft = params["objective"] == "survival:aft"
        frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
        if aft:
            frame["lower"] = duration
            frame["upper"] = np.where(event, duration, np.inf)
        else:
            frame["label"] = np.where(event, duration, -duration)
        # round-robin repartitioning: every worker gets rows, and a similar mix of them
        sdf = session.createDataFrame(frame).repartition(n_workers)
        host = session.sparkContext.getConf().get("spark.driver.host", "127.0.0.1")
        tracker = RabitTracker(n_workers=n_workers, host_ip=host, sortby="task")
        tracker.start()
        coll_args = dict(tracker.worker_args())
        worker_params = dict(params)
        worker_params.pop("eval_metric", None)  # nothing is evaluated: cox-nloglik cannot be
        n_features = X.shape[1]

        def train_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            from pyspark import BarrierTaskContext
            from xgboost.collective import CommunicatorContext

            ctx = BarrierTaskContext.get()
            chunks = list(batches)
            part = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(
                columns=[*(f"f{i}" for i in range(n_features)), "lower", "upper", "label"])
            data = part[[f"f{i}" for i in range(n_features)]].to_numpy(np.float32)
            if aft:
                dm = xgb.DMatrix(data, label_lower_bound=part["lower"].to_numpy(),
                                 label_upper_bound=part["upper"].to_numpy())
            else:
                dm = xgb.DMatrix(data, label=part["label"].to_numpy())
            ctx.barrier()
            with CommunicatorContext(dmlc_task_id=str(ctx.partitionId()), **coll_args):
                booster = xgb.train(worker_params, dm, num_boost_round=num_boost_round)
            ctx.barrier()
            if ctx.partitionId() == 0:
                raw = booster.save_raw("json").decode()
                for i in range(0, len(raw), _CHUNK):
                    yield pd.DataFrame({"i": [i], "chunk": [raw[i:i + _CHUNK]]})

        try:
            rows = (sdf.mapInPandas(train_partition, schema="i long, chunk string")
                    .rdd.barrier().mapPartitions(lambda it: it).collect())
        finally:
            tracker.free()
        raw = "".join(r["chunk"] for r in sorted(rows, key=lambda r: r["i"]))
        booster = xgb.Booster()
        booster.load_model(bytearray(raw.encode()))
        log.info("xgboost trained on %d Spark workers (%d rows)", n_workers, len(X))
        return booster


def collect(expr: ir.Table) -> pd.DataFrame:
    """An engine table in pandas, timestamps in nanoseconds as when pandas reads the files."""
    return expr.to_pyarrow().to_pandas(coerce_temporal_nanoseconds=True)


class CollectOnAccess(Mapping[str, pd.DataFrame]):
    """Engine tables seen as pandas frames, collected (once) when a task asks for one.

    Tasks that need a raw table in memory (e.g. attribution's spend table) get it; the churn
    task never asks, so on Spark only its per-customer feature table reaches the driver.
    """

    def __init__(self, tables: Mapping[str, ir.Table]):
        self._tables = dict(tables)
        self._cache: dict[str, pd.DataFrame] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._cache:
            log.info("collecting the %s table from Spark to pandas", name)
            self._cache[name] = collect(self._tables[name])
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)


__all__ = [
    "CollectOnAccess",
    "SparkBoosterTrainer",
    "backend",
    "check_table",
    "check_tables",
    "collect",
    "fingerprint",
    "master_url",
    "read_source",
    "register_frame",
    "require_pyspark",
    "spark_session",
    "write_parquet",
]
