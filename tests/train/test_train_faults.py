"""What a user trips over when a run goes wrong (issue 22): a resume that replays steps, two runs on
one work directory, a non-finite loss through the CLI, a budget run capped by its steps, and bad
paths (each refused in one line naming it, before any training). Bad settings (--budget 0,
--set learning_rate=abc) are in test_train_config.py."""

import errno
import functools
import os
import signal

import chex
import numpy as np
import pytest
from test_train_budget import Ticks, budget_config
from train_helpers import (
    FAST_COMPILE,
    committed_steps,
    fast_train,
    make_config,
    start_python,
    truncate_the_arrays,
    wait_for,
)

from mothernet_jax import cli
from mothernet_jax.train import ConfigError, read_metrics
from mothernet_jax.train import loop as loop_module
from mothernet_jax.train.budget import learning_rate
from mothernet_jax.train.workdir import LOCK, claim

# A failed orbax read leaves a callback for its closed event loop, reported as unraisable later.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture
def fast_cli(monkeypatch):
    """`cli.main` in process, its `train` compiled as the other tests' (FAST_COMPILE)."""
    monkeypatch.setattr(loop_module, "train", functools.partial(loop_module.train, compiler_options=FAST_COMPILE))
    return cli.main


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in line for line in err), err
    return err[-1]


def test_a_resume_from_an_older_checkpoint_leaves_one_metric_line_per_step(tmp_path, capsys):
    """A run killed after its step-6 checkpoint was damaged (and after a torn metric line and a
    validation line of step 5) resumes from step 4: the lines of steps 5 and 6 are written once,
    and the weights equal an uninterrupted run's bit for bit."""
    config = make_config(steps=6, checkpoint_every=2)
    fast_train(config, tmp_path)
    metrics = tmp_path / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"step": 5, "val_auc": 0.5, "time": 0}\n{"step": 6, "lo')
    truncate_the_arrays(tmp_path / "checkpoints" / "6")
    capsys.readouterr()
    resumed = fast_train(config, tmp_path)
    err = capsys.readouterr().err
    assert "resuming from step 4" in err and f"{metrics}: dropped 4 lines past step 4" in err
    assert (resumed.first_step, resumed.step) == (4, 6)
    lines = read_metrics(tmp_path)
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert not any("val_auc" in line for line in lines)
    straight = fast_train(config, None)
    chex.assert_trees_all_close(resumed.params, straight.params, atol=0, rtol=0)
    np.testing.assert_array_equal([line["last_loss"] for line in lines], straight.losses)


def test_a_second_run_on_a_work_directory_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path, capsys, fast_cli):
    config = make_config(steps=2)
    workdir = tmp_path / "run"
    with claim(workdir):  # another run holds the work directory
        with pytest.raises(ConfigError, match=f"the work directory {workdir} is in use by another run \\(pid {os.getpid()}"):
            fast_train(config, workdir)
        (tmp_path / "run.json").write_text(config.to_json())
        argv = ["train", "--config", str(tmp_path / "run.json"), "--workdir", str(workdir), "--no-progress"]
        assert fast_cli(argv) == 1
        assert one_error_line(capsys).startswith(f"mothernet-jax train: the work directory {workdir} is in use")
        assert committed_steps(workdir) == []  # nothing trained
    # a lock file left by a process that died: its lock went with it
    (workdir / LOCK).write_text("999999999\n")
    result = fast_train(config, workdir, stop_at=0)
    assert result.stop_reason == "stop_at" and committed_steps(workdir) == [0]
    assert (workdir / LOCK).read_text() == ""  # released


def test_a_non_finite_loss_stops_the_cli_with_exit_code_1_as_its_help_says(tmp_path, capsys, fast_cli):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "a non-finite loss stops with exit code 1" in " ".join(capsys.readouterr().out.lower().split())
    config = make_config(steps=50, learning_rate=1e30, warmup_steps=0, checkpoint_every=1)
    (tmp_path / "run.json").write_text(config.to_json())
    argv = ["train", "--config", str(tmp_path / "run.json"), "--workdir", str(tmp_path / "run"), "--no-progress"]
    assert fast_cli(argv) == 1
    line = one_error_line(capsys)
    assert line.startswith("mothernet-jax train: non-finite ") and "training stopped" in line
    assert "The last good checkpoint is step" in line
    stopped = max(committed_steps(tmp_path / "run"))
    assert stopped < 50 and [x["step"] for x in read_metrics(tmp_path / "run")][-1] <= stopped + 1


