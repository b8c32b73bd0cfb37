"""`train(config, workdir)`: the training loop the CLI, notebooks and tests share.

It resumes from the newest readable checkpoint in `workdir` (else starts from
`config.init_weights` or a fresh initialisation), compiles the prior and every split bucket's step
before the first step (printing the seconds), runs jitted steps (`TrainStep`) until
`config.steps` or, with `config.budget_s`, until the wall-clock budget is spent (the schedule then
runs on the budget, see `schedule.py`), and

- checkpoints every `config.checkpoint_every` steps, at the end, and when it stops early: on SIGINT
  or SIGTERM, at `time_limit` seconds, by the budget, or at `stop_at`;
- appends metrics as JSON lines to `<workdir>/metrics.jsonl` and draws a progress bar; a step whose
  batch held no valid dataset has no loss (NaN in `TrainResult.losses`, left out of the logged mean);
- raises `NonFiniteLossError` at the first non-finite loss or gradient, naming the step, and saves
  nothing after it, so the last checkpoint is the last good state;
- exports (`export=PATH`) on every one of these stops, a non-finite loss included (then the last
  good checkpoint).

Metrics are read one step late, so the host never waits for the device between steps; a checkpoint
is written only after the loss that produced its state was checked.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from mothernet_jax.progress import Progress
from mothernet_jax.train.checkpoint import Checkpoints
from mothernet_jax.train.config import ConfigError, TrainConfig
from mothernet_jax.train.driver import TrainStep
from mothernet_jax.train.export import LINEAGE, export_weights, lineage
from mothernet_jax.train.mesh import is_main_process
from mothernet_jax.train.schedule import BudgetClock, learning_rate
from mothernet_jax.train.step import TrainState

METRICS = "metrics.jsonl"
CONFIG = "config.json"


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient norm became NaN or infinite; training stopped."""


@dataclasses.dataclass
class TrainResult:
    """What `train` returns. `losses[i]` is the loss of step `first_step + i`."""

    config: TrainConfig
    state: TrainState
    step: int  # optimiser steps taken in total
    first_step: int  # the step this call started (resumed) from
    losses: list[float]  # NaN for a step whose batch held no valid dataset
    stop_reason: str  # "completed", "stop_at", "budget", "time_limit", "SIGINT", "SIGTERM"
    workdir: Path | None
    seconds: float  # wall-clock time of this call
    progress: float = 0.0  # the schedule's progress at the last step (step / steps, or of the budget)
    budget_spent_s: float | None = None  # budget seconds spent in total (earlier runs included)
    compile_seconds: dict = dataclasses.field(default_factory=dict)  # see TrainStep.compile

    @property
    def params(self):
        """The trained parameters as host NumPy arrays."""
        return host_values(self.state.params)


