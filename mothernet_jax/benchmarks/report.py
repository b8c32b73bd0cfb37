"""Tables from the per-split records of a benchmark run: the per-dataset CSV and the Markdown summary.

A (dataset, method) cell is `ok` when every split ran, else `failed`: it is listed as failed and, in
the aggregates, scored as a constant predictor (AUC 0.5), the convention of the AutoML Benchmark, so
that a method cannot gain by failing on hard datasets. The aggregates over datasets are:
- mean AUC: the mean over datasets of the mean AUC over splits;
- mean rank: per dataset, the rank of each method's mean AUC among the methods (1 is best, ties
  share the average rank), averaged over datasets; the spread is their standard deviation;
- normalised AUC: per dataset `(auc - min) / (max - min)` over the methods (1 where all tie), averaged;
- median fit and predict seconds over every split that ran, and their ratio to the reference
  method's (HistGradientBoosting, `REFERENCE`) where it ran: 2.0 is twice its time.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

FAILED_AUC = 0.5
REFERENCE = "hist_gradient_boosting"  # the method whose median times the others are divided by


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cell:
    """One method on one dataset, over its splits."""

    dataset: str
    method: str
    splits_ok: int
    splits_failed: int
    auc_mean: float  # over the splits that ran and have an AUC; NaN where none
    auc_std: float
    accuracy_mean: float
    fit_seconds_median: float
    predict_seconds_median: float
    error: str  # the first error, "" where none

    @property
    def failed(self) -> bool:
        return self.splits_failed > 0

    @property
    def score(self) -> float:
        """The AUC that enters the aggregates."""
        return FAILED_AUC if self.failed else self.auc_mean


def average_ranks(auc: np.ndarray) -> np.ndarray:
    """Ranks of `auc: (methods,)`, 1 for the highest; tied values share their average rank."""
    order = np.argsort(-auc, kind="stable")
    ranks = np.empty(auc.shape[0], dtype=np.float64)
    ranks[order] = np.arange(1, auc.shape[0] + 1)
    for value in np.unique(auc):
        tied = auc == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _stat(values: Sequence[float], fn) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(fn(finite)) if finite else math.nan


def aggregate(records: Iterable[Mapping], *, cell=None, score: str = "auc", other: str = "accuracy") -> list:
    """Groups per-split records (see `evaluation.evaluate_split`) into cells, in first-seen order.

    cell: the cell class (default `Cell`), with the fields `{score}_mean`, `{score}_std` and
    `{other}_mean` over the splits that ran (regression: `r2`, `nrmse`).
    """
    cell = Cell if cell is None else cell
    groups: dict[tuple[str, str], list[Mapping]] = {}
    for record in records:
        groups.setdefault((record["dataset"], record["method"]), []).append(record)
    cells = []
    for (dataset, method), rows in groups.items():
        ok = [r for r in rows if r["status"] == "ok"]
        errors = [r["error"] for r in rows if r["status"] != "ok" and r.get("error")]
        metrics = {
            f"{score}_mean": _stat([r[score] for r in ok], np.mean),
            f"{score}_std": _stat([r[score] for r in ok], np.std),
            f"{other}_mean": _stat([r[other] for r in ok], np.mean),
        }
        cells.append(
            cell(
                dataset=dataset,
                method=method,
                splits_ok=len(ok),
                splits_failed=len(rows) - len(ok),
                **metrics,
                fit_seconds_median=_stat([r["fit_seconds"] for r in ok], np.median),
                predict_seconds_median=_stat([r["predict_seconds"] for r in ok], np.median),
                error=errors[0] if errors else "",
            )
        )
    return cells


@dataclasses.dataclass(frozen=True, kw_only=True)
class Summary:
    """The aggregates of a run; arrays are indexed [dataset, method] in the order of the lists."""

    methods: list[str]
    datasets: list[str]  # those that enter the aggregates
    unscored: list[str]  # datasets left out: some method had no AUC though it did not fail
    scores: np.ndarray  # (datasets, methods) AUC, failures as FAILED_AUC
    ranks: np.ndarray  # (datasets, methods)
    normalised: np.ndarray  # (datasets, methods)
    failed: dict[str, list[str]]  # method -> datasets where it failed
    fit_seconds: dict[str, float]  # method -> median over all splits that ran
    predict_seconds: dict[str, float]

    def time_ratios(self, reference: str = REFERENCE) -> dict[str, tuple[float, float]] | None:
        """method -> (median fit s, median predict s) over `reference`'s; None where it did not run."""
        if reference not in self.methods:
            return None
        fit, predict = self.fit_seconds[reference], self.predict_seconds[reference]
        if not (math.isfinite(fit) and fit > 0 and math.isfinite(predict) and predict > 0):
            return None
        return {m: (self.fit_seconds[m] / fit, self.predict_seconds[m] / predict) for m in self.methods}

    def order(self) -> list[int]:
        """Method indices by mean rank, best first."""
        return sorted(
            range(len(self.methods)), key=lambda j: (self.ranks[:, j].mean(), -self.scores[:, j].mean())
        )


