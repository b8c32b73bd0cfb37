"""Validation during meta-training: the current weights as a classifier on real datasets.

`Validator(data_dir, model_config)(params)` fits `MotherNetClassifier` with the given parameters on
fixed splits of real datasets and returns their mean ROC AUC (`val_auc`). The datasets are the
ones that are NOT TabPFN-test datasets: a folder's `MANIFEST.tsv` rows whose `tabpfn_split` is
`test` are left out, and so is every name in `evaluation.TABPFN_TEST` (the 30 test datasets of the TabPFN
paper) whatever the manifest says, so that choosing a recipe on `val_auc` never looks at the
datasets the final benchmark reports.

The protocol (`ValidationConfig`) is fixed and cheap: 2 splits per dataset, 2 ensemble members,
at most 512 training and 1,000 test rows, one-vs-rest for more than 2 classes. Splits and member
seeds depend only on the dataset and the split index, so two runs, or two points of one run, are
compared on the same rows.

A regression model (`ModelConfig.task == "regression"`) is validated by `RegressionValidator`
instead (`for_training` picks it): `val_r2`, the mean over the validation datasets of
`../shared/regression` (`evaluation.regression_split(name) == "validation"`; the test ones are
never read) of the mean R² over 2 seeded splits (`evaluation.make_regression_split`) of the child
as generated: one `generate` call on at most 512 raw training rows (categorical codes as numbers,
NaN as missing), predicting at most 1,000 test rows.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mothernet_jax.config import ModelConfig
from mothernet_jax.evaluation import (
    TABPFN_TEST,
    Dataset,
    RegressionDataset,
    load_dataset,
    load_regression_dataset,
    make_regression_split,
    make_split,
    proba_by_label,
    read_manifest,
    regression_dataset_paths,
    regression_scores,
    roc_auc,
)
from mothernet_jax.train.config import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True)
class ValidationConfig:
    """The fixed protocol of `val_auc` / `val_r2`: the estimator at the shipped defaults (4 native
    members of 256 context rows, the read-out refitted on every training row), beside the same
    estimator on an untrained hypernetwork (`control`)."""

    splits: int = 2  # random splits per dataset (evaluation.make_split, seeded by name and index)
    n_estimators: int = 4  # ensemble members (per class group)
    max_train_rows: int = 512  # training rows per split (fewer where the dataset is small)
    context_rows: int = 256  # the estimator's max_train_rows: context rows per member
    max_test_rows: int = 1_000  # test rows per split
    multiclass: str = "native"  # how k > 2 classes are put to the model
    output_layer: str = "refit"  # the estimator's read-out ("generated": the children as emitted)
    control: bool = True  # also score the untrained hypernetwork (init_params, one key per split)
    seed: int = 0

    def __post_init__(self):
        for name in ("splits", "n_estimators", "max_train_rows", "context_rows", "max_test_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ValidationConfig.{name} must be a positive integer, got {value!r}")
        if self.multiclass not in ("native", "one_vs_rest"):
            raise ValueError(
                f"ValidationConfig.multiclass must be 'native' or 'one_vs_rest', got {self.multiclass!r}"
            )
        if self.output_layer not in ("generated", "refit"):
            raise ValueError(
                f"ValidationConfig.output_layer must be 'generated' or 'refit', got {self.output_layer!r}"
            )

    def estimator_settings(self) -> dict[str, Any]:
        """The estimator's parameters of this protocol (no fine-tuning: the hypernetwork is measured)."""
        settings = {"n_estimators": self.n_estimators, "max_train_rows": self.context_rows,
                    "output_layer": self.output_layer, "finetune_steps": 0}  # fmt: skip
        return settings


def untrained_params(model_config: ModelConfig, split: int):
    """The control's hypernetwork for split `split`: `init_params(jax.random.key(split), config)`,
    one key per split, so that a control averaged over splits is averaged over initialisations."""
    from mothernet_jax.model.mothernet import init_params

    return init_params(jax.random.key(split), model_config)