@pytest.mark.slow  # the schedule's floor when steps cap a budget: test_train_budget_schedule.py; a budget run: test_train_budget.py
def test_a_budget_run_capped_by_its_steps_ends_its_schedule_on_the_floor(tmp_path):
    config = budget_config(steps=6, budget_s=1000.0)  # the cap comes long before the budget's end
    result = fast_train(config, tmp_path, clock=Ticks())
    assert (result.step, result.stop_reason) == (6, "completed")
    lines = read_metrics(tmp_path)
    progress = [line["schedule_progress"] for line in lines]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert progress == pytest.approx([(s + 1) / 6 for s in range(6)])  # the cap's fraction dominates
    assert lines[-1]["learning_rate"] == pytest.approx(config.min_learning_rate)
    for line in lines:
        assert line["learning_rate"] == pytest.approx(learning_rate(config, 0, line["schedule_progress"]), rel=1e-6)


def test_bad_export_paths_and_work_directories_are_refused_before_training(tmp_path, capsys, fast_cli):
    config = make_config(steps=2)
    (tmp_path / "run.json").write_text(config.to_json())
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    (tmp_path / "folder").mkdir()
    cases = {
        str(tmp_path / "folder"): f"--export {tmp_path / 'folder'} is a folder: give a file in it",
        str(a_file / "w.msgpack"): f"--export {a_file / 'w.msgpack'}: {a_file} is a file, not a folder",
        str(tmp_path / "w.npz"): f"--export {tmp_path / 'w.npz'}: the weights are a .msgpack file",
        str(tmp_path / "w"): f"give e.g. {tmp_path / 'w.msgpack'}",
    }
    workdir = tmp_path / "run"
    for export, expected in cases.items():
        argv = ["train", "--config", str(tmp_path / "run.json"), "--workdir", str(workdir), "--export", export]
        assert fast_cli([*argv, "--no-progress"]) == 1
        line = one_error_line(capsys)
        assert line.startswith("mothernet-jax train: --export") and expected in line, line
        assert ".msgpack" in line
    assert not workdir.exists()  # refused before anything ran
    for bad in (a_file, a_file / "run"):
        argv = ["train", "--config", str(tmp_path / "run.json"), "--workdir", str(bad), "--no-progress"]
        assert fast_cli(argv) == 1
        line = one_error_line(capsys)
        assert line.startswith("mothernet-jax train: ") and str(bad) in line, line
    with pytest.raises(ConfigError, match=f"^work directory {a_file} is a file, not a folder"):
        fast_train(config, a_file)


