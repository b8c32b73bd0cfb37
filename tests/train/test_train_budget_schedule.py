"""The budget's arithmetic on a simulated clock (`budget.BudgetClock`): the last steps of a budget run
run on the schedule's floor and the run ends inside its budget, whatever the machine does in between
(jittery steps, a slow step, a slow checkpoint), as long as a few steps still fit after the hiccup.

`simulate` calls the clock as `loop.train` does (stop check, progress, dispatch, read the step
before, save when due) against a fake device: dispatching a step returns at once, and reading its
metrics waits (advances the clock) until the step has run, as on an accelerator. test_train_budget.py
runs the real loop on a simulated clock too.
"""

from __future__ import annotations

import numpy as np
import pytest
from train_helpers import make_config

from mothernet_jax.train.budget import BudgetClock, learning_rate

BUDGET = 20.0  # simulated seconds
STEP = 0.1  # simulated seconds a step takes on the device, before jitter
SAVE = 0.05  # simulated seconds a checkpoint takes
EXPORT = 0.5  # simulated seconds reserved for the export
EVERY = 20  # steps between checkpoints


class FakeDevice:
    """A clock and a queue of steps: each runs after the one before it."""

    def __init__(self):
        self.now = 0.0
        self.queue_end = 0.0

    def dispatch(self, seconds: float) -> float:
        self.now += 1e-4  # dispatching costs the host a little
        self.queue_end = max(self.now, self.queue_end) + seconds
        return self.queue_end

    def wait(self, until: float) -> None:
        self.now = max(self.now, until)


def simulate(step_seconds, save_seconds=lambda step: SAVE, seed=0):
    """(progress of every step, saved steps, the device, the clock) of a simulated budget run."""
    device = FakeDevice()
    jitter = np.random.default_rng(seed).uniform(0.8, 1.2, size=100_000)
    budget = BudgetClock(BUDGET, clock=lambda: device.now, shape=lambda step: 128, save_every=EVERY,
                         save_s=0.5, export_s=EXPORT)  # fmt: skip
    progress, saved, queued, step = [], [], None, 0
    while not budget.stop_reason(step, 0):
        progress.append(budget.step_progress(step, 0))
        ready = device.dispatch(step_seconds(step) * jitter[step])
        if queued is not None:  # read the step before: waits for it
            device.wait(queued[1])
            budget.step_read(queued[0])
        queued, step = (step, ready), step + 1
        if step % EVERY == 0:  # a save reads the step first, then waits for the device
            device.wait(ready)
            budget.step_read(queued[0])
            queued = None
            with budget.aside("save"):
                device.now += save_seconds(step)
            saved.append(step)
    device.wait(device.queue_end)
    with budget.aside("save"):  # the final checkpoint
        device.now += save_seconds(step)
    saved.append(step)
    return progress, saved, device, budget


def steady(step):
    return STEP


@pytest.mark.parametrize(
    "case",
    ["steady", "a 3 s step halfway", "a 3 s step near the end", "a 3 s checkpoint", "steps 3x slower later"],
)
def test_the_last_steps_of_a_budget_run_are_on_the_floor(case):
    step_seconds, save_seconds = steady, lambda step: SAVE
    if case == "a 3 s step halfway":
        step_seconds = lambda step: 3.0 if step == 90 else STEP  # noqa: E731
    elif case == "a 3 s step near the end":
        step_seconds = lambda step: 3.0 if step == 150 else STEP  # noqa: E731 (about 15 s in)
    elif case == "a 3 s checkpoint":
        save_seconds = lambda step: 3.0 if step == 100 else SAVE  # noqa: E731
    elif case == "steps 3x slower later":
        step_seconds = lambda step: STEP if step < 60 else 3 * STEP  # noqa: E731
    progress, saved, device, budget = simulate(step_seconds, save_seconds)
    assert len(progress) > 50 and budget.stop_reason(len(progress), 0) == "budget"
    # it ends inside the budget with the export's reserve left
    assert device.now + EXPORT <= BUDGET
    assert progress == sorted(progress)
    # the floor is reached, by the last few steps only (the decay is not cut short)
    assert progress[-1] == 1.0
    on_floor = sum(p == 1.0 for p in progress)
    assert 1 <= on_floor <= 0.2 * len(progress), on_floor
    # the budget is used: it stops no earlier than a few slow steps before its end
    assert device.now >= BUDGET - EXPORT * 1.5 - 5 * 3 * STEP


