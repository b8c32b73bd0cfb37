"""The learning-rate schedule, and the clock that decides when a run stops and where its schedule is.

`learning_rate(config, step, progress)` evaluates one optax schedule on the host: linear warm-up,
then cosine decay to `config.min_learning_rate`. It runs on optimiser steps (`progress=None`:
warm-up over `warmup_steps`, decay over `steps`) or, under a budget (`config.budget_s`), on
`progress`, the fraction of the budget spent (warm-up over the first `warmup_fraction`, the floor
at 1).

`BudgetClock` owns every piece of wall-clock arithmetic of a run: the seconds spent (a budget counts
every second of `train`, compiles included, across resumed runs), the time limit, the seconds that
steps, saves and validations take (measured, to predict the next), the reserve kept for the final
checkpoint and export, and the schedule's progress. Progress runs from where the last run left it
to 1 at the moment the run must stop; each step's rate is set from when the step is predicted to
end, and the last steps that fit run at progress 1, so the schedule ends on its floor whatever the
throughput. It reads the time from `clock` (default `time.monotonic`), so tests drive it with a
simulated clock.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Hashable

import jax
import numpy as np
import optax

from mothernet_jax.train.config import TrainConfig

STOP_SAFETY = 1.5  # the reserve is this many times the predicted final validation, save and export
FLOOR_STEPS = 6  # under a budget, the last steps of this many typical steps' time run on the floor


@functools.lru_cache(maxsize=16)
def schedule(config: TrainConfig, budgeted: bool) -> Callable[[float], float]:
    """The optax schedule of `config`, jitted on the host's CPU in float64 (the rate of the next step
    must not queue behind the step on the accelerator): over the step count, or over a budget's
    progress."""
    peak, floor = float(config.learning_rate), float(config.min_learning_rate)
    alpha = floor / peak if peak else 0.0
    if budgeted:  # warm-up from 0 over [0, warmup_fraction), the cosine reaching the floor at 1
        warmup = float(config.warmup_fraction)
        rise, decay = optax.linear_schedule(0.0, peak, warmup), 1.0 - warmup
    else:  # step s < w warms up to (s + 1) / (w + 1) of the peak; the cosine reaches the floor at `steps`
        warmup = config.warmup_steps
        rise, decay = optax.linear_schedule(peak / (warmup + 1), peak, warmup), max(config.steps - warmup, 1)
    joined = optax.join_schedules([rise, optax.cosine_decay_schedule(peak, decay, alpha)], [warmup])
    try:
        host = jax.local_devices(backend="cpu")[0]
    except RuntimeError:  # JAX_PLATFORMS without cpu
        host = None
    compiled = jax.jit(joined)

    def rate(count: float) -> float:
        with jax.default_device(host), jax.enable_x64(True):  # in float64, as the formula is written
            return float(compiled(np.float64(count)))

    return rate


def learning_rate(config: TrainConfig, step: int, progress: float | None = None) -> float:
    """The learning rate of optimiser step `step`: step-based, or (`progress` in [0, 1], a budget
    run) at that fraction of the budget, where the step does not count."""
    if progress is None:
        return schedule(config, False)(step)
    return schedule(config, True)(min(max(float(progress), 0.0), 1.0))


class BudgetClock:
    """When to stop, and the schedule's progress, from what steps, saves and validations take.

    budget_s: the whole budget (0: none; the schedule then runs on steps); time_limit: seconds of
    this call after which to stop (the schedule untouched); spent_before / progress_before /
    trained_before: what earlier runs of the work directory spent, reached and trained (0 for a
    fresh run); clock: the time source; started: when the call began (default: now). shape(step):
    what a step's time depends on (its bucket and micro-batches), so that it is predicted from steps
    of the same shape. save_every: steps between checkpoints (0: none periodic); save_s: the
    predicted seconds of a save (None: the run does not save); export_s: of the export; validating:
    whether the run validates (its seconds are reserved).
    """

    def __init__(
        self,
        budget_s: float = 0.0,
        *,
        time_limit: float | None = None,
        spent_before: float = 0.0,
        progress_before: float = 0.0,
        trained_before: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        started: float | None = None,
        shape: Callable[[int], Hashable] = lambda step: None,
        save_every: int = 0,
        save_s: float | None = None,
        export_s: float = 0.0,
        validating: bool = False,
        steps: int | None = None,
    ):
        self.budget_s, self.time_limit = float(budget_s), time_limit
        self.spent_before, self.trained_before = float(spent_before), float(trained_before)
        self.clock, self.shape, self.save_every = clock, shape, save_every
        self.started = clock() if started is None else started
        self.progress = float(progress_before)  # of the last step dispatched (never decreases)
        self._anchor: tuple[float, float] | None = None  # (spent, progress) when this run's steps began
        self._steps: dict[Hashable, list[float]] = {}  # the latest 5 step seconds per shape
        self._recent: list[float] = []  # the latest 16 step seconds, any shape
        self._last_read: float | None = None  # when the last step's metrics were read
        self._interrupted = False  # work ran since then: the next interval is no step's time
        self._saves = [] if save_s is None else [save_s]  # the latest three saves' seconds
        self._saving = save_s is not None
        self._export_s = export_s
        self._validation_s = 60.0 if validating else 0.0  # the last validation's seconds (a guess at first)
        self._aside_s = {"save": 0.0, "validation": 0.0}  # seconds spent on each in this call
        self.steps = steps  # the step cap (config.steps): the schedule ends by it if it comes first

    # -- time ---------------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock()

    def spent(self, at: float | None = None) -> float:
        """Budget seconds spent by `at` (default: now), earlier runs included."""
        return self.spent_before + ((self.now() if at is None else at) - self.started)

    def elapsed(self) -> float:
        """Seconds since this call began."""
        return self.now() - self.started

    def trained(self) -> float:
        """Training seconds of the work directory so far: earlier runs' and this call's, the seconds
        spent validating left out."""
        return self.trained_before + self.elapsed() - self._aside_s["validation"]

    # -- measurements ---------------------------------------------------------------------------------

    def step_read(self, step: int) -> None:
        """Step `step`'s metrics were just read (which waited for it): the time since the previous
        read is its time on the device, unless other work ran in between."""
        now = self.now()
        if self._last_read is not None and not self._interrupted:
            seconds, shape = now - self._last_read, self.shape(step)
            self._steps[shape] = [*self._steps.get(shape, [])[-4:], seconds]
            self._recent = [*self._recent[-15:], seconds]
        self._last_read, self._interrupted = now, False

    @contextlib.contextmanager
    def aside(self, kind: str):
        """Time work between steps ("save" or "validation"): it predicts the next of its kind and
        is not a step's time."""
        began = self.now()
        try:
            yield
        finally:
            seconds = self.now() - began
            self._aside_s[kind] += seconds
            self._interrupted = True
            if kind == "save":
                # the median of the latest three: one save slowed by the machine does not inflate
                # the reserve and stop a budget run before its last steps reach the floor
                self._saves = [*self._saves[-2:], seconds]
            else:
                self._validation_s = seconds

    def _save_s(self) -> float:
        return float(np.median(self._saves)) if self._saves else 0.0

    def predict(self, step: int) -> float:
        """Seconds step `step` will take: the median of the latest of its shape (one slow step does
        not stop a run), else of the slowest shape seen."""
        seconds = self._steps.get(self.shape(step))
        if seconds is None:
            return max((float(np.median(s)) for s in self._steps.values()), default=0.0)
        return float(np.median(seconds))

    def reserve(self) -> float:
        """Seconds kept back at the end of a budget: the last validation, checkpoint and export."""
        return STOP_SAFETY * (self._validation_s + self._save_s() + self._export_s)

    def _between(self, step: int, steps: int) -> float:
        """Predicted seconds of the work between the next `steps` steps after `step`: at most one
        validation, and the saves that fall due."""
        saves = sum((step + k) % self.save_every == 0 for k in range(1, steps + 1)) if self.save_every else 0
        return self._validation_s + (saves * self._save_s() if self._saving else 0.0)

    # -- decisions ------------------------------------------------------------------------------------

    def out_of_time(self) -> bool:
        """Nothing more fits: the time limit has passed, or the budget's reserve is all that is left."""
        if self.time_limit is not None and self.elapsed() >= self.time_limit:
            return True
        return bool(self.budget_s) and self.budget_s - self.spent() <= self.reserve()

    def _ends(self, step: int, first: int) -> float:
        """When step `step` will end: after the step in flight, if any, and its own time."""
        in_flight = self.predict(step - 1) if step > first else 0.0
        return self.now() + in_flight + self.predict(step)

    def stop_reason(self, step: int, first: int) -> str | None:
        """"time_limit" or "budget" when step `step` would not end (with the final save and
        export) in time, else None."""
        ends = self._ends(step, first)
        if self.time_limit is not None and ends - self.started + self._save_s() > self.time_limit:
            return "time_limit"
        if self.budget_s and self.spent(ends) + self.reserve() > self.budget_s:
            return "budget"
        return None

    def step_progress(self, step: int, first: int) -> float:
        """The schedule progress of step `step` under the budget: linear from where this run's
        steps began to 1 at the budget less the reserve, evaluated at the step's predicted end and
        never decreasing; 1 for the last steps that fit (those of FLOOR_STEPS typical steps and the
        work between them), so that a step or two slower than predicted does not end the run above
        the floor. With `steps` (the cap) it is at least (step + 1) / steps: a run that reaches its
        step cap before its budget ends its schedule on the floor too."""
        progress = self._budget_progress(step, first)
        if self.steps:  # a step cap that comes before the budget's end: the schedule fits the cap
            progress = max(progress, min((step + 1) / self.steps, 1.0))
        self.progress = max(self.progress, progress)
        return self.progress

    def _budget_progress(self, step: int, first: int) -> float:
        ends, reserve = self._ends(step, first), self.reserve()
        # the median, so that one slow step earlier does not put the rest of the run on the floor
        typical = max(self.predict(step + 1), float(np.median(self._recent)) if self._recent else 0.0)
        tail = ends + FLOOR_STEPS * typical + self._between(step, 3)
        if self.spent(tail) + reserve > self.budget_s:
            return 1.0
        spent = self.spent(ends)
        if self._anchor is None:
            self._anchor = (spent, self.progress)
        spent0, progress0 = self._anchor
        stop = self.budget_s - reserve
        fraction = (spent - spent0) / (stop - spent0) if stop > spent0 else 1.0
        return min(progress0 + (1.0 - progress0) * min(max(fraction, 0.0), 1.0), 1.0)
