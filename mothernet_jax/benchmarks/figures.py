"""The figures of a benchmark run: AUC against time, mean ranks with their spread, and the
critical-difference diagram.

matplotlib and autorank are optional (the `test` and `bench` extras); they are imported when a
figure is drawn, matplotlib with the Agg backend so that no display is needed.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from mothernet_jax.benchmarks.report import REFERENCE, Summary

CD_ALPHA = 0.05  # significance level of the Friedman test and the Nemenyi critical difference


def pyplot():
    """matplotlib.pyplot on the Agg backend, or ImportError saying how to install it."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            "the benchmark figures need matplotlib: pip install 'mothernet-jax[bench]'"
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path, dpi: int = 110, **savefig) -> Path:
    """Write `fig` to `path` (making its folder) and close it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, **savefig)
    pyplot().close(fig)
    return path


def plot_auc_curves(
    curves: dict[str, tuple[list, list, list]], path: str | Path, *, seconds_label: str, ylabel: str, title: str
) -> Path:
    """val_auc against synthetic datasets seen (left) and against seconds (right), one line per
    `curves[label] = (datasets, seconds, auc)`; the figure of a training run's validation."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for label, (datasets, seconds, auc) in curves.items():
        axes[0].plot(datasets, auc, marker="o", ms=3, label=label)
        axes[1].plot(seconds, auc, marker="o", ms=3, label=label)
    axes[0].set_xlabel("synthetic datasets seen")
    axes[1].set_xlabel(seconds_label)
    axes[0].set_ylabel(ylabel)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def plot_auc_vs_time(summary: Summary, path: str | Path, *, metric: str = "ROC AUC", title: str = "AUC") -> None:
    """Mean AUC (`summary.scores`; `metric` names it, e.g. "R²" for regression) of each method against
    its median fit (left) and predict (right) seconds, log x, one labelled point per method; where
    HistGradientBoosting ran, a dashed line at twice its fit time and at its predict time (the
    issue's bounds)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^v<>p"
    bounds = {}
    if summary.time_ratios() is not None:
        bounds = {
            0: (2 * summary.fit_seconds[REFERENCE], "2x gradient boosting"),
            1: (summary.predict_seconds[REFERENCE], "1x gradient boosting"),
        }
    for i, (ax, times, label) in enumerate(
        [
            (axes[0], summary.fit_seconds, "median fit seconds per split"),
            (axes[1], summary.predict_seconds, "median predict seconds per split"),
        ]
    ):
        for j, method in enumerate(summary.methods):
            seconds, auc = times[method], summary.scores[:, j].mean()
            if not np.isfinite(seconds):
                continue
            ax.scatter(
                seconds,
                auc,
                s=50,
                zorder=3,
                color=colours[j % len(colours)],
                marker=markers[j // len(colours) % len(markers)],
            )
            ax.annotate(method, (seconds, auc), xytext=(6, 4), textcoords="offset points", fontsize=8)
        if i in bounds:
            ax.axvline(bounds[i][0], color="grey", linestyle="--", linewidth=1, label=bounds[i][1])
            ax.legend(loc="best", fontsize=8)
        ax.set_xscale("log")
        ax.margins(x=0.25, y=0.12)
        ax.set_xlabel(label + " (log scale)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"mean {metric} over {len(summary.datasets)} datasets")
    fig.suptitle(f"{title} against time")
    fig.tight_layout()
    save(fig, path, dpi=120)


def plot_ranks(summary: Summary, path: str | Path) -> None:
    """Per-dataset ranks of each method as a box, the mean as a diamond; best method on top."""
    plt = pyplot()
    order = summary.order()[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(order) + 1.5))
    ranks = [summary.ranks[:, j] for j in order]
    ax.boxplot(ranks, orientation="horizontal", widths=0.5, showfliers=True)
    ax.scatter(
        [r.mean() for r in ranks],
        range(1, len(order) + 1),
        marker="D",
        color="black",
        zorder=3,
    )
    ax.set_yticks(range(1, len(order) + 1), [summary.methods[j] for j in order])
    ax.set_xlabel(
        f"rank per dataset over {len(summary.datasets)} datasets (1 is best)\nbox: quartiles, diamond: mean"
    )
    ax.set_xlim(0.5, len(order) + 0.5)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title("Mean rank by ROC AUC, with the spread over datasets")
    fig.tight_layout()
    save(fig, path, dpi=120)


def plot_cd_diagram(summary: Summary, path: str | Path, *, alpha: float = CD_ALPHA):
    """Demšar's critical-difference diagram, drawn by autorank: mean rank by AUC over the datasets
    (1 is best), methods joined by a bar where the Nemenyi test at `alpha` does not tell them apart.

    Ranks are per dataset with ties averaged, as in the summary table. The Friedman test and the
    Nemenyi critical difference need at least 3 methods and 5 datasets (ValueError otherwise);
    ImportError says how to install autorank where it is missing. Returns autorank's result.
    """
    n_datasets, n_methods = summary.scores.shape
    if n_methods < 3 or n_datasets < 5:
        raise ValueError(
            f"the critical-difference diagram needs 3 methods and 5 datasets, got {n_methods} and {n_datasets}"
        )
    pyplot()  # the Agg backend, before autorank imports pyplot
    try:
        import pandas as pd
        from autorank import autorank, plot_stats
    except ImportError as error:
        raise ImportError(
            "the critical-difference diagram needs autorank: pip install 'mothernet-jax[bench]'"
        ) from error
    data = pd.DataFrame(summary.scores, columns=summary.methods)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints that the test was forced
        result = autorank(data, alpha=alpha, order="descending", force_mode="nonparametric")
    ax = plot_stats(result, allow_insignificant=True, width=7)
    ax.set_title(
        f"Mean rank by ROC AUC over {n_datasets} datasets; CD {result.cd:.2f} "
        f"(Nemenyi, alpha {alpha}); Friedman p = {result.pvalue:.2g}",
        fontsize=9,
        pad=14,
    )
    save(ax.figure, path, dpi=120, bbox_inches="tight")  # its labels lie outside the axes
    return result
