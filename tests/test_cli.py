"""The command line: every subcommand has help; user mistakes exit non-zero without a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from crm_models.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "args",
    [[], ["run"], ["data"], ["data", "validate"], ["data", "synth"], ["tune"], ["export"], ["serve"], ["ui"]],
)
def test_every_subcommand_has_help(args):
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crm_models.cli", *args], capture_output=True, text=True, cwd=cwd,
        timeout=300,
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


def test_planned_verbs_say_so_and_exit_non_zero():
    result = runner.invoke(app, ["tune", "configs/churn_survival.yaml"])
    assert result.exit_code == 1
    assert "not available yet" in result.output
