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

import csv
import dataclasses
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import Pipeline

from mothernet_jax.benchmarks import figures
from mothernet_jax.benchmarks.methods import Method, fit_native_hist_gradient_boosting, preprocessing
from mothernet_jax.benchmarks.report import REFERENCE, Summary, average_ranks, format_ratio, format_seconds

FAILED_R2 = 0.0  # a failed method scores as the constant prediction at the test mean
FAILED_NRMSE = 1.0
OUTPUT_FILES = ("splits.jsonl", "datasets.csv", "summary.md", "r2_vs_time.png")


class NativeHistGradientBoostingRegressor(RegressorMixin, BaseEstimator):
    """`HistGradientBoostingRegressor` with native missing values and categorical columns, as
    `methods.NativeHistGradientBoosting` for classifiers."""

    def __init__(self, categorical_mask=None, random_state=None):
        self.categorical_mask = categorical_mask
        self.random_state = random_state

    def fit(self, x, y):
        self.model_, self.columns_ = fit_native_hist_gradient_boosting(
            HistGradientBoostingRegressor, x, y, self.categorical_mask, self.random_state
        )
        return self

    def predict(self, x):
        return self.model_.predict(np.asarray(x, dtype=np.float64)[:, self.columns_])


def _ridge(categorical_mask, seed, **_):
    return Pipeline([("preprocess", preprocessing(categorical_mask, scale=True)), ("model", Ridge(alpha=1.0))])


def _knn(categorical_mask, seed, *, n_jobs=None, **_):
    model = KNeighborsRegressor(n_neighbors=5, n_jobs=n_jobs)
    return Pipeline([("preprocess", preprocessing(categorical_mask, scale=True)), ("model", model)])


def _random_forest(categorical_mask, seed, *, n_jobs=None, **_):
    model = RandomForestRegressor(n_estimators=100, n_jobs=n_jobs, random_state=seed)
    return Pipeline([("preprocess", preprocessing(categorical_mask, scale=False)), ("model", model)])


def _hist_gradient_boosting(categorical_mask, seed, **_):
    return NativeHistGradientBoostingRegressor(categorical_mask=categorical_mask, random_state=seed)


def _mothernet(categorical_mask, seed, *, weights=None, finetune_steps="auto", **_):
    from mothernet_jax.regressor import MotherNetRegressor

    return MotherNetRegressor(
        weights=weights,
        random_state=seed,
        categorical_features=np.asarray(categorical_mask, dtype=bool),
        finetune_steps=finetune_steps,
    )


def _mothernet_preflight(*, weights=None, **_):
    # No regression weights are shipped yet: the method runs only with --weights, read once here.
    if weights is None:
        raise ValueError("no shipped regression weights: pass --weights PATH")
    from mothernet_jax.estimator.weights import resolve_weights

    resolve_weights(weights)


REGRESSION_METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            name="mothernet",
            label="MotherNet",
            description="MotherNetRegressor, --weights, default ensemble",
            build=_mothernet,
            requires=("mothernet_jax.regressor:MotherNetRegressor",),
            preflight=_mothernet_preflight,
        ),
        Method(
            name="ridge",
            label="Ridge regression",
            description="Ridge(alpha=1); impute, one-hot, scale",
            build=_ridge,
        ),
        Method(
            name="knn",
            label="k-NN",
            description="KNeighborsRegressor(n_neighbors=5); impute, one-hot, scale",
            build=_knn,
        ),
        Method(
            name="random_forest",
            label="Random forest",
            description="RandomForestRegressor(n_estimators=100); impute, one-hot",
            build=_random_forest,
        ),
        Method(
            name="hist_gradient_boosting",
            label="Gradient boosting",
            description="HistGradientBoostingRegressor defaults; native NaN and categorical columns",
            build=_hist_gradient_boosting,
        ),
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


def _stat(values: Iterable, fn) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(fn(finite)) if finite else math.nan


