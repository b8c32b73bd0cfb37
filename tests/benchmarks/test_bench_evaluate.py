"""The evaluate CLI end to end on two real datasets, and the method registry on awkward data."""

import csv
import json

import numpy as np
import pytest
from bench_helpers import NearestMean, two_datasets
from shared_data import DATASETS, FIXTURES, needs_datasets, needs_fixtures
from threadpoolctl import threadpool_limits

from mothernet_jax.benchmarks import evaluate
from mothernet_jax.benchmarks.methods import METHODS, Method, resolve_methods


@pytest.mark.slow  # the CLI end to end: test_cli_runs_mothernet_from_a_weight_file below runs it in the default run,
# test_bench_report.py writes and lists every output
@needs_datasets
def test_cli_end_to_end_on_two_datasets_with_two_methods(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--data", str(DATASETS), "--datasets", "iris", "haberman"]
    argv += ["--methods", "logistic_regression", "knn", "--out", str(out), "--quiet"]
    assert evaluate.main(argv) == 0

    for name in set(evaluate.OUTPUT_FILES) - {"cd_diagram.png"}:
        assert (out / name).stat().st_size > 0, name
    assert (out / "auc_vs_time.png").read_bytes()[:4] == b"\x89PNG"
    # two methods on two datasets: too few for the Friedman test, said in one line
    captured = capsys.readouterr()
    assert not (out / "cd_diagram.png").exists()
    assert "no cd_diagram.png: the critical-difference diagram needs 3 methods and 5 datasets, got 2 and 2" in (
        captured.err
    )

    records = [json.loads(line) for line in (out / "splits.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 2 * 5
    assert {r["status"] for r in records} == {"ok"}
    assert all(0.5 < r["auc"] <= 1.0 for r in records)
    assert {(r["train_rows"], r["test_rows"]) for r in records if r["dataset"] == "iris"} == {(75, 75)}

    with (out / "datasets.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {(r["dataset"], r["method"], r["status"]) for r in rows} == {
        (d, m, "ok") for d in ("iris", "haberman") for m in ("logistic_regression", "knn")
    }

    summary = (out / "summary.md").read_text()
    assert "## Summary over 2 datasets" in summary
    assert "| logistic_regression |" in summary and "| knn |" in summary
    assert "python -m mothernet_jax.benchmarks.evaluate --data" in summary
    assert "| method | mean AUC | mean rank (sd) |" in captured.out


def test_evaluate_records_a_failing_method_and_goes_on(tmp_path):
    class Broken(NearestMean):
        def predict_proba(self, x):
            return np.full((len(x), len(self.classes_)), np.nan)

    data = tmp_path / "data"
    data.mkdir()
    two_datasets(data)
    records = evaluate.evaluate(
        data,
        tmp_path / "out",
        methods={"nearest_mean": NearestMean, "broken": Broken},
        splits=2,
        progress=False,
    )
    assert {r["status"] for r in records if r["method"] == "broken"} == {"failed"}
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| tiny-binary | broken | 2 | ValueError: predict_proba returned non-finite values" in summary


def test_cli_rejects_unknown_datasets_and_conflicting_options(tmp_path, capsys):
    two_datasets(tmp_path)
    argv = ["--data", str(tmp_path), "--methods", "knn", "--out", str(tmp_path / "o"), "--quiet"]
    assert evaluate.main([*argv, "--datasets", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main([*argv, "--datasets", "iris", "--tabpfn-test"])
    with pytest.raises(SystemExit):
        evaluate.main([*argv, "--methods", "no_such_method"])


# ---------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------


def test_unavailable_methods_are_skipped_with_the_reason(monkeypatch):
    monkeypatch.setitem(
        METHODS,
        "ghost",
        Method(
            name="ghost", label="Ghost", description="", build=NearestMean, requires=("no_such_module_x",)
        ),
    )
    factories, skipped = resolve_methods(["knn", "ghost"])
    assert list(factories) == ["knn"]
    assert "cannot import no_such_module_x" in skipped["ghost"]
    with pytest.raises(ValueError, match="unknown method"):
        resolve_methods(["nope"])


BASELINES = [n for n in METHODS if n not in ("mothernet", "untrained") and not n.startswith("generate")]  # test_bench_controls


@pytest.mark.filterwarnings("ignore:Skipping features without any observed values")
@pytest.mark.parametrize("name", BASELINES)
def test_baselines_handle_missing_values_and_categorical_columns(name):
    if METHODS[name].unavailable():
        pytest.skip(METHODS[name].unavailable())
    rng = np.random.default_rng(0)
    n = 90
    y = np.arange(n) % 3
    x = np.column_stack(
        [
            rng.normal(size=n) + y,
            rng.integers(0, 4, size=n),
            rng.integers(0, 300, size=n),  # too many levels for native categorical boosting
            np.full(n, np.nan),  # entirely missing
        ]
    ).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    mask = np.array([False, True, True, False])
    factories, _ = resolve_methods([name], n_jobs=1)
    x_test = x[60:].copy()
    x_test[0, 1] = 7  # a category unseen in training
    # One thread: OpenMP boosting slows a hundredfold when other processes hold the cores.
    with threadpool_limits(limits=1):
        model = factories[name](mask, 0).fit(x[:60], y[:60])
        proba = model.predict_proba(x_test)
    assert proba.shape == (30, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])


def test_mothernet_factory_passes_weights_seed_and_categorical_mask():
    model = METHODS["mothernet"].build(np.array([False, True]), 7, weights="some/path.msgpack")
    params = model.get_params()
    assert params["weights"] == "some/path.msgpack"
    assert params["random_state"] == 7 and params["multiclass"] == "auto"
    assert params["finetune_steps"] == "auto"  # the benchmark measures the classifier's defaults
    assert METHODS["mothernet"].build(np.zeros(2, bool), 7, multiclass="native").multiclass == "native"
    np.testing.assert_array_equal(params["categorical_features"], [False, True])


def test_mothernet_with_a_missing_weight_file_is_skipped_with_the_reason(tmp_path, capsys):
    factories, skipped = resolve_methods(["mothernet", "knn"], weights=str(tmp_path / "none.msgpack"))
    assert list(factories) == ["knn"]
    assert "none.msgpack does not exist" in skipped["mothernet"]


@needs_fixtures
def test_cli_runs_mothernet_from_a_weight_file(tmp_path):
    import mothernet_jax as mn
    from mothernet_jax.model.convert import from_reference
    from mothernet_jax.pretrained import save_pretrained

    # The reference implementation's tiny model, converted and saved as a weight file.
    with np.load(FIXTURES / "tiny_class_average.npz") as fixture:
        state = {k.removeprefix("state/"): fixture[k] for k in fixture.files if k.startswith("state/")}
    config = mn.preset("tiny_class_average")
    weights = tmp_path / "tiny.msgpack"
    save_pretrained(weights, from_reference(state, config), config, dtype="float32")
    data = tmp_path / "data"
    data.mkdir()
    two_datasets(data)
    out = tmp_path / "run"
    argv = ["--data", str(data), "--methods", "mothernet", "logistic_regression", "--weights", str(weights)]
    argv += ["--multiclass", "one_vs_rest"]
    assert (
        evaluate.main([*argv, "--datasets", "tiny-binary", "--splits", "2", "--out", str(out), "--quiet"])
        == 0
    )
    records = [json.loads(line) for line in (out / "splits.jsonl").read_text().splitlines()]
    mothernet = [r for r in records if r["method"] == "mothernet"]
    assert len(mothernet) == 2 and {r["status"] for r in mothernet} == {"ok"}, mothernet
    assert f"MotherNet weights: {weights}, multiclass=one_vs_rest, finetune_steps=auto (0)" in (
        out / "summary.md"
    ).read_text()  # its manifest recommends no fine-tuning


def test_finetune_steps_option_is_auto_or_a_count(tmp_path, capsys):
    for bad in ("-1", "many"):
        with pytest.raises(SystemExit):
            evaluate.main(["--data", str(tmp_path), "--finetune-steps", bad])
        assert "expected 'auto' or an integer >= 0" in capsys.readouterr().err