def validation_paths(data_dir: str | Path) -> list[Path]:
    """The `.npz` datasets of `data_dir` that validation may read, sorted by name: every file but
    the manifest's `tabpfn_split == "test"` rows and the names in `TABPFN_TEST`."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"validation data folder {data_dir} does not exist")
    excluded = set(TABPFN_TEST)
    excluded.update(row["name"] for row in read_manifest(data_dir) if row.get("tabpfn_split") == "test")
    paths = [p for p in sorted(data_dir.glob("*.npz")) if p.stem not in excluded]
    if not paths:
        raise FileNotFoundError(
            f"no validation datasets in {data_dir}: it holds no .npz file outside the TabPFN test set"
        )
    return paths


def default_data_dir(task: str = "classification") -> Path | None:
    """`../shared/datasets` (regression: `../shared/regression`) beside a source checkout of the
    repository, where it exists."""
    folder = "regression" if task == "regression" else "datasets"
    candidate = Path(__file__).resolve().parents[3] / "shared" / folder
    return candidate if candidate.is_dir() else None


def for_training(model_config: ModelConfig, data: str | Path | None = None) -> Validator | RegressionValidator:
    """The validator of `mothernet-jax train --validate-every` for the model's task (`Validator`,
    or `RegressionValidator`): from the folder `data` (default: `default_data_dir(task)`), or one
    `ConfigError` line saying why it cannot be built."""
    regression = model_config.task == "regression"
    folder = data if data is not None else default_data_dir(model_config.task)
    if folder is None:
        default = "../shared/regression" if regression else "../shared/datasets"
        raise ConfigError(
            "--validate-every needs validation datasets: pass --validation-data DIR (a folder of .npz "
            f"datasets; {default} beside a source checkout is the default)"
        )
    try:
        return (RegressionValidator if regression else Validator)(folder, model_config)
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(f"validation data: {error}") from None


def seeded_splits(datasets: list, protocol: ValidationConfig, make: Callable[..., Any]) -> dict[str, list]:
    """{dataset name: its `protocol.splits` splits}, split i of a dataset being `make(dataset, seed=...,
    dataset=name, index=i, max_train_rows=..., max_test_rows=...)` (`make_split` or
    `make_regression_split` with the dataset's first argument), seeded by the protocol, the name and i."""
    return {
        d.name: [
            make(
                d,
                seed=protocol.seed,
                dataset=d.name,
                index=i,
                max_train_rows=protocol.max_train_rows,
                max_test_rows=protocol.max_test_rows,
            )
            for i in range(protocol.splits)
        ]
        for d in datasets
    }


def mean_per_dataset(datasets: list, splits: dict[str, list], score: Callable[[Any, Any], float]) -> dict[str, float]:
    """{dataset name: the mean of `score(dataset, split)` over its splits}, NaN scores left out (NaN
    where every split's is)."""
    per_dataset: dict[str, float] = {}
    for dataset in datasets:
        scores = [s for s in (score(dataset, split) for split in splits[dataset.name]) if not math.isnan(s)]
        per_dataset[dataset.name] = float(np.mean(scores)) if scores else math.nan
    return per_dataset


class _SplitValidator:
    """What both validators share: `datasets`, their `splits` and `names`, and the call that scores
    the weights (`_score`, the subclass's) beside the untrained control."""

    metric: str  # the key of the mean score ("val_auc", "val_r2")
    protocol: ValidationConfig
    model_config: ModelConfig
    datasets: list
    splits: dict[str, list]
    _control: dict[str, Any] | None = None

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.datasets]

    def __call__(self, params: Any) -> dict[str, Any]:
        started = time.perf_counter()
        scores = self._score(lambda split: (params, self.model_config))
        scores["val_seconds"] = time.perf_counter() - started
        if self.protocol.control:
            control = self.control()
            scores[f"{self.metric}_untrained"] = control[self.metric]
            scores["val_gap"] = scores[self.metric] - control[self.metric]
        return scores

    def control(self) -> dict[str, Any]:
        """The untrained control's scores (`untrained_params`, one key per split), computed once."""
        if self._control is None:
            untrained = {i: untrained_params(self.model_config, i) for i in range(self.protocol.splits)}
            self._control = self._score(lambda split: (untrained[split], self.model_config))
        return self._control

    def _score(self, weights_of: Callable[[int], Any]) -> dict[str, Any]:
        """The scores of the weights `weights_of(split index)` gives: {metric, ..., "val_datasets"}."""
        raise NotImplementedError