def test_a_read_only_work_directory_is_refused_in_one_line_naming_it(tmp_path, capsys, fast_cli, monkeypatch):
    """An existing folder this process cannot write in (a read-only file system: simulated, as root
    may write anywhere else) is refused in one line naming it, before anything runs."""
    config = make_config(steps=2)
    (tmp_path / "run.json").write_text(config.to_json())
    workdir = tmp_path / "run"
    workdir.mkdir()
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).startswith(str(workdir)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    argv = ["train", "--config", str(tmp_path / "run.json"), "--workdir", str(workdir), "--no-progress"]
    assert fast_cli(argv) == 1
    line = one_error_line(capsys)
    assert line == (
        f"mothernet-jax train: the work directory {workdir} cannot be written (Read-only file system): "
        "give a folder this process may write in (--workdir)"
    )
    assert list(workdir.iterdir()) == []


def interrupting_compile(monkeypatch, signals: int, signum: int = signal.SIGINT):
    """TrainStep.compile sends this process `signals` signals `signum` (SIGINT: Ctrl-C) before it
    compiles."""
    compile_steps = loop_module.TrainStep.compile

    def compile_interrupted(self, *args, **kwargs):
        for _ in range(signals):
            os.kill(os.getpid(), signum)
        return compile_steps(self, *args, **kwargs)

    monkeypatch.setattr(loop_module.TrainStep, "compile", compile_interrupted)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_compiling_stops_cleanly_with_a_non_zero_exit_code(
    signum, code, tmp_path, capsys, fast_cli, monkeypatch
):
    """Ctrl-C (SIGINT) in the first seconds of a run (the compiles) is the documented clean stop: a
    checkpoint, no traceback, and exit code 130, not 0 (the run did not finish; it resumes). SIGTERM
    (a scheduler's stop) is the same stop with exit code 143 (128 + 15), so that a script tells a
    stopped run from a finished one (exit code 0: test_train_loop.py)."""
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "stop with exit code 130 / 143" in " ".join(capsys.readouterr().out.split())
    config = make_config(steps=4)
    (tmp_path / "run.json").write_text(config.to_json())
    workdir = tmp_path / "run"
    argv = ["train", "--config", str(tmp_path / "run.json"), "--workdir", str(workdir), "--no-progress"]
    interrupting_compile(monkeypatch, signals=1, signum=signum)
    previous = signal.getsignal(signum)
    assert fast_cli(argv) == code
    assert signal.getsignal(signum) is previous
    err = capsys.readouterr().err
    name = signal.Signals(signum).name
    assert "Traceback" not in err and f"stopped at step 0 ({name}); rerun the same command to resume" in err
    assert committed_steps(workdir) == [0]


def test_a_second_ctrl_c_while_compiling_aborts_in_one_line(tmp_path, capsys, fast_cli, monkeypatch):
    config = make_config(steps=4)
    (tmp_path / "run.json").write_text(config.to_json())
    workdir = tmp_path / "run"
    argv = ["train", "--config", str(tmp_path / "run.json"), "--workdir", str(workdir), "--no-progress"]
    interrupting_compile(monkeypatch, signals=2)
    assert fast_cli(argv) == 130
    assert one_error_line(capsys) == (
        f"mothernet-jax train: aborted; the work directory {workdir} keeps its last checkpoint "
        "(rerun the same command to resume)"
    )
    assert (workdir / LOCK).read_text() == ""  # the lock released


CLI = "import sys\nfrom mothernet_jax.cli import main\nsys.exit(main(sys.argv[1:]))"


@pytest.mark.slow
def test_a_killed_run_with_a_corrupted_checkpoint_resumes_to_the_log_and_weights_of_an_uninterrupted_run(tmp_path):
    """The CLI in subprocesses: a run killed (SIGKILL) after a few checkpoints, its newest checkpoint
    then damaged, resumes from the one before; its metrics.jsonl has one line per step, the same
    steps and losses as an uninterrupted run's, and its exported weights equal that run's bit for
    bit."""
    from mothernet_jax.pretrained import load_pretrained

    config = make_config(steps=30, checkpoint_every=3)
    (tmp_path / "run.json").write_text(config.to_json())

    def cli_args(name):
        return ["train", "--config", str(tmp_path / "run.json"), "--workdir", str(tmp_path / name),
                "--export", str(tmp_path / f"{name}.msgpack"), "--no-progress"]  # fmt: skip

    def run_to_the_end(name, log):
        process = start_python(CLI, *cli_args(name), log=log)
        assert process.wait(timeout=600) == 0, log.read_text()

    run_to_the_end("straight", tmp_path / "straight.log")
    workdir = tmp_path / "killed"
    process = start_python(CLI, *cli_args("killed"), log=tmp_path / "killed.log")
    wait_for(lambda: len(committed_steps(workdir)) >= 3, 600, "three checkpoints", process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    saved = committed_steps(workdir)
    assert process.returncode == -signal.SIGKILL and max(saved) < config.steps, saved
    newest, before = saved[-1], saved[-2]
    truncate_the_arrays(workdir / "checkpoints" / str(newest))
    text = (workdir / "metrics.jsonl").read_text()
    assert f'{{"step": {newest}, ' in text and newest > before  # steps the resumed run replays were logged
    run_to_the_end("killed", tmp_path / "resumed.log")
    log = (tmp_path / "resumed.log").read_text()
    assert f"checkpoint {workdir / 'checkpoints' / str(newest)} is unreadable" in log
    assert f"resuming from step {before}" in log
    lines, straight = read_metrics(workdir), read_metrics(tmp_path / "straight")
    assert [line["step"] for line in lines] == [line["step"] for line in straight] == list(range(1, 31))
    assert [line["last_loss"] for line in lines] == [line["last_loss"] for line in straight]
    params, _ = load_pretrained(tmp_path / "killed.msgpack")
    reference, _ = load_pretrained(tmp_path / "straight.msgpack")
    chex.assert_trees_all_close(params, reference, atol=0, rtol=0)  # bit for bit
