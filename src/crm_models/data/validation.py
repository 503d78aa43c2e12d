"""Contract validation: every problem of every table at once, then typed frames.

This module owns checking raw frames (as read by :mod:`crm_models.data.sources`) against
:data:`crm_models.data.contracts.CONTRACTS` and converting valid frames to their documented
dtypes. A report names, per problem, the table, the column, how many rows and the first
offending row as it was in the file.

Why the checks are hand-written, vectorized pandas/numpy and not a pandera schema (measured
with pandera 0.35, ``lazy=True``, ``coerce=True``): when coercing a column fails, pandera keeps
the raw text and runs the column's other checks on it, so ``ge(0)`` raises ``TypeError`` and
hides the negative amount of the same column, and the bad value is reported twice (coercion and
dtype). Its failure cases also carry an index and a value, not a row. On 10M text rows pandera
took 15 s for three columns and three checks alone. Parsing each column once and deriving every
check from the parsed values reports all problems, keeps dependent checks independent per
column and costs about one parse per column.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api import types as ptypes
from pandas.tseries.api import guess_datetime_format

from crm_models.config import TableSource
from crm_models.data.contracts import CONTRACTS, ColumnKind, TableContract
from crm_models.data.sources import ATTR_MAPPING, ATTR_PARSE_OPTIONS, ATTR_SOURCE, load_tables
from crm_models.errors import DataError
from crm_models.features.engine import as_timestamp

CHECK_EMPTY = "empty table"
CHECK_MISSING = "missing column"
CHECK_DUPLICATE_COLUMN = "duplicate column"
CHECK_TYPE = "wrong type"
CHECK_TIMESTAMP = "unparseable timestamp"
CHECK_NULL = "null value"
CHECK_AMOUNT = "invalid amount"
CHECK_DUPLICATE = "duplicate key"
CHECK_UNKNOWN_CUSTOMER = "unknown customer"
CHECK_AFTER_END = "after observation end"

_PARSE_CHECKS = (CHECK_TYPE, CHECK_TIMESTAMP)
_EXAMPLE_MAX_COLUMNS = 10
_EXAMPLE_MAX_CHARS = 80

_BOOL_WORDS = {
    **dict.fromkeys(["true", "t", "yes", "y", "1", "1.0"], True),
    **dict.fromkeys(["false", "f", "no", "n", "0", "0.0"], False),
}
# An explicit UTC offset after a time of day (a bare "-01" of a date is not an offset).
_OFFSET_RE = r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)\s*$"
# The datetime64[ns] range, a day inside its ends, in days: numpy compares a year-9999 [us]
# value with a [ns] bound by converting it to ns, where it wraps around.
_TS_MIN = np.datetime64("1677-09-22", "D")
_TS_MAX = np.datetime64("2262-04-10", "D")


@dataclass(frozen=True)
class Problem:
    """One contract violation.

    ``example`` is the first offending row as ``{column: raw value}`` with its 1-based row
    number under ``"row"`` (row 1 is the first data row; in a CSV with a header, line 2).
    """

    table: str
    column: str | None
    check: str
    message: str
    n_rows: int
    example: dict[str, Any] | None = None

    def format(self) -> str:
        """One line: ``table.column  check: message, e.g. row 7: {...}``."""
        where = f"{self.table}.{self.column}" if self.column else self.table
        line = f"{where}  {self.check}: {self.message}"
        if self.example:
            values = {k: v for k, v in self.example.items() if k != "row"}
            # engines without row order (Spark) give the example row without its number
            at = f"row {self.example['row']}: " if "row" in self.example else ""
            line += f", e.g. {at}{values}"
        return line


@dataclass
class ValidationReport:
    """All problems found in a set of tables, and their row counts."""

    problems: list[Problem]
    row_counts: dict[str, int]
    sources: dict[str, str] = field(default_factory=dict)
    """Where each table was read from, when known (for the report header)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_table(self, table: str) -> list[Problem]:
        return [p for p in self.problems if p.table == table]

    def summary(self) -> str:
        """One line: ``ok: transactions 1,234 rows, customers 100 rows``."""
        counts = ", ".join(f"{t} {_plural(n, 'row')}" for t, n in self.row_counts.items())
        if self.ok:
            return f"ok: {counts}"
        tables = sorted({p.table for p in self.problems}, key=list(self.row_counts).index)
        return f"{_plural(len(self.problems), 'problem')} in {', '.join(tables)}: {counts}"

    def format(self) -> str:
        """A readable report grouped by table, one problem per line with an example row."""
        if self.ok:
            return self.summary()
        n_tables = len({p.table for p in self.problems})
        header = (f"data validation found {_plural(len(self.problems), 'problem')} "
                  f"in {_plural(n_tables, 'table')}:")
        lines = [header]
        for table, n in self.row_counts.items():
            problems = self.by_table(table)
            if not problems:
                continue
            src = self.sources.get(table)
            lines.append(f"{table} ({f'{src}, ' if src else ''}{_plural(n, 'row')})")
            lines.extend(f"  {p.format()}" for p in problems)
        ok_tables = [t for t in self.row_counts if not self.by_table(t)]
        if ok_tables:
            lines.append("no problems in: " + ", ".join(ok_tables))
        return "\n".join(lines)


