"""Reading raw tables: CSV, Parquet or a DuckDB database table, renamed onto the contract.

This module owns getting a user's table into a pandas frame with contract column names.
It does not judge the content: CSV is read as text so that :mod:`crm_models.data.validation`
sees the raw values ("abc" in an amount column) and can report them with an example row.

Metadata for validation travels in ``DataFrame.attrs`` (pandas keeps it through copies):

- ``"source"``: the path (and table) read, for messages;
- ``"column_mapping"``: the config's ``columns`` (contract name -> user name), so a mapped
  column that is not in the file is reported naming both names;
- ``"parse_options"``: CSV options that pandas ignores on text columns but the parser of
  typed values must honour (``decimal``, ``thousands``, ``date_format``, ``dayfirst``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from crm_models.config import TableSource
from crm_models.errors import DataError

ATTR_SOURCE = "source"
ATTR_MAPPING = "column_mapping"
ATTR_PARSE_OPTIONS = "parse_options"
PARSE_OPTION_KEYS = ("decimal", "thousands", "date_format", "dayfirst")

_CSV_SUFFIXES = (".csv", ".tsv", ".txt")
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zip", ".xz", ".zst")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_DUCKDB_SUFFIXES = (".duckdb", ".db", ".ddb")


def as_source(source: TableSource | str | Path) -> TableSource:
    """A :class:`TableSource` from a source or a bare path."""
    if isinstance(source, TableSource):
        return source
    if isinstance(source, (str, Path)):
        return TableSource(path=str(source))
    raise TypeError(f"expected a TableSource, str or Path, got {type(source).__name__}")


def detect_format(source: TableSource) -> str:
    """``csv``, ``parquet`` or ``duckdb``: the given format, else from the path."""
    if source.format != "auto":
        return source.format
    path = Path(source.path)
    if path.is_dir():  # a partitioned Parquet dataset
        return "parquet"
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION_SUFFIXES:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in _CSV_SUFFIXES:
        return "csv"
    if last in _PARQUET_SUFFIXES:
        return "parquet"
    if last in _DUCKDB_SUFFIXES:
        return "duckdb"
    raise DataError(
        f"cannot tell the format of {path} (suffix {path.suffix or 'none'!r}); "
        "set format: csv, parquet or duckdb in its table source"
    )


def _read_csv(path: Path, options: dict[str, Any]) -> pd.DataFrame:
    if path.suffix.lower() == ".tsv":
        options = {"sep": "\t", **options}
    # Text first: validation must see "abc" in an amount column, not a silent NaN.
    kwargs = {"dtype": str, "keep_default_na": True, **options}
    try:
        return pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:  # a 0-byte file is an empty table, reported by validation
        return pd.DataFrame()


def _read_parquet(path: Path, options: dict[str, Any]) -> pd.DataFrame:
    return pd.read_parquet(path, engine="pyarrow", **options)


def _read_duckdb(name: str, path: Path, table: str | None, options: dict[str, Any]) -> pd.DataFrame:
    import duckdb

    if not table:
        raise DataError(
            f"table {name!r}: {path} is a DuckDB database; set `table:` to the table to read"
        )
    if options:
        raise DataError(
            f"table {name!r}: read_options {sorted(options)} are not used for a DuckDB source"
        )
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise DataError(f"table {name!r}: cannot open {path} as a DuckDB database: {exc}") from None
    try:
        try:
            rel = con.table(table)
        except duckdb.CatalogException:
            found = sorted(
                r[0] for r in con.sql("SELECT table_name FROM information_schema.tables").fetchall()
            )
            raise DataError(
                f"table {name!r}: {path} has no table {table!r}; it has {found or 'no tables'}"
            ) from None
        return rel.df()
    finally:
        con.close()


def _apply_mapping(name: str, df: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    """Rename user columns to contract names; absent user columns are left for validation."""
    rename = {
        user: contract
        for contract, user in mapping.items()
        if user != contract and user in df.columns
    }
    clash = sorted(c for u, c in rename.items() if c in df.columns and c not in rename)
    if clash:
        raise DataError(
            f"table {name!r}: the column mapping renames "
            + ", ".join(f"{mapping[c]!r} to {c!r}" for c in clash)
            + f", but the table already has a column named {clash[0]!r}; "
            "map only one of them"
        )
    return df.rename(columns=rename) if rename else df


def read_table(name: str, source: TableSource | str | Path) -> pd.DataFrame:
    """Read one raw table and rename its columns onto the contract.

    CSV is read as text (``dtype=str``; ``read_options`` go to :func:`pandas.read_csv`),
    Parquet keeps its types, a DuckDB database file (``format: duckdb`` or suffix
    ``.duckdb``/``.db``) is opened read-only and ``table`` is read from it.

    Raises:
        DataError: the file is missing or cannot be read; the message names table and path.
    """
    src = as_source(source)
    path = Path(src.path).expanduser()
    if not path.exists():
        raise DataError(f"table {name!r}: file not found: {path}")
    fmt = detect_format(src)
    options = dict(src.read_options)
    where = f"{path}" + (f" (table {src.table!r})" if fmt == "duckdb" else "")
    try:
        if fmt == "csv":
            df = _read_csv(path, options)
        elif fmt == "parquet":
            df = _read_parquet(path, options)
        else:
            df = _read_duckdb(name, path, src.table, options)
    except DataError:
        raise
    except TypeError as exc:  # an unknown read_options key
        raise DataError(f"table {name!r}: bad read_options for {fmt} file {where}: {exc}") from None
    except (OSError, ValueError, UnicodeDecodeError, ImportError) as exc:
        # pandas.errors.ParserError and pyarrow.ArrowInvalid are ValueErrors.
        raise DataError(f"table {name!r}: cannot read {fmt} file {where}: {exc}") from None
    df = _apply_mapping(name, df, dict(src.columns))
    df.attrs[ATTR_SOURCE] = where
    df.attrs[ATTR_MAPPING] = dict(src.columns)
    if fmt == "csv":
        df.attrs[ATTR_PARSE_OPTIONS] = {k: options[k] for k in PARSE_OPTION_KEYS if k in options}
    return df


def load_tables(sources: dict[str, TableSource | str | Path]) -> dict[str, pd.DataFrame]:
    """Read several tables; every table that cannot be read is named in one ``DataError``."""
    tables: dict[str, pd.DataFrame] = {}
    errors: list[str] = []
    for name, source in sources.items():
        try:
            tables[name] = read_table(name, source)
        except DataError as exc:
            errors.append(str(exc))
    if errors:
        head = "cannot read a table:" if len(errors) == 1 else f"cannot read {len(errors)} tables:"
        raise DataError("\n  ".join([head, *errors]))
    return tables
