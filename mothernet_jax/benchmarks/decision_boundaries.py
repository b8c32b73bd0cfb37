"""The MotherNet paper's toy comparison: decision boundaries on three 2-d datasets, one PNG.

    python -m mothernet_jax.benchmarks.decision_boundaries --out bench_out/decision_boundaries.png

Rows are the datasets of scikit-learn's classifier comparison example (moons, circles, linearly
separable), standardised and split 60/40 as there; columns are the methods (default: MotherNet, an
MLP, a random forest and gradient boosting). Each panel shades the predicted probability of class 1
over a grid, shows the training points solid and the test points translucent, and prints the test
accuracy and ROC AUC in its corner.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from sklearn.datasets import make_circles, make_classification, make_moons
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from mothernet_jax.benchmarks.figures import pyplot, save
from mothernet_jax.benchmarks.methods import METHODS, resolve_methods

DEFAULT_METHODS = ("mothernet", "mlp", "random_forest", "hist_gradient_boosting")


def toy_datasets() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, x: (100, 2) float, y: (100,) int) as in scikit-learn's classifier comparison."""
    x, y = make_classification(
        n_features=2, n_redundant=0, n_informative=2, random_state=1, n_clusters_per_class=1
    )
    x += 2 * np.random.RandomState(2).uniform(size=x.shape)
    return [
        ("moons", *make_moons(noise=0.3, random_state=0)),
        ("circles", *make_circles(noise=0.2, factor=0.5, random_state=1)),
        ("linearly separable", x, y),
    ]


def draw_decision_boundaries(
    methods: Mapping[str, Callable[[np.ndarray, int], object]],
    path: str | Path,
    *,
    seed: int = 0,
    resolution: int = 100,
) -> Path:
    """Fits every method on every toy dataset and saves the grid of panels to `path` (PNG)."""
    plt = pyplot()
    datasets = toy_datasets()
    fig, axes = plt.subplots(
        len(datasets), len(methods), figsize=(3.2 * len(methods), 3.0 * len(datasets)), squeeze=False
    )
    for row, (name, x, y) in enumerate(datasets):
        x = StandardScaler().fit_transform(x)
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.4, random_state=42)
        lo, hi = x.min(axis=0) - 0.5, x.max(axis=0) + 0.5
        grid_0, grid_1 = np.meshgrid(
            np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
        )
        grid = np.column_stack([grid_0.ravel(), grid_1.ravel()]).astype(np.float32)
        for col, (method, factory) in enumerate(methods.items()):
            ax = axes[row, col]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    estimator = factory(np.zeros(2, dtype=bool), seed)
                    estimator.fit(x_train.astype(np.float32), y_train)
                    surface = estimator.predict_proba(grid)[:, 1].reshape(grid_0.shape)
                    proba_test = estimator.predict_proba(x_test.astype(np.float32))[:, 1]
            except Exception as error:  # a failing method leaves its panel with the error
                ax.text(
                    0.5,
                    0.5,
                    f"failed:\n{type(error).__name__}",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                )
                print(f"{method} on {name}: {type(error).__name__}: {error}", file=sys.stderr)
            else:
                ax.contourf(grid_0, grid_1, surface, levels=20, cmap="RdBu", alpha=0.8, vmin=0, vmax=1)
                accuracy = np.mean((proba_test > 0.5) == y_test)
                auc = roc_auc_score(y_test, proba_test)
                ax.text(
                    0.97,
                    0.03,
                    f"acc {accuracy:.2f}\nAUC {auc:.2f}",
                    transform=ax.transAxes,
                    ha="right",
                    va="bottom",
                    fontsize=9,
                    bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none"},
                )
            ax.scatter(x_train[:, 0], x_train[:, 1], c=y_train, cmap="bwr_r", edgecolors="k", s=18)
            ax.scatter(x_test[:, 0], x_test[:, 1], c=y_test, cmap="bwr_r", edgecolors="k", s=18, alpha=0.5)
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
            ax.set_xticks(())
            ax.set_yticks(())
            if row == 0:
                ax.set_title(METHODS[method].label if method in METHODS else method)
            if col == 0:
                ax.set_ylabel(name)
    fig.tight_layout()
    return save(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mothernet_jax.benchmarks.decision_boundaries",
        description="Decision boundaries of MotherNet and baselines on three toy datasets (one PNG).",
    )
    parser.add_argument("--out", default="bench_out/decision_boundaries.png", help="PNG path")
    parser.add_argument("--weights", help="MotherNet weight file (default: the shipped weights)")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(DEFAULT_METHODS),
        choices=list(METHODS),
        metavar="METHOD",
        help=f"columns (default: {' '.join(DEFAULT_METHODS)}); choose from {', '.join(METHODS)}",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the methods")
    args = parser.parse_args(argv)
    factories, skipped = resolve_methods(args.methods, weights=args.weights)
    for name, reason in skipped.items():
        print(f"skipping method {name}: {reason}", file=sys.stderr)
    if not factories:
        print("error: no method to draw", file=sys.stderr)
        return 2
    path = draw_decision_boundaries(factories, args.out, seed=args.seed)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
