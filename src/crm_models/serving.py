"""pyfunc wrappers that turn fitted pipelines into MLflow models (export and serving build on them)."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd


class ChurnModel(mlflow.pyfunc.PythonModel):
    """Customer feature rows in; risk, churn probability per horizon and expected lifetime out."""

    def __init__(self, pipeline: Any, horizons_days: list[int], lifetime_horizon_days: int) -> None:
        self.pipeline = pipeline
        self.horizons_days = [int(h) for h in horizons_days]
        self.lifetime_horizon_days = int(lifetime_horizon_days)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        X = pd.DataFrame(model_input)
        out = pd.DataFrame(index=X.index)
        out["risk"] = self.pipeline.predict_risk(X)
        for h in self.horizons_days:
            out[f"churn_probability_{h}d"] = self.pipeline.predict_churn_probability(X, h)
        out["expected_lifetime_days"] = self.pipeline.predict_expected_lifetime(
            X, self.lifetime_horizon_days
        )
        return out
