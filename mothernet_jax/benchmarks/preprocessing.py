"""The baselines' input preparation: imputation, one-hot categorical columns and, for the models that
are sensitive to it, standard scaling (the linear baselines, k-NN and the random-features control)."""

from __future__ import annotations

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def preprocessing(categorical_mask: np.ndarray, *, scale: bool, impute: bool = True) -> ColumnTransformer:
    """Numeric columns: median imputation (+ scaling); categorical: mode imputation + one-hot.

    Without `impute`, NaN passes through numeric columns and is its own category in categorical
    ones, for models that handle missing values natively.
    """
    mask = np.asarray(categorical_mask, dtype=bool)
    numeric_steps = [SimpleImputer(strategy="median")] if impute else []
    if scale:
        numeric_steps.append(StandardScaler())
    categorical_steps = [SimpleImputer(strategy="most_frequent")] if impute else []
    categorical_steps.append(OneHotEncoder(handle_unknown="ignore", sparse_output=False))
    numeric = make_pipeline(*numeric_steps) if numeric_steps else "passthrough"
    return ColumnTransformer(
        [("numeric", numeric, ~mask), ("categorical", make_pipeline(*categorical_steps), mask)],
        sparse_threshold=0.0,
    )


def pipeline(categorical_mask, model, *, scale: bool, impute: bool = True) -> Pipeline:
    """`model` after `preprocessing(categorical_mask, scale=scale, impute=impute)`."""
    return Pipeline(
        [("preprocess", preprocessing(categorical_mask, scale=scale, impute=impute)), ("model", model)]
    )
