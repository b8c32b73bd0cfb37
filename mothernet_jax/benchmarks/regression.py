"""The regression side of the real-data benchmark: the regressors compared, the summary and the figure.

Run through the evaluate CLI:

    python -m mothernet_jax.benchmarks.evaluate --task regression --data ../shared/regression \
        --datasets validation --out bench_out/regression

The datasets of ../shared/regression are split once into validation and test by
`evaluation.regression_split` (a rule of the name); `--datasets` takes `validation` (the default),
`test`, `all` or names. Every dataset is split 5 times into training and test rows
(`evaluation.make_regression_split`, the classification protocol's sizes without classes) and every
method is fitted on each split, with the raw target. Scores on the test rows: R² and the RMSE divided
by the test target's standard deviation (a constant prediction at the test mean scores R² 0 and
normalised RMSE 1; a method that fails on a dataset is scored so there, the AUC-0.5 convention of the
classification report).

The output folder receives `splits.jsonl`, `datasets.csv` (one row per dataset and method),
`summary.md` (mean R², mean normalised RMSE, mean rank by R², median fit and predict seconds and
their ratio to HistGradientBoosting's) and `r2_vs_time.png` (mean R² against median fit and
predict seconds).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor

from mothernet_jax.benchmarks import figures, report
from mothernet_jax.benchmarks.methods import (
    Method,
    NativeHistGradientBoostingBase,
    mothernet_methods,
    pipeline,
    shared_baselines,
)
from mothernet_jax.benchmarks.report import REFERENCE, Summary

FAILED_R2 = 0.0  # a failed method scores as the constant prediction at the test mean
FAILED_NRMSE = 1.0
OUTPUT_FILES = ("splits.jsonl", "datasets.csv", "summary.md", "r2_vs_time.png")


class NativeHistGradientBoostingRegressor(RegressorMixin, NativeHistGradientBoostingBase):
    """`HistGradientBoostingRegressor` with native missing values and categorical columns, as
    `methods.NativeHistGradientBoosting` for classifiers."""

    model_class = HistGradientBoostingRegressor

    def predict(self, x):
        return self.model_.predict(self.kept(x))


def _ridge(categorical_mask, seed, **_):
    return pipeline(categorical_mask, Ridge(alpha=1.0), scale=True)


def _mothernet(categorical_mask, seed, *, weights=None, finetune_steps="auto", **_):
    from mothernet_jax.estimator.regressor import MotherNetRegressor

    return MotherNetRegressor(
        weights=weights,
        random_state=seed,
        categorical_features=np.asarray(categorical_mask, dtype=bool),
        finetune_steps=finetune_steps,
    )


def _mothernet_preflight(*, weights=None, **_):
    # The weights (--weights, else the shipped small-regression file) are read once here, so that a
    # missing file skips the method with its reason instead of failing every split.
    from mothernet_jax.estimator.weights import resolve_weights
    from mothernet_jax.pretrained import REGRESSION_NAME, shipped_path

    resolve_weights(shipped_path(REGRESSION_NAME) if weights is None else weights)


def _shipped_regression(weights):
    from mothernet_jax.pretrained import REGRESSION_NAME, shipped_path

    return shipped_path(REGRESSION_NAME) if weights is None else weights


def _untrained(categorical_mask, seed, *, weights=None, **_):
    from mothernet_jax.benchmarks.controls import untrained_estimator
    from mothernet_jax.estimator.regressor import MotherNetRegressor

    return untrained_estimator(MotherNetRegressor, categorical_mask, seed, weights=_shipped_regression(weights))


def _random_features(categorical_mask, seed, *, weights=None, **_):
    from mothernet_jax.benchmarks.controls import RandomFeaturesRegressor, random_features

    return random_features(RandomFeaturesRegressor, categorical_mask, seed, weights=_shipped_regression(weights))


REGRESSION_METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        *mothernet_methods(
            _mothernet, _untrained, _random_features, _mothernet_preflight, "MotherNetRegressor", "--weights"
        ),
        Method(
            name="ridge",
            label="Ridge regression",
            description="Ridge(alpha=1); impute, one-hot, scale",
            build=_ridge,
        ),
        *shared_baselines(KNeighborsRegressor, RandomForestRegressor, NativeHistGradientBoostingRegressor),
    ]
}


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class RegressionCell:
    """One method on one dataset, over its splits."""

    dataset: str
    method: str
    splits_ok: int
    splits_failed: int
    r2_mean: float  # over the splits that ran; NaN where none
    r2_std: float
    nrmse_mean: float
    fit_seconds_median: float
    predict_seconds_median: float
    error: str

    @property
    def failed(self) -> bool:
        return self.splits_failed > 0


def aggregate(records: Iterable[Mapping]) -> list[RegressionCell]:
    """Groups per-split records (`evaluation.evaluate_regression_split`) into cells, first-seen order."""
    return report.aggregate(records, cell=RegressionCell, score="r2", other="nrmse")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RegressionSummary:
    """`summary.scores` holds R² (failures as FAILED_R2) so that the classification figures' code
    draws it; `nrmse` is (datasets, methods) normalised RMSE, failures as FAILED_NRMSE."""

    summary: Summary
    nrmse: np.ndarray


def summarise(records: Sequence[Mapping], methods: Sequence[str] | None = None) -> RegressionSummary:
    """Mean R², mean normalised RMSE, ranks by R² and median times per method."""
    cells = aggregate(records)
    summary = report.summarise(records, methods, cells=cells, score="r2", failed_score=FAILED_R2)
    by_key = {(c.dataset, c.method): c for c in cells}
    chosen = [[by_key.get((d, m)) for m in summary.methods] for d in summary.datasets]
    nrmse = [[FAILED_NRMSE if c is None or c.failed else c.nrmse_mean for c in row] for row in chosen]
    return RegressionSummary(
        summary=summary, nrmse=np.asarray(nrmse, dtype=np.float64).reshape(summary.scores.shape)
    )


def summary_table(result: RegressionSummary, reference: str = REFERENCE) -> str:
    """The Markdown table of the aggregates, methods by mean rank; where `reference` ran, the median
    fit and predict times as multiples of its."""
    summary = result.summary
    metrics = [
        ("mean R²", lambda j: f"{summary.scores[:, j].mean():.4f}"),
        ("mean normalised RMSE", lambda j: f"{result.nrmse[:, j].mean():.4f}"),
        report.rank_column(summary),
    ]
    return report.summary_table(summary, reference, metrics=metrics)


def dataset_table(records: Sequence[Mapping], methods: Sequence[str]) -> str:
    """Mean (std) R² over splits, one row per dataset, `failed` where a method failed."""
    return report.dataset_table(records, methods, cells=aggregate(records), score="r2")


CSV_COLUMNS = [f.name for f in dataclasses.fields(RegressionCell)] + ["status"]


FIGURES = {  # file -> (what it shows, how it is drawn), as `evaluate.FIGURES`
    "r2_vs_time.png": (
        "mean R² against median fit and predict seconds",
        functools.partial(figures.plot_auc_vs_time, metric="R²", title="R²"),
    ),
}
NOTES = (
    "R² and normalised RMSE (RMSE divided by the standard deviation of the test rows' target) are",
    "averaged over each dataset's splits, then over datasets; ranks are by R² per dataset (1 is best).",
    f"A dataset on which a method failed in any split is scored as the constant prediction (R² {FAILED_R2},",
    f"normalised RMSE {FAILED_NRMSE}). Median fit and predict seconds are over every split that ran.",
)


def write_dataset_csv(records: Sequence[Mapping], path: str | Path) -> None:
    """One row per (dataset, method): mean and std R², normalised RMSE, median times, status, first error."""
    report.write_dataset_csv(records, path, cells=aggregate(records), columns=CSV_COLUMNS)


def summary_markdown(records: Sequence[Mapping], methods: Sequence[str], **options) -> str:
    """The regression run's summary.md; options: header, descriptions, skipped, figures, as
    `report.summary_markdown`."""
    result = summarise(records, methods)
    return report.summary_markdown(
        records,
        methods,
        **options,
        title="# Regression benchmark summary",
        metric="R²",
        notes=NOTES,
        summary=result.summary,
        table=summary_table(result),
        cells=aggregate(records),
        per_dataset=dataset_table(records, methods),
    )