def aggregate(records: Iterable[Mapping]) -> list[RegressionCell]:
    """Groups per-split records (`evaluation.evaluate_regression_split`) into cells, first-seen order."""
    groups: dict[tuple[str, str], list[Mapping]] = {}
    for record in records:
        groups.setdefault((record["dataset"], record["method"]), []).append(record)
    cells = []
    for (dataset, method), rows in groups.items():
        ok = [r for r in rows if r["status"] == "ok"]
        errors = [r["error"] for r in rows if r["status"] != "ok" and r.get("error")]
        cells.append(
            RegressionCell(
                dataset=dataset,
                method=method,
                splits_ok=len(ok),
                splits_failed=len(rows) - len(ok),
                r2_mean=_stat([r["r2"] for r in ok], np.mean),
                r2_std=_stat([r["r2"] for r in ok], np.std),
                nrmse_mean=_stat([r["nrmse"] for r in ok], np.mean),
                fit_seconds_median=_stat([r["fit_seconds"] for r in ok], np.median),
                predict_seconds_median=_stat([r["predict_seconds"] for r in ok], np.median),
                error=errors[0] if errors else "",
            )
        )
    return cells


@dataclasses.dataclass(frozen=True, kw_only=True)
class RegressionSummary:
    """`summary.scores` holds R² (failures as FAILED_R2) so that the classification figures' code
    draws it; `nrmse` is (datasets, methods) normalised RMSE, failures as FAILED_NRMSE."""

    summary: Summary
    nrmse: np.ndarray


def summarise(records: Sequence[Mapping], methods: Sequence[str] | None = None) -> RegressionSummary:
    """Mean R², mean normalised RMSE, ranks by R² and median times per method."""
    cells = {(c.dataset, c.method): c for c in aggregate(records)}
    if methods is None:
        methods = list(dict.fromkeys(m for _, m in cells))
    all_datasets = list(dict.fromkeys(d for d, _ in cells))
    datasets, unscored, r2_rows, nrmse_rows = [], [], [], []
    for dataset in all_datasets:
        chosen = [cells.get((dataset, m)) for m in methods]
        r2 = [FAILED_R2 if c is None or c.failed else c.r2_mean for c in chosen]
        nrmse = [FAILED_NRMSE if c is None or c.failed else c.nrmse_mean for c in chosen]
        if all(math.isfinite(s) for s in r2):
            datasets.append(dataset)
            r2_rows.append(r2)
            nrmse_rows.append(nrmse)
        else:
            unscored.append(dataset)
    scores = np.asarray(r2_rows, dtype=np.float64).reshape(len(datasets), len(methods))
    ranks = np.stack([average_ranks(row) for row in scores]) if datasets else np.zeros_like(scores)
    spread = scores.max(axis=1, keepdims=True) - scores.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(spread > 0, (scores - scores.min(axis=1, keepdims=True)) / spread, 1.0)

    def median_seconds(method: str, key: str) -> float:
        return _stat([r[key] for r in records if r["method"] == method and r["status"] == "ok"], np.median)

    summary = Summary(
        methods=list(methods),
        datasets=datasets,
        unscored=unscored,
        scores=scores,
        ranks=ranks,
        normalised=normalised,
        failed={m: [d for d in all_datasets if (d, m) not in cells or cells[(d, m)].failed] for m in methods},
        fit_seconds={m: median_seconds(m, "fit_seconds") for m in methods},
        predict_seconds={m: median_seconds(m, "predict_seconds") for m in methods},
    )
    return RegressionSummary(summary=summary, nrmse=np.asarray(nrmse_rows, dtype=np.float64).reshape(scores.shape))


def summary_table(result: RegressionSummary, reference: str = REFERENCE) -> str:
    """The Markdown table of the aggregates, methods by mean rank; where `reference` ran, the median
    fit and predict times as multiples of its."""
    summary = result.summary
    ratios = summary.time_ratios(reference)
    columns = ["method", "mean R²", "mean normalised RMSE", "mean rank (sd)", "failed datasets"]
    columns += ["median fit s", "median predict s"]
    if ratios is not None:
        columns += ["fit / HGB", "predict / HGB"]
    lines = ["| " + " | ".join(columns) + " |", "| --- |" + " ---: |" * (len(columns) - 1)]
    for j in summary.order():
        method = summary.methods[j]
        row = [
            method,
            f"{summary.scores[:, j].mean():.4f}",
            f"{result.nrmse[:, j].mean():.4f}",
            f"{summary.ranks[:, j].mean():.2f} ({summary.ranks[:, j].std():.2f})",
            str(len(summary.failed[method])),
            format_seconds(summary.fit_seconds[method]),
            format_seconds(summary.predict_seconds[method]),
        ]
        if ratios is not None:
            row += [format_ratio(ratios[method][0]), format_ratio(ratios[method][1])]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def dataset_table(records: Sequence[Mapping], methods: Sequence[str]) -> str:
    """Mean (std) R² over splits, one row per dataset, `failed` where a method failed."""
    cells = {(c.dataset, c.method): c for c in aggregate(records)}
    datasets = list(dict.fromkeys(d for d, _ in cells))
    lines = ["| dataset | " + " | ".join(methods) + " |", "| --- |" + " ---: |" * len(methods)]
    for dataset in datasets:
        entries = []
        for method in methods:
            cell = cells.get((dataset, method))
            if cell is None or cell.failed:
                entries.append("failed")
            elif math.isnan(cell.r2_mean):
                entries.append("n/a")
            else:
                entries.append(f"{cell.r2_mean:.4f} ({cell.r2_std:.3f})")
        lines.append(f"| {dataset} | " + " | ".join(entries) + " |")
    return "\n".join(lines)


