"""The two figures of a benchmark run: AUC against time, and mean ranks with their spread.

matplotlib is optional (the `test` and `bench` extras); it is imported when a figure is drawn, with
the Agg backend so that no display is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mothernet_jax.benchmarks.report import Summary


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


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write `fig` to `path` (making its folder) and close it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
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


def plot_auc_vs_time(summary: Summary, path: str | Path) -> None:
    """Mean AUC of each method against its median predict (left) and fit (right) seconds, log x."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^v<>p"
    for ax, times, label in [
        (axes[0], summary.predict_seconds, "median predict seconds per split"),
        (axes[1], summary.fit_seconds, "median fit seconds per split"),
    ]:
        for j, method in enumerate(summary.methods):
            seconds = times[method]
            if not np.isfinite(seconds):
                continue
            ax.scatter(
                seconds,
                summary.scores[:, j].mean(),
                s=50,
                zorder=3,
                label=method,
                color=colours[j % len(colours)],
                marker=markers[j // len(colours) % len(markers)],
            )
        ax.set_xscale("log")
        ax.margins(x=0.2, y=0.1)
        ax.set_xlabel(label + " (log scale)")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    axes[0].set_ylabel(f"mean ROC AUC over {len(summary.datasets)} datasets")
    fig.suptitle("AUC against time")
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
