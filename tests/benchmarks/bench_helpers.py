"""Small datasets in the shared `.npz` format and a fake fast method, for the benchmark tests."""

from pathlib import Path

import numpy as np


def write_dataset(folder: Path, name: str, x: np.ndarray, y: np.ndarray, categorical: np.ndarray) -> Path:
    """Writes `folder/name.npz` with every array of the format in docs/ARCHITECTURE.md section 6."""
    path = folder / f"{name}.npz"
    n_classes = int(y.max()) + 1
    n_categories = np.where(categorical, np.nan_to_num(np.nanmax(x, axis=0)) + 1, 0).astype(np.int64)
    np.savez(
        path,
        X=x.astype(np.float32),
        y=y.astype(np.int64),
        categorical=categorical.astype(bool),
        source=np.array("synthetic"),
        name=np.array(name),
        openml_id=np.array(-1),
        feature_names=np.array([f"f{j}" for j in range(x.shape[1])]),
        class_names=np.array([f"c{k}" for k in range(n_classes)]),
        n_categories=n_categories,
    )
    return path


def two_datasets(folder: Path) -> list[Path]:
    """A binary dataset with a categorical column and NaN, and a 4-class one whose class 3 has one row."""
    rng = np.random.default_rng(0)
    n = 40
    y = (np.arange(n) % 4 == 0).astype(np.int64)  # imbalanced: 10 positives
    x = np.column_stack([rng.normal(size=n) + 2 * y, rng.integers(0, 3, size=n), rng.normal(size=n)])
    x[rng.random(x.shape) < 0.1] = np.nan
    binary = write_dataset(folder, "tiny-binary", x, y, np.array([False, True, False]))

    n = 61
    y = np.concatenate([np.repeat([0, 1, 2], 20), [3]])
    x = rng.normal(size=(n, 4)) + y[:, None]
    multiclass = write_dataset(folder, "tiny-multiclass", x, y, np.zeros(4, dtype=bool))
    return [binary, multiclass]


class NearestMean:
    """A fake fast classifier: softmax over negative squared distances to the class means."""

    def __init__(self, categorical_mask=None, seed=0):
        self.categorical_mask = categorical_mask
        self.seed = seed

    def fit(self, x, y):
        x = np.nan_to_num(x)
        self.classes_ = np.unique(y)
        self.means_ = np.stack([x[y == c].mean(axis=0) for c in self.classes_])
        return self

    def predict_proba(self, x):
        distance = ((np.nan_to_num(x)[:, None, :] - self.means_[None]) ** 2).sum(axis=-1)
        logits = -distance - (-distance).max(axis=1, keepdims=True)
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


class FailsOnBinary(NearestMean):
    """Raises in fit on two-class data, to check that failures are recorded, not raised."""

    def fit(self, x, y):
        if np.unique(y).size == 2:
            raise RuntimeError("this method cannot do binary tasks")
        return super().fit(x, y)
