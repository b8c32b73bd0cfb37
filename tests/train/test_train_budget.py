"""Budget runs (on a simulated clock): the schedule fits a wall-clock budget and resumes continue it;
unreadable checkpoints fall back to the one before; a batch without a valid dataset has no loss."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_helpers import FAST_COMPILE, committed_steps, fast_train, make_config, truncate_the_arrays

import priors
from mothernet_jax import cli
from mothernet_jax.train import Checkpoints, read_metrics
from mothernet_jax.train.budget import learning_rate
from mothernet_jax.train.stepper import TrainStep

# A failed orbax read leaves a callback for its closed event loop, reported as unraisable during the
# test after it (test_an_unreadable_checkpoint_falls_back_to_the_one_before; the next one is here).
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


class Ticks:
    """A simulated clock that advances `tick` seconds each time it is read: a run on it takes the
    same simulated time on any machine."""

    def __init__(self, tick: float = 0.1):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def budget_config(**changes):
    defaults = dict(steps=100_000, budget_s=10.0, warmup_fraction=0.1, checkpoint_every=5, log_every=1)
    return make_config(**{**defaults, **changes})


def check_the_schedule(config, lines):
    """Each step's rate is the schedule's at its progress through the budget, which only grows: the
    warm-up rises, then the cosine falls to the floor."""
    progress = [line["schedule_progress"] for line in lines]
    assert progress == sorted(progress)
    for line in lines:
        rate = learning_rate(config, line["step"] - 1, line["schedule_progress"])
        assert line["learning_rate"] == pytest.approx(rate, rel=1e-6)
    rates = [line["learning_rate"] for line in lines]
    top = int(np.argmax(rates))
    assert rates[: top + 1] == sorted(rates[: top + 1]) and rates[top:] == sorted(rates[top:], reverse=True)


@pytest.mark.slow  # the resumed budget run below ends by its budget on the same schedule, at the floor
def test_a_budget_run_ends_within_it_on_its_schedule(tmp_path):
    config = budget_config()
    clock = Ticks()
    result = fast_train(config, tmp_path, export=tmp_path / "weights.msgpack", clock=clock)
    assert result.stop_reason == "budget" and result.step >= 8
    assert result.budget_spent_s <= clock.now <= config.budget_s
    assert (tmp_path / "weights.msgpack").exists() and max(committed_steps(tmp_path)) == result.step
    lines = read_metrics(tmp_path)
    assert [line["step"] for line in lines] == list(range(1, result.step + 1))
    check_the_schedule(config, lines)
    assert lines[0]["schedule_progress"] < config.warmup_fraction
    # the last step runs on the floor
    assert lines[-1]["schedule_progress"] == 1.0
    assert lines[-1]["learning_rate"] == pytest.approx(config.min_learning_rate)


def test_resuming_under_a_budget_continues_its_schedule(tmp_path):
    config = budget_config(budget_s=12.0, warmup_fraction=0.02, checkpoint_every=0)
    first = fast_train(config, tmp_path, time_limit=6.0, clock=Ticks())  # stops halfway through the budget
    assert first.stop_reason == "time_limit" and first.step >= 2
    assert 0 < first.progress < 1
    second = fast_train(config, tmp_path, clock=Ticks())
    assert (second.first_step, second.stop_reason) == (first.step, "budget")
    assert second.budget_spent_s <= config.budget_s
    # it started from the seconds the first run had spent by its checkpoint, and ran for what was left
    carried = second.budget_spent_s - second.seconds
    assert 0.5 * first.budget_spent_s < carried <= first.budget_spent_s
    lines = read_metrics(tmp_path)
    assert [line["step"] for line in lines] == list(range(1, second.step + 1))
    # one schedule across both runs: its progress goes on from where the first run stopped (it
    # never restarts at 0), each rate is the schedule's at it, and the last is the floor
    check_the_schedule(config, lines)
    assert lines[first.step - 1]["schedule_progress"] == first.progress > 0
    assert lines[-1]["schedule_progress"] == 1.0 and lines[-1]["budget_spent_s"] <= config.budget_s


@pytest.mark.slow
def test_a_budget_run_in_real_time_ends_within_it(tmp_path):
    """The same on the machine's clock: compiles count, then some 5-100 steps."""
    fast_train(make_config(steps=1, checkpoint_every=1), tmp_path / "warm")  # compiles, a first save
    # 12 s: beside another pytest-xdist worker, 6 s left the schedule's progress at the 0.5 asserted
    config = budget_config(budget_s=12.0, checkpoint_every=10)
    began = time.monotonic()
    result = fast_train(config, tmp_path / "run", export=tmp_path / "weights.msgpack")
    assert result.stop_reason == "budget" and result.step >= 3
    assert time.monotonic() - began <= 13.0 and result.budget_spent_s <= 13.0
    lines = read_metrics(tmp_path / "run")
    assert [line["step"] for line in lines] == list(range(1, result.step + 1))
    check_the_schedule(config, lines)
    assert lines[-1]["schedule_progress"] > 0.5


