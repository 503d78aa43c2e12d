"""Shared fixtures: a private MLflow store per test module."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def store(tmp_path_factory, request):
    """A fresh SQLite MLflow store, salt and working directory for the whole test module.

    Runs log to ``<tmp>/mlflow.db`` (via ``MLFLOW_TRACKING_URI``) with a fixed pseudonymization
    salt, and relative paths (``data/``, ``mlruns/``) land in the same temporary directory.
    """
    root = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.setenv("CRM_MODELS_ID_SALT", "test-salt")
    mp.chdir(root)
    yield root
    mp.undo()
