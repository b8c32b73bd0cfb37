"""The steps of one `train` call: when to stop, the budget's learning rates, checkpoints, metrics.

`Run.loop` decides before each step whether it fits (a signal, `--time-limit`, the budget), sets its
learning rate (on a budget: from when the step is predicted to end, see `schedule.py`), dispatches
it, then checks and logs the step before it (metrics are read one step late, so the host never waits
for the device between steps), then runs `Run._between_steps`: the host-side work between two steps
(periodic checkpoints, and validation every `validate_every` wall seconds).

Validation (`train(validate_every=...)`) scores the weights that would be exported
(`step.eval_params`) with a `validate.Validator` and appends a line with `step`, `datasets`,
`seconds` (training wall seconds of the work directory so far, validation excluded), `val_auc`,
`val_auc_categorical`, `val_seconds` and `val_datasets` to metrics.jsonl; once more after the last
step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mothernet_jax.progress import Progress
from mothernet_jax.train.config import TrainConfig
from mothernet_jax.train.mesh import is_main_process
from mothernet_jax.train.schedule import BudgetClock, learning_rate
from mothernet_jax.train.step import TrainState, eval_params

METRICS = "metrics.jsonl"


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient norm became NaN or infinite; training stopped."""


def host_values(tree):
    """NumPy copies of replicated (possibly multi-host) arrays: each process reads its own copy."""

    def get(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(leaf.addressable_data(0))
        return leaf

    return jax.device_get(jax.tree.map(get, tree))


def say(message: str) -> None:
    if is_main_process():
        print(f"[mothernet-jax train] {message}", file=sys.stderr, flush=True)


# -- stopping: signals -------------------------------------------------------------------------------------------


class StopSignals:
    """SIGINT / SIGTERM set `received`; the loop then checkpoints and returns. A second signal
    interrupts at once. Installed only in the main thread (where Python delivers signals)."""

    def __init__(self):
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is not None:
            self.__exit__()
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        say(f"{self.received} received: saving a checkpoint and stopping (again to abort)")

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


# -- the loop --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunPlan:
    """What one `train` call runs.

    config: the TrainConfig; stepper: the compiled step (`driver.TrainStep` or `pmap.PmapTrainStep`:
    `stepper(state, step, learning_rate=...)`, `split`, `bucket`, `plan`, `compile`,
    `abstract_state`); checkpoints: `checkpoint.Checkpoints` or None (no work directory); workdir:
    where metrics.jsonl goes, or None; first, end: the steps run are first..end-1; started:
    `time.monotonic()` when the call began; time_limit: seconds from `started` (`--time-limit`);
    clock: the budget's `schedule.BudgetClock` (`--budget`), or None; show: a progress bar; export:
    whether the run ends with an export (its seconds are reserved under a budget); validator,
    validate_every: `validate.Validator` and its interval in wall seconds, or None.
    """

    config: TrainConfig
    stepper: Any
    checkpoints: Any
    workdir: Path | None
    first: int
    end: int
    started: float
    time_limit: float | None = None
    clock: BudgetClock | None = None
    show: bool = False
    export: bool = False
    validator: Any = None
    validate_every: float | None = None


class Run:
    """The steps of one `train` call (`Run(RunPlan(...)).loop(state, signals)`): stops,
    checkpoints, metrics, validation, and the budget's schedule.

    Each iteration decides whether the next step fits (`_next`), dispatches it, checks and logs the
    step before it (`_flush`), then runs `_between_steps`: the host-side work between two steps.
    """

    def __init__(self, plan: RunPlan):
        self.plan = plan
        config, stepper, checkpoints, clock = plan.config, plan.stepper, plan.checkpoints, plan.clock
        workdir, first, end, show, export = plan.workdir, plan.first, plan.end, plan.show, plan.export
        validator, validate_every = plan.validator, plan.validate_every
        self.config, self.stepper, self.checkpoints = config, stepper, checkpoints
        self.workdir, self.first, self.end = workdir, first, end
        self.time_limit, self.clock, self.started = plan.time_limit, clock, plan.started
        self.step = first
        self.losses: list[float] = []
        self.stop_reason = "completed" if end == config.steps else "stop_at"
        self.progress = clock.progress if clock is not None else first / config.steps
        self.compile_seconds: dict = {}
        self.last_saved = None  # the step of the newest good checkpoint: the one resumed from
        if (
            checkpoints is not None
            and first in checkpoints.all_steps()
            and first not in checkpoints.unreadable
        ):
            self.last_saved = first
        total = None if clock is not None else end - first
        self.bar = None
        if end > first:
            every = config.log_every if clock is not None else None
            self.bar = Progress(total, f"train {first}->{end}", enabled=show, every=every)
        self.metrics_file = workdir / METRICS if workdir is not None and is_main_process() else None
        self._pending: tuple[int, dict, float] | None = None
        self._window: list[float] = []
        self._window_start = (time.monotonic(), first)
        self._rate = (time.monotonic(), 0)  # for datasets/s on the progress bar
        self._datasets = 0
        self._seconds: dict[tuple[int, int], list[float]] = {}  # the latest 5 step times per shape
        self._recent: list[float] = []  # the latest 16 step times, any shape
        self._waited = False  # a save waited for the device: the next interval is no step time
        self._last_values: dict[str, float] = {}
        params = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(stepper.abstract_state()))
        # until measured: saving the state at ~100 MB/s, exporting the weights at ~50 MB/s
        self._save_seconds = 0.5 + params / 100e6
        self._save_times: list[float] = []  # the latest saves' seconds (their median predicts the next)
        self._export_seconds = 0.5 + params / 3 / 50e6 if export else 0.0
        self._multiprocess = jax.process_count() > 1
        self.validator, self.validate_every = validator, validate_every
        self._validated_at = time.monotonic()  # wall clock of the last validation (or the start)
        self._validation_seconds = 0.0  # spent validating in this call (not training time)
        self._last_validation = 60.0  # predicted seconds of the next one, until one is measured
        self._seconds_before = _training_seconds_so_far(self.metrics_file)

    def compile(self, threads: int | None) -> None:
        """Compile the prior and every step the run will take, before the first one."""
        if self.end <= self.first:
            return
        if self.time_limit is not None and time.monotonic() - self.started >= self.time_limit:
            return
        if self.clock and self.clock.left(time.monotonic()) <= self._reserve():
            return
        seconds = self.stepper.compile(self.stepper.plan(self.first, self.end), threads=threads)
        self.compile_seconds = seconds
        if len(seconds) > 1:
            parts = [f"prior {seconds['prior']:.1f} s"] if "prior" in seconds else []
            parts += [
                f"bucket {b}" + (f"x{m}" if m > 1 else "") + f" {t:.1f} s"
                for (b, m), t in ((k, v) for k, v in seconds.items() if isinstance(k, tuple))
            ]
            say(f"compiled in {seconds['total']:.1f} s: {', '.join(parts)}")

    def loop(self, state: TrainState, signals: StopSignals) -> TrainState:
        try:
            if self.clock is not None and self.checkpoints is not None:
                self._save(state)  # measures what the last save will cost (a process's first is slowest)
            last = time.monotonic()
            while self.step < self.end:
                reason, rate = self._next(signals)
                if reason:
                    self.stop_reason = reason
                    break
                state, metrics = self.stepper(state, self.step, learning_rate=rate)
                self._flush()
                self._pending = (self.step, metrics, self.progress)
                self.step += 1
                now = time.monotonic()
                if self.step - self.first >= 2 and not self._waited:
                    # the step before the last one has just finished: the time since the last
                    # iteration is its time on the device
                    shape = self._shape(self.step - 2)
                    self._seconds[shape] = [*self._seconds.get(shape, [])[-4:], now - last]
                    self._recent = [*self._recent[-15:], now - last]
                self._waited = False
                between = self._between_steps(state)
                last = now + between  # the time between steps is not a step's
            self._flush(final=True)
            if self.validator is not None and self.step > self.first:
                self._validate(state)
            if self.checkpoints is not None:
                self._save(state)
        finally:
            if self.bar is not None:
                self.bar.close()
        if self.stop_reason not in ("completed", "stop_at"):
            say(f"stopped at step {self.step} ({self.stop_reason}); rerun the same command to resume")
        return state

    def _between_steps(self, state: TrainState) -> float:
        """Host-side work between two steps; returns the seconds it took (they count against the
        budget but not as step time). Periodic work goes here: it runs after step `self.step - 1`
        was dispatched and the step before it was checked and logged; `state` is the newest. Add
        its predicted seconds to `_between_seconds`, so that a budget run still ends on the floor."""
        began = time.monotonic()
        every = self.config.checkpoint_every
        if self.checkpoints is not None and every and self.step % every == 0:
            self._save(state)
        if self._validation_due(began):
            self._validate(state)
        return time.monotonic() - began

    def _validation_due(self, now: float) -> bool:
        if self.validator is None:
            return False
        due = now - self._validated_at >= self.validate_every
        if self._multiprocess:  # every process validates at the same step, or none does
            if self.step % self.config.log_every:
                return False
            due = _agree("time_limit" if due else None) is not None
        return due

    def _validate(self, state: TrainState) -> None:
        """Score the weights that would be exported and log the line (see the module docstring)."""
        self._flush()
        began = time.monotonic()
        scores = self.validator(host_values(eval_params(state, self.config)))
        now = time.monotonic()
        self._last_validation = now - began
        self._validated_at = now
        trained = began - self.started - self._validation_seconds
        self._validation_seconds += now - began
        self._waited = True
        line = {
            "step": self.step,
            "datasets": self.config.datasets_seen(self.step),
            "seconds": self._seconds_before + trained,
            "val_auc": scores["val_auc"],
            "val_auc_categorical": scores["val_auc_categorical"],
            "val_seconds": scores["val_seconds"],
            "val_datasets": scores["val_datasets"],
            "time": time.time(),
        }
        say(f"step {self.step}: val_auc {scores['val_auc']:.4f} ({self._last_validation:.0f} s)")
        if self.metrics_file is not None:
            with open(self.metrics_file, "a") as f:
                f.write(json.dumps(line) + "\n")

    def _between_seconds(self, steps: int) -> float:
        """The predicted seconds of `_between_steps` after the next `steps` steps are dispatched."""
        seconds = 0.0
        if self.validator is not None:
            seconds += self._last_validation  # at most one validation in a few steps
        every = self.config.checkpoint_every
        if self.checkpoints is None or not every:
            return seconds
        saves = sum((self.step + k) % every == 0 for k in range(1, steps + 1))
        return seconds + saves * self._save_seconds

    # -- when to stop, and the rate of the next step --------------------------------------------------

    def _shape(self, step: int) -> tuple[int, int]:
        return self.stepper.bucket(self.stepper.split(step)), self.config.micro_batches(step)

    def _predict(self, step: int) -> float:
        """Seconds step `step` will take: the median of the latest of its shape (bucket and
        micro-batches; one slow step does not stop a run), else of the slowest shape seen."""
        seconds = self._seconds.get(self._shape(step))
        if seconds is None:
            return max((float(np.median(s)) for s in self._seconds.values()), default=0.0)
        return float(np.median(seconds))

    def _reserve(self) -> float:
        """Seconds kept back at the end of a budget: the last validation, checkpoint and export."""
        validation = self._last_validation if self.validator is not None else 0.0
        saving = self._save_seconds if self.checkpoints is not None else 0.0
        return 1.5 * (validation + saving + self._export_seconds)

    def _next(self, signals: StopSignals) -> tuple[str | None, float]:
        """(why to stop before step `self.step`, else None; the step's learning rate)."""
        now = time.monotonic()
        in_flight = self._predict(self.step - 1) if self.step > self.first else 0.0
        ends = now + in_flight + self._predict(self.step)  # when this step will end
        reason = signals.received
        if reason is None and self.time_limit is not None:
            if ends - self.started + self._save_seconds > self.time_limit:
                reason = "time_limit"
        if self._multiprocess and (self.step % self.config.log_every == 0 or self.step == self.first):
            reason = _agree(reason)  # every process stops at the same step
        elif self._multiprocess:
            reason = None
        if reason:
            return reason, 0.0
        if self.clock is None:
            self.progress = self.step / self.config.steps
            return None, learning_rate(self.config, self.step)
        clock, reserve = self.clock, self._reserve()
        if clock.spent(ends) + reserve > clock.budget_s:
            return "budget", 0.0
        typical = max([self._predict(self.step + 1), float(np.median(self._recent)) if self._recent else 0.0])
        if clock.spent(ends + 6 * typical + self._between_seconds(3)) + reserve > clock.budget_s:
            # the last steps that fit run on the schedule's floor: those of six typical steps (and
            # the work between them), so that a step or two slower than predicted does not end the
            # run above it; the median, so that one slow step earlier does not put the rest of
            # the run on the floor
            self.progress = clock.finish()
        else:
            self.progress = clock.step_progress(clock.spent(ends), reserve)
        return None, learning_rate(self.config, self.step, self.progress)

    # -- checkpoints and metrics -------------------------------------------------------------------------

    def _save(self, state: TrainState) -> None:
        self._flush()  # never save a state whose loss was not checked
        if self.last_saved == self.step:
            return
        began = time.monotonic()
        record = {"step": self.step, "schedule_progress": self.progress}
        if self.clock is not None:
            record["budget_spent_s"] = self.clock.spent(began)
        self.checkpoints.save(state, self.config, self.step, record)
        # the median of the latest three: one save slowed by the machine does not inflate the
        # reserve and stop a budget run before its last steps reach the schedule's floor
        self._save_times = [*self._save_times[-2:], time.monotonic() - began]
        self._save_seconds = float(np.median(self._save_times))
        self._waited = True
        self.last_saved = self.step

    def _flush(self, final: bool = False) -> None:
        """Read the metrics of the previous step, check them, and log them (`final`: log the
        window even if it is not a full one)."""
        if self._pending is None:
            if final and self._window_start[1] < self.step:  # flushed by a save, not yet logged
                self._log(self.step, self._last_values, time.monotonic())
            return
        step, metrics, progress = self._pending
        self._pending = None
        values = {k: float(v) for k, v in host_values(metrics).items()}
        values["schedule_progress"] = progress
        self._last_values = values
        for name in ("loss", "grad_norm"):
            if not math.isfinite(values[name]):
                where = (
                    f"step {self.last_saved} in {self.checkpoints.directory}"
                    if self.last_saved is not None
                    else "none (no checkpoint was saved)"
                )
                raise NonFiniteLossError(
                    f"non-finite {name} ({values[name]}) at step {step}: training stopped. The last good "
                    f"checkpoint is {where}; nothing was saved after it. Lower the learning rate "
                    "(--set learning_rate=...) or check the prior, then rerun to resume."
                )
        if values["valid_fraction"] > 0:
            self.losses.append(values["loss"])
            self._window.append(values["loss"])
        else:  # no valid dataset: the 0 the step reports is no loss
            self.losses.append(math.nan)
        datasets = self.config.datasets_per_step(step)
        self._datasets += datasets
        now = time.monotonic()
        done = step + 1
        if self.bar is not None:
            t0, n0 = self._rate
            rate = (self._datasets - n0) / max(now - t0, 1e-9)
            if now - t0 > 10:
                self._rate = (now, self._datasets)
            fields = {"loss": self.losses[-1], "datasets_per_s": round(rate, 1)}
            if self.clock is not None:
                fields["budget"] = f"{100 * progress:.0f}%"
            self.bar.update(1, **fields)
        if done % self.config.log_every == 0 or done == self.end or (final and done == self.step):
            self._log(done, values, now)

    def _log(self, done: int, values: dict[str, float], now: float) -> None:
        t0, s0 = self._window_start
        steps = done - s0
        seconds = now - t0
        datasets = sum(self.config.datasets_per_step(s) for s in range(s0, done))
        line = {
            "step": done,
            "loss": float(np.mean(self._window)) if self._window else None,  # None: no valid dataset
            "loss_steps": len(self._window),  # the steps in that mean
            "last_loss": values.get("loss"),
            # every other metric the step returns (grad_norm, learning_rate, valid_fraction, ...)
            **{name: value for name, value in values.items() if name != "loss"},
            "datasets_per_step": self.config.datasets_per_step(done - 1),
            "datasets_per_s": datasets / seconds if seconds > 0 else None,
            "seconds_per_step": seconds / steps if steps else None,
            "elapsed_s": now - self.started,
            "time": time.time(),
        }
        if self.clock is not None:
            line["budget_spent_s"] = self.clock.spent(now)
        self._window = []
        self._window_start = (now, done)
        if self.metrics_file is not None:
            with open(self.metrics_file, "a") as f:
                f.write(json.dumps(line) + "\n")


def _training_seconds_so_far(metrics_file) -> float:
    """Training wall seconds of the work directory's earlier runs: each run's last `elapsed_s`
    (a run restarts that clock), less the seconds its validations took; 0 for a fresh run."""
    if metrics_file is None or not metrics_file.exists():
        return 0.0
    total, elapsed, validating = 0.0, 0.0, 0.0
    for text in metrics_file.read_text().splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if "val_auc" in line:
            validating += float(line.get("val_seconds") or 0.0)
        elif "elapsed_s" in line:
            if line["elapsed_s"] < elapsed:  # a new run started
                total += elapsed
            elapsed = float(line["elapsed_s"])
    return max(0.0, total + elapsed - validating)


def _agree(reason: str | None) -> str | None:
    """The stop reason of any process, on every process (one small all-gather)."""
    from jax.experimental import multihost_utils

    codes = ["", "time_limit", "SIGTERM", "SIGINT"]  # a budget needs one process: never agreed
    code = codes.index(reason) if reason in codes else (1 if reason else 0)
    gathered = np.asarray(multihost_utils.process_allgather(np.int32(code)))
    best = int(gathered.max())
    return codes[best] or None