def summarise(
    records: Sequence[Mapping],
    methods: Sequence[str] | None = None,
    *,
    cells: Sequence | None = None,
    score: str = "auc",
    failed_score: float = FAILED_AUC,
) -> Summary:
    """Ranks, normalised AUC and median times per method from per-split records.

    cells: `aggregate(records)` (default); the score of a cell is its `{score}_mean`, `failed_score`
    where it failed or did not run (regression: `r2`, `regression.FAILED_R2`).
    """
    cells = {(c.dataset, c.method): c for c in (aggregate(records) if cells is None else cells)}
    if methods is None:
        methods = list(dict.fromkeys(m for _, m in cells))
    all_datasets = list(dict.fromkeys(d for d, _ in cells))
    datasets, unscored, rows = [], [], []
    for dataset in all_datasets:
        chosen = [cells.get((dataset, m)) for m in methods]
        row = [failed_score if c is None or c.failed else getattr(c, f"{score}_mean") for c in chosen]
        if all(math.isfinite(s) for s in row):
            datasets.append(dataset)
            rows.append(row)
        else:
            unscored.append(dataset)
    scores = np.asarray(rows, dtype=np.float64).reshape(len(datasets), len(methods))
    ranks = np.stack([average_ranks(row) for row in scores]) if datasets else np.zeros_like(scores)
    spread = scores.max(axis=1, keepdims=True) - scores.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(spread > 0, (scores - scores.min(axis=1, keepdims=True)) / spread, 1.0)

    def median_seconds(method: str, key: str) -> float:
        values = [r[key] for r in records if r["method"] == method and r["status"] == "ok"]
        return _stat(values, np.median)

    return Summary(
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


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------

CSV_COLUMNS = [f.name for f in dataclasses.fields(Cell)] + ["status"]


def write_dataset_csv(
    records: Sequence[Mapping],
    path: str | Path,
    *,
    cells: Sequence | None = None,
    columns: Sequence[str] = CSV_COLUMNS,
) -> None:
    """One row per (dataset, method): mean and std AUC, accuracy, median times, status, first error.

    cells: `aggregate(records)` (default); columns: their fields, then "status".
    """
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for cell in aggregate(records) if cells is None else cells:
            values = dataclasses.asdict(cell)
            row = [values[k] for k in columns[:-1]] + ["failed" if cell.failed else "ok"]
            writer.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in row])


