"""The evaluate report: times and their ratio to gradient boosting, the critical-difference diagram,
and the thread cap that gives every method (XLA included) the same threads."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from bench_helpers import two_datasets

from mothernet_jax.benchmarks import common, evaluate, figures, report


def record(dataset, method, split, auc, fit, predict):
    return {"dataset": dataset, "method": method, "split": split, "status": "ok", "auc": auc,
            "accuracy": 0.5, "fit_seconds": fit, "predict_seconds": predict, "error": None}  # fmt: skip


def timed_records():
    """Two datasets, three splits each; the medians over the six splits are round numbers."""
    times = {  # method -> (fit seconds of the three splits, predict seconds of the three splits)
        "hist_gradient_boosting": ((0.2, 0.1, 0.9), (0.01, 0.03, 0.002)),
        "mothernet": ((0.5, 0.5, 0.5), (0.005, 0.005, 0.005)),
        "logistic_regression": ((0.004, 0.001, 0.9), (0.03, 0.03, 0.0)),
    }
    aucs = {"hist_gradient_boosting": 0.8, "mothernet": 0.9, "logistic_regression": 0.7}
    return [
        record(dataset, method, split, aucs[method], fit[split], predict[split])
        for dataset in ("d1", "d2")
        for method, (fit, predict) in times.items()
        for split in range(3)
    ]


def table_rows(markdown: str) -> dict[str, dict[str, str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    columns = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(columns, row, strict=True)) for row in rows}


def test_summary_table_gives_median_times_and_their_ratio_to_gradient_boosting():
    summary = report.summarise(timed_records())
    # medians over every split of both datasets: HGB fit 0.2, predict 0.01
    assert summary.time_ratios()["mothernet"] == pytest.approx((2.5, 0.5))
    rows = table_rows(report.summary_table(summary))
    assert list(rows) == ["mothernet", "hist_gradient_boosting", "logistic_regression"]  # by mean rank
    assert rows["mothernet"] == {
        "method": "mothernet", "mean AUC": "0.9000", "mean rank (sd)": "1.00 (0.00)",
        "normalised AUC": "1.000", "failed datasets": "0", "median fit s": "0.500",
        "median predict s": "0.005", "fit / HGB": "2.50", "predict / HGB": "0.50",
    }  # fmt: skip
    assert (
        rows["hist_gradient_boosting"]["fit / HGB"]
        == rows["hist_gradient_boosting"]["predict / HGB"]
        == "1.00"
    )
    assert (rows["logistic_regression"]["fit / HGB"], rows["logistic_regression"]["predict / HGB"]) == (
        "0.020",  # median fit 0.004 s: a small ratio keeps three decimals
        "3.00",
    )


def test_without_gradient_boosting_there_are_no_ratios():
    records = [r for r in timed_records() if r["method"] != "hist_gradient_boosting"]
    summary = report.summarise(records)
    assert summary.time_ratios() is None
    rows = table_rows(report.summary_table(summary))
    assert "fit / HGB" not in rows["mothernet"] and rows["mothernet"]["median fit s"] == "0.500"
    assert "hist_gradient_boosting did not run: no ratios" in report.summary_markdown(
        records, summary.methods
    )


def ranked_records():
    """Six datasets, four methods, with ties on d0 (a and b) and d5 (c and d)."""
    aucs = {
        "d0": (0.9, 0.9, 0.7, 0.6), "d1": (0.95, 0.8, 0.85, 0.7), "d2": (0.9, 0.7, 0.8, 0.6),
        "d3": (0.8, 0.85, 0.7, 0.75), "d4": (0.99, 0.9, 0.8, 0.85), "d5": (0.7, 0.6, 0.5, 0.5),
    }  # fmt: skip
    return [
        record(dataset, method, 0, auc, 0.1 * (j + 1), 0.01)
        for dataset, row in aucs.items()
        for j, (method, auc) in enumerate(zip("abcd", row, strict=True))
    ]


def test_cd_diagram_ranks_are_those_of_the_table(tmp_path):
    pytest.importorskip("matplotlib")
    summary = report.summarise(ranked_records())
    result = figures.plot_cd_diagram(summary, tmp_path / "cd.png")
    assert (tmp_path / "cd.png").read_bytes()[:4] == b"\x89PNG"
    # best (highest AUC) = rank 1, ties averaged: what the summary table shows
    mean_ranks = dict(zip(summary.methods, summary.ranks.mean(axis=0), strict=True))
    assert result.rankdf["meanrank"].to_dict() == pytest.approx(mean_ranks)
    assert mean_ranks == pytest.approx({"a": 7.5 / 6, "b": 12.5 / 6, "c": 18.5 / 6, "d": 21.5 / 6})
    assert (result.omnibus, result.posthoc) == ("friedman", "nemenyi")
    with pytest.raises(ValueError, match="needs 3 methods and 5 datasets, got 4 and 2"):
        figures.plot_cd_diagram(report.summarise(ranked_records()[:8]), tmp_path / "few.png")


def test_write_outputs_writes_every_figure_and_lists_them(tmp_path):
    pytest.importorskip("matplotlib")
    records = ranked_records()
    written = evaluate.write_outputs(records, tmp_path, list("abcd"))
    assert sorted(written) == sorted(set(evaluate.OUTPUT_FILES) - {"splits.jsonl"})
    for name in evaluate.FIGURES:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name
    markdown = (tmp_path / "summary.md").read_text()
    assert "- `cd_diagram.png`: critical-difference diagram (Friedman, Nemenyi)" in markdown


def test_without_autorank_the_cd_diagram_is_one_line_saying_how_to_install_it(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.setitem(sys.modules, "autorank", None)  # `import autorank` raises ImportError
    written = evaluate.write_outputs(ranked_records(), tmp_path, list("abcd"))
    assert "cd_diagram.png" not in written and not (tmp_path / "cd_diagram.png").exists()
    assert {"auc_vs_time.png", "ranks.png", "summary.md"} <= set(written)
    message = "no cd_diagram.png: the critical-difference diagram needs autorank: pip install 'mothernet-jax[bench]'"
    assert capsys.readouterr().err.splitlines() == [message]
    assert (
        "- `cd_diagram.png`: not drawn: the critical-difference diagram needs autorank"
        in (tmp_path / "summary.md").read_text()
    )


# ---------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------


def test_xla_thread_environment_keeps_the_other_flags():
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_cpu_multi_thread_eigen=true"}
    one = common.xla_thread_environment(1, environ)
    assert one == {
        "PJRT_NPROC": "1",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_cpu_multi_thread_eigen=false",
    }
    four = common.xla_thread_environment(4, environ)
    assert four == {"PJRT_NPROC": "4", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    with pytest.raises(ValueError, match="threads must be >= 1"):
        common.xla_thread_environment(0, {})


def test_a_cap_after_jax_started_is_reported_as_not_capped():
    jax.devices()  # the backend has started in this process
    environ = {}
    assert common.cap_xla_threads(3, environ).startswith("XLA not capped: JAX's backend had started")
    assert environ == {}
    environ = {"PJRT_NPROC": "3"}  # a parent process set it: in effect
    assert common.cap_xla_threads(3, environ).startswith("XLA capped: PJRT_NPROC=3")


def _environment(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PJRT_NPROC", "NPROC", "XLA_FLAGS")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    return {**env, **extra}


@pytest.mark.slow  # three fresh processes; the environment the cap sets is tested in-process above
def test_evaluate_threads_reach_xla_through_the_environment(tmp_path):
    """The CLI sets PJRT_NPROC before JAX starts (its header says so), and XLA sizes its CPU pools by
    it: a process capped at 5 threads holds at least 4 more threads than one capped at 1."""
    two_datasets(tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "mothernet_jax.benchmarks.evaluate", "--data", str(tmp_path), "--quiet"]
    command += ["--methods", "knn", "--splits", "2", "--threads", "1", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=_environment(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    header = (out / "summary.md").read_text()
    assert "XLA capped: PJRT_NPROC=1, XLA_FLAGS=--xla_cpu_multi_thread_eigen=false" in header
    assert "- JAX: backend=cpu" in header

    if not Path("/proc/self/task").is_dir():
        return  # the thread count below is read from Linux's /proc
    script = (
        "import os, sys, jax; from mothernet_jax.benchmarks.common import cap_xla_threads; "
        "print(cap_xla_threads(int(sys.argv[1]))); jax.devices(); print(len(os.listdir('/proc/self/task')))"
    )
    counts = {}
    for threads in (1, 5):
        done = subprocess.run(
            [sys.executable, "-c", script, str(threads)],
            capture_output=True, text=True, env=_environment(), timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        line, count = done.stdout.split("\n")[:2]
        assert line.startswith(f"XLA capped: PJRT_NPROC={threads}")
        counts[threads] = int(count)
    assert counts[5] >= counts[1] + 4, counts
