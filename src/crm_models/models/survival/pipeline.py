"""A survival model with its fitted preprocessing: raw customer features in, predictions out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from crm_models.models.preprocessing import make_preprocessor, split_feature_types
from crm_models.models.survival.base import SurvivalEstimator, check_survival_data


class SurvivalPipeline(BaseEstimator):
    """Preprocessing (fitted on training rows) followed by a :class:`SurvivalEstimator`."""

    def __init__(self, model: SurvivalEstimator, features: list[str] | None = None) -> None:
        self.model = model
        self.features = features

    def fit(self, X: pd.DataFrame, duration: Any, event: Any) -> SurvivalPipeline:
        cols = list(self.features) if self.features is not None else list(X.columns)
        X = X[cols]
        # targets only: raw features may hold NaN and categories, preprocessing handles them
        _, d, e = check_survival_data(pd.DataFrame(index=X.index), duration, event)
        numeric, categorical = split_feature_types(X)
        self.numeric_features_, self.categorical_features_ = numeric, categorical
        self.preprocessor_ = make_preprocessor(numeric, categorical)
        Xt = self.preprocessor_.fit_transform(X)
        self.model_ = clone(self.model).fit(Xt, d, e)
        self.feature_names_in_ = np.asarray(cols, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return self.preprocessor_.transform(X[list(self.feature_names_in_)])

    def predict_risk(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict_risk(self.transform(X))

    def predict_survival(self, X: pd.DataFrame, times: Any) -> np.ndarray:
        return self.model_.predict_survival(self.transform(X), times)

    def predict_churn_probability(self, X: pd.DataFrame, horizon: float) -> np.ndarray:
        return self.model_.predict_churn_probability(self.transform(X), horizon)

    def predict_expected_lifetime(self, X: pd.DataFrame, horizon: float) -> np.ndarray:
        return self.model_.predict_expected_lifetime(self.transform(X), horizon)
