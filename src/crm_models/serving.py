"""pyfunc models: fitted pipelines packaged as MLflow models-from-code (export and serving build on them).

A run's model is the code file ``pyfunc_churn.py`` (which calls ``set_model``) plus artifacts: the
fitted pipeline (joblib) and its settings (JSON). Loading runs ``load_context``; nothing is
unpickled by MLflow itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import mlflow.pyfunc
import pandas as pd

PIPELINE_ARTIFACT = "pipeline"
SETTINGS_ARTIFACT = "settings"


@dataclass
class PyfuncPackage:
    """What tracking needs to log a models-from-code pyfunc: the code file and its artifacts."""

    code_path: Path
    pipeline: Any
    settings: dict[str, Any]
    input_example: pd.DataFrame
    output_example: pd.DataFrame = field(repr=False, default=None)  # type: ignore[assignment]

    def write_artifacts(self, directory: Path) -> dict[str, str]:
        """Dump the pipeline and settings into ``directory``; return MLflow's artifacts mapping."""
        directory.mkdir(parents=True, exist_ok=True)
        pipe_path, settings_path = directory / "pipeline.joblib", directory / "settings.json"
        joblib.dump(self.pipeline, pipe_path)
        settings_path.write_text(json.dumps(self.settings, indent=2))
        return {PIPELINE_ARTIFACT: str(pipe_path), SETTINGS_ARTIFACT: str(settings_path)}


def churn_predictions(
    pipeline: Any, X: pd.DataFrame, horizons_days: list[int], lifetime_horizon_days: int
) -> pd.DataFrame:
    """Risk, churn probability per horizon and restricted expected lifetime per customer row."""
    out = pd.DataFrame(index=X.index)
    out["risk"] = pipeline.predict_risk(X)
    for h in horizons_days:
        out[f"churn_probability_{h}d"] = pipeline.predict_churn_probability(X, h)
    out["expected_lifetime_days"] = pipeline.predict_expected_lifetime(X, lifetime_horizon_days)
    return out


class ChurnModel(mlflow.pyfunc.PythonModel):
    """Customer feature rows in; risk, churn probability per horizon and expected lifetime out."""

    def load_context(self, context: Any) -> None:
        self.pipeline = joblib.load(context.artifacts[PIPELINE_ARTIFACT])
        settings = json.loads(Path(context.artifacts[SETTINGS_ARTIFACT]).read_text())
        self.horizons_days = [int(h) for h in settings["horizons_days"]]
        self.lifetime_horizon_days = int(settings["lifetime_horizon_days"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        return churn_predictions(
            self.pipeline, pd.DataFrame(model_input), self.horizons_days, self.lifetime_horizon_days
        )


def churn_package(
    pipeline: Any, horizons_days: list[int], lifetime_horizon_days: int, input_example: pd.DataFrame
) -> PyfuncPackage:
    settings = {"horizons_days": list(horizons_days), "lifetime_horizon_days": lifetime_horizon_days}
    return PyfuncPackage(
        code_path=Path(__file__).with_name("pyfunc_churn.py"),
        pipeline=pipeline,
        settings=settings,
        input_example=input_example,
        output_example=churn_predictions(
            pipeline, input_example, list(horizons_days), lifetime_horizon_days
        ),
    )
