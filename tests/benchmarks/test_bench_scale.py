"""The scale benchmark (issue 30): its cases, the verdict on the issue's bounds from records, the
rounds of the cost cases, the map's table, and the environments its fresh processes get."""

import numpy as np
import pytest

from mothernet_jax.benchmarks import scale, scale_map


def record(environment, case, method, score=0.9, fit_s=1.0, round_=0, **extra):
    return {"environment": environment, "case": case, "method": method, "score": score, "fit_s": fit_s,
            "predict_s": 0.01, "n_train": 1000, "n_features": 10, "n_classes": 2, "round": round_, **extra}  # fmt: skip


def holding_records():
    rs = [record("default", "cost 2 classes", "mothernet", fit_s=1.0), record("one", "cost 2 classes", "mothernet", fit_s=0.9)]
    rs += [record("default", f"cost {k} classes", "mothernet", fit_s=f) for k, f in ((7, 1.9), (26, 4.5), (100, 9.0))]
    rs += [record("default", "classes 50", "mothernet", score=0.81), record("default", "classes 50", "linear", score=0.79)]
    rs += [record("default", "rows 100k", "mothernet", score=0.96, fit_s=10.0),
           record("default", "rows 100k", "hgb", score=0.977, fit_s=6.0)]  # fmt: skip
    rs += [record("default", "friedman1 2k", "mothernet", score=0.90), record("default", "friedman1 2k", "hgb", score=0.93)]
    return rs


def test_the_verdict_reads_every_bound_of_the_issue():
    lines = scale.verdict(holding_records())
    assert len(lines) == 8 and all(line.endswith("holds)") for line in lines), lines
    assert lines[0] == "2-class 1,000 x 10 fit, default environment / one thread: 1.11x (bound 1.25x; holds)"
    assert lines[5] == "100,000 rows: AUC, MotherNet vs gradient boosting: 0.9600 vs 0.9770 (bound >= HGB's - 0.02; holds)"
    failing = holding_records()
    failing[0]["fit_s"] = 1.2  # 1.33x the one-thread fit
    failing[5]["score"] = 0.78  # MotherNet below logistic regression on 50 classes
    lines = scale.verdict(failing)
    assert lines[0].endswith("1.33x (bound 1.25x; FAILS)") and lines[4].endswith("FAILS)")
    assert scale.verdict([])[0] == "2-class 1,000 x 10 fit, default environment / one thread: not measured"


def test_cost_cases_take_the_median_of_their_rounds():
    rs = [record("default", "cost 2 classes", "mothernet", fit_s=f, round_=r) for r, f in enumerate((3.0, 1.0, 2.0))]
    got = scale.by_key(rs)[("default", "cost 2 classes", "mothernet")]
    assert got["fit_s"] == 2.0 and got["fit_rounds_s"] == [3.0, 1.0, 2.0]


def test_the_cases_are_the_issues():
    X_train, y_train, X_test, y_test = scale.CASES["classes 50"].data()
    assert X_train.shape == (1500, 20) and X_test.shape == (3000, 20) and len(np.unique(y_train)) == 50
    X_train, y_train, X_test, _ = scale.rows_task(100, test=50)
    assert X_train.shape == (100, 20) and X_test.shape == (50, 20)
    assert scale.CASES["friedman1 2k"].task == "regression"
    assert {n for n, c in scale.CASES.items() if c.cost} == {f"cost {k} classes" for k in (2, 7, 26, 100)}
    assert {"rows 10k", "rows 30k", "rows 100k", "features 500", "classes 100", "friedman1 100k"} <= set(scale.CASES)


def test_the_map_table_pairs_each_setting_with_none_on_the_same_task():
    rs = []
    for name, base in (("a", 0.80), ("b", 0.70)):
        for setting, gain, fit in (("none", 0.0, 1.0), ("ft100 pool", 0.02, 3.0), ("ft300 pool", 0.03, 4.0)):
            rs.append({"task": "classification", "name": name, "n_train": 1000, "setting": setting, "synthetic": True,
                       "score": base + gain, "fit_s": fit})  # fmt: skip
    rs.append({"task": "classification", "name": "real", "n_train": 2400, "setting": "none", "synthetic": False,
               "score": 0.7, "fit_s": 0.5})  # fmt: skip
    rs.append({"task": "classification", "name": "real", "n_train": 2400, "setting": "ft100 pool", "synthetic": False,
               "score": 0.69, "fit_s": 1.0})  # fmt: skip
    lines = scale_map.map_table(rs).splitlines()
    assert "| classification | 1,000 | 2 | ft300 pool | 0.7800 | +0.0300 | 4.00 |" in lines
    assert "| classification | 2,400-2,400 (n/2) | 1 | ft100 pool | 0.6900 | -0.0100 | 2.00 |" in lines


def test_the_default_environment_sets_no_thread_count(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PJRT_NPROC", "1")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false --xla_dump_to=/tmp/x")
    environ = scale.default_environment()
    assert "OMP_NUM_THREADS" not in environ and "PJRT_NPROC" not in environ
    assert environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"


def test_unknown_cases_are_refused_in_one_line(capsys):
    with pytest.raises(SystemExit):
        scale.main(["--out", "/tmp/unused", "--cases", "rows 1M"])
    assert "unknown cases ['rows 1M']" in capsys.readouterr().err