class Validator(_SplitValidator):
    """`validator(params) -> {"val_auc", "val_auc_categorical", "val_seconds", "val_datasets"}`.

    data_dir: a folder of `.npz` datasets (see `validation_paths` for which are read).
    val_auc is the mean over datasets of the mean ROC AUC over splits (macro one-vs-rest for
    multiclass); val_auc_categorical the same over the datasets with categorical columns (None
    where there is none); val_datasets the per-dataset AUCs.
    """

    metric = "val_auc"

    def __init__(
        self,
        data_dir: str | Path,
        model_config: ModelConfig,
        protocol: ValidationConfig | None = None,
    ):
        self.protocol = protocol or ValidationConfig()
        self.model_config = model_config
        self.paths = validation_paths(data_dir)
        self.datasets: list[Dataset] = [load_dataset(p) for p in self.paths]
        self.splits = seeded_splits(self.datasets, self.protocol, lambda d, **kw: make_split(d.y, **kw))

    def _score(self, weights_of: Callable[[int], Any]) -> dict[str, Any]:
        from mothernet_jax.estimator.classifier import MotherNetClassifier

        weights = {i: weights_of(i) for i in range(self.protocol.splits)}
        weights = {i: (jax.device_put(jax.device_get(p)), c) for i, (p, c) in weights.items()}

        def auc(dataset: Dataset, split) -> float:
            classifier = MotherNetClassifier(
                weights[split.index],
                random_state=split.seed,
                categorical_features=dataset.categorical,
                multiclass=self.protocol.multiclass,
                **self.protocol.estimator_settings(),
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                classifier.fit(dataset.x[split.train], dataset.y[split.train])
                proba = classifier.predict_proba(dataset.x[split.test])
            proba = proba_by_label(proba, classifier.classes_, dataset.n_classes)
            return roc_auc(dataset.y[split.test], proba)

        per_dataset = mean_per_dataset(self.datasets, self.splits, auc)
        categorical = [
            per_dataset[d.name] for d in self.datasets if d.categorical.any() and not math.isnan(per_dataset[d.name])
        ]
        scored = [v for v in per_dataset.values() if not math.isnan(v)]
        return {
            "val_auc": float(np.mean(scored)) if scored else math.nan,
            "val_auc_categorical": float(np.mean(categorical)) if categorical else None,
            "val_datasets": per_dataset,
        }


class RegressionValidator(_SplitValidator):
    """`validator(params) -> {"val_r2", "val_seconds", "val_datasets"}` for a regression model.

    data_dir: a folder of regression `.npz` datasets; only those `evaluation.regression_split` puts in
    "validation" are read. val_r2 is the mean over datasets of the mean R² over splits of the child
    as generated (see the module docstring; a child predicting a non-finite value is scored as the
    constant training-rows mean); val_datasets the per-dataset R²s. A dataset wider than
    the model's max_features keeps its first max_features columns.
    """

    metric = "val_r2"

    def __init__(self, data_dir: str | Path, model_config: ModelConfig, protocol: ValidationConfig | None = None):
        if model_config.task != "regression":
            raise ValueError(f"RegressionValidator needs a regression model, got task={model_config.task!r}")
        self.protocol = protocol or ValidationConfig()
        self.model_config = model_config
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise FileNotFoundError(f"validation data folder {data_dir} does not exist")
        self.paths = regression_dataset_paths(data_dir, ["validation"])
        if not self.paths:
            raise FileNotFoundError(f"no regression validation datasets in {data_dir}")
        self.datasets: list[RegressionDataset] = [load_regression_dataset(p) for p in self.paths]
        self.splits = seeded_splits(
            self.datasets, self.protocol, lambda d, **kw: make_regression_split(d.n_rows, **kw)
        )

    def _score(self, weights_of: Callable[[int], Any]) -> dict[str, Any]:
        from mothernet_jax.estimator.regressor import MotherNetRegressor

        weights = {i: weights_of(i) for i in range(self.protocol.splits)}
        weights = {i: (jax.device_put(jax.device_get(p)), c) for i, (p, c) in weights.items()}

        def r2(dataset: RegressionDataset, split) -> float:
            x = dataset.x
            regressor = MotherNetRegressor(
                weights[split.index],
                random_state=split.seed,
                categorical_features=dataset.categorical,
                **self.protocol.estimator_settings(),
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                regressor.fit(x[split.train], dataset.y[split.train])
                prediction = np.asarray(regressor.predict(x[split.test]))
            if not np.all(np.isfinite(prediction)):  # scored as the constant training mean
                prediction = np.full(split.test.size, dataset.y[split.train].mean())
            return regression_scores(dataset.y[split.test], prediction)[0]

        per_dataset = mean_per_dataset(self.datasets, self.splits, r2)
        scored = [v for v in per_dataset.values() if not math.isnan(v)]
        return {"val_r2": float(np.mean(scored)) if scored else math.nan, "val_datasets": per_dataset}


def main(argv: list[str] | None = None) -> int:
    """`python -m mothernet_jax.train.validate WEIGHTS [WEIGHTS ...] [--data DIR]`: the val_auc of
    weight files (msgpack + manifest, as `load_pretrained` reads them), one line each, so that a
    new export is shipped only when it validates better than the shipped file."""
    import argparse
    import json as json_module
    import sys

    from mothernet_jax.pretrained import WeightFileError, load_pretrained

    parser = argparse.ArgumentParser(
        prog="python -m mothernet_jax.train.validate",
        description="val_auc (mean ROC AUC on the non-TabPFN-test datasets, the training-time protocol) of weight "
        "files; val_r2 (mean R² on ../shared/regression's validation datasets) of regression weights",
    )
    parser.add_argument("weights", nargs="+", help="weight files (.msgpack with their .json manifest)")
    parser.add_argument(
        "--data",
        help="folder of .npz datasets (default: ../shared/datasets, for regression ../shared/regression, "
        "beside the checkout)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per file, with the per-dataset AUCs")
    args = parser.parse_args(argv)
    validators: dict[ModelConfig, Validator | RegressionValidator] = {}
    for path in args.weights:
        try:
            params, config = load_pretrained(path)
        except (WeightFileError, FileNotFoundError) as error:
            print(f"validate: {error}", file=sys.stderr)
            return 1
        data = args.data or default_data_dir(config.task)
        if data is None:
            print("validate: no validation data: pass --data DIR", file=sys.stderr)
            return 1
        if config not in validators:
            validators[config] = (RegressionValidator if config.task == "regression" else Validator)(data, config)
        scores = validators[config](params)
        if args.json:
            print(json_module.dumps({"weights": str(path), **scores}))
        elif "val_r2" in scores:
            print(f"{path}: val_r2 {scores['val_r2']:.4f} ({len(scores['val_datasets'])} datasets, "
                  f"{scores['val_seconds']:.0f} s)")  # fmt: skip
        else:
            categorical = scores["val_auc_categorical"]
            print(
                f"{path}: val_auc {scores['val_auc']:.4f}, categorical "
                f"{'-' if categorical is None else f'{categorical:.4f}'} "
                f"({len(scores['val_datasets'])} datasets, {scores['val_seconds']:.0f} s)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
