"""Every shipped churn config runs end to end and logs the suite's metrics, plots and SHAP artifacts.

Runs on a small simulation (3,000 customers) so the suite stays fast; the main job runs at full
size in CI and in tests/test_experiment.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from crm_models.config import load_config
from crm_models.experiment import run_experiment

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [
    "churn_survival", "churn_weibull", "churn_xgb_aft", "churn_xgb_cox", "churn_rsf",
    "churn_contractual",
]
SUITE_METRICS = {
    "c_index", "uno_c_index", "auc_90d", "auc_180d", "mean_auc", "integrated_brier_score",
    "calibration_error_180d", "oracle_c_index",
}
SUITE_PLOTS = {
    "plots/km_by_segment.png", "plots/calibration_180d.png", "plots/survival_curves.png",
    "plots/risk_distribution.png", "plots/shap_beeswarm.png", "plots/shap_bar.png",
}



def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    out: set[str] = set()
    for f in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, f.path) if f.is_dir else {f.path}
    return out


@pytest.mark.parametrize("name", CONFIGS)
def test_config_runs_and_logs_the_suite(name, store):
    overrides = [f"data.synthetic.dir={store / 'data'}", "data.synthetic.customers=3000"]
    if name == "churn_contractual":
        overrides.append("data.synthetic.customers=8000")  # ~25% subscribe: enough events
    if name == "churn_rsf":
        overrides += ["model.params.n_estimators=30", "explain.max_sample=40"]
    cfg = load_config(REPO / "configs" / f"{name}.yaml", overrides)
    result = run_experiment(cfg, progress=False)
    m = result.metrics
    assert SUITE_METRICS <= set(m), sorted(SUITE_METRICS - set(m))
    assert 0.55 < m["c_index"] <= 1.0
    assert m["c_index"] <= m["oracle_c_index"] + 0.03  # no model beats the truth by much
    assert 0.0 <= m["integrated_brier_score"] < 0.25

    client = MlflowClient()
    logged = _artifacts(client, result.run_id)
    assert SUITE_PLOTS <= logged, sorted(SUITE_PLOTS - logged)
    assert "tables/shap_top_reasons.csv" in logged
    reasons = pd.read_csv(
        client.download_artifacts(result.run_id, "tables/shap_top_reasons.csv", str(store / "dl"))
    )
    assert list(reasons.columns[:5]) == ["customer_key", "rank", "feature", "value", "contribution"]
    assert reasons["customer_key"].astype(str).str.fullmatch(r"[0-9a-f]{16}").all()
    assert reasons.groupby("customer_key")["rank"].max().max() == 3
    run = client.get_run(result.run_id)
    assert run.data.params["shap.method"]
    assert int(run.data.params["shap.n_rows"]) <= int(run.data.params["shap.n_population"])
    if name == "churn_rsf":
        assert run.data.params["shap.is_sample"] == "True"
        assert int(run.data.params["shap.n_rows"]) <= 40
        assert float(run.data.metrics["shap_seconds"]) > 0
