"""The command line: every subcommand has help; user mistakes exit non-zero without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crm_models.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.mark.parametrize(
    "args",
    [
        [], ["run"], ["data"], ["data", "validate"], ["data", "synth"], ["tune"], ["compare"],
        ["export"], ["serve"], ["score"], ["ui"],
    ],
)
def test_every_subcommand_has_help(args):
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crm_models.cli", *args], capture_output=True, text=True, cwd=cwd,
        timeout=300, check=False,
    )


def test_bad_config_key_exits_2_naming_the_key_without_traceback(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("name: bad\nmodel:\n  name: cox_ph\n  penalty: 1\n")
    proc = _cli("run", str(cfg))
    assert proc.returncode == 2
    assert "model.penalty" in proc.stderr and "unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_missing_config_file_exits_non_zero_without_traceback(tmp_path):
    proc = _cli("run", str(tmp_path / "missing.yaml"))
    assert proc.returncode != 0
    assert "not found" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_tune_without_a_tune_section_exits_2_saying_what_to_add(tmp_path):
    proc = _cli("tune", str(REPO / "configs" / "churn_survival.yaml"), "--trials", "1", cwd=tmp_path)
    assert proc.returncode == 2
    assert "no tune: section" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout


def test_serve_and_score_reject_a_bad_model_spec_without_traceback(tmp_path):
    (tmp_path / "in.csv").write_text("recency_days\n1.0\n")
    for args in (["serve", "churn"], ["score", "churn", "-i", "in.csv", "-o", "out.csv"]):
        proc = _cli(*args, cwd=tmp_path)
        assert proc.returncode == 1, args
        assert "expected NAME@ALIAS" in proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "out.csv").exists()


def test_synth_writes_all_tables_and_is_reproducible(tmp_path):
    import pandas as pd

    out1, out2 = tmp_path / "a", tmp_path / "b"
    for out in (out1, out2):
        result = runner.invoke(app, ["data", "synth", "--customers", "300", "--seed", "3", "--out", str(out)])
        assert result.exit_code == 0, result.output
    names = {"transactions", "customers", "touchpoints", "channel_spend", "tickets", "subscriptions"}
    assert {p.stem for p in out1.glob("*.parquet")} == names
    assert (out1 / "ground_truth.json").is_file()
    for name in names:
        assert (out1 / f"{name}.parquet").read_bytes() == (out2 / f"{name}.parquet").read_bytes()
    assert len(pd.read_parquet(out1 / "customers.parquet")) == 300
    # an existing directory is not overwritten without --overwrite
    again = _cli("data", "synth", "--customers", "300", "--out", str(out1))
    assert again.returncode != 0 and "Traceback" not in again.stderr


def test_ui_serves_the_local_store_on_loopback(tmp_path):
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "crm_models.cli", "ui", "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline, body = time.monotonic() + 90, ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    body = r.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
        assert body.strip() == "OK"
        assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    # the UI's uvicorn child stopped with it: the port is free again
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
