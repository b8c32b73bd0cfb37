"""The TabPFN-paper evaluation protocol on real tabular data: datasets, splits, metrics, the run loop.

The library's one definition of it: `benchmarks.evaluate` (the report) and `train.validate` (val_auc
during training) both use it.

One *split* of a dataset has `train_rows = min(1000, n // 2)` training rows that hold every class
and up to 2000 test rows, the rest. It is a pure function of `(seed, dataset name, split index)`, so
every method sees the same rows. A method is a factory `(categorical_mask, seed) -> estimator` that
returns an unfitted scikit-learn classifier; its fit and its `predict_proba` are timed separately.
A method that raises on a split is recorded as failed with the error, and the run goes on.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
import traceback
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

MAX_TRAIN_ROWS = 1000
MAX_TEST_ROWS = 2000

# The 30 OpenML-CC18 datasets the TabPFN paper tested on (its "test" list), by their OpenML names.
TABPFN_TEST = frozenset(
    {
        "analcatdata_authorship",
        "analcatdata_dmft",
        "balance-scale",
        "banknote-authentication",
        "blood-transfusion-service-center",
        "breast-w",
        "car",
        "climate-model-simulation-crashes",
        "cmc",
        "credit-approval",
        "credit-g",
        "cylinder-bands",
        "diabetes",
        "dresses-sales",
        "eucalyptus",
        "ilpd",
        "kc2",
        "mfeat-fourier",
        "mfeat-karhunen",
        "mfeat-morphological",
        "mfeat-zernike",
        "MiceProtein",
        "pc1",
        "pc3",
        "pc4",
        "qsar-biodeg",
        "steel-plates-fault",
        "tic-tac-toe",
        "vehicle",
        "wdbc",
    }
)

# Groups of datasets named by the `tabpfn_split` column of MANIFEST.tsv; "non-test" is every row
# whose split is not "test" (what recipes and settings are chosen on).
DATASET_GROUPS = {"tabpfn-test": "test", "tabpfn-valid": "valid", "non-test": "!test"}

MethodFactory = Callable[[np.ndarray, int], object]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TabularDataset:
    """One dataset in the shared `.npz` format, of either task (`Dataset`, `RegressionDataset`).

    x: (rows, features) float32, NaN for missing; categorical columns hold codes 0, 1, ...
    y: (rows,) the target, as the task's class says.
    categorical: (features,) bool.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    categorical: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])


@dataclasses.dataclass(frozen=True, kw_only=True)
class Dataset(TabularDataset):
    """One classification dataset: y (rows,) int64 labels 0 .. n_classes - 1, every label present."""

    @property
    def n_classes(self) -> int:
        return int(self.y.max()) + 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class Split:
    """Row indices of one split; `seed` seeds the methods fitted on it."""

    index: int
    train: np.ndarray
    test: np.ndarray
    seed: int


def load_dataset(path: str | Path) -> Dataset:
    """Reads one `NAME.npz` file (the format: docs/ARCHITECTURE.md section 6)."""
    path = Path(path)
    with np.load(path) as data:
        name = str(data["name"]) if "name" in data else path.stem
        return Dataset(
            name=name,
            x=np.asarray(data["X"], dtype=np.float32),
            y=np.asarray(data["y"], dtype=np.int64),
            categorical=np.asarray(data["categorical"], dtype=bool),
        )


