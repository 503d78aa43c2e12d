"""The attribution task end to end on the simulator: every method credits the same journeys, is
scored against the simulator's true incremental credit, and drives ROI and a budget proposal.

Sources: the simulator's ground truth (channel conversion effects: the true incremental credit of
``evaluation.attribution.true_channel_shares``); invariants (credited conversions sum to the
observed total for every method, the proposal spends the budget within its bounds).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from crm_models.config import load_config
from crm_models.errors import ConfigError
from crm_models.experiment import run_experiment

REPO = Path(__file__).resolve().parents[1]
METHODS = ["first", "last", "linear", "time_decay", "position", "markov", "shapley", "data_driven"]



def _overrides(store: Path, *extra: str) -> list[str]:
    return [f"data.synthetic.dir={store / 'data'}", "data.synthetic.customers=4000",
            "attribution.n_boot=20", *extra]


@pytest.fixture(scope="module")
def run(store):
    cfg = load_config(REPO / "configs" / "attribution_synthetic.yaml", _overrides(store))
    return run_experiment(cfg, progress=False)


def _table(run_id: str, path: str, dest: Path) -> pd.DataFrame:
    return pd.read_csv(MlflowClient().download_artifacts(run_id, path, str(dest)))


def test_every_method_credits_all_observed_conversions(run, store):
    long = _table(run.run_id, "tables/attribution_by_method.csv", store / "dl")
    assert sorted(long["method"].unique()) == sorted(METHODS)
    totals = long.groupby("method")["conversions"].sum()
    assert totals.to_numpy() == pytest.approx(run.metrics["n_conversions"], rel=1e-9)
    assert long.groupby("method")["share"].sum().to_numpy() == pytest.approx(1.0, abs=1e-9)
    # bootstrap intervals around every point estimate
    assert (long["share_lower"] <= long["share"] + 1e-12).all()
    assert (long["share"] <= long["share_upper"] + 1e-12).all()


def test_methods_are_scored_against_the_true_incremental_credit(run):
    m = run.metrics
    for method in METHODS:
        assert 0.0 <= m[f"{method}.tvd"] <= 1.0
    # the rule-based and path-based methods follow reach and misallocate about a quarter of the
    # credit on these data (0.26-0.29 at 20,000 customers); the data-driven method recovers the
    # truth (0.013 at 20,000 customers; bound from tests/test_attribution_data_driven.py)
    for method in ("first", "last", "linear", "markov", "shapley"):
        assert m[f"{method}.tvd"] > 0.15
    assert m["data_driven.tvd"] < 0.08
    assert m["data_driven.spearman"] > 0.8
    assert m["tvd"] == m["data_driven.tvd"]  # model.name is the primary method


def test_roi_and_budget_proposal_respect_the_budget_and_bounds(run, store):
    budget = _table(run.run_id, "tables/budget_proposal.csv", store / "dl2")
    total = run.metrics["budget.total_per_period"]
    assert budget["proposed_spend"].sum() == pytest.approx(total, rel=1e-6)
    cur = budget["current_spend"]
    assert (budget["proposed_spend"] >= 0.5 * cur - 1e-6).all()
    assert (budget["proposed_spend"] <= 2.0 * cur + 1e-6).all()
    # current spend is feasible, so the optimum is at least as good
    assert run.metrics["budget.expected_after"] >= run.metrics["budget.expected_before"] - 1e-9
    roi = _table(run.run_id, "tables/roi.csv", store / "dl3")
    assert {"method", "channel", "spend", "cpa", "roas", "marginal_roas"} <= set(roi.columns)
    logged = {f.path for d in ("plots",) for f in MlflowClient().list_artifacts(run.run_id, d)}
    assert {"plots/shares_by_method.png", "plots/transition_heatmap.png", "plots/roi.png",
            "plots/budget.png"} <= logged


def test_bad_attribution_configs_are_clear_errors(store):
    base = REPO / "configs" / "attribution_synthetic.yaml"
    with pytest.raises(ConfigError, match="must be one of attribution.methods"):
        run_experiment(load_config(base, _overrides(store, "model.name=cox_ph")), progress=False)
    with pytest.raises(ConfigError, match="unknown"):
        run_experiment(
            load_config(base, _overrides(store, "attribution.methods=[last, magic]")),
            progress=False,
        )
