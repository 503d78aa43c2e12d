"""Contract validation: every problem named at once (table, column, count, example row).

Each check has a tiny frame whose answer is known by construction; the two acceptance cases
read real CSV files through ``crm_models.data.sources``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crm_models.data.sources import load_tables
from crm_models.data.validation import (
    CHECK_AFTER_END,
    CHECK_AMOUNT,
    CHECK_DUPLICATE,
    CHECK_EMPTY,
    CHECK_MISSING,
    CHECK_NULL,
    CHECK_TIMESTAMP,
    CHECK_TYPE,
    CHECK_UNKNOWN_CUSTOMER,
    DataValidationError,
    Problem,
    ValidationReport,
    coerce_tables,
    load_and_validate,
    validate_tables,
)
from crm_models.errors import CrmModelsError, DataError


def _tx(**cols: list) -> pd.DataFrame:
    """A valid 4-row transactions frame as text (like a CSV read), columns overridable."""
    base = {
        "customer_id": ["1", "2", "2", "3"],
        "ts": ["2024-01-05", "2024-01-06 10:30:00", "2024-02-01", "2024-03-01T08:00:00"],
        "amount": ["10.5", "0", "3", "1e2"],
    }
    base.update(cols)
    return pd.DataFrame({k: v for k, v in base.items() if v is not None})


def _customers(**cols: list) -> pd.DataFrame:
    base = {"customer_id": ["1", "2", "3"], "signup_ts": ["2023-01-01"] * 3}
    base.update(cols)
    return pd.DataFrame({k: v for k, v in base.items() if v is not None})


def _only(report: ValidationReport, check: str) -> Problem:
    found = [p for p in report.problems if p.check == check]
    assert len(found) == 1, report.format()
    return found[0]


# --------------------------------------------------------------------------- acceptance


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_two_files_three_problems_all_named_in_one_report(tmp_path: Path) -> None:
    # customers lacks signup_ts; transactions has a text amount (row 2) and a bad date (row 3).
    cust = _write(tmp_path / "customers.csv", "customer_id,region\n1,north\n2,south\n")
    tx = _write(
        tmp_path / "transactions.csv",
        "customer_id,ts,amount\n1,2024-01-05,10.0\n2,2024-01-06,abc\n1,2024-13-45,5\n",
    )
    sources = {"customers": cust, "transactions": tx}
    report = validate_tables(load_tables(sources))

    assert not report.ok
    assert len(report.problems) == 3
    missing = _only(report, CHECK_MISSING)
    assert (missing.table, missing.column) == ("customers", "signup_ts")
    assert missing.example == {"row": 1, "customer_id": "1", "region": "north"}
    amount = _only(report, CHECK_TYPE)
    assert (amount.table, amount.column, amount.n_rows) == ("transactions", "amount", 1)
    assert amount.example == {"row": 2, "customer_id": "2", "ts": "2024-01-06", "amount": "abc"}
    ts = _only(report, CHECK_TIMESTAMP)
    assert (ts.table, ts.column, ts.n_rows) == ("transactions", "ts", 1)
    assert ts.example == {"row": 3, "customer_id": "1", "ts": "2024-13-45", "amount": "5"}

    with pytest.raises(DataValidationError) as err:
        load_and_validate(sources)
    text = str(err.value)
    assert text == err.value.report.format()
    assert "customers.signup_ts  missing column" in text
    assert "transactions.amount  wrong type: 1 row is not a number, e.g. row 2:" in text
    assert "'amount': 'abc'" in text
    assert "transactions.ts  unparseable timestamp: 1 row is not a date/time" in text
    assert "'ts': '2024-13-45'" in text
    assert str(tx) in text and str(cust) in text  # the report says which file


def test_one_file_missing_column_text_amount_and_bad_date(tmp_path: Path) -> None:
    tx = _write(
        tmp_path / "tx.csv",
        "ts,amount\n2024-01-05,1\n2024-01-06,abc\n2024-13-45,2\n2024-01-07,3\n",
    )
    with pytest.raises(DataValidationError) as err:
        load_and_validate({"transactions": tx})
    report = err.value.report
    assert isinstance(err.value, DataError) and isinstance(err.value, CrmModelsError)
    assert {(p.table, p.column, p.check) for p in report.problems} == {
        ("transactions", "customer_id", CHECK_MISSING),
        ("transactions", "amount", CHECK_TYPE),
        ("transactions", "ts", CHECK_TIMESTAMP),
    }
    assert _only(report, CHECK_MISSING).n_rows == 4
    assert _only(report, CHECK_TYPE).example["row"] == 2
    assert _only(report, CHECK_TIMESTAMP).example == {"row": 3, "ts": "2024-13-45", "amount": "2"}
    lines = str(err.value).splitlines()
    assert lines[0] == "data validation found 3 problems in 1 table:"
    assert lines[1].startswith("transactions (") and "4 rows)" in lines[1]
    assert len(lines) == 5  # header, table, one line per problem


# --------------------------------------------------------------------------- each check


def test_valid_tables_are_ok() -> None:
    report = validate_tables({"transactions": _tx(), "customers": _customers()})
    assert report.ok
    assert report.problems == []
    assert report.row_counts == {"transactions": 4, "customers": 3}
    assert report.summary() == "ok: transactions 4 rows, customers 3 rows"
    assert report.format() == report.summary()


def test_missing_required_column_reports_columns_present_and_first_row() -> None:
    report = validate_tables({"customers": _customers(signup_ts=None)})
    p = _only(report, CHECK_MISSING)
    assert (p.table, p.column, p.n_rows) == ("customers", "signup_ts", 3)
    assert "the table has: customer_id" in p.message
    assert "columns: {signup_ts:" in p.message
    assert p.example == {"row": 1, "customer_id": "1"}


def test_missing_optional_column_is_not_a_problem() -> None:
    assert validate_tables({"transactions": _tx()}).ok  # no order_id, channel, ...


def test_text_amount_is_wrong_type_with_count_and_first_row() -> None:
    report = validate_tables({"transactions": _tx(amount=["1", "abc", "2", "x1"])})
    p = _only(report, CHECK_TYPE)
    assert (p.table, p.column, p.n_rows) == ("transactions", "amount", 2)
    assert p.example["row"] == 2 and p.example["amount"] == "abc"
    assert p.message == "2 rows are not numbers"
    assert len(report.problems) == 1  # no follow-on amount or null problems


@pytest.mark.parametrize(
    ("column", "values", "bad_row", "message"),
    [
        ("returned", ["yes", "No", "yes?", "0"], 3, "1 row is not a boolean"),
        ("quantity", ["1", "2", "3", "2.5"], 4, "1 row is not a whole number"),
    ],
)
def test_wrong_type_in_optional_bool_and_int(column, values, bad_row, message) -> None:
    report = validate_tables({"transactions": _tx(**{column: values})})
    p = _only(report, CHECK_TYPE)
    assert (p.table, p.column, p.n_rows) == ("transactions", column, 1)
    assert p.message.startswith(message)
    assert p.example["row"] == bad_row and p.example[column] == values[bad_row - 1]


def test_unparseable_timestamps_counted() -> None:
    ts = ["2024-01-05", "2024-13-45", "not a date", "2024-02-30"]
    report = validate_tables({"transactions": _tx(ts=ts)})
    p = _only(report, CHECK_TIMESTAMP)
    assert (p.table, p.column, p.n_rows) == ("transactions", "ts", 3)
    assert p.example["row"] == 2 and p.example["ts"] == "2024-13-45"


def test_timestamps_outside_the_nanosecond_range_are_unparseable() -> None:
    text = _tx(ts=["9999-12-31", "infinity", "1500-01-01", "2024-01-01 10:00 Europe/Paris"])
    p = _only(validate_tables({"transactions": text}), CHECK_TIMESTAMP)
    assert (p.n_rows, p.example["ts"]) == (3, "9999-12-31")
    typed = _tx(customer_id=[1, 2, 3, 4], amount=[1.0] * 4,
                ts=np.array(["2024-01-01", "9999-01-01", "2024-01-02", "1600-01-01"],
                            dtype="datetime64[us]"))
    p = _only(validate_tables({"transactions": typed}), CHECK_TIMESTAMP)
    assert (p.n_rows, p.example["row"], p.example["ts"]) == (2, 2, "9999-01-01 00:00:00")


def test_negative_and_infinite_amounts() -> None:
    report = validate_tables({"transactions": _tx(amount=["1", "-2.5", "inf", "-1"])})
    p = _only(report, CHECK_AMOUNT)
    assert (p.table, p.column, p.n_rows) == ("transactions", "amount", 3)
    assert "2 negative, 1 infinite" in p.message
    assert p.example["row"] == 2 and p.example["amount"] == "-2.5"


def test_nan_amount_in_typed_frame_is_a_null_required_value() -> None:
    tx = _tx(amount=[1.0, np.nan, 2.0, -0.5])
    report = validate_tables({"transactions": tx})
    null = _only(report, CHECK_NULL)
    assert (null.table, null.column, null.n_rows) == ("transactions", "amount", 1)
    assert null.example["row"] == 2 and null.example["amount"] is None
    assert _only(report, CHECK_AMOUNT).n_rows == 1


def test_null_and_blank_required_values() -> None:
    report = validate_tables({"transactions": _tx(customer_id=["1", None, "  ", "3"])})
    p = _only(report, CHECK_NULL)
    assert (p.table, p.column, p.n_rows) == ("transactions", "customer_id", 2)
    assert p.example["row"] == 2 and p.example["customer_id"] is None
    assert len(report.problems) == 1


def test_duplicate_customer_id_in_customers() -> None:
    report = validate_tables({"customers": _customers(customer_id=["1", "2", "1"])})
    p = _only(report, CHECK_DUPLICATE)
    assert (p.table, p.column, p.n_rows) == ("customers", "customer_id", 2)
    assert "row 3 repeats row 1" in p.message
    assert p.example == {"row": 3, "customer_id": "1", "signup_ts": "2023-01-01"}


def test_duplicate_order_id_ignores_null_order_ids() -> None:
    tx = _tx(order_id=["10", None, "11", "10"], customer_id=["1", "2", "3", "1"])
    report = validate_tables({"transactions": tx})
    p = _only(report, CHECK_DUPLICATE)
    assert (p.table, p.column, p.n_rows) == ("transactions", "order_id", 2)
    assert p.example["row"] == 4 and p.example["order_id"] == "10"


def test_composite_key_compares_parsed_timestamps() -> None:
    # The same period written two ways is the same key.
    spend = pd.DataFrame({
        "channel": ["search", "search", "social"],
        "period_start": ["2024-01-01", "2024-01-01 00:00:00", "2024-01-01"],
        "spend": ["100", "50", "70"],
    })
    p = _only(validate_tables({"channel_spend": spend}), CHECK_DUPLICATE)
    assert (p.table, p.column, p.n_rows) == ("channel_spend", "channel,period_start", 2)
    assert p.example["row"] == 2


def test_unknown_customers_show_the_unknown_id() -> None:
    tx = _tx(customer_id=["1", "7", "7", "8"])
    report = validate_tables({"transactions": tx, "customers": _customers()})
    p = _only(report, CHECK_UNKNOWN_CUSTOMER)
    assert (p.table, p.column, p.n_rows) == ("transactions", "customer_id", 3)
    assert "2 customer_ids not in the customers table" in p.message
    assert p.example["row"] == 2 and p.example["customer_id"] == "7"


def test_unknown_customers_compare_integer_ids_across_representations() -> None:
    # Parquet int64 customers vs CSV text ids: "2" is customer 2; "C1" is compared as text.
    customers = pd.DataFrame({"customer_id": np.array([1, 2, 3]), "signup_ts": ["2023-01-01"] * 3})
    assert validate_tables({"transactions": _tx(), "customers": customers}).ok
    tickets = pd.DataFrame(
        {"customer_id": ["C1", "2"], "ts": ["2024-01-01"] * 2, "kind": ["q"] * 2}
    )
    p = _only(validate_tables({"tickets": tickets, "customers": customers}), CHECK_UNKNOWN_CUSTOMER)
    assert (p.table, p.n_rows, p.example["customer_id"]) == ("tickets", 1, "C1")


def test_touchpoints_may_belong_to_prospects() -> None:
    tp = pd.DataFrame({"customer_id": ["99"], "ts": ["2024-01-01"], "channel": ["email"]})
    assert validate_tables({"touchpoints": tp, "customers": _customers()}).ok


def test_rows_after_observation_end() -> None:
    report = validate_tables({"transactions": _tx()}, observation_end="2024-01-31")
    p = _only(report, CHECK_AFTER_END)
    assert (p.table, p.column, p.n_rows) == ("transactions", "ts", 2)
    assert "2024-01-31 00:00:00" in p.message and "latest 2024-03-01 08:00:00" in p.message
    assert p.example["row"] == 3
    assert validate_tables({"transactions": _tx()}, observation_end="2024-03-01 08:00").ok


def test_empty_table_is_reported_and_skips_row_checks() -> None:
    empty = pd.DataFrame(columns=["customer_id", "ts", "amount"])
    report = validate_tables({"transactions": empty})
    p = _only(report, CHECK_EMPTY)
    assert (p.table, p.column, p.n_rows, p.example) == ("transactions", None, 0, None)
    assert len(report.problems) == 1
    assert "transactions  empty table: the table has no rows" in report.format()


def test_missing_or_unparseable_columns_do_not_crash_dependent_checks() -> None:
    tx = _tx(customer_id=None, ts=["x", "y", "z", "w"], amount=["-1", "a", "2", "3"])
    report = validate_tables(
        {"transactions": tx, "customers": _customers(customer_id=None)},
        observation_end="2020-01-01",
    )
    assert {(p.table, p.column, p.check, p.n_rows) for p in report.problems} == {
        ("transactions", "customer_id", CHECK_MISSING, 4),
        ("transactions", "ts", CHECK_TIMESTAMP, 4),
        ("transactions", "amount", CHECK_TYPE, 1),
        ("transactions", "amount", CHECK_AMOUNT, 1),
        ("customers", "customer_id", CHECK_MISSING, 3),
        ("customers", "signup_ts", CHECK_AFTER_END, 3),
    }


def test_every_problem_of_many_tables_at_once() -> None:
    tables = {
        "transactions": _tx(amount=["1", "-1", "2", "3"], customer_id=["1", "2", "9", "3"]),
        "customers": _customers(customer_id=["1", "2", "2"]),
        "tickets": pd.DataFrame({"customer_id": ["1"], "ts": ["bad"], "kind": [None]}),
    }
    report = validate_tables(tables)
    assert {(p.table, p.check) for p in report.problems} == {
        ("transactions", CHECK_AMOUNT),
        ("transactions", CHECK_UNKNOWN_CUSTOMER),
        ("customers", CHECK_DUPLICATE),
        ("tickets", CHECK_TIMESTAMP),
        ("tickets", CHECK_NULL),
    }
    text = report.format()
    assert text.splitlines()[0] == "data validation found 5 problems in 3 tables:"
    # grouped by table, in the order the tables were given
    assert text.index("transactions (") < text.index("customers (") < text.index("tickets (")
    assert report.summary() == (
        "5 problems in transactions, customers, tickets: "
        "transactions 4 rows, customers 3 rows, tickets 1 row"
    )


def test_unknown_table_name_is_a_data_error() -> None:
    with pytest.raises(DataError, match="unknown table"):
        validate_tables({"orders": _tx()})


# --------------------------------------------------------------------------- parsing and types


def test_timestamps_with_offsets_become_utc_and_naive_values_stay() -> None:
    # pandas' ISO parser would carry the +02:00 of row 1 over to the naive row 2.
    tx = _tx(ts=["2024-02-01T10:00:00+02:00", "2024-03-01 12:00", "2024-03-02T00:00:00Z",
                 "2024-03-03 09:00:00-05:00"])
    typed = coerce_tables({"transactions": tx})["transactions"]
    assert typed["ts"].dtype == "datetime64[ns]"
    assert typed["ts"].tolist() == pd.to_datetime(
        ["2024-02-01 08:00", "2024-03-01 12:00", "2024-03-02 00:00", "2024-03-03 14:00"]
    ).tolist()


def test_large_column_keeps_row_order_and_finds_one_impossible_date() -> None:
    # 200k rows exercise the DuckDB/Arrow fast paths; the bad value sits deep in the column.
    n = 200_000
    start = pd.Timestamp("2024-01-01")
    times = start + pd.to_timedelta(np.arange(n) * 7919 % 10_000_000, unit="s")
    ts = pd.Series(times.strftime("%Y-%m-%dT%H:%M:%S+02:00"), dtype=object)
    ts.iloc[150_000] = "2024-02-30T10:00:00+02:00"
    tx = pd.DataFrame({"customer_id": (np.arange(n) % 977).astype(str).astype(object), "ts": ts,
                       "amount": np.round(np.arange(n) * 0.01, 2).astype(str).astype(object)})
    p = _only(validate_tables({"transactions": tx}), CHECK_TIMESTAMP)
    assert (p.n_rows, p.example["row"]) == (1, 150_001)
    typed = coerce_tables({"transactions": tx.drop(index=150_000)})["transactions"]
    expected = (times - pd.Timedelta(hours=2)).delete(150_000)
    assert (typed["ts"].to_numpy() == expected.to_numpy()).all()
    assert typed["amount"].iloc[-1] == pytest.approx((n - 1) * 0.01)


def test_one_non_iso_format_per_column_is_recognised() -> None:
    us = _tx(ts=["03/15/2024", "04/16/2024", "12/01/2023", "13/45/2024"])
    p = _only(validate_tables({"transactions": us}), CHECK_TIMESTAMP)
    assert (p.n_rows, p.example["row"]) == (1, 4)
    typed = coerce_tables({"transactions": us.iloc[:3]})["transactions"]
    expected = pd.to_datetime(["2024-03-15", "2024-04-16", "2023-12-01"])
    assert typed["ts"].tolist() == expected.tolist()


def test_coerce_gives_documented_dtypes() -> None:
    tx = _tx(order_id=["100", "101", None, "103"], channel=["web", "app", None, "web"],
             quantity=["1", "2", "3", "1"], returned=["true", "False", "1", "no"],
             category=["a", "b", "c", "d"])
    customers = _customers(customer_id=["C1", "C2", "C3"], region=["n", "s", None])
    tickets = pd.DataFrame({"customer_id": ["C1", "C2"], "ts": ["2024-01-01", "2024-01-02"],
                            "kind": ["complaint", "question"], "satisfaction": ["4.5", None],
                            "resolved_ts": ["2024-01-03", None]})
    tables = {"transactions": tx.assign(customer_id=["C1", "C2", "C2", "C3"]),
              "customers": customers, "tickets": tickets}
    assert validate_tables(tables).ok
    typed = coerce_tables(tables)
    t = typed["transactions"]
    assert t.dtypes.astype(str).to_dict() == {
        "customer_id": "object", "ts": "datetime64[ns]", "amount": "float64",
        "order_id": "Int64", "channel": "object", "quantity": "int64", "returned": "bool",
        "category": "object",
    }
    assert t["amount"].tolist() == [10.5, 0.0, 3.0, 100.0]
    assert t["returned"].tolist() == [True, False, True, False]
    assert t["order_id"].isna().tolist() == [False, False, True, False]
    assert t["customer_id"].tolist() == ["C1", "C2", "C2", "C3"]
    k = typed["tickets"]
    assert str(k["satisfaction"].dtype) == "float64" and np.isnan(k["satisfaction"][1])
    assert str(k["resolved_ts"].dtype) == "datetime64[ns]" and pd.isna(k["resolved_ts"][1])
    assert typed["customers"]["customer_id"].dtype == object


def test_integer_ids_become_int64_and_extra_columns_pass_through() -> None:
    customers = _customers(customer_id=["007", "8", "9"], score=["x", "y", "z"])
    c = coerce_tables({"customers": customers})["customers"]
    assert c["customer_id"].dtype == "int64" and c["customer_id"].tolist() == [7, 8, 9]
    assert c["signup_ts"].dtype == "datetime64[ns]"
    assert c["score"].tolist() == ["x", "y", "z"]
    assert customers["customer_id"].tolist() == ["007", "8", "9"]  # input untouched


def test_nullable_optional_columns_use_nullable_dtypes() -> None:
    tx = _tx(quantity=["1", None, "2", "3"], returned=["yes", None, "no", "y"])
    t = coerce_tables({"transactions": tx})["transactions"]
    assert str(t["quantity"].dtype) == "Int64" and str(t["returned"].dtype) == "boolean"
    assert t["returned"].isna().tolist() == [False, True, False, False]


def test_typed_frames_validate_too() -> None:
    # Parquet/DuckDB-like input: numbers, tz-aware and microsecond timestamps, bools.
    tx = pd.DataFrame({
        "customer_id": np.array([1, 2], dtype="int64"),
        "ts": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 00:00"]).tz_localize("Europe/Paris")
        .astype("datetime64[us, Europe/Paris]"),
        "amount": [1.5, 2.0],
        "returned": [True, False],
        "quantity": pd.array([1, None], dtype="Int64"),
    })
    assert validate_tables({"transactions": tx}).ok
    t = coerce_tables({"transactions": tx})["transactions"]
    assert t["ts"].dtype == "datetime64[ns]"
    assert t["ts"].tolist() == pd.to_datetime(["2024-01-01 09:00", "2024-01-01 23:00"]).tolist()
    assert str(t["quantity"].dtype) == "Int64" and t["returned"].dtype == bool


def test_numbers_in_a_timestamp_column_are_unparseable() -> None:
    tx = _tx(ts=[20240101, 20240102, 20240103, 20240104])
    assert _only(validate_tables({"transactions": tx}), CHECK_TIMESTAMP).n_rows == 4


def test_coerce_refuses_unparseable_values() -> None:
    with pytest.raises(DataValidationError, match="transactions.amount  wrong type"):
        coerce_tables({"transactions": _tx(amount=["1", "abc", "2", "3"])})


def test_load_and_validate_returns_typed_frames(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    _tx().to_csv(path, index=False)
    tables = load_and_validate({"transactions": path}, observation_end="2024-12-31")
    t = tables["transactions"]
    assert t["customer_id"].dtype == "int64" and t["ts"].dtype == "datetime64[ns]"
    assert t["amount"].sum() == pytest.approx(113.5)


# --------------------------------------------------------------------------- command line


def _three_problem_files(tmp_path: Path) -> tuple[Path, Path]:
    cust = _write(tmp_path / "customers.csv", "customer_id,region\n1,north\n2,south\n")
    tx = _write(
        tmp_path / "transactions.csv",
        "customer_id,ts,amount\n1,2024-01-05,10.0\n2,2024-01-06,abc\n1,2024-13-45,5\n",
    )
    return tx, cust


def _assert_three_problems_named(output: str) -> None:
    assert "data validation found 3 problems in 2 tables:" in output
    assert "customers.signup_ts  missing column" in output
    assert "transactions.amount  wrong type: 1 row is not a number, e.g. row 2:" in output
    assert "transactions.ts  unparseable timestamp: 1 row is not a date/time" in output
    assert "Traceback" not in output


def test_cli_data_validate_reports_every_problem_and_exits_1(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crm_models.cli import app

    tx, cust = _three_problem_files(tmp_path)
    result = CliRunner().invoke(
        app, ["data", "validate", "--transactions", str(tx), "--customers", str(cust)]
    )
    assert result.exit_code == 1
    _assert_three_problems_named(result.output)

    good = tmp_path / "good.csv"
    _tx().to_csv(good, index=False)
    result = CliRunner().invoke(app, ["data", "validate", "--transactions", str(good)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "ok: transactions 4 rows"


def test_cli_data_validate_in_a_subprocess_exits_1_without_traceback(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import crm_models

    tx, cust = _three_problem_files(tmp_path)
    src = str(Path(crm_models.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "crm_models.cli", "data", "validate",
         "--transactions", str(tx), "--customers", str(cust)],
        check=False, capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 1, proc.stderr
    _assert_three_problems_named(proc.stdout + proc.stderr)


def test_cli_data_validate_uses_the_config_mapping(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crm_models.cli import app

    export = _write(tmp_path / "export.csv", "Customer ID;Date;Value\n1;2024-01-05;12,50\n")
    cfg = _write(tmp_path / "shop.yaml", f"""
name: shop
data:
  source: files
  tables:
    transactions:
      path: {export}
      columns: {{customer_id: "Customer ID", ts: Date, amount: Value}}
      read_options: {{sep: ";", decimal: ","}}
""")
    result = CliRunner().invoke(app, ["data", "validate", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "ok: transactions 1 row" in result.output
