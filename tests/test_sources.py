"""Reading raw tables from CSV, Parquet and DuckDB files, and mapping user column names."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from crm_models.config import DataConfig, TableSource
from crm_models.data.sources import load_tables, read_table
from crm_models.data.validation import (
    CHECK_EMPTY,
    CHECK_MISSING,
    coerce_tables,
    load_and_validate,
    validate_tables,
)
from crm_models.errors import DataError


def test_csv_is_read_as_text_so_validation_sees_raw_values(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("customer_id,ts,amount\n007,2024-01-05,12.50\n8,,abc\n")
    df = read_table("transactions", path)
    assert df["customer_id"].tolist() == ["007", "8"]
    assert df["amount"].tolist() == ["12.50", "abc"]
    assert df["ts"].isna().tolist() == [False, True]  # empty cells are missing, not ""


def test_semicolon_csv_with_user_headers_maps_and_validates_clean(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "Customer ID;Date;Value\n"
        "1;2024-01-05;12,50\n"
        "2;2024-01-06;1.234,00\n"
        "1;2024-02-01;0,99\n"
    )
    raw = DataConfig.model_validate({
        "source": "files",
        "tables": {"transactions": {
            "path": str(path),
            "columns": {"customer_id": "Customer ID", "ts": "Date", "amount": "Value"},
            "read_options": {"sep": ";", "decimal": ",", "thousands": "."},
        }},
    })
    df = read_table("transactions", raw.tables["transactions"])
    assert list(df.columns) == ["customer_id", "ts", "amount"]

    report = validate_tables({"transactions": df})
    assert report.ok, report.format()
    typed = load_and_validate(raw.tables)["transactions"]
    assert typed["amount"].tolist() == [12.5, 1234.0, 0.99]
    assert typed["customer_id"].tolist() == [1, 2, 1]
    expected = pd.to_datetime(["2024-01-05", "2024-01-06", "2024-02-01"])
    assert typed["ts"].tolist() == expected.tolist()


def test_mapped_column_absent_from_file_is_a_missing_column_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("Kunde,Datum,Betrag\n1,2024-01-05,3\n")
    src = TableSource(path=str(path), columns={"customer_id": "Kundennr", "ts": "Datum",
                                               "amount": "Betrag"})
    report = validate_tables({"transactions": read_table("transactions", src)})
    (p,) = report.problems
    assert (p.table, p.column, p.check) == ("transactions", "customer_id", CHECK_MISSING)
    assert p.n_rows == 1
    assert "'customer_id' is mapped to column 'Kundennr'" in p.message
    assert "it has: Kunde, ts, amount" in p.message
    assert p.example == {"row": 1, "Kunde": "1", "ts": "2024-01-05", "amount": "3"}


def test_mapping_onto_an_existing_column_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("customer_id,cid,ts,amount\n1,1,2024-01-05,3\n")
    src = TableSource(path=str(path), columns={"customer_id": "cid"})
    with pytest.raises(DataError, match="already has a column named 'customer_id'"):
        read_table("transactions", src)


def test_parquet_keeps_types(tmp_path: Path) -> None:
    path = tmp_path / "tx.parquet"
    pd.DataFrame({
        "cust": np.array([1, 2, 2], dtype="int64"),
        "ts": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 00:00", "2024-01-03 00:00"],
                             utc=True),
        "amount": [1.5, 2.0, 0.0],
    }).to_parquet(path)
    df = read_table("transactions", TableSource(path=str(path), columns={"customer_id": "cust"}))
    assert df["customer_id"].dtype == "int64" and df["amount"].dtype == "float64"
    assert isinstance(df["ts"].dtype, pd.DatetimeTZDtype)
    typed = load_and_validate({"transactions": TableSource(path=str(path),
                                                           columns={"customer_id": "cust"})})
    assert typed["transactions"]["ts"].dtype == "datetime64[ns]"
    assert typed["transactions"]["ts"].iloc[0] == pd.Timestamp("2024-01-01 10:00")


def _duckdb_file(path: Path) -> Path:
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE orders AS SELECT * FROM (VALUES "
        "(1, TIMESTAMP '2024-01-05 10:00:00', 12.50::DECIMAL(10, 2), 'web'), "
        "(2, TIMESTAMP '2024-01-06 11:00:00', 3.00::DECIMAL(10, 2), 'app')) "
        "AS t(client, bought_at, total, channel)"
    )
    con.execute("CREATE TABLE clients AS SELECT * FROM (VALUES (1, DATE '2023-01-01'), "
                "(2, DATE '2023-06-01')) AS t(client, since)")
    con.close()
    return path


def test_duckdb_table_source_reads_read_only_and_validates(tmp_path: Path) -> None:
    db = _duckdb_file(tmp_path / "shop.duckdb")
    sources = {
        "transactions": TableSource(path=str(db), table="orders", columns={
            "customer_id": "client", "ts": "bought_at", "amount": "total"}),
        "customers": TableSource(path=str(db), format="duckdb", table="clients",
                                 columns={"customer_id": "client", "signup_ts": "since"}),
    }
    # Another read-only connection is open: a read-write open of the same file would be refused.
    other_reader = duckdb.connect(str(db), read_only=True)
    tables = load_tables(sources)
    other_reader.close()
    assert tables["transactions"]["amount"].tolist() == [12.5, 3.0]
    assert validate_tables(tables).ok
    typed = load_and_validate(sources)
    assert typed["customers"]["signup_ts"].dtype == "datetime64[ns]"
    assert typed["transactions"]["customer_id"].dtype == "int64"


def test_duckdb_source_errors_name_the_table(tmp_path: Path) -> None:
    db = _duckdb_file(tmp_path / "shop.db")
    with pytest.raises(DataError, match=r"has no table 'nope'; it has \['clients', 'orders'\]"):
        read_table("transactions", TableSource(path=str(db), table="nope"))
    with pytest.raises(DataError, match="set `table:`"):
        read_table("transactions", db)
    bad = tmp_path / "bad.duckdb"
    bad.write_text("not a database")
    with pytest.raises(DataError, match="cannot open .* as a DuckDB database"):
        read_table("transactions", TableSource(path=str(bad), table="orders"))


def test_missing_files_name_table_and_path_all_at_once(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_tables({"transactions": tmp_path / "tx.csv", "customers": tmp_path / "c.parquet"})
    text = str(err.value)
    assert text.startswith("cannot read 2 tables:")
    assert f"table 'transactions': file not found: {tmp_path / 'tx.csv'}" in text
    assert f"table 'customers': file not found: {tmp_path / 'c.parquet'}" in text


def test_unknown_suffix_and_bad_read_options_are_data_errors(tmp_path: Path) -> None:
    odd = tmp_path / "tx.xlsx"
    odd.write_text("x")
    with pytest.raises(DataError, match="cannot tell the format .* set format"):
        read_table("transactions", odd)
    csv = tmp_path / "tx.csv"
    csv.write_text("a\n1\n")
    with pytest.raises(DataError, match="bad read_options"):
        read_table("transactions", TableSource(path=str(csv), read_options={"sepp": ";"}))


def test_explicit_format_and_tsv(tmp_path: Path) -> None:
    path = tmp_path / "tx.data"
    path.write_text("customer_id\tts\tamount\n1\t2024-01-05\t3\n")
    df = read_table("transactions", TableSource(path=str(path), format="csv",
                                                read_options={"sep": "\t"}))
    assert df.to_dict("records") == [{"customer_id": "1", "ts": "2024-01-05", "amount": "3"}]
    tsv = tmp_path / "tx.tsv"
    tsv.write_text(path.read_text())
    assert read_table("transactions", tsv).equals(df)


def test_empty_files_are_reported_not_raised(tmp_path: Path) -> None:
    zero = tmp_path / "zero.csv"
    zero.write_text("")
    header = tmp_path / "header.csv"
    header.write_text("customer_id,signup_ts\n")
    report = validate_tables(load_tables({"transactions": zero, "customers": header}))
    checks = {(p.table, p.check, p.column) for p in report.problems}
    assert checks == {
        ("transactions", CHECK_EMPTY, None),
        ("transactions", CHECK_MISSING, "customer_id"),
        ("transactions", CHECK_MISSING, "ts"),
        ("transactions", CHECK_MISSING, "amount"),
        ("customers", CHECK_EMPTY, None),
    }


def test_date_format_read_option_parses_non_iso_dates(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id|since|score\n1|15.03.2024|x\n")
    src = TableSource(path=str(path), columns={"customer_id": "id", "signup_ts": "since"},
                      read_options={"sep": "|", "date_format": "%d.%m.%Y"})
    typed = coerce_tables({"customers": read_table("customers", src)})["customers"]
    assert typed["signup_ts"].tolist() == [pd.Timestamp("2024-03-15")]
    assert typed["score"].tolist() == ["x"]
