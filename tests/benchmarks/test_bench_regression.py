"""The regression benchmark: the validation/test split of the datasets, loading, splits, metrics, the
regressors on awkward data and the evaluate CLI end to end on small synthetic datasets."""

import json
import math

import numpy as np
import pytest
from shared_data import SHARED
from threadpoolctl import threadpool_limits

from mothernet_jax.benchmarks import evaluate, regression
from mothernet_jax.benchmarks.methods import resolve_methods
from mothernet_jax.evaluation import (
    load_regression_dataset,
    make_regression_split,
    regression_dataset_paths,
    regression_scores,
    regression_split,
    run_regression_benchmark,
)

REGRESSION_DATA = SHARED / "regression"
needs_regression = pytest.mark.skipif(not REGRESSION_DATA.is_dir(), reason="needs ../shared/regression")

# The rule's output on ../shared/regression, written out: a change of the rule must be deliberate.
TEST_DATASETS = {
    "AER-Journals",
    "Ecdat-Diamond",
    "modeldata-car_prices",
    "modeldata-deliveries",
    "modeldata-stackoverflow",
    "mosaicData-SaratogaHouses",
    "quantreg-barro",
    "wooldridge-gpa2",
    "wooldridge-wage2",
}


def write_regression(folder, name, x, y, categorical):
    path = folder / f"{name}.npz"
    np.savez(
        path,
        X=x.astype(np.float32),
        y=np.asarray(y) if np.asarray(y).dtype.kind == "U" else np.asarray(y, dtype=np.float64),
        categorical=np.asarray(categorical, dtype=bool),
        name=np.array(name),
        source=np.array("synthetic"),
    )
    return path


def linear_data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=n), rng.integers(0, 3, size=n), rng.normal(size=n)])
    y = 3 * x[:, 0] + np.array([0.0, 2.0, -2.0])[x[:, 1].astype(int)] + 0.1 * rng.normal(size=n)
    x[rng.random(x.shape) < 0.05] = np.nan
    return x, y, np.array([False, True, False])


def test_regression_split_is_the_crc32_rule():
    names = [f"dataset-{i}" for i in range(300)]
    parts = [regression_split(n) for n in names]
    assert set(parts) == {"validation", "test"}
    assert 0.25 < parts.count("test") / len(parts) < 0.42  # about a third
    assert [regression_split(n) for n in names] == parts  # no seed, no state


@needs_regression
def test_regression_split_of_the_shared_datasets():
    names = {p.stem for p in REGRESSION_DATA.glob("*.npz")}
    assert {n for n in names if regression_split(n) == "test"} == TEST_DATASETS
    test = regression_dataset_paths(REGRESSION_DATA, ["test"])
    validation = regression_dataset_paths(REGRESSION_DATA)  # the default: validation
    assert {p.stem for p in test} == TEST_DATASETS
    assert {p.stem for p in validation} == names - TEST_DATASETS
    dataset = load_regression_dataset(validation[0])
    assert dataset.y.dtype == np.float64 and dataset.x.dtype == np.float32
    assert dataset.categorical.shape == (dataset.n_features,)


def test_loading_refuses_a_non_numeric_or_non_finite_target(tmp_path):
    x, y, categorical = linear_data(20)
    write_regression(tmp_path, "text", x, np.array(["a"] * 20), categorical)
    with pytest.raises(ValueError, match="text.npz: y has dtype <U1; a regression target must be numeric"):
        load_regression_dataset(tmp_path / "text.npz")
    y[3] = np.inf
    write_regression(tmp_path, "inf", x, y, categorical)
    with pytest.raises(ValueError, match="inf.npz: y holds 1 non-finite values"):
        load_regression_dataset(tmp_path / "inf.npz")
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        regression_dataset_paths(tmp_path, ["nope"])


@pytest.mark.parametrize("n", [9, 100, 4000])
def test_regression_split_sizes_and_seeding(n):
    split = make_regression_split(n, seed=0, dataset="d", index=1)
    assert split.train.size == min(1000, n // 2)
    assert split.test.size == min(2000, n - split.train.size)
    assert np.intersect1d(split.train, split.test).size == 0
    again = make_regression_split(n, seed=0, dataset="d", index=1)
    np.testing.assert_array_equal(split.train, again.train)
    assert split.seed == again.seed
    other = make_regression_split(n, seed=0, dataset="e", index=1)
    assert not np.array_equal(split.train, other.train)
    with pytest.raises(ValueError, match="3 rows are too few to split"):
        make_regression_split(3, seed=0, dataset="d", index=0)


def test_regression_scores():
    y = np.array([1.0, 2.0, 3.0, 6.0])
    r2, nrmse = regression_scores(y, np.full(4, y.mean()))
    assert r2 == pytest.approx(0.0) and nrmse == pytest.approx(1.0)
    r2, nrmse = regression_scores(y, y)
    assert r2 == 1.0 and nrmse == 0.0
    pred = y + np.array([1.0, -1.0, 0.5, 0.0])
    r2, nrmse = regression_scores(y, pred)
    spread = np.std(y)
    assert nrmse == pytest.approx(np.sqrt(np.mean((pred - y) ** 2)) / spread)
    assert r2 == pytest.approx(1 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2))
    assert all(math.isnan(v) for v in regression_scores(np.ones(3), np.zeros(3)))
    with pytest.raises(ValueError, match="non-finite"):
        regression_scores(y, np.array([1.0, np.nan, 0.0, 0.0]))