def read_manifest(data_dir: str | Path) -> list[dict[str, str]]:
    """The rows of `MANIFEST.tsv` as dicts, or [] where the folder has none."""
    manifest = Path(data_dir) / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    with manifest.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def dataset_paths(data_dir: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    """The `.npz` files to run on, sorted by name.

    names: dataset names, `all`, or a group (`tabpfn-test`: the 20 rows of MANIFEST.tsv whose
    `tabpfn_split` is `test`; `tabpfn-valid`; `non-test`: the rows that are not `test`). None
    means all.
    """
    return _chosen_paths(
        data_dir, names, default="all", groups=dict.fromkeys(DATASET_GROUPS, _manifest_group)
    )


def _manifest_group(name: str, data_dir: Path, available: Mapping[str, Path]) -> dict[str, Path]:
    """The files of a DATASET_GROUPS group, by the `tabpfn_split` column of MANIFEST.tsv."""
    rows = read_manifest(data_dir)
    if not rows:
        raise FileNotFoundError(f"group {name!r} needs {data_dir / 'MANIFEST.tsv'}")
    wanted = DATASET_GROUPS[name]
    if wanted.startswith("!"):
        members = [r["name"] for r in rows if r.get("tabpfn_split") != wanted[1:]]
    else:
        members = [r["name"] for r in rows if r.get("tabpfn_split") == wanted]
    missing = [m for m in members if m not in available]
    if missing:
        raise FileNotFoundError(f"group {name!r}: no file for {', '.join(missing)}")
    return {m: available[m] for m in members}


def _chosen_paths(
    data_dir: str | Path,
    names: Sequence[str] | None,
    *,
    default: str,
    groups: Mapping[str, Callable[[str, Path, Mapping[str, Path]], dict[str, Path]]],
) -> list[Path]:
    """The `.npz` files of `data_dir` that `names` choose (None: `default`), sorted by name: a
    dataset name, `all`, or a group (`groups[name](name, data_dir, {name: path})` gives its files)."""
    data_dir = Path(data_dir)
    available = {p.stem: p for p in sorted(data_dir.glob("*.npz"))}
    if not available:
        raise FileNotFoundError(f"no .npz datasets in {data_dir}")
    chosen: dict[str, Path] = {}
    for name in names or [default]:
        if name == "all":
            chosen.update(available)
        elif name in groups:
            chosen.update(groups[name](name, data_dir, available))
        elif name in available:
            chosen[name] = available[name]
        else:
            choices = ", ".join(["all", *groups])
            raise ValueError(f"unknown dataset {name!r}; choose from {choices} or {', '.join(available)}")
    return [chosen[k] for k in sorted(chosen)]


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


def make_split(
    y: np.ndarray | int,
    *,
    seed: int,
    dataset: str,
    index: int,
    max_train_rows: int = MAX_TRAIN_ROWS,
    max_test_rows: int = MAX_TEST_ROWS,
) -> Split:
    """One random split of the rows of `y: (n,)` with every class in the training part; for an int
    `y`, of that many rows without classes (regression: `make_regression_split`).

    The generator is seeded with `(seed, crc32(dataset), index)`, so a split depends on nothing
    else (not the order datasets are run in, nor Python's hash seed). The training part has
    `min(max_train_rows, n // 2)` rows: with classes, one row of each class drawn first, then
    rows drawn at random; without, the first rows of a random order. The remaining rows, in random
    order, form the test part, cut at `max_test_rows`.
    """
    n = int(y) if isinstance(y, int | np.integer) else int(y.shape[0])
    rng = np.random.default_rng([seed, zlib.crc32(dataset.encode()), index])
    train_rows = min(max_train_rows, n // 2)
    if isinstance(y, int | np.integer):
        if train_rows < 2:
            raise ValueError(f"{dataset}: {n} rows are too few to split")
        order = rng.permutation(n)
        train, test = order[:train_rows], order[train_rows:][:max_test_rows]
    else:
        classes = np.unique(y)
        if classes.size > train_rows:
            raise ValueError(f"{dataset}: {classes.size} classes do not fit in {train_rows} training rows")
        order = rng.permutation(n)
        _, first = np.unique(y[order], return_index=True)
        rest = np.delete(order, first)
        n_fill = train_rows - classes.size
        train = rng.permutation(np.concatenate([order[first], rest[:n_fill]]))
        test = rest[n_fill:][:max_test_rows]
    method_seed = int(rng.integers(2**31 - 1))
    return Split(index=index, train=train, test=test, seed=method_seed)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def roc_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC of `proba: (n, k)`, column j the probability of label j, against `y_true: (n,)`.

    Binary (k == 2): the AUC of the positive class, label 1. Multiclass: the one-vs-rest AUC of each
    class present in `y_true`, averaged with equal weights (macro). Classes absent from the test
    part are left out, because their AUC is undefined; where all are present this equals
    `roc_auc_score(y_true, proba, multi_class="ovr", average="macro")`. NaN when `y_true` holds one
    class only.
    """
    present = np.unique(y_true)
    if present.size < 2:
        return math.nan
    if proba.shape[1] == 2:
        return float(roc_auc_score(y_true == 1, proba[:, 1]))
    return float(np.mean([roc_auc_score(y_true == c, proba[:, c]) for c in present]))


def proba_by_label(proba: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Reorders `proba: (n, len(classes))` into `(n, n_classes)` columns by label, 0 where absent."""
    proba = np.asarray(proba, dtype=np.float64)
    classes = np.asarray(classes)
    if proba.ndim != 2 or proba.shape[1] != classes.size:
        raise ValueError(f"predict_proba gave shape {proba.shape} for {classes.size} classes")
    if not np.all(np.isfinite(proba)):
        raise ValueError("predict_proba returned non-finite values")
    full = np.zeros((proba.shape[0], n_classes))
    full[:, classes.astype(np.int64)] = proba
    return full


# ---------------------------------------------------------------------------------------------
# Running methods
# ---------------------------------------------------------------------------------------------


PREDICT_REPEATS = 3  # predict is timed as the best of this many calls (milliseconds: one call is noise)


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """(fn()'s result, the least wall seconds of `repeats` calls): the cost of a call without the
    preemptions of a shared machine, for calls short enough that one of them would mostly time
    those."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def fit_and_score(
    method: str,
    factory: MethodFactory,
    dataset: TabularDataset,
    split: Split,
    *,
    predict: str,
    score: Callable[[Any, Any, np.ndarray], dict],
    metrics: Sequence[str],
    facts: Mapping[str, Any] | None = None,
) -> dict:
    """Fits one method on one split and scores it; never raises for the method's own errors.

    predict: the estimator's method called on the test rows (`predict_proba`, `predict`);
    score: `(estimator, its prediction, y_test) -> {metric: value}`, raising where the prediction
    is unusable; metrics: the names it returns (None in the record until scored); facts: dataset
    facts after the sizes (`classes`). Returns one JSON-ready record: dataset, method, split, the
    sizes, the facts, the metrics, `fit_seconds` (around one `fit`), `predict_seconds` (around
    `predict`, the best of `PREDICT_REPEATS` calls, for every method alike), `status` (`ok` or
    `failed`) and `error`. Metrics of a failed split are None.
    """
    record: dict = {
        "dataset": dataset.name,
        "method": method,
        "split": split.index,
        "train_rows": int(split.train.size),
        "test_rows": int(split.test.size),
        "features": dataset.n_features,
        **(facts or {}),
        **dict.fromkeys(metrics),
        "fit_seconds": None,
        "predict_seconds": None,
        "status": "ok",
        "error": None,
    }
    x_train, y_train = dataset.x[split.train], dataset.y[split.train]
    x_test, y_test = dataset.x[split.test], dataset.y[split.test]
    try:
        with warnings.catch_warnings():
            # Convergence and empty-column warnings would drown the progress bar; they are not errors.
            warnings.simplefilter("ignore")
            estimator = factory(dataset.categorical, split.seed)
            start = time.perf_counter()
            estimator.fit(x_train, y_train)
            fit_seconds = time.perf_counter() - start
            prediction, predict_seconds = best_time(
                lambda: getattr(estimator, predict)(x_test), PREDICT_REPEATS
            )
        scores = score(estimator, prediction, y_test)
    except Exception as error:  # any failure of a method is data, not a crash
        record["status"] = "failed"
        last = traceback.extract_tb(error.__traceback__)[-1]
        where = f" ({Path(last.filename).name}:{last.lineno})"
        record["error"] = f"{type(error).__name__}: {error}"[:500] + where
        return record
    record.update(scores, fit_seconds=fit_seconds, predict_seconds=predict_seconds)
    return record


def _none_for_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def evaluate_split(method: str, factory: MethodFactory, dataset: Dataset, split: Split) -> dict:
    """`fit_and_score` for a classifier: `predict_proba` scored by `auc` and `accuracy`, after the
    sizes the dataset's `classes`."""

    def score(estimator, proba, y_test) -> dict:
        proba = proba_by_label(proba, estimator.classes_, dataset.n_classes)
        auc = _none_for_nan(roc_auc(y_test, proba))
        return {"auc": auc, "accuracy": float(np.mean(np.argmax(proba, axis=1) == y_test))}

    return fit_and_score(
        method,
        factory,
        dataset,
        split,
        predict="predict_proba",
        score=score,
        metrics=("auc", "accuracy"),
        facts={"classes": dataset.n_classes},
    )


def run_benchmark(
    datasets: Iterable[str | Path | TabularDataset],
    methods: Mapping[str, MethodFactory],
    *,
    splits: int = 5,
    seed: int = 0,
    warmup: bool = False,
    progress=None,
    regression: bool = False,
) -> Iterator[dict]:
    """Yields one record (see `evaluate_split`) per dataset, split and method, as they finish.

    warmup: fit and predict each method once, untimed, on a dataset's first split before its timed
      splits, so that one-off costs (JIT compilation) stay out of the times.
    progress: an object with `update(n, **fields)`, e.g. `mothernet_jax.progress.Progress`; it
      shows each record's first metric (auc, r2).
    regression: the regressors' run (`load_regression_dataset`, `make_regression_split`,
      `evaluate_regression_split`), as `run_regression_benchmark`.
    A dataset that cannot be read or split yields a failed record for every method and split.
    """
    if regression:
        load, evaluate, metrics = load_regression_dataset, evaluate_regression_split, ("r2", "nrmse")
    else:
        load, evaluate, metrics = load_dataset, evaluate_split, ("auc", "accuracy")
    for item in datasets:
        loaded = isinstance(item, TabularDataset)
        try:
            dataset = item if loaded else load(item)
            dataset_splits = [
                make_regression_split(dataset.n_rows, seed=seed, dataset=dataset.name, index=i)
                if regression
                else make_split(dataset.y, seed=seed, dataset=dataset.name, index=i)
                for i in range(splits)
            ]
        except Exception as error:
            name = item.name if loaded else Path(item).stem
            for method in methods:
                for i in range(splits):
                    yield _dataset_failure(name, method, i, error, metrics)
            if progress is not None:
                progress.update(len(methods) * splits, dataset=name)
            continue
        for method, factory in methods.items():
            if warmup:
                evaluate(method, factory, dataset, dataset_splits[0])
            for split in dataset_splits:
                record = evaluate(method, factory, dataset, split)
                if progress is not None:
                    value = record[metrics[0]]
                    shown = {metrics[0]: math.nan if value is None else value}
                    progress.update(1, dataset=dataset.name, method=method, **shown)
                yield record


def _dataset_failure(name: str, method: str, index: int, error: Exception, metrics: Sequence[str]) -> dict:
    return {
        "dataset": name,
        "method": method,
        "split": index,
        **dict.fromkeys(metrics),
        "fit_seconds": None,
        "predict_seconds": None,
        "status": "failed",
        "error": f"dataset: {type(error).__name__}: {error}"[:500],
    }


# ---------------------------------------------------------------------------------------------
# Regression: the datasets of ../shared/regression, their validation/test split, metrics, run loop
# ---------------------------------------------------------------------------------------------

REGRESSION_PARTS = ("validation", "test")


def regression_split(name: str) -> str:
    """The part a regression dataset belongs to: "test" where crc32(name) % 3 == 0, else "validation".

    A rule of the name alone (no file, no seed), so that it never moves: about a third of the
    datasets are test datasets, measured once at the end of a piece of work; settings and choices are
    made on the validation ones. On ../shared/regression it puts 9 of the 26 datasets in test.
    """
    return "test" if zlib.crc32(name.encode()) % 3 == 0 else "validation"


@dataclasses.dataclass(frozen=True, kw_only=True)
class RegressionDataset(TabularDataset):
    """One regression dataset (../shared/regression/README.md): y (rows,) float64, finite, on its
    original scale."""


def load_regression_dataset(path: str | Path) -> RegressionDataset:
    """Reads one regression `NAME.npz` file (no `class_names`; `y` float); raises ValueError where `y`
    is not a finite number per row or the shapes disagree."""
    path = Path(path)
    with np.load(path) as data:
        name = str(data["name"]) if "name" in data else path.stem
        x = np.asarray(data["X"], dtype=np.float32)
        y = np.asarray(data["y"])
        categorical = np.asarray(data["categorical"], dtype=bool)
    if y.dtype.kind not in "fiub":
        raise ValueError(f"{path}: y has dtype {y.dtype}; a regression target must be numeric")
    y = y.astype(np.float64)
    if y.ndim != 1 or x.ndim != 2 or x.shape[0] != y.shape[0] or categorical.shape != (x.shape[1],):
        raise ValueError(f"{path}: shapes X {x.shape}, y {y.shape}, categorical {categorical.shape} disagree")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{path}: y holds {int(np.sum(~np.isfinite(y)))} non-finite values")
    return RegressionDataset(name=name, x=x, y=y, categorical=categorical)


def regression_dataset_paths(data_dir: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    """The regression `.npz` files to run on, sorted by name.

    names: dataset names, `all`, `validation` or `test` (the parts of `regression_split`). None
    means `validation`: test datasets are run only when asked for.
    """
    return _chosen_paths(data_dir, names, default="validation", groups=dict.fromkeys(REGRESSION_PARTS, _part))


def _part(name: str, data_dir: Path, available: Mapping[str, Path]) -> dict[str, Path]:
    """The files of the regression part `name` (see `regression_split`)."""
    return {k: p for k, p in available.items() if regression_split(k) == name}


def make_regression_split(n: int, **protocol: Any) -> Split:
    """One random split of `n` rows, as `make_split` without classes (`make_split(n, **protocol)`,
    the same keywords): `min(max_train_rows, n // 2)` training rows drawn at random, the rest in
    random order as the test part, cut at `max_test_rows`; seeded by `(seed, crc32(dataset), index)`
    alone."""
    return make_split(int(n), **protocol)


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """(R², RMSE / std(y_true)) on the test rows; the standard deviation is the population one, so
    a constant prediction at the test mean scores (0, 1). NaN, NaN where y_true is constant."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"predict gave shape {y_pred.shape} for {y_true.shape[0]} rows")
    if not np.all(np.isfinite(y_pred)):
        raise ValueError("predict returned non-finite values")
    spread = float(np.std(y_true))
    if spread == 0.0:
        return math.nan, math.nan
    mse = float(np.mean((y_true - y_pred) ** 2))
    return 1.0 - mse / spread**2, math.sqrt(mse) / spread


def evaluate_regression_split(
    method: str, factory: MethodFactory, dataset: RegressionDataset, split: Split
) -> dict:
    """`fit_and_score` for a regressor: `predict` scored by `r2` and `nrmse` (`regression_scores`;
    None where the test target is constant)."""

    def score(estimator, y_pred, y_test) -> dict:
        r2, nrmse = regression_scores(y_test, y_pred)
        return {"r2": _none_for_nan(r2), "nrmse": _none_for_nan(nrmse)}

    return fit_and_score(
        method, factory, dataset, split, predict="predict", score=score, metrics=("r2", "nrmse")
    )


def run_regression_benchmark(
    datasets: Iterable[str | Path | RegressionDataset], methods: Mapping[str, MethodFactory], **options
) -> Iterator[dict]:
    """`run_benchmark` for regressors: one record (see `evaluate_regression_split`) per dataset,
    split and method, as they finish; options: splits, seed, warmup, progress, as there."""
    return run_benchmark(datasets, methods, regression=True, **options)