class DataValidationError(DataError):
    """Tables break their contracts; ``report`` holds every problem."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.format())


# --------------------------------------------------------------------------- parsing


@dataclass
class _Parsed:
    """One column parsed once; every check of the column reads from here."""

    values: pd.Series
    """Typed values (NaN/NaT/<NA> where the raw value is null or unparseable)."""
    null: np.ndarray
    """The raw value is missing (NaN, None or blank text)."""
    bad: np.ndarray
    """The raw value is present but not of the column's kind."""
    int_ids: bool = False
    """For ``id`` columns: every id is an integer."""


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


def _rows(n: int, singular: str, plural: str) -> str:
    """``1 row is a number`` / ``3 rows are numbers``."""
    return f"{n:,} row {singular}" if n == 1 else f"{n:,} rows {plural}"


def _plain_series(raw: pd.Series) -> pd.Series:
    """numpy-backed columns pass; extension dtypes become object (NA -> None), tz stays."""
    if isinstance(raw.dtype, (np.dtype, pd.DatetimeTZDtype)):
        return raw
    obj = raw.astype(object)
    return obj.where(raw.notna().to_numpy(), None)


def _text_view(raw: pd.Series) -> pa.Array | None:
    """An Arrow string view of an object column whose present values are all text, else None.

    Arrow gives the null and blank masks and the numeric casts ~10x faster than pandas'
    per-object string methods (10M rows: 0.2 s vs 9 s for the blank check).
    """
    if raw.dtype != object:
        return None
    try:
        return pa.array(raw.to_numpy(), type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def _null_mask(raw: pd.Series, text: pa.Array | None) -> np.ndarray:
    """Missing values: NaN/None, and whitespace-only or empty text."""
    if text is not None:
        blank = pc.or_(pc.utf8_is_space(text), pc.equal(pc.binary_length(text), 0))
        return pc.fill_null(blank, True).to_numpy(zero_copy_only=False)
    null = raw.isna().to_numpy()
    if raw.dtype == object and ptypes.infer_dtype(raw, skipna=True).startswith("mixed"):
        null = null | raw.str.strip().eq("").fillna(False).to_numpy(dtype=bool)
    return null


def _ts_bounds(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """datetime64 of any unit / tz -> tz-naive ``datetime64[ns]``; out-of-range values flagged."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    if values.dtype == "datetime64[ns]":
        return values, np.zeros(len(values), dtype=bool)
    arr = values.to_numpy()
    out = ~np.isnat(arr) & ((arr < _TS_MIN) | (arr > _TS_MAX))
    arr = np.where(out, np.datetime64("NaT"), arr)
    return pd.Series(arr.astype("datetime64[ns]"), index=values.index), out


def _guess_format(value: Any, opts: dict[str, Any]) -> str | None:
    """The strptime format of one value (``dayfirst`` from the read options), or None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns when it infers day-first on its own
        return guess_datetime_format(str(value).strip(), dayfirst=bool(opts.get("dayfirst")))


def _to_datetime(s: pd.Series, fmt: str) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns on mixed offsets / inferred formats
        v = pd.to_datetime(s, format=fmt, errors="coerce", utc="%z" in fmt)
    if isinstance(v.dtype, pd.DatetimeTZDtype):
        v = v.dt.tz_convert("UTC").dt.tz_localize(None)
    return v


def _parse_iso_with_offsets(raw: pd.Series) -> pd.Series:
    """ISO 8601 text where some values carry UTC offsets: offsets -> UTC, naive kept as is.

    pandas' ISO8601 parser carries the offset of an earlier value over to later naive values
    (checked on pandas 2.3), so offset-bearing and naive text are parsed separately.
    """
    # .str gives NaN for non-text values (date objects), which are naive.
    aware = raw.str.contains(_OFFSET_RE, regex=True, na=False).fillna(False).to_numpy(dtype=bool)
    out = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
    if aware.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v = pd.to_datetime(raw[aware], format="ISO8601", errors="coerce", utc=True)
        out[aware] = v.dt.tz_convert("UTC").dt.tz_localize(None)
    if (~aware).any():
        out[~aware] = _to_datetime(raw[~aware], "ISO8601")
    return out


_DUCKDB: list[Any] = []
_DUCKDB_LOCK = threading.Lock()


def _duckdb() -> Any:
    """One in-memory DuckDB database for parsing (connecting costs ~15 ms, a cursor ~1 ms)."""
    with _DUCKDB_LOCK:
        if not _DUCKDB:
            import duckdb

            _DUCKDB.append(duckdb.connect())
        return _DUCKDB[0]


def _duckdb_timestamps(text: pa.Array, fmt: str | None = None) -> np.ndarray:
    """Text -> tz-naive ``datetime64[ns]`` in DuckDB, NaT where a value does not parse.

    ``fmt=None`` casts ISO 8601 (``2024-01-31``, ``2024-01-31 13:45[:00[.123]]``, ``T`` or
    space; offsets and zone names are converted to UTC, naive values kept); a ``fmt`` uses
    ``try_strptime``. Why DuckDB: it is strict ("2024-02-30" fails; Arrow's strptime rolls it
    over to March 1) and fast (10M ISO rows in ~1 s; pandas needs ~7 s per 1M rows with
    offsets). Raises ``duckdb.Error`` when DuckDB does not know a format directive.
    """
    if fmt is None:
        expr = "try_cast(t AS TIMESTAMPTZ)"
    else:
        expr = "try_strptime(t, '{}')".format(fmt.replace("'", "''"))
    con = _duckdb().cursor()  # a cursor is its own connection: safe across threads
    try:
        con.execute("SET TimeZone = 'UTC'")  # naive text stays wall time
        con.register("raw_text", pa.table({"t": text}))
        # DuckDB preserves row order for a plain projection (preserve_insertion_order).
        rel = con.sql(f"SELECT {expr} AS ts FROM raw_text")
        to_arrow = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
        col = to_arrow().column("ts")
    finally:
        con.close()
    if getattr(col.type, "tz", None):
        col = col.cast(pa.timestamp(col.type.unit, tz="UTC")).cast(pa.timestamp(col.type.unit))
    values, _ = _ts_bounds(pd.Series(col.to_numpy(zero_copy_only=False)))
    return values.to_numpy()


def _pandas_timestamps(raw: pd.Series, null: np.ndarray, opts: dict[str, Any]) -> pd.Series:
    """Python date/datetime objects (or mixed objects): ISO 8601, then one guessed format."""
    present = raw.where(~null, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = pd.to_datetime(present, format="ISO8601", errors="coerce")
    if values.dtype != "datetime64[ns]":  # some values carry offsets
        values = _parse_iso_with_offsets(present)
    residual = values.isna().to_numpy() & ~null
    if residual.any():
        guess = _guess_format(raw[residual].iloc[0], opts)
        if guess:
            values = values.copy()
            values[residual] = _to_datetime(raw[residual], guess)
    if values.dtype != "datetime64[ns]":
        values, _ = _ts_bounds(values)
    return values


def _text_timestamps(raw: pd.Series, null: np.ndarray, text: pa.Array,
                     opts: dict[str, Any]) -> np.ndarray:
    import duckdb

    fmt = opts.get("date_format")
    try:
        if fmt:
            return _duckdb_timestamps(text, fmt)
        out = _duckdb_timestamps(text)
        residual = np.isnat(out) & ~null
        if residual.any():
            # One non-ISO format per column, guessed from its first non-ISO value; no
            # per-value guessing (dateutil would read "5" as a date).
            idx = np.flatnonzero(residual)
            guess = _guess_format(raw.iat[idx[0]], opts)
            if guess:
                out[idx] = _duckdb_timestamps(text.take(pa.array(idx)), guess)
        return out
    except duckdb.Error:  # a directive DuckDB does not know: pandas, slower but complete
        if fmt:
            values = _to_datetime(raw.where(~null, None), fmt)
            return _ts_bounds(values)[0].to_numpy()
        return _pandas_timestamps(raw, null, opts).to_numpy()


def _parse_timestamp(
    raw: pd.Series, null: np.ndarray, text: pa.Array | None, opts: dict[str, Any]
) -> _Parsed:
    if ptypes.is_datetime64_any_dtype(raw.dtype):
        values, bad = _ts_bounds(raw)
        return _Parsed(values, null, bad)
    if raw.dtype != object:  # numbers or bools: epoch units are ambiguous, so not accepted
        values = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
        return _Parsed(values, null, ~null)
    if text is None:  # date/datetime objects
        values = _pandas_timestamps(raw, null, opts)
    else:
        values = pd.Series(_text_timestamps(raw, null, text, opts), index=raw.index)
    return _Parsed(values, null, values.isna().to_numpy() & ~null)


def _parse_number(
    raw: pd.Series, null: np.ndarray, text: pa.Array | None, kind: ColumnKind,
    opts: dict[str, Any],
) -> _Parsed:
    if ptypes.is_bool_dtype(raw.dtype) or ptypes.is_numeric_dtype(raw.dtype):
        values = raw.astype("float64")
        bad = np.zeros(len(raw), dtype=bool)
    elif raw.dtype != object:  # datetimes are not numbers
        values = pd.Series(np.nan, index=raw.index)
        bad = ~null
    else:
        thousands, decimal = opts.get("thousands"), opts.get("decimal")
        if text is not None and (thousands or (decimal and decimal != ".")):
            # read_csv ignores these on text columns, so apply them here.
            if thousands:
                text = pc.replace_substring(text, thousands, "")
            if decimal and decimal != ".":
                text = pc.replace_substring(text, decimal, ".")
            raw = pd.Series(text.to_numpy(zero_copy_only=False), index=raw.index)
        values = None
        if text is not None:
            try:  # fast path: every value parses
                values = pd.Series(
                    pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False), index=raw.index
                )
            except pa.ArrowInvalid:
                pass
        if values is None:
            values = pd.to_numeric(raw.where(~null, None), errors="coerce").astype("float64")
        bad = values.isna().to_numpy() & ~null
    values = values.where(~null)
    if kind == "int":
        arr = values.to_numpy()
        bad = bad | (np.isfinite(arr) & (arr != np.floor(arr))) | np.isinf(arr)
    return _Parsed(values, null, bad)


def _parse_bool(raw: pd.Series, null: np.ndarray) -> _Parsed:
    if ptypes.is_bool_dtype(raw.dtype):
        return _Parsed(raw.astype(object), null, np.zeros(len(raw), dtype=bool))
    if ptypes.is_numeric_dtype(raw.dtype):
        ok = raw.isin([0, 1]).to_numpy()
        values = raw.astype(object).where(ok, None).map({0: False, 1: True, None: None})
        return _Parsed(values, null, ~null & ~ok)
    # Few distinct values: map the uniques, then broadcast back through the codes.
    codes, uniques = pd.factorize(raw.where(~null, None), use_na_sentinel=True)
    keys = pd.Index(uniques, dtype=object).astype(str).str.strip().str.lower()
    mapped = np.append(np.asarray(keys.map(_BOOL_WORDS), dtype=object), None)
    values = pd.Series(mapped[codes], index=raw.index, dtype=object)
    values = values.where(values.notna(), None)
    return _Parsed(values, null, values.isna().to_numpy() & ~null)


def _int_series(ints: np.ndarray, null: np.ndarray, index: pd.Index) -> pd.Series:
    """int64 values at the non-null positions -> int64 (no nulls) or Int64 series."""
    if not null.any():
        return pd.Series(ints, index=index, dtype="int64")
    full = np.zeros(len(null), dtype="int64")
    full[~null] = ints
    return pd.Series(pd.arrays.IntegerArray(full, null.copy()), index=index)


def _parse_id(raw: pd.Series, null: np.ndarray, text: pa.Array | None) -> _Parsed:
    no_bad = np.zeros(len(raw), dtype=bool)
    if ptypes.is_integer_dtype(raw.dtype):
        return _Parsed(raw.astype("int64"), null, no_bad, int_ids=True)
    if ptypes.is_float_dtype(raw.dtype):
        arr = raw.to_numpy()
        bad = ~null & ~(np.isfinite(arr) & (arr == np.floor(arr)))
        ints = np.where(null | bad, 0, arr).astype("int64")
        return _Parsed(_int_series(ints[~(null | bad)], null | bad, raw.index), null, bad,
                       int_ids=True)
    if raw.dtype != object:  # bools, datetimes are not ids
        return _Parsed(pd.Series(None, index=raw.index, dtype=object), null, ~null)
    ints = None
    if text is not None:
        try:  # fast path: integer ids written as text
            ints = pc.cast(pc.filter(text, pa.array(~null)), pa.int64()).to_numpy()
        except pa.ArrowInvalid:
            pass
    if ints is None:
        try:  # "+12", " 12", Python ints in an object column
            ints = raw[~null].astype("int64").to_numpy()
        except (ValueError, TypeError, OverflowError):
            pass
    if ints is not None:
        return _Parsed(_int_series(ints, null, raw.index), null, no_bad, int_ids=True)
    return _parse_text(raw, null, text)


def _parse_text(raw: pd.Series, null: np.ndarray, text: pa.Array | None) -> _Parsed:
    if text is None:
        raw = raw.map(str, na_action="ignore")
    return _Parsed(raw.where(~null, None), null, np.zeros(len(raw), dtype=bool))


def _parse(raw: pd.Series, kind: ColumnKind, opts: dict[str, Any]) -> _Parsed:
    raw = _plain_series(raw)
    text = _text_view(raw)
    null = _null_mask(raw, text)
    if kind == "timestamp":
        return _parse_timestamp(raw, null, text, opts)
    if kind in ("amount", "float", "int"):
        return _parse_number(raw, null, text, kind, opts)
    if kind == "bool":
        return _parse_bool(raw, null)
    if kind == "id":
        return _parse_id(raw, null, text)
    return _parse_text(raw, null, text)


_TYPE_MESSAGES: dict[str, tuple[str, str]] = {
    "id": ("is not an integer or text id", "are not integer or text ids"),
    "amount": ("is not a number", "are not numbers"),
    "float": ("is not a number", "are not numbers"),
    "int": ("is not a whole number", "are not whole numbers"),
    "bool": (
        "is not a boolean (true/false, yes/no, 1/0)",
        "are not booleans (true/false, yes/no, 1/0)",
    ),
    "timestamp": (
        "is not a date/time between 1677 and 2262", "are not dates/times between 1677 and 2262"
    ),
}


# --------------------------------------------------------------------------- checks


def _plain_value(x: Any) -> Any:
    if x is None or (np.ndim(x) == 0 and not isinstance(x, str) and pd.isna(x)):
        return None
    if isinstance(x, pd.Timestamp):
        return str(x)
    if isinstance(x, (datetime, date)):
        return x.isoformat(sep=" ") if isinstance(x, datetime) else x.isoformat()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, str) and len(x) > _EXAMPLE_MAX_CHARS:
        return x[: _EXAMPLE_MAX_CHARS - 3] + "..."
    return x


@dataclass
class _TableCheck:
    """The problems of one table and its parsed contract columns."""

    name: str
    df: pd.DataFrame
    contract: TableContract
    problems: list[Problem] = field(default_factory=list)
    parsed: dict[str, _Parsed] = field(default_factory=dict)

    def example(self, pos: int, column: str | None = None) -> dict[str, Any]:
        cols = list(self.df.columns)
        if len(cols) > _EXAMPLE_MAX_COLUMNS:
            wanted = set(self.contract.columns) | {column}
            keep = [j for j, c in enumerate(cols) if c in wanted][:_EXAMPLE_MAX_COLUMNS]
        else:
            keep = list(range(len(cols)))
        row: dict[str, Any] = {"row": int(pos) + 1}
        for j in keep:
            if cols[j] != "row":
                row.setdefault(str(cols[j]), _plain_value(self.df.iat[pos, j]))
        return row

    def add(self, column: str | None, check: str, message: str, mask: np.ndarray | None = None,
            n_rows: int | None = None, pos: int | None = None) -> None:
        if mask is not None:
            n_rows = int(mask.sum())
            if n_rows == 0:
                return
            pos = int(np.argmax(mask)) if pos is None else pos
        example = self.example(pos, column) if pos is not None and len(self.df) else None
        self.problems.append(
            Problem(self.name, column, check, message, int(n_rows or 0), example)
        )


def _check_columns(tc: _TableCheck) -> None:
    df, contract = tc.df, tc.contract
    mapping: dict[str, str] = df.attrs.get(ATTR_MAPPING) or {}
    has = ", ".join(map(str, df.columns)) if len(df.columns) else "no columns"
    first = 0 if len(df) else None
    for col in contract.columns:
        if col in df.columns:
            continue
        user = mapping.get(col)
        if user is not None and user != col:
            msg = (f"{col!r} is mapped to column {user!r} (columns.{col}), which is not in the "
                   f"table; it has: {has}")
        elif col in contract.required:
            msg = (f"required column {col!r} is missing; the table has: {has} "
                   f"(if yours has another name, map it: columns: {{{col}: <your column>}})")
        else:
            continue
        tc.add(col, CHECK_MISSING, msg, n_rows=len(df), pos=first)


def _check_values(tc: _TableCheck, opts: dict[str, Any]) -> None:
    df, contract = tc.df, tc.contract
    for col, kind in contract.columns.items():
        if col not in df.columns:
            continue
        raw = df[col]
        if isinstance(raw, pd.DataFrame):  # the same name twice
            tc.add(col, CHECK_DUPLICATE_COLUMN,
                   f"the table has {raw.shape[1]} columns named {col!r}; the first is used",
                   n_rows=len(df), pos=0)
            raw = raw.iloc[:, 0]
        p = tc.parsed[col] = _parse(raw, kind, opts)
        one, many = _TYPE_MESSAGES.get(kind, ("is invalid", "are invalid"))
        check = CHECK_TIMESTAMP if kind == "timestamp" else CHECK_TYPE
        hint = ("; expected ISO 8601 (2024-01-31, 2024-01-31 13:45:00, ...+02:00) or one "
                "format for the whole column (set read_options.date_format)"
                if kind == "timestamp" else "")
        tc.add(col, check, _rows(int(p.bad.sum()), one, many) + hint, mask=p.bad)
        if col in contract.required:
            tc.add(col, CHECK_NULL,
                   _rows(int(p.null.sum()), "has no value", "have no value") + " (empty or NaN)",
                   mask=p.null)
        if kind == "amount":
            arr = p.values.to_numpy()
            neg = arr < 0
            inf = np.isinf(arr)
            n_neg, n_inf = int(neg.sum()), int(inf.sum())
            if n_neg and n_inf:
                what = f"negative or infinite ({n_neg:,} negative, {n_inf:,} infinite)"
            else:
                what = "negative" if n_neg else "infinite"
            tc.add(col, CHECK_AMOUNT, _rows(int((neg | inf).sum()), "is", "are") + f" {what}",
                   mask=neg | inf)


def _check_key(tc: _TableCheck) -> None:
    key = tc.contract.key
    if not key or not all(k in tc.parsed for k in key):
        return
    valid = np.ones(len(tc.df), dtype=bool)
    for k in key:
        valid &= ~(tc.parsed[k].null | tc.parsed[k].bad)
    pos = np.flatnonzero(valid)
    if len(key) == 1:
        frame: pd.Series | pd.DataFrame = tc.parsed[key[0]].values.iloc[pos]
    else:
        frame = pd.DataFrame({k: tc.parsed[k].values.iloc[pos].to_numpy() for k in key})
    repeat = frame.duplicated(keep="first").to_numpy()
    if not repeat.any():
        return
    involved = frame.duplicated(keep=False).to_numpy()
    n_all, n_keys = int(involved.sum()), int(involved.sum() - repeat.sum())
    r = int(np.argmax(repeat))
    if isinstance(frame, pd.Series):
        same = (frame.to_numpy() == frame.iat[r])
    else:
        same = (frame == frame.iloc[r]).all(axis=1).to_numpy()
    s = int(np.argmax(same))
    names = ", ".join(key)
    msg = (f"{_plural(n_all, 'row')} share {_plural(n_keys, 'duplicated key')} ({names}); "
           f"row {pos[r] + 1} repeats row {pos[s] + 1}")
    mask = np.zeros(len(tc.df), dtype=bool)
    mask[pos[involved]] = True
    tc.add(",".join(key) if len(key) > 1 else key[0], CHECK_DUPLICATE, msg, mask=mask,
           pos=int(pos[r]))


def _check_after_end(tc: _TableCheck, end: pd.Timestamp) -> None:
    for col in tc.contract.ts_columns:
        if col not in tc.parsed:
            continue
        values = tc.parsed[col].values
        after = (values > end).to_numpy()
        if after.any():
            latest = values[after].max()
            tc.add(col, CHECK_AFTER_END,
                   _rows(int(after.sum()), "is", "are")
                   + f" after the observation end {end} (latest {latest})", mask=after)


def _id_keys(p: _Parsed, as_text: bool) -> pd.Series:
    if not as_text:
        return p.values
    return p.values.astype(str) if p.int_ids else p.values


def _check_unknown_customers(checks: dict[str, _TableCheck]) -> None:
    customers = checks.get("customers")
    if customers is None or "customer_id" not in customers.parsed:
        return
    cust = customers.parsed["customer_id"]
    cvalid = ~(cust.null | cust.bad)
    for tc in checks.values():
        if not tc.contract.references_customers or "customer_id" not in tc.parsed:
            continue
        child = tc.parsed["customer_id"]
        valid = ~(child.null | child.bad)
        as_text = not (child.int_ids and cust.int_ids)
        known_ids = _id_keys(cust, as_text)[cvalid]
        ids = _id_keys(child, as_text)
        unknown = valid & ~ids.isin(known_ids).to_numpy()
        if unknown.any():
            n_ids = int(pd.unique(ids[unknown]).size)
            tc.add("customer_id", CHECK_UNKNOWN_CUSTOMER,
                   _rows(int(unknown.sum()), "belongs", "belong")
                   + f" to {_plural(n_ids, 'customer_id')} not in the customers table",
                   mask=unknown)


def _check_tables(
    tables: dict[str, pd.DataFrame], observation_end: Any = None
) -> tuple[ValidationReport, dict[str, _TableCheck]]:
    unknown = sorted(set(tables) - set(CONTRACTS))
    if unknown:
        raise DataError(f"unknown table(s) {unknown}; expected some of {sorted(CONTRACTS)}")
    end = as_timestamp(observation_end)
    checks: dict[str, _TableCheck] = {}
    for name, df in tables.items():
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"table {name!r}: expected a pandas DataFrame, got {type(df).__name__}")
        tc = checks[name] = _TableCheck(name, df, CONTRACTS[name])
        if len(df) == 0:
            tc.add(None, CHECK_EMPTY, "the table has no rows", n_rows=0)
        _check_columns(tc)
        if len(df) == 0:
            continue
        _check_values(tc, df.attrs.get(ATTR_PARSE_OPTIONS) or {})
        _check_key(tc)
        if end is not None:
            _check_after_end(tc, end)
    _check_unknown_customers(checks)
    report = ValidationReport(
        problems=[p for tc in checks.values() for p in tc.problems],
        row_counts={name: len(df) for name, df in tables.items()},
        sources={n: str(df.attrs[ATTR_SOURCE]) for n, df in tables.items()
                 if df.attrs.get(ATTR_SOURCE)},
    )
    return report, checks