@pytest.mark.slow  # test_train_faults.py resumes from the checkpoint before a damaged newest one in the default run
def test_an_unreadable_checkpoint_falls_back_to_the_one_before(tmp_path, capsys):
    config = make_config(steps=4, checkpoint_every=2)
    fast_train(config, tmp_path)
    assert committed_steps(tmp_path) == [2, 4]
    capsys.readouterr()
    # 1. the newest checkpoint's arrays truncated: one warning line naming it, resume from step 2
    truncate_the_arrays(tmp_path / "checkpoints" / "4")
    resumed = fast_train(config.replace(steps=6), tmp_path)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "is unreadable (" in line]
    assert len(warnings) == 1 and f"checkpoint {tmp_path / 'checkpoints' / '4'} is unreadable" in warnings[0]
    assert "Traceback" not in err and "resuming from step 2" in err
    assert (resumed.first_step, resumed.step) == (2, 6) and committed_steps(tmp_path) == [2, 4, 6]
    checkpoints = Checkpoints(tmp_path)
    try:  # step 4 was written again, whole
        state = checkpoints.restore(TrainStep(config, compiler_options=FAST_COMPILE).abstract_state(), 4)
        assert int(state.step) == 4
    finally:
        checkpoints.close()
    # 2. bad JSON in the newest checkpoint's config: the same, from step 4
    (tmp_path / "checkpoints" / "6" / "config" / "metadata").write_text("{not json")
    again = fast_train(config.replace(steps=6), tmp_path)
    err = capsys.readouterr().err
    assert f"checkpoint {tmp_path / 'checkpoints' / '6'} is unreadable (JSONDecodeError" in err
    assert (again.first_step, again.step) == (4, 6)
    # 3. none readable: the CLI says so in one line naming the work directory, and stops
    for step in committed_steps(tmp_path):
        truncate_the_arrays(tmp_path / "checkpoints" / str(step))
    (tmp_path / "run.json").write_text(config.replace(steps=6).to_json())
    argv = ["train", "--config", str(tmp_path / "run.json"), "--workdir", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"mothernet-jax train: no checkpoint in {tmp_path} reads back (tried steps [2, 4, 6]); move its "
        "checkpoints/ folder away to start afresh"
    )
    assert len([line for line in err if "is unreadable (" in line]) == 3
    assert not any("Traceback" in line or line.startswith(" ") for line in err)


def _valid_at_even_splits(key, prior, batch_size, split):
    """The prior's tasks, all valid where the split is even and all invalid where it is odd."""
    task = priors.sample_batch(key, prior, batch_size, split)
    return task._replace(valid=jnp.broadcast_to(split % 2 == 0, task.valid.shape))


@pytest.mark.slow  # the step's own test (test_train_step.py) and the step log's (test_train_metrics.py) cover it
def test_a_batch_without_a_valid_dataset_has_no_loss(tmp_path):
    config = make_config(steps=8, log_every=2, checkpoint_every=0)
    result = fast_train(config, tmp_path, sample_fn=_valid_at_even_splits)
    stepper = TrainStep(config, compiler_options=FAST_COMPILE)
    invalid = np.array([stepper.split(s) % 2 == 1 for s in range(8)])
    assert invalid.any() and not invalid.all(), invalid  # seed 0 draws both in 8 steps
    losses = np.asarray(result.losses)
    np.testing.assert_array_equal(np.isnan(losses), invalid)
    assert np.all(losses[~invalid] > 0.1)
    for line in read_metrics(tmp_path):
        window = losses[line["step"] - 2 : line["step"]]
        valid = window[np.isfinite(window)]
        assert line["loss_steps"] == len(valid)
        if len(valid):
            assert line["loss"] == pytest.approx(float(np.mean(valid)))
        else:
            assert line["loss"] is None  # not 0.0
        if invalid[line["step"] - 1]:  # the line's last step: marked, no loss and no gradient norm
            assert (line["valid_fraction"], line["last_loss"], line["grad_norm"]) == (0.0, None, None)
        else:
            assert line["valid_fraction"] > 0 and line["last_loss"] > 0.1 and line["grad_norm"] > 0
    assert jax.tree.leaves(result.params)  # trained through the invalid steps
