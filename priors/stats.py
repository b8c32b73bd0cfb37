"""Per-dataset statistics of sampled tasks, as docs/ARCHITECTURE.md section 6 defines them.

`task_statistics(x, y)` takes one dataset the way the reference writes it (y = -100 everywhere for an
ignored dataset); `batch_statistics(task)` converts a `Task` batch (invalid datasets get -100
labels) and stacks the statistics of every dataset. NumPy and scikit-learn, on the host.
"""

from __future__ import annotations

import warnings

import numpy as np

STATISTICS = (
    "n_features_used",
    "n_classes",
    "ignored",
    "max_class_share",
    "frac_low_cardinality_features",
    "mean_abs_x",
    "frac_abs_x_gt_3",
    "acc_majority",
    "acc_knn5",
    "acc_logreg",
)
IGNORED = -100


def task_statistics(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """x: (rows, features) float, y: (rows,) int with -100 for ignored labels -> {statistic: value}."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    x = np.asarray(x, np.float64)
    y = np.asarray(y)
    used = np.any(x != 0, axis=0)
    xu = x[:, used]
    labelled = y >= 0
    out = dict.fromkeys(STATISTICS, np.nan)
    out["n_features_used"] = float(used.sum())
    out["n_classes"] = float(np.unique(y[labelled]).size)
    out["ignored"] = float(not labelled.any())
    if labelled.any():
        out["max_class_share"] = float(np.bincount(y[labelled]).max() / labelled.sum())
    if used.any():
        distinct = np.array([np.unique(column).size for column in xu.T])
        out["frac_low_cardinality_features"] = float(np.mean(distinct <= 10))
        out["mean_abs_x"] = float(np.mean(np.abs(xu)))
        out["frac_abs_x_gt_3"] = float(np.mean(np.abs(xu) > 3))

    half = x.shape[0] // 2
    train, test = slice(0, half), slice(half, None)
    x_train, y_train = xu[train][labelled[train]], y[train][labelled[train]]
    x_test, y_test = xu[test][labelled[test]], y[test][labelled[test]]
    if np.unique(y_train).size < 2 or y_test.size == 0:
        return out
    majority = np.bincount(y_train).argmax()
    out["acc_majority"] = float(np.mean(y_test == majority))
    if xu.shape[1] == 0:  # no used column: the models see nothing (the reference never has this)
        out["acc_knn5"] = out["acc_logreg"] = out["acc_majority"]
        return out
    knn = KNeighborsClassifier(5).fit(x_train, y_train)
    out["acc_knn5"] = float(np.mean(knn.predict(x_test) == y_test))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter=300, as in the reference
        logreg = LogisticRegression(max_iter=300).fit(x_train, y_train)
    out["acc_logreg"] = float(np.mean(logreg.predict(x_test) == y_test))
    return out


def batch_statistics(task) -> dict[str, np.ndarray]:
    """{statistic: (batch,) float64} for a `priors.Task` batch (host arrays or device arrays).

    Runs scikit-learn single-threaded: on a busy machine its OpenMP and BLAS threads spin, and
    these small fits run tens of times slower with them."""
    from threadpoolctl import threadpool_limits

    x = np.asarray(task.x)
    y = np.where(np.asarray(task.valid)[:, None], np.asarray(task.y), IGNORED)
    with threadpool_limits(1):
        rows = [task_statistics(x[i], y[i]) for i in range(x.shape[0])]
    return {name: np.array([row[name] for row in rows], np.float64) for name in STATISTICS}


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance sup |F_a - F_b|, NaNs dropped."""
    a = np.sort(a[~np.isnan(a)])
    b = np.sort(b[~np.isnan(b)])
    if a.size == 0 or b.size == 0:
        return float("nan")
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))