def host_values(tree):
    """NumPy copies of replicated (possibly multi-host) arrays: each process reads its own copy."""

    def get(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(leaf.addressable_data(0))
        return leaf

    return jax.device_get(jax.tree.map(get, tree))


def train(
    config: TrainConfig,
    workdir: str | os.PathLike | None = None,
    *,
    time_limit: float | None = None,
    stop_at: int | None = None,
    export: str | os.PathLike | None = None,
    export_dtype: str = "float32",
    mesh: Mesh | None = None,
    progress: bool = True,
    sample_fn=None,
    compiler_options: dict[str, Any] | None = None,
    compile_threads: int | None = None,
) -> TrainResult:
    """Meta-train (or resume) until `config.steps` or the end of `config.budget_s`; see the module
    docstring.

    workdir: checkpoints, `config.json` and `metrics.jsonl` go here; None trains in memory only.
    time_limit: seconds of wall-clock time after which to stop cleanly (checkpoint included); unlike
    a budget it leaves the schedule alone.
    stop_at: stop (and checkpoint) after this many steps, keeping the schedule.
    export: write the final parameters with `save_pretrained` (float32 inference config; arrays as
    `export_dtype`), also on a stop and a non-finite loss (see `export.py`).
    mesh: the data-parallel mesh (default: every device of every process).
    sample_fn: the task sampler (default `priors.sample_batch`); compiler_options: XLA options for
    every compilation (see `TrainStep`); compile_threads: threads compiling the split buckets.
    """
    started = time.monotonic()
    workdir = None if workdir is None else Path(workdir)
    main = is_main_process()
    if config.budget_s and jax.process_count() > 1:
        raise ConfigError("a budget (--budget) needs one process: use --time-limit and --steps on several")
    stepper = TrainStep(config, mesh, sample_fn=sample_fn, compiler_options=compiler_options)
    checkpoints = None
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        checkpoints = Checkpoints(workdir, keep=config.keep_checkpoints)
    try:
        state, first, saved = _initial_state(config, stepper, checkpoints)
        carried = lineage(config, workdir, fresh=saved is None)
        if workdir is not None and main:
            (workdir / CONFIG).write_text(config.to_json() + "\n")
            if carried:
                (workdir / LINEAGE).write_text(json.dumps(carried, indent=1) + "\n")
        end = config.steps if stop_at is None else min(config.steps, stop_at)
        clock = None
        if config.budget_s:
            saved = saved or {}
            clock = BudgetClock(
                config.budget_s,
                spent_before=float(saved.get("budget_spent_s", 0.0)),
                progress_before=float(saved.get("schedule_progress", 0.0)),
                started=started,
            )
        run = _Run(config, stepper, checkpoints, workdir, first, end, time_limit=time_limit, clock=clock,
                   started=started, show=progress and main, export=export is not None)  # fmt: skip

        def write(params, steps, losses, reason):
            if export is not None and main:
                export_weights(export, params, config, steps=steps, losses=losses, carried=carried,
                               stop_reason=reason, dtype=export_dtype)  # fmt: skip
                _say(f"exported the parameters of step {steps} to {export}")

        try:
            with _StopSignals() as signals:
                run.compile(compile_threads)
                state = run.loop(state, signals)
        except NonFiniteLossError:
            if export is not None and run.last_saved is not None:
                good = checkpoints.restore(stepper.abstract_state(), run.last_saved)
                losses = run.losses[: max(0, run.last_saved - first)]
                write(host_values(good.params), run.last_saved, losses, "non_finite_loss")
            elif export is not None:
                _say(f"nothing exported to {export}: no checkpoint was saved before the non-finite loss")
            raise
        write(host_values(state.params), run.step, run.losses, run.stop_reason)
    finally:
        if checkpoints is not None:
            checkpoints.close()
    return TrainResult(
        config=config,
        state=state,
        step=run.step,
        first_step=first,
        losses=run.losses,
        stop_reason=run.stop_reason,
        workdir=workdir,
        seconds=time.monotonic() - started,
        progress=run.progress,
        budget_spent_s=None if clock is None else clock.spent(time.monotonic()),
        compile_seconds=run.compile_seconds,
    )


def _say(message: str) -> None:
    if is_main_process():
        print(f"[mothernet-jax train] {message}", file=sys.stderr, flush=True)


# -- start: resume, initial weights, or fresh --------------------------------------------------------------


def _initial_state(
    config: TrainConfig, stepper: TrainStep, checkpoints: Checkpoints | None
) -> tuple[TrainState, int, dict[str, Any] | None]:
    """(state, its step, the checkpoint's progress record or None when the run starts fresh)."""
    if checkpoints is not None:
        check = lambda saved: check_resumable(saved, config, checkpoints.workdir)
        restored = checkpoints.restore_latest(stepper.abstract_state(), check=check, warn=_say)
        if restored is not None:
            _say(f"resuming from step {restored.step} in {checkpoints.directory}")
            return restored.state, restored.step, restored.progress
    if config.init_weights:
        from mothernet_jax.pretrained import load_pretrained

        try:
            params, model = load_pretrained(config.init_weights)
        except ValueError as error:  # a missing, damaged or mismatched weight file or manifest
            raise ConfigError(f"init_weights {config.init_weights}: {error}") from None
        if model.replace(dtype=config.model.dtype) != config.model:  # compute dtype may differ
            raise ConfigError(
                f"init_weights {config.init_weights}: its model config differs from the training config in "
                f"{_differences(model.to_dict(), config.model.to_dict())}"
            )
        _say(f"starting from the weights in {config.init_weights}")
        return stepper.init(params), 0, None
    return stepper.init(), 0, None


def check_resumable(saved: TrainConfig, config: TrainConfig, where: os.PathLike | None = None) -> None:
    """Resuming needs the same model and prior; other changes (more steps, another learning rate)
    are allowed and reported. where: the work directory, for the error message."""
    for name in ("model", "prior"):
        old, new = getattr(saved, name), getattr(config, name)
        if old != new:
            checkpoint = "the checkpoint" if where is None else f"the checkpoint in {where}"
            raise ConfigError(
                f"{checkpoint} was trained with another {name} config ({_differences(old.to_dict(), new.to_dict())}); "
                "use a fresh work directory, or resume with the saved config"
            )
    changed = _differences(saved.to_dict(), config.to_dict())
    if changed:
        _say(f"resuming with changed settings: {changed}")


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))


# -- stopping: signals -------------------------------------------------------------------------------------------


class _StopSignals:
    """SIGINT / SIGTERM set `received`; the loop then checkpoints and returns. A second signal
    interrupts at once. Installed only in the main thread (where Python delivers signals)."""

    def __init__(self):
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is not None:
            self.__exit__()
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        _say(f"{self.received} received: saving a checkpoint and stopping (again to abort)")

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