def validate_tables(
    tables: dict[str, pd.DataFrame], observation_end: str | datetime | pd.Timestamp | None = None
) -> ValidationReport:
    """Check raw frames against their contracts and report every problem at once.

    Checks: empty table, missing required column (or a mapped column absent), wrong type,
    unparseable timestamp, null required value, negative or infinite amount, duplicate key,
    rows for customers not in ``customers`` (when given) and rows after ``observation_end``
    (when given). A missing or unparseable column only skips the checks that need it.
    """
    report, _ = _check_tables(tables, observation_end)
    return report


def _typed(p: _Parsed, kind: ColumnKind) -> pd.Series:
    v = p.values
    if kind == "timestamp" or kind in ("amount", "float"):
        return v
    has_na = bool(v.isna().any())
    if kind == "int":
        return v.astype("Int64") if has_na else v.astype("int64")
    if kind == "bool":
        return v.astype("boolean") if has_na else v.astype(bool)
    if kind == "id" and p.int_ids:
        return v.astype("Int64") if has_na else v.astype("int64")
    return v  # text: object holding str, None where missing


def _typed_frames(checks: dict[str, _TableCheck]) -> dict[str, pd.DataFrame]:
    out: dict[str, pd.DataFrame] = {}
    for name, tc in checks.items():
        df = tc.df
        if df.columns.duplicated().any():
            df = df.loc[:, ~df.columns.duplicated()]
        typed = {col: _typed(p, tc.contract.columns[col]) for col, p in tc.parsed.items()}
        out[name] = df.assign(**typed) if typed else df.copy(deep=False)
    return out


