"""MLflow models-from-code entry point for churn models (see ``crm_models.serving``)."""

import mlflow.models

from crm_models.serving import ChurnModel

mlflow.models.set_model(ChurnModel())
