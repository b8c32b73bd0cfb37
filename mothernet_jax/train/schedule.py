"""The learning-rate schedule, and the clock that runs it on a wall-clock budget.

`learning_rate(config, step, progress)` is the one schedule function: linear warm-up, then cosine
decay to `config.min_learning_rate`. It runs on optimiser steps (`progress=None`: warm-up over
`warmup_steps`, decay over `steps`) or, under a budget (`config.budget_s`), on `progress`, the
fraction of the budget spent (warm-up over the first `warmup_fraction`, the floor at 1).

`BudgetClock` turns wall-clock time into that fraction. The budget counts every second of `train`,
compiles included, across resumed runs (`spent_before` comes from the checkpoint). Progress runs
from where the last run left it (`progress_before`) to 1 at the moment the run must stop: the
budget less a reserve for the final checkpoint and export. Each step's rate is set from when the
step is predicted to end, and the last steps that fit run at progress 1, so the schedule ends on
its floor whatever the throughput.
"""

from __future__ import annotations

import math

from mothernet_jax.train.config import TrainConfig


def learning_rate(config: TrainConfig, step: int, progress: float | None = None) -> float:
    """The learning rate of optimiser step `step` (host-side).

    progress None: step-based, linear warm-up to the peak (step w - 1 reaches w/(w+1) of it), then
    cosine decay to the floor at `config.steps`. progress in [0, 1] (a budget run): warm-up to the
    peak at `config.warmup_fraction`, then cosine decay to the floor at 1.
    """
    peak, floor = float(config.learning_rate), float(config.min_learning_rate)
    if progress is None:
        warmup = config.warmup_steps
        if step < warmup:
            return peak * (step + 1) / (warmup + 1)
        decayed = min(max((step - warmup) / max(config.steps - warmup, 1), 0.0), 1.0)
    else:
        progress = min(max(float(progress), 0.0), 1.0)
        warmup = config.warmup_fraction
        if progress < warmup:
            return peak * progress / warmup
        decayed = (progress - warmup) / (1.0 - warmup) if warmup < 1.0 else 1.0
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * decayed))


class BudgetClock:
    """Seconds spent and schedule progress of a budget run (host-side; one process).

    budget_s: the whole budget; spent_before / progress_before: what earlier runs of the same work
    directory spent and reached (0 for a fresh run); started: `time.monotonic()` when this run began.
    """

    def __init__(self, budget_s: float, *, spent_before: float, progress_before: float, started: float):
        self.budget_s = float(budget_s)
        self.spent_before = float(spent_before)
        self.started = started
        self.progress = float(progress_before)  # of the last step dispatched (never decreases)
        self._anchor: tuple[float, float] | None = None  # (spent, progress) when the steps began

    def spent(self, now: float) -> float:
        """Budget seconds spent by `now` (earlier runs included)."""
        return self.spent_before + (now - self.started)

    def left(self, now: float) -> float:
        return self.budget_s - self.spent(now)

    def step_progress(self, step_end: float, reserve: float) -> float:
        """The schedule progress of a step predicted to end at `step_end` (budget seconds spent):
        linear from where the steps of this run began to 1 at `budget_s - reserve`, clipped to
        [progress so far, 1)."""
        if self._anchor is None:
            self._anchor = (step_end, self.progress)
        spent0, progress0 = self._anchor
        stop = self.budget_s - reserve
        fraction = (step_end - spent0) / (stop - spent0) if stop > spent0 else 1.0
        progress = progress0 + (1.0 - progress0) * min(max(fraction, 0.0), 1.0)
        self.progress = max(self.progress, min(progress, 1.0))
        return self.progress

    def finish(self) -> float:
        """Progress of the last steps of the budget: 1."""
        self.progress = 1.0
        return 1.0