CSV_COLUMNS = [f.name for f in dataclasses.fields(RegressionCell)] + ["status"]


def write_outputs(
    records: Sequence[Mapping],
    out: str | Path,
    methods: Sequence[str],
    *,
    header: Mapping[str, str] | None = None,
    skipped: Mapping[str, str] | None = None,
) -> list[str]:
    """`datasets.csv`, `r2_vs_time.png` (left out with one line where it cannot be drawn) and
    `summary.md` into `out`; returns the names of the files written."""
    out = Path(out)
    with (out / "datasets.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for cell in aggregate(records):
            values = dataclasses.asdict(cell)
            row = [values[k] for k in CSV_COLUMNS[:-1]] + ["failed" if cell.failed else "ok"]
            writer.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in row])
    written = ["datasets.csv"]
    result = summarise(records, methods)
    try:
        if not result.summary.datasets:
            raise ValueError("no dataset has a score")
        figures.plot_auc_vs_time(result.summary, out / "r2_vs_time.png", metric="R²", title="R²")
    except (ImportError, ValueError) as error:
        figure = f"not drawn: {error}"
        print(f"no r2_vs_time.png: {error}", file=sys.stderr)
    else:
        figure = "mean R² against median fit and predict seconds"
        written.append("r2_vs_time.png")

    summary = result.summary
    text = ["# Regression benchmark summary", ""]
    text += [f"- {key}: {value}" for key, value in (header or {}).items()]
    text += [f"- skipped method {name}: {reason}" for name, reason in (skipped or {}).items()]
    text += ["", f"## Summary over {len(summary.datasets)} datasets", "", summary_table(result), ""]
    text += [
        "R² and normalised RMSE (RMSE divided by the standard deviation of the test rows' target) are",
        "averaged over each dataset's splits, then over datasets; ranks are by R² per dataset (1 is best).",
        f"A dataset on which a method failed in any split is scored as the constant prediction (R² {FAILED_R2},",
        f"normalised RMSE {FAILED_NRMSE}). Median fit and predict seconds are over every split that ran.",
    ]
    if summary.time_ratios() is not None:
        text.append("fit / HGB and predict / HGB: multiples of HistGradientBoosting's times (2.00: twice).")
    if summary.unscored:
        text += ["", f"Left out of the aggregates (no R²): {', '.join(summary.unscored)}."]
    text += ["", "Figures:", "", f"- `r2_vs_time.png`: {figure}"]
    text += ["", "## R² per dataset: mean (std) over splits", "", dataset_table(records, methods), ""]
    failures = [c for c in aggregate(records) if c.failed]
    text += ["## Failures", ""]
    if failures:
        text += ["| dataset | method | failed splits | first error |", "| --- | --- | ---: | --- |"]
        for cell in failures:
            error = cell.error.replace("|", "\\|").replace("\n", " ")
            text.append(f"| {cell.dataset} | {cell.method} | {cell.splits_failed} | {error} |")
    else:
        text.append("None.")
    described = {m: REGRESSION_METHODS[m].description for m in methods if m in REGRESSION_METHODS}
    text += ["", "## Methods", ""] + [f"- {m}: {described.get(m, '')}".rstrip(": ") for m in methods]
    (out / "summary.md").write_text("\n".join(text) + "\n")
    return [*written, "summary.md"]
