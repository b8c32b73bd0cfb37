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


# -- regression tasks (`priors.regression`) ---------------------------------------------------------

REGRESSION_STATISTICS = (
    "n_features_used",
    "ignored",
    "heteroscedastic",
    "heavy_tailed",
    "skewed",
    "discrete",
    "has_categorical",
    "has_missing",
    "y_skew",
    "y_excess_kurtosis",
    "frac_abs_y_gt_3",
    "y_distinct_share",
    "r2_ridge",
    "r2_knn5",
)


def regression_task_statistics(x: np.ndarray, y: np.ndarray, split: int) -> dict[str, float]:
    """x: (rows, features) float (NaN: missing), y: (rows,) float standardised over rows < split ->
    {statistic: value} (the flags of the task are added by `regression_batch_statistics`). Moments
    of y over all rows; R^2 of ridge regression and 5-nearest neighbours fitted on rows < split and
    scored on the rest (missing entries read as 0)."""
    from sklearn.linear_model import Ridge
    from sklearn.neighbors import KNeighborsRegressor

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    used = np.any(x != 0, axis=0)
    xu = np.nan_to_num(x[:, used], nan=0.0)
    out = dict.fromkeys(REGRESSION_STATISTICS, np.nan)
    out["n_features_used"] = float(used.sum())
    out["has_missing"] = float(np.isnan(x).any())
    centred = y - y.mean()
    variance = np.mean(centred**2)
    if variance > 0:
        out["y_skew"] = float(np.mean(centred**3) / variance**1.5)
        out["y_excess_kurtosis"] = float(np.mean(centred**4) / variance**2 - 3.0)
    out["frac_abs_y_gt_3"] = float(np.mean(np.abs(y) > 3))
    out["y_distinct_share"] = float(np.unique(y).size / y.size)
    test_y = y[split:]
    spread = np.sum((test_y - test_y.mean()) ** 2)
    if xu.shape[1] == 0 or spread == 0 or split < 5:
        return out
    for name, model in (("r2_ridge", Ridge(alpha=1.0)), ("r2_knn5", KNeighborsRegressor(5))):
        predicted = model.fit(xu[:split], y[:split]).predict(xu[split:])
        out[name] = float(1.0 - np.sum((test_y - predicted) ** 2) / spread)
    return out


def regression_batch_statistics(task, split: int) -> dict[str, np.ndarray]:
    """{statistic: (batch,) float64} for a `priors.regression.RegressionTask` batch (one split)."""
    from threadpoolctl import threadpool_limits

    x, y, valid = np.asarray(task.x), np.asarray(task.y), np.asarray(task.valid)
    rows = []
    with threadpool_limits(1):
        for i in range(x.shape[0]):
            row = regression_task_statistics(x[i], y[i], split)
            row["ignored"] = float(not valid[i])
            row["heteroscedastic"] = float(task.heteroscedastic[i])
            row["heavy_tailed"] = float(task.heavy_tailed[i])
            row["skewed"] = float(task.skewed[i])
            row["discrete"] = float(task.discrete[i])
            row["has_categorical"] = float(np.any(task.categorical[i]))
            rows.append(row)
    return {name: np.array([row[name] for row in rows], np.float64) for name in REGRESSION_STATISTICS}