@pytest.mark.filterwarnings("ignore:Skipping features without any observed values")
@pytest.mark.parametrize("name", ["ridge", "knn", "random_forest", "hist_gradient_boosting"])
def test_regressors_handle_missing_values_and_categorical_columns(name):
    x, y, categorical = linear_data(120)
    x = np.column_stack([x, np.full(120, np.nan)])  # a column entirely missing
    categorical = np.append(categorical, False)
    factories, _ = resolve_methods([name], registry=regression.REGRESSION_METHODS, n_jobs=1)
    x_test = x[80:].copy()
    x_test[0, 1] = 7  # a category unseen in training
    with threadpool_limits(limits=1):
        model = factories[name](categorical, 0).fit(x[:80], y[:80])
        prediction = model.predict(x_test)
    assert prediction.shape == (40,)
    r2, _ = regression_scores(y[80:], prediction)
    assert r2 > 0.5, r2  # every baseline learns a strong linear signal


def test_mothernet_regressor_runs_on_the_shipped_weights_and_a_missing_file_is_skipped_with_the_reason(tmp_path):
    factories, skipped = resolve_methods(["mothernet", "ridge"], registry=regression.REGRESSION_METHODS)
    assert list(factories) == ["mothernet", "ridge"] and not skipped  # the shipped small-regression weights
    missing = tmp_path / "none.msgpack"
    factories, skipped = resolve_methods(
        ["mothernet", "ridge"], registry=regression.REGRESSION_METHODS, weights=str(missing)
    )
    assert list(factories) == ["ridge"]
    assert "none.msgpack" in skipped["mothernet"]


def test_failed_methods_score_as_the_constant_prediction(tmp_path):
    class Broken:
        def __init__(self, categorical_mask=None, seed=0):
            pass

        def fit(self, x, y):
            return self

        def predict(self, x):
            return np.full(len(x), np.nan)

    x, y, categorical = linear_data(60)
    path = write_regression(tmp_path, "lin", x, y, categorical)
    factories, _ = resolve_methods(["ridge"], registry=regression.REGRESSION_METHODS)
    records = list(run_regression_benchmark([path], {**factories, "broken": Broken}, splits=2))
    assert [r["status"] for r in records] == ["ok", "ok", "failed", "failed"]
    assert "predict returned non-finite values" in records[-1]["error"]
    result = regression.summarise(records)
    np.testing.assert_allclose(result.summary.scores[0, 1], regression.FAILED_R2)
    np.testing.assert_allclose(result.nrmse[0, 1], regression.FAILED_NRMSE)
    assert result.summary.failed == {"ridge": [], "broken": ["lin"]}


def test_cli_end_to_end_regression(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    names = ["lin-a", "lin-b", "lin-c"]  # one of them in test: only the others run by default
    for i, name in enumerate(names):
        write_regression(data, name, *linear_data(50 + 10 * i, seed=i))
    validation = [n for n in names if regression_split(n) == "validation"]
    out = tmp_path / "run"
    argv = ["--task", "regression", "--data", str(data), "--methods", "ridge", "hist_gradient_boosting"]
    assert evaluate.main([*argv, "--splits", "2", "--threads", "1", "--out", str(out), "--quiet"]) == 0
    for name in regression.OUTPUT_FILES:
        assert (out / name).stat().st_size > 0, name
    assert (out / "r2_vs_time.png").read_bytes()[:4] == b"\x89PNG"
    records = [json.loads(line) for line in (out / "splits.jsonl").read_text().splitlines()]
    assert sorted({r["dataset"] for r in records}) == sorted(validation)
    assert len(records) == len(validation) * 2 * 2
    assert all(r["status"] == "ok" and r["r2"] > 0.8 for r in records if r["method"] == "ridge")
    summary = (out / "summary.md").read_text()
    assert "| method | mean R² | mean normalised RMSE | mean rank (sd) |" in summary
    assert "| ridge |" in summary and "fit / HGB" in summary
    assert "--task regression" in summary
    assert "| method | mean R² |" in capsys.readouterr().out

    # a classification-only method is refused for regression, and the other way round
    with pytest.raises(SystemExit):
        evaluate.main([*argv[:4], "--methods", "logistic_regression", "--out", str(out)])
    with pytest.raises(SystemExit):
        evaluate.main(["--methods", "ridge", "--out", str(out)])


@pytest.mark.slow  # about 16 s: compiles the tiny model for two row buckets
def test_cli_runs_the_mothernet_regressor_from_a_weight_file(tmp_path):
    import jax

    import mothernet_jax as mn
    from mothernet_jax.pretrained import save_pretrained

    config = mn.preset("tiny-regression")
    weights = tmp_path / "tiny-regression.msgpack"
    save_pretrained(weights, mn.init_params(jax.random.key(0), config), config, dtype="float32")
    data = tmp_path / "data"
    data.mkdir()
    write_regression(data, "lin-a", *linear_data(80))
    out = tmp_path / "run"
    argv = ["--task", "regression", "--data", str(data), "--datasets", "lin-a", "--methods", "mothernet", "ridge"]
    argv += ["--weights", str(weights), "--splits", "2", "--threads", "1", "--out", str(out), "--quiet"]
    assert evaluate.main(argv) == 0
    records = [json.loads(line) for line in (out / "splits.jsonl").read_text().splitlines()]
    mothernet = [r for r in records if r["method"] == "mothernet"]
    assert len(mothernet) == 2 and all(r["status"] == "ok" for r in mothernet), mothernet
    assert all(math.isfinite(r["r2"]) and r["fit_seconds"] > 0 for r in mothernet)
    assert f"MotherNet weights: {weights}, finetune_steps=auto" in (out / "summary.md").read_text()


def test_mothernet_regressor_factory_passes_weights_seed_and_categorical_mask():
    model = regression.REGRESSION_METHODS["mothernet"].build(np.array([False, True]), 7, weights="w.msgpack")
    assert model.get_params()["random_state"] == 7 and model.get_params()["weights"] == "w.msgpack"
    np.testing.assert_array_equal(model.get_params()["categorical_features"], [False, True])
