"""The evaluation protocol on two tiny datasets with a fake fast method: splits, AUC, failures."""

import math

import numpy as np
import pytest
from bench_helpers import FailsOnBinary, NearestMean, two_datasets, write_dataset
from shared_data import DATASETS, needs_datasets
from sklearn.metrics import roc_auc_score

from mothernet_jax.benchmarks import report
from mothernet_jax.evaluation import (
    dataset_paths,
    load_dataset,
    make_split,
    proba_by_label,
    roc_auc,
    run_benchmark,
)

# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


def test_split_is_a_function_of_seed_dataset_and_index():
    y = np.arange(300) % 3
    first = make_split(y, seed=0, dataset="a", index=1)
    again = make_split(y, seed=0, dataset="a", index=1)
    np.testing.assert_array_equal(first.train, again.train)
    np.testing.assert_array_equal(first.test, again.test)
    assert first.seed == again.seed
    for other in [
        make_split(y, seed=1, dataset="a", index=1),
        make_split(y, seed=0, dataset="b", index=1),
        make_split(y, seed=0, dataset="a", index=2),
    ]:
        assert not np.array_equal(np.sort(first.train), np.sort(other.train))


@pytest.mark.parametrize("n", [12, 40, 61, 150, 2001, 5000])
def test_split_sizes_and_every_class_in_training(n):
    y = np.arange(n) % 5
    y[-1] = 5  # a class with a single row
    for index in range(5):
        split = make_split(y, seed=3, dataset="d", index=index)
        train_rows = min(1000, n // 2)
        assert split.train.size == train_rows
        assert split.test.size == min(2000, n - train_rows)
        assert np.intersect1d(split.train, split.test).size == 0
        assert np.unique(split.train).size == split.train.size
        np.testing.assert_array_equal(np.unique(y[split.train]), np.unique(y))


def test_split_refuses_more_classes_than_training_rows():
    with pytest.raises(ValueError, match="classes do not fit"):
        make_split(np.arange(6), seed=0, dataset="d", index=0)


def test_splits_of_the_tiny_datasets(tmp_path):
    for path in two_datasets(tmp_path):
        dataset = load_dataset(path)
        for index in range(5):
            split = make_split(dataset.y, seed=0, dataset=dataset.name, index=index)
            assert set(dataset.y[split.train]) == set(range(dataset.n_classes))


# ---------------------------------------------------------------------------------------------
# AUC
# ---------------------------------------------------------------------------------------------


def test_binary_auc_is_that_of_class_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=50)
    p1 = rng.random(50)
    proba = np.column_stack([1 - p1, p1])
    assert roc_auc(y, proba) == pytest.approx(roc_auc_score(y, p1))
    assert roc_auc(1 - y, proba) == pytest.approx(1 - roc_auc_score(y, p1))


def test_multiclass_auc_is_the_one_vs_rest_macro_average():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, size=80)
    proba = rng.dirichlet(np.ones(4), size=80)
    expected = roc_auc_score(y, proba, multi_class="ovr", average="macro")
    assert roc_auc(y, proba) == pytest.approx(expected)


def test_multiclass_auc_leaves_out_classes_absent_from_the_test_part():
    rng = np.random.default_rng(2)
    y = rng.choice([0, 1, 3], size=80)  # class 2 absent
    proba = rng.dirichlet(np.ones(4), size=80)
    expected = np.mean([roc_auc_score(y == c, proba[:, c]) for c in (0, 1, 3)])
    assert roc_auc(y, proba) == pytest.approx(expected)


def test_auc_of_a_single_class_test_part_is_nan():
    assert math.isnan(roc_auc(np.ones(5, dtype=int), np.full((5, 2), 0.5)))


def test_proba_columns_are_placed_by_label():
    proba = np.array([[0.2, 0.8], [0.6, 0.4]])
    full = proba_by_label(proba, np.array([2, 0]), 3)
    np.testing.assert_array_equal(full, [[0.8, 0.0, 0.2], [0.4, 0.0, 0.6]])
    with pytest.raises(ValueError, match="non-finite"):
        proba_by_label(np.full((2, 2), np.nan), np.array([0, 1]), 2)


# ---------------------------------------------------------------------------------------------
# Running methods
# ---------------------------------------------------------------------------------------------