def coerce_tables(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Typed frames for validated tables.

    Timestamps become tz-naive ``datetime64[ns]`` (offsets converted to UTC), amounts and
    floats ``float64``, ints ``int64`` (``Int64`` with nulls), bools ``bool`` (``boolean``
    with nulls), ids ``int64`` when every id is an integer (``Int64`` with nulls) else ``str``
    (object), text ``str`` (object). Other columns pass unchanged.

    Raises:
        DataValidationError: a value cannot be converted (call :func:`validate_tables` first).
    """
    report, checks = _check_tables(tables)
    parse_problems = [p for p in report.problems if p.check in _PARSE_CHECKS]
    if parse_problems:
        raise DataValidationError(
            ValidationReport(parse_problems, report.row_counts, report.sources)
        )
    return _typed_frames(checks)


def load_and_validate(
    sources: dict[str, TableSource | str | Path],
    observation_end: str | datetime | pd.Timestamp | None = None,
) -> dict[str, pd.DataFrame]:
    """Read, validate and type several tables.

    Raises:
        DataError: a table cannot be read.
        DataValidationError: any contract problem; its message is ``report.format()``.
    """
    tables = load_tables(sources)
    report, checks = _check_tables(tables, observation_end)
    if not report.ok:
        raise DataValidationError(report)
    return _typed_frames(checks)