def format_seconds(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def format_ratio(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def rank_column(summary: Summary) -> tuple[str, Callable[[int], str]]:
    """The summary table's "mean rank (sd)" column."""
    return "mean rank (sd)", lambda j: f"{summary.ranks[:, j].mean():.2f} ({summary.ranks[:, j].std():.2f})"


def summary_table(
    summary: Summary,
    reference: str = REFERENCE,
    *,
    metrics: Sequence[tuple[str, Callable[[int], str]]] | None = None,
) -> str:
    """The Markdown table of the aggregates, methods by mean rank; where `reference` ran, each
    method's median fit and predict time as a multiple of its.

    metrics: the columns after "method", (heading, method index -> text); default mean AUC, mean
    rank (sd) and normalised AUC.
    """
    if metrics is None:
        metrics = [
            ("mean AUC", lambda j: f"{summary.scores[:, j].mean():.4f}"),
            rank_column(summary),
            ("normalised AUC", lambda j: f"{summary.normalised[:, j].mean():.3f}"),
        ]
    ratios = summary.time_ratios(reference)
    columns = ["method", *(heading for heading, _ in metrics), "failed datasets"]
    columns += ["median fit s", "median predict s"]
    if ratios is not None:
        columns += ["fit / HGB", "predict / HGB"]
    lines = ["| " + " | ".join(columns) + " |", "| --- |" + " ---: |" * (len(columns) - 1)]
    for j in summary.order():
        method = summary.methods[j]
        row = [
            method,
            *(text(j) for _, text in metrics),
            str(len(summary.failed[method])),
            format_seconds(summary.fit_seconds[method]),
            format_seconds(summary.predict_seconds[method]),
        ]
        if ratios is not None:
            row += [format_ratio(ratios[method][0]), format_ratio(ratios[method][1])]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def dataset_table(
    records: Sequence[Mapping], methods: Sequence[str], *, cells: Sequence | None = None, score: str = "auc"
) -> str:
    """Mean (std) AUC over splits, one row per dataset, `failed` where a method failed.

    cells: `aggregate(records)` (default); score: the metric of their `{score}_mean`, `{score}_std`.
    """
    cells = {(c.dataset, c.method): c for c in (aggregate(records) if cells is None else cells)}
    datasets = list(dict.fromkeys(d for d, _ in cells))
    lines = ["| dataset | " + " | ".join(methods) + " |", "| --- |" + " ---: |" * len(methods)]
    for dataset in datasets:
        entries = []
        for method in methods:
            cell = cells.get((dataset, method))
            if cell is None or cell.failed:
                entries.append("failed")
            elif math.isnan(getattr(cell, f"{score}_mean")):
                entries.append("n/a")
            else:
                entries.append(f"{getattr(cell, f'{score}_mean'):.4f} ({getattr(cell, f'{score}_std'):.3f})")
        lines.append(f"| {dataset} | " + " | ".join(entries) + " |")
    return "\n".join(lines)


AUC_NOTES = (
    "Mean AUC and normalised AUC average each method's mean AUC over the splits of each dataset;",
    "ranks are per dataset (1 is best). A dataset on which a method failed in any split counts as",
    f"failed for it and is scored as a constant predictor (AUC {FAILED_AUC}). Binary AUC is that of",
    "class 1; multiclass AUC is the one-vs-rest macro average over the classes in the test part.",
    "Median fit and predict seconds are over every split that ran (fit on the training part,",
    "predict_proba on the test part).",
)
RATIO_NOTE = "fit / HGB and predict / HGB: multiples of HistGradientBoosting's times (2.00: twice)."


def summary_markdown(
    records: Sequence[Mapping],
    methods: Sequence[str],
    *,
    header: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
    skipped: Mapping[str, str] | None = None,
    figures: Mapping[str, str] | None = None,
    title: str = "# Benchmark summary",
    metric: str = "AUC",
    notes: Sequence[str] | None = None,
    summary: Summary | None = None,
    table: str | None = None,
    cells: Sequence | None = None,
    per_dataset: str | None = None,
) -> str:
    """The whole Markdown report: run facts, the summary table, the figures (`figures`: file -> what
    it shows, or why it was not drawn), AUC per dataset, failures, methods.

    The rest default to the classification report's; the regression one passes its own `title`,
    `metric` (the per-dataset heading), `notes` under the table (`RATIO_NOTE` is added where the
    reference ran), `summary`, `table`, `cells` (those of `aggregate`) and `per_dataset` table.
    """
    summary = summarise(records, methods) if summary is None else summary
    table = summary_table(summary) if table is None else table
    cells = aggregate(records) if cells is None else cells
    per_dataset = dataset_table(records, methods) if per_dataset is None else per_dataset
    if notes is None:
        notes = [*AUC_NOTES]
        if summary.time_ratios() is None:
            notes.append(f"{REFERENCE} did not run: no ratios to its times.")
    out = [title, ""]
    out += [f"- {key}: {value}" for key, value in (header or {}).items()]
    out += [f"- skipped method {name}: {reason}" for name, reason in (skipped or {}).items()]
    out += ["", f"## Summary over {len(summary.datasets)} datasets", "", table, "", *notes]
    if summary.time_ratios() is not None:
        out.append(RATIO_NOTE)
    if summary.unscored:
        out += ["", f"Left out of the aggregates (no {metric}): {', '.join(summary.unscored)}."]
    if figures:
        out += ["", "Figures:", ""] + [f"- `{name}`: {text}" for name, text in figures.items()]
    out += ["", f"## {metric} per dataset: mean (std) over splits", "", per_dataset, ""]
    failures = [c for c in cells if c.failed]
    out += ["## Failures", ""]
    if failures:
        out += ["| dataset | method | failed splits | first error |", "| --- | --- | ---: | --- |"]
        for cell in failures:
            error = cell.error.replace("|", "\\|").replace("\n", " ")
            out.append(f"| {cell.dataset} | {cell.method} | {cell.splits_failed} | {error} |")
    else:
        out.append("None.")
    descriptions = dict(descriptions or {})
    out += ["", "## Methods", ""] + [f"- {m}: {descriptions.get(m, '')}".rstrip(": ") for m in methods]
    return "\n".join(out) + "\n"
