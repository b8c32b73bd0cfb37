"""The regressor's levers map: its settings mean the same whatever the weights recommend, and it
runs the validation part only, with the baselines, into a summary with ratios to gradient boosting."""

import json

import numpy as np
import pytest
from test_bench_regression import linear_data, write_regression

from mothernet_jax import settings
from mothernet_jax.benchmarks import regression_levers
from mothernet_jax.evaluation import regression_split


def test_every_setting_is_a_valid_regressor_setting_named_explicitly():
    assert set(regression_levers.BASE) == set(settings.REGRESSOR)
    for name, setting in regression_levers.SETTINGS.items():
        assert set(setting) <= set(settings.REGRESSOR), name
        for key, value in setting.items():
            settings.check(key, value)
    reg = regression_levers.factory(regression_levers.SETTINGS["4x256 refit"])([False, True], 3)
    params = reg.get_params()
    assert all(params[k] != "auto" for k in settings.REGRESSOR)
    assert (params["n_estimators"], params["max_train_rows"], params["output_layer"], params["finetune_steps"]) == (
        4, 256, "refit", 0)  # fmt: skip
    assert params["random_state"] == 3 and params["categorical_features"].tolist() == [False, True]


@pytest.mark.slow  # the map end to end (its baselines fit on three datasets); its parts: test_bench_regression.py
def test_the_map_reads_the_validation_part_only(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    names = ["lin-a", "lin-b", "lin-c"]  # one of them in the test part
    for i, name in enumerate(names):
        write_regression(data, name, *linear_data(40 + 10 * i, seed=i))
    out = tmp_path / "map"
    regression_levers.main(
        ["--data", str(data), "--out", str(out), "--settings", "ridge", "hist_gradient_boosting", "--splits", "2"]
    )
    records = [json.loads(line) for line in (out / "splits.jsonl").read_text().splitlines()]
    validation = sorted(n for n in names if regression_split(n) == "validation")
    assert 0 < len(validation) < len(names)
    assert sorted({r["dataset"] for r in records}) == validation
    assert len(records) == len(validation) * 2 * 2 and all(r["status"] == "ok" for r in records)
    summary = (out / "summary.md").read_text()
    assert "| ridge |" in summary and "fit / HGB" in summary and "regression_levers" in summary
    assert "| method | mean R² |" in capsys.readouterr().out


class GaussianGuess:
    """A regressor whose predictions are the truth's mean with a fixed std: y ~ N(mean, 1) data
    gives the Gaussian coverage at every level."""

    def __init__(self, categorical_mask, seed):
        pass

    def fit(self, X, y):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X, return_std=False):
        mean = np.full(len(X), self.mean_)
        return (mean, np.ones(len(X))) if return_std else mean


def test_interval_coverage_counts_the_rows_inside_each_interval(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    write_regression(data, "gauss-a", rng.normal(size=(4000, 2)), rng.normal(size=4000), np.zeros(2, bool))
    paths = sorted(data.glob("*.npz"))
    rows = regression_levers.interval_coverage(paths, GaussianGuess, splits=2)
    assert [r["dataset"] for r in rows] == ["gauss-a"]
    for level in regression_levers.LEVELS:
        assert abs(rows[0][level] - level) < 0.02, (level, rows[0][level])
    assert abs(rows[0]["width"] - 2 * 1.6449) < 0.1  # std(y) is 1
    table = regression_levers.interval_table(rows)
    assert "| gauss-a |" in table and "| mean |" in table and "90% covers" in table