# -- the loop --------------------------------------------------------------------------------------------------


class _Run:
    """The steps of one `train` call: stops, checkpoints, metrics, and the budget's schedule.

    Each iteration decides whether the next step fits (`_next`), dispatches it, checks and logs the
    step before it (`_flush`), then runs `_between_steps`: the host-side work between two steps.
    """

    def __init__(self, config, stepper, checkpoints, workdir, first, end, *, time_limit, clock, started,
                 show, export):  # fmt: skip
        self.config, self.stepper, self.checkpoints = config, stepper, checkpoints
        self.workdir, self.first, self.end = workdir, first, end
        self.time_limit, self.clock, self.started = time_limit, clock, started
        self.step = first
        self.losses: list[float] = []
        self.stop_reason = "completed" if end == config.steps else "stop_at"
        self.progress = clock.progress if clock is not None else first / config.steps
        self.compile_seconds: dict = {}
        self.last_saved = None  # the step of the newest good checkpoint: the one resumed from
        if checkpoints is not None and first in checkpoints.all_steps() and first not in checkpoints.unreadable:
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
        self._seconds: dict[tuple[int, int], float] = {}  # latest step seconds per (bucket, micro)
        self._recent: list[float] = []  # the latest 16 step times, any shape
        self._waited = False  # a save waited for the device: the next interval is no step time
        self._last_values: dict[str, float] = {}
        params = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(stepper.abstract_state()))
        # until measured: saving the state at ~100 MB/s, exporting the weights at ~50 MB/s
        self._save_seconds = 0.5 + params / 100e6
        self._export_seconds = 0.5 + params / 3 / 50e6 if export else 0.0
        self._multiprocess = jax.process_count() > 1

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
            _say(f"compiled in {seconds['total']:.1f} s: {', '.join(parts)}")

    def loop(self, state: TrainState, signals: _StopSignals) -> TrainState:
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
                    self._seconds[self._shape(self.step - 2)] = now - last
                    self._recent = [*self._recent[-15:], now - last]
                self._waited = False
                between = self._between_steps(state)
                last = now + between  # the time between steps is not a step's
            self._flush(final=True)
            if self.checkpoints is not None:
                self._save(state)
        finally:
            if self.bar is not None:
                self.bar.close()
        if self.stop_reason not in ("completed", "stop_at"):
            _say(f"stopped at step {self.step} ({self.stop_reason}); rerun the same command to resume")
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
        return time.monotonic() - began

    def _between_seconds(self, steps: int) -> float:
        """The predicted seconds of `_between_steps` after the next `steps` steps are dispatched."""
        every = self.config.checkpoint_every
        if self.checkpoints is None or not every:
            return 0.0
        saves = sum((self.step + k) % every == 0 for k in range(1, steps + 1))
        return saves * self._save_seconds

    # -- when to stop, and the rate of the next step --------------------------------------------------

    def _shape(self, step: int) -> tuple[int, int]:
        return self.stepper.bucket(self.stepper.split(step)), self.config.micro_batches(step)

    def _predict(self, step: int) -> float:
        """Seconds step `step` will take: the latest of its bucket, else the slowest seen."""
        seconds = self._seconds.get(self._shape(step))
        return seconds if seconds is not None else max(self._seconds.values(), default=0.0)

    def _reserve(self) -> float:
        """Seconds kept back at the end of a budget: the last checkpoint and the export."""
        return 1.5 * ((self._save_seconds if self.checkpoints is not None else 0.0) + self._export_seconds)

    def _next(self, signals: _StopSignals) -> tuple[str | None, float]:
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
        slow = max([self._predict(self.step + 1), *self._recent])
        if clock.spent(ends + 2 * slow + self._between_seconds(2)) + reserve > clock.budget_s:
            # the last steps that fit run on the schedule's floor: those of two of the slowest
            # recent steps (and the work between them), so that a step slower than predicted
            # does not end the run above it
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
        self._save_seconds = time.monotonic() - began
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
            "grad_norm": values.get("grad_norm"),
            "learning_rate": values.get("learning_rate"),
            "valid_fraction": values.get("valid_fraction"),
            "schedule_progress": values.get("schedule_progress"),
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


def _agree(reason: str | None) -> str | None:
    """The stop reason of any process, on every process (one small all-gather)."""
    from jax.experimental import multihost_utils

    codes = ["", "time_limit", "SIGTERM", "SIGINT"]  # a budget needs one process: never agreed
    code = codes.index(reason) if reason in codes else (1 if reason else 0)
    gathered = np.asarray(multihost_utils.process_allgather(np.int32(code)))
    best = int(gathered.max())
    return codes[best] or None


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """The metric lines written to `<workdir>/metrics.jsonl`, in order."""
    path = Path(workdir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
