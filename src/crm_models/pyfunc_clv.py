"""MLflow models-from-code entry point for CLV models (see ``crm_models.serving``)."""

import mlflow.models

from crm_models.serving import CLVModel

mlflow.models.set_model(CLVModel())
