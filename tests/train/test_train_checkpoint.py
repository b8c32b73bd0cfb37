"""Checkpoints: resume == straight run, keep N, signals, a kill while saving, a non-finite loss."""

import json
import os
import re
import signal
import threading
import time

import chex
import jax
import numpy as np
import pytest
from train_helpers import (
    FAST_COMPILE,
    committed_steps,
    fast_train,
    make_config,
    start_python,
    temporary_checkpoints,
    wait_for,
)

from mothernet_jax.pretrained import load_info, load_pretrained
from mothernet_jax.train import Checkpoints, NonFiniteLossError, read_metrics
from mothernet_jax.train.loop import StopSignals
from mothernet_jax.train.stepper import TrainStep


@pytest.fixture(scope="module")
def straight():
    return fast_train(make_config(), None)


def test_stopping_and_resuming_equals_a_straight_run(tmp_path, straight):
    config = make_config()
    first = fast_train(config, tmp_path, stop_at=3)
    assert (first.step, first.stop_reason) == (3, "stop_at")
    assert committed_steps(tmp_path) == [2, 3]
    second = fast_train(config, tmp_path)
    assert (second.first_step, second.step, second.stop_reason) == (3, 6, "completed")
    chex.assert_trees_all_close(second.params, straight.params, atol=0, rtol=0)  # bit for bit
    np.testing.assert_array_equal(first.losses + second.losses, straight.losses)
    assert committed_steps(tmp_path) == [3, 4, 6]  # the latest keep_checkpoints = 3
    checkpoints = Checkpoints(tmp_path)
    try:
        assert checkpoints.config() == config  # saved beside the weights
    finally:
        checkpoints.close()
    assert json.loads((tmp_path / "config.json").read_text()) == config.to_dict()
    assert [line["step"] for line in read_metrics(tmp_path)] == [1, 2, 3, 4, 5, 6]
    # a finished run resumes to nothing; another model config is refused
    again = fast_train(config, tmp_path)
    assert again.step == 6 and again.losses == []
    # every call ran the one compiled step: the real prior compiles once for its one bucket
    assert TrainStep(config, compiler_options=FAST_COMPILE).trace_count(128) == 1
    with pytest.raises(ValueError, match="another model config"):
        fast_train(config.replace(model=config.model.replace(n_layers=1)), tmp_path)


def test_a_non_finite_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path):
    config = make_config(learning_rate=1e30, warmup_steps=0, checkpoint_every=1)
    exported = tmp_path / "weights.msgpack"
    with pytest.raises(NonFiniteLossError, match=r"non-finite \w+ \(\S+\) at step (\d+)") as info:
        fast_train(config, tmp_path, export=exported)
    failed = int(re.search(r"at step (\d+)", str(info.value)).group(1))
    saved = committed_steps(tmp_path)
    assert saved and max(saved) <= failed
    assert f"last good checkpoint is step {max(saved)}" in str(info.value)
    # the export holds that checkpoint's (finite) weights
    load_pretrained(exported)  # checks that every array is finite
    assert load_info(exported)["steps"] == max(saved)
    assert load_info(exported)["stop_reason"] == "non_finite_loss"
    checkpoints = Checkpoints(tmp_path)
    try:
        state = checkpoints.restore(TrainStep(config, compiler_options=FAST_COMPILE).abstract_state())
    finally:
        checkpoints.close()
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(jax.device_get(state.params)))


def test_sigint_and_sigterm_ask_the_loop_to_stop():
    previous = signal.getsignal(signal.SIGINT)
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert signals.received == "SIGTERM"
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert signals.received == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is previous


# Orbax commits a checkpoint by renaming its temporary folder; block just before that, so that the
# test kills the process while a save is in progress (deterministically, not by luck).
KILL_WHILE_SAVING = """
import sys, time
from orbax.checkpoint._src.path import atomicity

async def finalize(self):
    print("saving: blocked before the commit", flush=True)
    time.sleep(600)

atomicity.AtomicRenameTemporaryPath.finalize = finalize
from mothernet_jax.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _sigterm_after_the_first_checkpoint(workdir):
    def send_sigterm():
        wait_for(lambda: committed_steps(workdir), 600, "the first checkpoint")
        os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=send_sigterm, daemon=True)
    watcher.start()
    return watcher


def test_sigterm_stops_the_run_with_a_checkpoint_and_an_export(tmp_path, capsys):
    workdir = tmp_path / "run"
    config = make_config(steps=400, checkpoint_every=5, log_every=5)
    watcher = _sigterm_after_the_first_checkpoint(workdir)
    first = fast_train(config, workdir, export=tmp_path / "weights.msgpack")
    watcher.join()
    assert first.stop_reason == "SIGTERM" and 5 <= first.step < 400
    assert max(committed_steps(workdir)) == first.step
    info = load_info(tmp_path / "weights.msgpack")  # exported on the signal too
    assert (info["steps"], info["stop_reason"]) == (first.step, "SIGTERM")
    assert "SIGTERM received" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_saves_and_a_kill_while_saving_leaves_the_last_checkpoint_usable(tmp_path):
    workdir = tmp_path / "run"
    config = make_config(steps=400, checkpoint_every=5, log_every=5)
    # 1. SIGTERM to this process once the first checkpoint is written: the loop saves and returns
    watcher = _sigterm_after_the_first_checkpoint(workdir)
    first = fast_train(config, workdir)
    watcher.join()
    stopped = first.step
    assert first.stop_reason == "SIGTERM" and max(committed_steps(workdir)) == stopped
    # 2. the CLI resumes in a subprocess and is killed (SIGKILL) while writing its next checkpoint
    (tmp_path / "config.json").write_text(config.to_json())
    args = ["train", "--config", str(tmp_path / "config.json"), "--workdir", str(workdir), "--no-progress"]
    log = tmp_path / "sigkill.log"
    process = start_python(KILL_WHILE_SAVING, *args, log=log)
    wait_for(lambda: "blocked before the commit" in log.read_text(), 600, "a checkpoint being saved", process)
    process.kill()
    process.wait(timeout=60)
    assert "resuming from step" in log.read_text()
    assert temporary_checkpoints(workdir) and max(committed_steps(workdir)) == stopped
    # 3. the last committed checkpoint resumes, and training continues exactly as without stops
    end = stopped + 3
    resumed = fast_train(config, workdir, stop_at=end)
    assert (resumed.first_step, resumed.step) == (stopped, end)
    assert not temporary_checkpoints(workdir)  # the half-written folder is cleaned up
    reference = fast_train(config, None, stop_at=end)
    chex.assert_trees_all_close(resumed.params, reference.params, atol=0, rtol=0)
    np.testing.assert_array_equal(first.losses + resumed.losses, reference.losses)
