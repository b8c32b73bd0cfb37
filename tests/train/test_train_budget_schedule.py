"""A budget run's schedule on a simulated clock: the last steps run on the schedule's floor and the
run ends inside its budget, whatever the machine does in between (jittery steps, a slow step, a
slow checkpoint), as long as a few steps still fit after the hiccup.

`Run` is driven here by a fake device: dispatching a step returns at once, and reading its metrics
waits (advances the clock) until the step has run, as on a real accelerator, where the host reads
each step's metrics one step late. The real-time tests in test_train_budget.py check the same loop
end to end; their timing is the machine's, so the floor is asserted here, where it is exact.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
from train_helpers import make_config

from mothernet_jax.train import read_metrics
from mothernet_jax.train import run as run_module
from mothernet_jax.train.run import Run, RunPlan
from mothernet_jax.train.schedule import BudgetClock, learning_rate

BUDGET = 20.0  # simulated seconds
STEP = 0.1  # simulated seconds a step takes on the device, before jitter
SAVE = 0.05  # simulated seconds a checkpoint takes
EXPORT = 0.5  # what Run reserves for an export of a parameter-less state


class FakeDevice:
    """A clock and a queue of steps: each runs after the one before it, `duration` seconds."""

    def __init__(self):
        self.now = 0.0
        self.queue_end = 0.0

    def run_step(self, seconds: float) -> float:
        self.now += 1e-4  # dispatching costs the host a little
        self.queue_end = max(self.now, self.queue_end) + seconds
        return self.queue_end


class Pending(float):
    """A metric of a dispatched step: reading it (`float`) waits until the step has run."""

    def __new__(cls, value: float, device: FakeDevice, ready: float):
        obj = super().__new__(cls, value)
        obj.device, obj.ready = device, ready
        return obj

    def __float__(self) -> float:
        self.device.now = max(self.device.now, self.ready)
        return super().__float__()


class FakeStepper:
    def __init__(self, device: FakeDevice, step_seconds):
        self.device, self.step_seconds = device, step_seconds

    def abstract_state(self):
        return {}

    def split(self, step: int) -> int:
        return 64

    def bucket(self, split: int) -> int:
        return 128

    def __call__(self, state, step, learning_rate):
        ready = self.device.run_step(self.step_seconds(step))
        metrics = {
            "loss": Pending(0.5, self.device, ready),
            "grad_norm": Pending(1.0, self.device, ready),
            "learning_rate": Pending(learning_rate, self.device, ready),
            "valid_fraction": Pending(1.0, self.device, ready),
        }
        return state, metrics


class FakeCheckpoints:
    directory = "checkpoints"
    unreadable: set = set()

    def __init__(self, device: FakeDevice, save_seconds):
        self.device, self.save_seconds, self.saved = device, save_seconds, []

    def all_steps(self):
        return []

    def save(self, state, config, step, record):
        self.device.now = max(self.device.now, self.device.queue_end)  # a save waits for the device
        self.device.now += self.save_seconds(step)
        self.saved.append(step)


def simulate(tmp_path, monkeypatch, *, step_seconds, save_seconds=lambda step: SAVE, seed=0):
    device = FakeDevice()
    monkeypatch.setattr(run_module, "time", types.SimpleNamespace(monotonic=lambda: device.now, time=lambda: 0.0))
    jitter = np.random.default_rng(seed).uniform(0.8, 1.2, size=100_000)
    stepper = FakeStepper(device, lambda step: step_seconds(step) * jitter[step])
    checkpoints = FakeCheckpoints(device, save_seconds)
    config = make_config(steps=100_000, budget_s=BUDGET, warmup_fraction=0.1, checkpoint_every=20, log_every=1)
    clock = BudgetClock(config.budget_s, spent_before=0.0, progress_before=0.0, started=device.now)
    run = Run(RunPlan(config=config, stepper=stepper, checkpoints=checkpoints, workdir=tmp_path, first=0,
                      end=config.steps, started=device.now, clock=clock, export=True))  # fmt: skip
    run.loop({}, types.SimpleNamespace(received=None))
    return run, config, device, checkpoints


def steady(step):
    return STEP


def slow_step_at(slow_step, seconds):
    return lambda step: seconds if step == slow_step else STEP


@pytest.mark.parametrize(
    "case",
    ["steady", "a 3 s step halfway", "a 3 s step near the end", "a 3 s checkpoint", "steps 3x slower later"],
)
def test_the_last_steps_of_a_budget_run_are_on_the_floor(tmp_path, monkeypatch, case):
    step_seconds, save_seconds = steady, lambda step: SAVE
    if case == "a 3 s step halfway":
        step_seconds = slow_step_at(90, 3.0)
    elif case == "a 3 s step near the end":
        step_seconds = slow_step_at(150, 3.0)  # about 15 s in: a few steps still fit after it
    elif case == "a 3 s checkpoint":
        save_seconds = lambda step: 3.0 if step == 100 else SAVE  # noqa: E731
    elif case == "steps 3x slower later":
        step_seconds = lambda step: STEP if step < 60 else 3 * STEP  # noqa: E731
    run, config, device, checkpoints = simulate(tmp_path, monkeypatch, step_seconds=step_seconds,
                                                save_seconds=save_seconds)  # fmt: skip
    assert run.stop_reason == "budget" and run.step > 50
    # it ends inside the budget with the export's reserve left (the final checkpoint is taken)
    assert checkpoints.saved[-1] == run.step
    assert device.now + EXPORT <= BUDGET
    lines = read_metrics(tmp_path)
    assert [line["step"] for line in lines] == list(range(1, run.step + 1))
    rates = [line["learning_rate"] for line in lines]
    progress = [line["schedule_progress"] for line in lines]
    assert progress == sorted(progress)
    for line in lines:
        assert line["learning_rate"] == pytest.approx(learning_rate(config, line["step"] - 1, line["schedule_progress"]))
    # the floor is reached, by the last few steps only (the decay is not cut short)
    assert progress[-1] == 1.0 and rates[-1] == pytest.approx(config.min_learning_rate)
    on_floor = sum(p == 1.0 for p in progress)
    assert 1 <= on_floor <= 0.2 * len(lines), on_floor
    # the budget is used: it stops no earlier than a few slow steps before its end
    assert device.now >= BUDGET - EXPORT * 1.5 - 5 * 3 * STEP


def test_the_floor_holds_over_many_jitter_draws(tmp_path, monkeypatch):
    for seed in range(5):
        workdir = tmp_path / str(seed)
        workdir.mkdir()
        run, config, device, _ = simulate(workdir, monkeypatch, step_seconds=steady, seed=seed)
        lines = read_metrics(workdir)
        assert run.stop_reason == "budget" and lines[-1]["schedule_progress"] == 1.0, seed
        assert device.now + EXPORT <= BUDGET
