"""The classifier benchmark's cost-as-classes-grow table: settings passed to every fresh process,
fit and peak-memory ratios to the 2-class fit, and the verdict on issue 20's bounds."""

import contextlib
import io
import json
import subprocess

import jax
import pytest

import mothernet_jax as mn
from mothernet_jax.benchmarks import classifier as bench
from mothernet_jax.pretrained import save_pretrained

GIB = 2**30


def result(classes, fit_s, peak_gib, **extra):
    return {"classes": classes, "multiclass": "native", "members": 8, "calls": 1, "first_fit_s": 3.0,
            "fit_s": fit_s, "peak_rss_bytes": int(peak_gib * GIB), "rss_before_fit_bytes": GIB // 2,
            "accuracy": 0.9, **extra}  # fmt: skip


def test_settings_are_json_where_they_parse_and_text_else():
    settings = bench.parse_settings(["n_estimators=4", "multiclass=native", "max_train_rows=null", "w=a=b"])
    assert settings == {"n_estimators": 4, "multiclass": "native", "max_train_rows": None, "w": "a=b"}
    with pytest.raises(ValueError, match="--set 'n_estimators': expected KEY=VALUE"):
        bench.parse_settings(["n_estimators"])


def test_verdict_on_the_issue_bounds():
    holding = [result(2, 1.0, 1.0), result(7, 2.0, 1.1), result(26, 4.9, 1.25)]
    assert bench.verdict(holding) == [
        "7-class fit <= 2x the 2-class fit: 2.00x (holds)",
        "26-class fit <= 5x the 2-class fit: 4.90x (holds)",
        "peak memory flat (every peak <= 1.25x the 2-class peak): highest 1.25x at 26 classes (holds)",
        "issue 20's cost as classes grow: holds",
    ]
    failing = [result(2, 1.0, 1.0), result(7, 2.1, 1.3), result(26, 4.0, 1.0)]
    lines = bench.verdict(failing)
    assert lines[0] == "7-class fit <= 2x the 2-class fit: 2.10x (FAILS)"
    assert lines[2].endswith("highest 1.30x at 7 classes (FAILS)")
    assert lines[-1] == "issue 20's cost as classes grow: does not hold"
    # a count that failed or had no warm fit is not measured, and the bounds do not hold
    lines = bench.verdict([result(2, 1.0, 1.0), result(26, None, 1.0)])
    assert lines[:2] == [
        "7-class fit <= 2x the 2-class fit: not measured",
        "26-class fit <= 5x the 2-class fit: not measured",
    ]
    assert lines[-1] == "issue 20's cost as classes grow: does not hold"


@pytest.mark.slow  # the CLI end to end; measure_classes (each count's measurement) is tested below
def test_every_count_runs_with_the_settings_and_the_table_gives_the_ratios(tmp_path, monkeypatch, capsys):
    """The CLI end to end on the random `tiny` model, each "fresh process" run in this one: the
    settings reach it, and the table divides by the 2-class fit and peak."""
    weights = tmp_path / "tiny.msgpack"
    config = mn.preset("tiny")
    save_pretrained(weights, mn.init_params(jax.random.key(0), config), config, dtype="float32")
    commands = []

    def run_here(command, **_):
        commands.append(command)
        assert command[1:3] == ["-m", "mothernet_jax.benchmarks.classifier"]
        with contextlib.redirect_stdout(io.StringIO()) as measured:
            bench.main(command[3:])
        return subprocess.CompletedProcess(command, 0, stdout=measured.getvalue(), stderr="")

    monkeypatch.setattr(bench.subprocess, "run", run_here)
    argv = ["--skip-speed", "--classes", "2", "3", "--class-rows", "60", "--class-repeats", "2"]
    argv += ["--set", f"weights={weights}", "--set", "n_estimators=1", "--set", "multiclass=native"]
    bench.main(argv)
    out = capsys.readouterr().out

    assert len(commands) == 2
    assert commands[1][3:5] == ["--measure-classes", "3"]
    assert ["--set", f"weights={json.dumps(str(weights))}"] == commands[1][9:11]
    rows = {int(line.split()[0]): line.split() for line in out.splitlines() if line[:7].strip().isdigit()}
    assert sorted(rows) == [2, 3]
    # classes, strategy, members, calls, first fit, fit, fit/base, peak, GiB, peak/base, growth, GiB, acc
    assert rows[2][1:4] == ["native", "1", "1"] and rows[3][1:4] == ["native", "1", "1"]
    assert float(rows[2][6]) == 1.0 and float(rows[2][9]) == 1.0  # the base divided by itself
    assert float(rows[3][9]) >= 1.0  # ru_maxrss of this one process only grows
    assert "# 7-class fit <= 2x the 2-class fit: not measured" in out
    assert "# issue 20's cost as classes grow: does not hold" in out
    assert "MotherNetClassifier(weights=" in out and "n_estimators=1, multiclass='native')" in out


def test_measure_classes_passes_the_settings_and_takes_the_median_of_the_warm_fits():
    config = mn.preset("tiny")
    weights = mn.Weights(mn.init_params(jax.random.key(1), config), config)
    r = bench.measure_classes(
        4, rows=80, settings={"weights": weights, "n_estimators": 2, "multiclass": "native"}, repeats=3
    )
    assert (r["classes"], r["rows"], r["multiclass"], r["members"]) == (4, 80, "native", 2)
    assert len(r["fit_times_s"]) == 3 and r["fit_s"] == sorted(r["fit_times_s"])[1]
    assert r["peak_rss_bytes"] >= r["rss_before_fit_bytes"] > 0
    assert bench.measure_classes(2, rows=40, settings={"weights": weights}, repeats=0)["fit_s"] is None


def test_threads_pin_every_pool_of_the_process_and_of_those_it_starts(monkeypatch):
    """`--threads 1` caps XLA's pool, the BLAS and OpenMP pools of this process and of the fresh
    processes (their environment), and MotherNet's own NumPy work (n_jobs); issue 30: it capped
    XLA alone, so a fresh process measured with two BLAS threads."""
    from threadpoolctl import threadpool_info, threadpool_limits

    environ = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    with threadpool_limits(limits=2):  # whatever pin_threads sets is undone after the test
        line = bench.pin_threads(1, environ)
        assert {info["num_threads"] for info in threadpool_info()} == {1}
    assert all(environ[name] == "1" for name in bench.THREAD_VARIABLES)
    if line.startswith("XLA capped"):  # where this process's JAX has not started its backend yet
        assert environ["PJRT_NPROC"] == "1" and "--xla_dump_to=/tmp/x" in environ["XLA_FLAGS"]
    assert line.startswith("XLA") and line.endswith("; BLAS and OpenMP: 1")
    commands = []
    monkeypatch.setattr(bench, "pin_threads", lambda threads: "pinned")
    monkeypatch.setattr(bench, "run", lambda args: commands.append(bench.measure_in_subprocess(2, args)))
    monkeypatch.setattr(
        bench.subprocess, "run",
        lambda command, **_: subprocess.CompletedProcess(command, 0, stdout=json.dumps({"command": command}), stderr=""),
    )  # fmt: skip
    bench.main(["--skip-speed", "--threads", "1"])
    command = commands[0]["command"]
    assert command[command.index("--threads") + 1] == "1" and "n_jobs=1" in command
