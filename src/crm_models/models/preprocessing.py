"""Feature preprocessing shared by the models: impute, encode, scale — fitted on training rows only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_selection import VarianceThreshold
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from crm_models.errors import ModelInputError


def split_feature_types(X: pd.DataFrame, exclude: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Numeric (incl. bool) and categorical (object / category / string) columns of ``X``."""
    numeric, categorical = [], []
    for col in X.columns:
        if col in exclude:
            continue
        dtype = X[col].dtype
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            numeric.append(col)
        else:
            categorical.append(col)
    return numeric, categorical


def make_preprocessor(numeric: Sequence[str], categorical: Sequence[str]) -> Pipeline:
    """Median-impute (with missing indicators) and standardize numbers; one-hot categories.

    The first level of each category is dropped so linear models read as ratios against it.
    Constant columns are removed (a Cox model cannot estimate them). Output is a DataFrame.
    """
    numeric_steps = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", add_indicator=True)),
            ("scale", StandardScaler()),
        ]
    )
    categorical_steps = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            (
                "onehot",
                OneHotEncoder(drop="first", handle_unknown="ignore", sparse_output=False),
            ),
        ]
    )
    columns = ColumnTransformer(
        [("num", numeric_steps, list(numeric)), ("cat", categorical_steps, list(categorical))],
        verbose_feature_names_out=False,
    )
    pipe = Pipeline([("columns", columns), ("drop_constant", VarianceThreshold(0.0))])
    return pipe.set_output(transform="pandas")


def select_model_input(
    X: Any, feature_names_in: Sequence[str], model_features: Sequence[str]
) -> pd.DataFrame:
    """A fitted model's prediction frame: its ``model_features`` as floats, or a clear error.

    ``X`` is a frame (columns matched by name) or an array with the ``feature_names_in`` columns
    in order. NaN checks are the caller's (their advice differs per model family).
    """
    if not isinstance(X, pd.DataFrame):
        arr = np.atleast_2d(np.asarray(X, dtype=float))
        if arr.shape[1] != len(feature_names_in):
            raise ModelInputError(
                f"X has {arr.shape[1]} columns; the model was fitted on "
                f"{len(feature_names_in)}: {list(feature_names_in)}"
            )
        X = pd.DataFrame(arr, columns=list(feature_names_in))
    missing = [c for c in model_features if c not in X.columns]
    if missing:
        raise ModelInputError(f"X lacks the model's feature(s) {missing}")
    return X[list(model_features)].astype(float)