def test_the_floor_holds_over_many_jitter_draws():
    for seed in range(5):
        progress, _, device, _ = simulate(steady, seed=seed)
        assert progress[-1] == 1.0 and device.now + EXPORT <= BUDGET, seed


def test_the_budget_clock_carries_what_earlier_runs_spent_reached_and_trained():
    now = [1000.0]
    budget = BudgetClock(100.0, spent_before=40.0, progress_before=0.5, trained_before=30.0, clock=lambda: now[0])
    now[0] = 1010.0
    assert budget.spent() == 50.0 and budget.elapsed() == 10.0 and budget.trained() == 40.0
    with budget.aside("validation"):
        now[0] += 5.0
    assert budget.trained() == 40.0  # validating is not training
    # progress runs on from 0.5 (never back), to 1 when the budget less the reserve is spent
    first = budget.step_progress(0, 0)
    assert first == pytest.approx(0.5)
    now[0] += 20.0
    later = budget.step_progress(1, 0)
    assert 0.5 < later < 1.0
    now[0] += 40.0
    assert budget.step_progress(2, 0) == 1.0 and budget.stop_reason(2, 0) == "budget"


def test_a_time_limit_stops_before_a_step_that_would_end_past_it():
    now = [0.0]
    budget = BudgetClock(time_limit=10.0, clock=lambda: now[0], save_s=1.0)
    budget.step_read(0)
    now[0] = 2.0
    budget.step_read(1)  # a step takes 2 s
    assert budget.predict(2) == 2.0 and budget.stop_reason(2, 0) is None
    now[0] = 6.5  # 6.5 + 2 (in flight) + 2 (the next) + 1 (the save) > 10
    assert budget.stop_reason(3, 0) == "time_limit" and not budget.out_of_time()
    now[0] = 10.0
    assert budget.out_of_time()


def test_a_budget_schedule_runs_on_the_fraction_of_the_budget_spent():
    config = make_config(budget_s=100.0, warmup_fraction=0.1, learning_rate=1e-3, min_learning_rate=1e-6)
    rates = [learning_rate(config, 0, p / 1000) for p in range(1001)]
    assert rates[0] == 0.0 and rates[50] == pytest.approx(0.5e-3) and rates[100] == pytest.approx(1e-3)
    assert rates[:101] == sorted(rates[:101]) and rates[100:] == sorted(rates[100:], reverse=True)
    assert rates[1000] == pytest.approx(1e-6) and rates[550] == pytest.approx((1e-3 + 1e-6) / 2, rel=1e-4)
    assert learning_rate(config, 10**6, 0.1) == learning_rate(config, 0, 0.1)  # the step does not count


def test_learning_rate_warms_up_then_decays_to_the_floor():
    config = make_config(steps=1000, warmup_steps=100, learning_rate=1e-3, min_learning_rate=1e-6)
    rates = [learning_rate(config, s) for s in range(1001)]
    assert rates[0] == pytest.approx(1e-3 / 101)
    assert all(a < b for a, b in zip(rates[:100], rates[1:101], strict=True))
    assert rates[100] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[100:-1], rates[101:], strict=True))
    assert rates[550] == pytest.approx((1e-3 + 1e-6) / 2, rel=1e-4)  # the cosine's midpoint
    assert rates[1000] == pytest.approx(1e-6)
    # no warm-up, and a run shorter than its warm-up, still follow the formula
    assert learning_rate(config.replace(warmup_steps=0), 0) == pytest.approx(1e-3)
    short = make_config(steps=6, warmup_steps=20, learning_rate=1e-3)
    assert learning_rate(short, 5) == pytest.approx(1e-3 * 6 / 21)