def test_run_records_every_split_and_failures_without_stopping(tmp_path):
    paths = two_datasets(tmp_path)
    methods = {"nearest_mean": NearestMean, "fails_on_binary": FailsOnBinary}
    records = list(run_benchmark(paths, methods, splits=3, seed=0))
    assert len(records) == 2 * 2 * 3

    by_key = {(r["dataset"], r["method"], r["split"]): r for r in records}
    for dataset in ("tiny-binary", "tiny-multiclass"):
        for split in range(3):
            ok = by_key[(dataset, "nearest_mean", split)]
            assert ok["status"] == "ok" and ok["error"] is None
            assert 0.0 <= ok["auc"] <= 1.0 and 0.0 <= ok["accuracy"] <= 1.0
            assert ok["fit_seconds"] >= 0 and ok["predict_seconds"] >= 0
    failed = by_key[("tiny-binary", "fails_on_binary", 0)]
    assert failed["status"] == "failed" and failed["auc"] is None
    assert "RuntimeError: this method cannot do binary tasks" in failed["error"]
    assert by_key[("tiny-multiclass", "fails_on_binary", 0)]["status"] == "ok"

    # The recorded AUC is the specified one, recomputed from the split.
    dataset = load_dataset(paths[1])
    split = make_split(dataset.y, seed=0, dataset=dataset.name, index=2)
    model = NearestMean().fit(dataset.x[split.train], dataset.y[split.train])
    expected = roc_auc(dataset.y[split.test], model.predict_proba(dataset.x[split.test]))
    assert by_key[("tiny-multiclass", "nearest_mean", 2)]["auc"] == pytest.approx(expected)

    # Same seed, same numbers.
    again = list(run_benchmark(paths, methods, splits=3, seed=0))
    assert [r["auc"] for r in again] == [r["auc"] for r in records]

    # The tables list the failure and score it as a constant predictor.
    summary = report.summarise(records)
    assert summary.failed == {"nearest_mean": [], "fails_on_binary": ["tiny-binary"]}
    j = summary.methods.index("fails_on_binary")
    assert summary.scores[summary.datasets.index("tiny-binary"), j] == report.FAILED_AUC
    markdown = report.summary_markdown(records, summary.methods)
    assert (
        "| tiny-binary | fails_on_binary | 3 | RuntimeError: this method cannot do binary tasks" in markdown
    )
    assert "failed" in report.dataset_table(records, summary.methods)


def test_unreadable_dataset_fails_for_every_method(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    records = list(run_benchmark([broken, *two_datasets(tmp_path)], {"nearest_mean": NearestMean}, splits=2))
    assert [r["status"] for r in records if r["dataset"] == "broken"] == ["failed", "failed"]
    assert all(r["status"] == "ok" for r in records if r["dataset"] != "broken")


def test_summary_ranks_and_normalised_auc():
    records = []
    for dataset, aucs in {"d1": (0.9, 0.8, 0.7), "d2": (0.6, 0.6, 0.9)}.items():
        for method, auc in zip("abc", aucs, strict=True):
            records.append(
                {"dataset": dataset, "method": method, "split": 0, "status": "ok", "auc": auc,
                 "accuracy": 0.5, "fit_seconds": 1.0, "predict_seconds": 0.1, "error": None}
            )  # fmt: skip
    summary = report.summarise(records)
    np.testing.assert_allclose(summary.ranks, [[1, 2, 3], [2.5, 2.5, 1]])
    np.testing.assert_allclose(summary.normalised, [[1, 0.5, 0], [0, 0, 1]])
    assert [summary.methods[j] for j in summary.order()] == ["a", "c", "b"]
    assert summary.fit_seconds["a"] == 1.0


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------


def test_dataset_names_and_groups(tmp_path):
    two_datasets(tmp_path)
    write_dataset(tmp_path, "other", np.zeros((4, 1)), np.array([0, 1, 0, 1]), np.array([False]))
    (tmp_path / "MANIFEST.tsv").write_text(
        "name\ttabpfn_split\ntiny-binary\ttest\ntiny-multiclass\ttest\nother\t-\n"
    )
    assert [p.stem for p in dataset_paths(tmp_path, ["tabpfn-test"])] == ["tiny-binary", "tiny-multiclass"]
    assert [p.stem for p in dataset_paths(tmp_path)] == ["other", "tiny-binary", "tiny-multiclass"]
    assert [p.stem for p in dataset_paths(tmp_path, ["other"])] == ["other"]
    assert [p.stem for p in dataset_paths(tmp_path, ["non-test"])] == ["other"]
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        dataset_paths(tmp_path, ["nope"])


@needs_datasets
def test_tabpfn_test_group_has_the_twenty_datasets():
    paths = dataset_paths(DATASETS, ["tabpfn-test"])
    assert len(paths) == 20
    assert {"credit-g", "diabetes", "tic-tac-toe"} <= {p.stem for p in paths}
