"""`train(config, workdir)`: the training loop the CLI, notebooks and tests share, in one function.

It resumes from the newest readable checkpoint in `workdir` (else starts from `config.init_weights`
or a fresh initialisation), compiles the prior and every split bucket's step before the first step
(printing the seconds), runs jitted steps (`TrainStep`) until `config.steps` or, with
`config.budget_s`, until the wall-clock budget is spent (the schedule then runs on the budget, see
`budget.py`), and

- checkpoints when orbax says a save is due (every `config.checkpoint_every` steps), at the end,
  and when it stops early: on SIGINT or SIGTERM, at `time_limit` seconds, by the budget, or at
  `stop_at`;
- holds the work directory's lock while it runs (a second run on it is refused, `workdir.py`) and
  refuses an export path it could not write before any training;
- appends metrics as JSON lines to `<workdir>/metrics.jsonl` (`metrics.py`) and shows its progress;
  a resumed run first drops the lines past the step it resumes from, so each step has one line; a
  step whose batch held no valid dataset has no loss (NaN in `TrainResult.losses`, left out of
  the logged mean, null in its line);
- validates (`validator=`, every `validate_every` wall seconds and at the end): scores the weights
  that would be exported and logs a line with `step`, `datasets`, `seconds` (training seconds of
  the work directory so far, validation excluded) and the validator's scores: `val_auc`,
  `val_auc_categorical`, `val_seconds` and `val_datasets` (a regression model: `val_r2` in place of
  the two AUCs);
- raises `NonFiniteLossError` at the first non-finite loss or gradient, naming the step, and saves
  nothing after it, so the last checkpoint is the last good state;
- exports (`export=PATH`) on every one of these stops, a non-finite loss included (then the last
  good checkpoint).

Metrics are read one step late, so the host never waits for the device between steps; a checkpoint
is written only after the loss that produced its state was checked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from jax.sharding import Mesh

from mothernet_jax.progress import Progress
from mothernet_jax.train.budget import BudgetClock, learning_rate
from mothernet_jax.train.checkpoint import Checkpoints
from mothernet_jax.train.config import ConfigError, TrainConfig
from mothernet_jax.train.export import EXPORT_DTYPES, LINEAGE, check_export_target, export_weights, lineage
from mothernet_jax.train.mesh import agree, host_values, is_main_process
from mothernet_jax.train.metrics import (
    METRICS,
    MetricWriter,
    NonFiniteLossError,
    StepLog,
    roll_back,
    say,
)
from mothernet_jax.train.optimizer import eval_params
from mothernet_jax.train.step import TrainState
from mothernet_jax.train.stepper import TrainStep
from mothernet_jax.train.workdir import claim

__all__ = ["NonFiniteLossError", "StopSignals", "TrainResult", "check_resumable", "train"]

CONFIG = "config.json"


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
    validator: Callable[[Any], dict[str, Any]] | None = None,
    validate_every: float | None = None,
    clock: Callable[[], float] = time.monotonic,
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
    sample_fn: the task sampler (default: the prior of the model's task, `step.task_sampler`); compiler_options: XLA options for
    every compilation (see `TrainStep`); compile_threads: threads compiling the split buckets.
    validator: `validator(params) -> {"val_auc", "val_auc_categorical", "val_seconds",
    "val_datasets"}` (a `validate.Validator`; for regression {"val_r2", "val_seconds",
    "val_datasets"}, a `validate.RegressionValidator`), called every `validate_every` wall seconds and at
    the end (without `validate_every`: at the end only).
    clock: the time source of the budget, the time limit and the logged seconds (tests simulate it).
    """
    # == set up ======================================================================================
    started = clock()
    workdir = None if workdir is None else Path(workdir)
    main = is_main_process()
    if export_dtype not in EXPORT_DTYPES:
        raise ConfigError(f"export dtype must be one of {EXPORT_DTYPES}, got {export_dtype!r}")
    if config.budget_s and jax.process_count() > 1:
        raise ConfigError("a budget (--budget) needs one process: use --time-limit and --steps on several")
    if validate_every is not None and not validate_every > 0:
        raise ConfigError(f"--validate-every must be a positive number of seconds, got {validate_every!r}")
    if validate_every is not None and validator is None:
        raise ConfigError("validate_every needs a validator (validate.Validator)")
    if export is not None:
        check_export_target(export)
    stepper = TrainStep(config, mesh, sample_fn=sample_fn, compiler_options=compiler_options)
    writer = MetricWriter(workdir / METRICS if workdir is not None and main else None)
    multiprocess = jax.process_count() > 1
    held = contextlib.ExitStack()  # the work directory's lock and checkpoints, released on return
    checkpoints = None
    try:
        if workdir is not None:  # one run at a time: process 0 holds the lock (workdir.py)
            held.enter_context(claim(workdir, lock=main))
            checkpoints = Checkpoints(workdir, keep=config.keep_checkpoints, every=config.checkpoint_every)
            held.callback(checkpoints.close)
        # == resume or initialise ====================================================================
        state, first, record = _initial_state(config, stepper, checkpoints)
        carried = lineage(config, workdir, fresh=record is None)
        if workdir is not None and main:
            dropped = roll_back(workdir, first)  # the lines of steps this run replays go
            if dropped:
                say(f"{workdir / METRICS}: dropped {dropped} lines past step {first} (this run writes them again)")
            (workdir / CONFIG).write_text(config.to_json() + "\n")
            if carried:
                (workdir / LINEAGE).write_text(json.dumps(carried, indent=1) + "\n")
        end = config.steps if stop_at is None else min(config.steps, stop_at)
        record = record or {}
        state_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(stepper.abstract_state()))
        budget = BudgetClock(
            config.budget_s,
            time_limit=time_limit,
            spent_before=float(record.get("budget_spent_s", 0.0)),
            progress_before=float(record.get("schedule_progress", 0.0)),
            trained_before=float(record.get("train_seconds", 0.0)),
            clock=clock,
            started=started,
            shape=lambda step: (stepper.bucket(stepper.split(step)), config.micro_batches(step)),
            save_every=config.checkpoint_every,
            # until measured: saving the state at ~100 MB/s, exporting the weights at ~50 MB/s
            save_s=0.5 + state_bytes / 100e6 if checkpoints is not None else None,
            export_s=0.5 + state_bytes / 3 / 50e6 if export is not None else 0.0,
            validating=validator is not None,
            steps=config.steps,
        )
        step, stop_reason = first, "completed" if end == config.steps else "stop_at"
        progress_now = budget.progress if config.budget_s else first / config.steps
        last_saved = first if record else None  # the newest good checkpoint: the one resumed from
        validated_at = budget.now()

        # == precompile: the prior and every (bucket, micro-batches) the steps will run ==============
        # a signal from here on stops the run cleanly: during the compiles, at the first step
        signals = held.enter_context(StopSignals())
        compile_seconds: dict = {}
        if end > first and not budget.out_of_time():
            compile_seconds = stepper.compile(stepper.plan(first, end), threads=compile_threads)
            _report_compile(compile_seconds)
        bar = Progress(None if config.budget_s else end - first, f"train {first}->{end}",
                       enabled=progress and main and end > first,
                       every=config.log_every if config.budget_s else None)  # fmt: skip
        log = StepLog(config, first, end, writer, bar, budget)

        # == the step loop ===========================================================================
        try:
            if config.budget_s and checkpoints is not None:  # measures what the last save will cost
                last_saved = _save(checkpoints, budget, state, config, step, progress_now, last_saved)
            while step < end:
                # -- stop checks: signals, time limit, budget, multi-host agreement --
                reason = signals.received or budget.stop_reason(step, first)
                if multiprocess:  # every process stops at the same step
                    reason = agree(reason) if step % config.log_every == 0 or step == first else None
                if reason:
                    stop_reason = reason
                    break
                # -- learning rate: of the step's progress through the budget, or of the step --
                if config.budget_s:
                    progress_now = budget.step_progress(step, first)
                    rate = learning_rate(config, step, progress_now)
                else:
                    progress_now = step / config.steps
                    rate = learning_rate(config, step)
                # -- dispatch --
                state, metrics = stepper(state, step, learning_rate=rate)
                # -- log: reads the step before (done by now), so the host never waits here --
                log.queue(step, metrics, progress_now)
                step += 1
                # -- checkpoint if due (orbax decides), after the step's loss is checked --
                if checkpoints is not None and checkpoints.due(step):
                    log.flush()
                    last_saved = _save(checkpoints, budget, state, config, step, progress_now, last_saved)
                # -- validate if due --
                if validate_every is not None:
                    due = budget.now() - validated_at >= validate_every
                    if multiprocess:  # every process validates at the same step, or none does
                        due = step % config.log_every == 0 and agree("due" if due else None) is not None
                    if due:
                        log.flush()
                        _validate(validator, state, config, step, writer, budget)
                        validated_at = budget.now()
            log.flush()
            log.write()
            # == final validation and save ===========================================================
            if validator is not None and step > first:
                _validate(validator, state, config, step, writer, budget)
            if checkpoints is not None:
                last_saved = _save(checkpoints, budget, state, config, step, progress_now, last_saved)
        except NonFiniteLossError as error:
            where = "none (no checkpoint was saved)"
            if last_saved is not None:
                where = f"step {last_saved} in {checkpoints.directory}"
            message = (f"{error} The last good checkpoint is {where}; nothing was saved after it. Lower the "
                       "learning rate (--set learning_rate=...) or check the prior, then rerun to resume.")  # fmt: skip
            if export is not None and last_saved is not None:
                good = checkpoints.restore(stepper.abstract_state(), last_saved)
                _export(export, export_dtype, good, config, carried, last_saved,
                        log.losses[: max(0, last_saved - first)], "non_finite_loss", main)  # fmt: skip
            elif export is not None:
                say(f"nothing exported to {export}: no checkpoint was saved before the non-finite loss")
            raise NonFiniteLossError(message) from None
        finally:
            bar.close()
        if stop_reason not in ("completed", "stop_at"):
            say(f"stopped at step {step} ({stop_reason}); rerun the same command to resume")

        # == export ======================================================================================
        if export is not None:
            _export(export, export_dtype, state, config, carried, step, log.losses, stop_reason, main)
    finally:
        held.close()
    return TrainResult(
        config=config,
        state=state,
        step=step,
        first_step=first,
        losses=log.losses,
        stop_reason=stop_reason,
        workdir=workdir,
        seconds=clock() - started,
        progress=progress_now,
        budget_spent_s=budget.spent() if config.budget_s else None,
        compile_seconds=compile_seconds,
    )


# -- the stages' parts --------------------------------------------------------------------------------------


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


def _report_compile(seconds: dict) -> None:
    if len(seconds) > 1:
        parts = [f"prior {seconds['prior']:.1f} s"] if "prior" in seconds else []
        parts += [f"bucket {b}" + (f"x{m}" if m > 1 else "") + f" {t:.1f} s"
                  for (b, m), t in ((k, v) for k, v in seconds.items() if isinstance(k, tuple))]  # fmt: skip
        say(f"compiled in {seconds['total']:.1f} s: {', '.join(parts)}")


def _save(checkpoints: Checkpoints, budget: BudgetClock, state, config: TrainConfig, step: int, progress: float,
          last_saved: int | None) -> int:
    """Save the state after `step` steps (unless saved already) with what a resumed run goes on
    from; returns `step`."""
    if last_saved == step:
        return step
    record = {"step": step, "schedule_progress": progress, "train_seconds": budget.trained()}
    if config.budget_s:
        record["budget_spent_s"] = budget.spent()
    with budget.aside("save"):
        checkpoints.save(state, config, step, record)
    return step


def _validate(validator, state, config: TrainConfig, step: int, writer: MetricWriter, budget: BudgetClock) -> None:
    """Score the weights that would be exported and write their line (see the module docstring)."""
    writer.measure("datasets", config.datasets_seen(step))
    writer.measure("seconds", budget.trained())
    with budget.aside("validation"):
        scores = validator(host_values(eval_params(state, config)))
    for name, value in scores.items():
        writer.measure(name, value)
    writer.write(step)
    score = "val_r2" if "val_r2" in scores else "val_auc"
    gap = "" if "val_gap" not in scores else f", {scores['val_gap']:+.4f} over the untrained control"
    say(f"step {step}: {score} {scores[score]:.4f}{gap} ({scores['val_seconds']:.0f} s)")


def _export(path, dtype: str, state, config: TrainConfig, carried, steps: int, losses, reason: str, main: bool) -> None:
    if main:
        export_weights(path, host_values(eval_params(state, config)), config, steps=steps, losses=losses,
                       carried=carried, stop_reason=reason, dtype=dtype)  # fmt: skip
        say(f"exported the parameters of step {steps} to {path}")


def _initial_state(
    config: TrainConfig, stepper: TrainStep, checkpoints: Checkpoints | None
) -> tuple[TrainState, int, dict[str, Any] | None]:
    """(state, its step, the checkpoint's progress record or None when the run starts fresh)."""
    if checkpoints is not None:
        check = lambda saved: check_resumable(saved, config, checkpoints.workdir)
        restored = checkpoints.restore_latest(stepper.abstract_state(), check=check, warn=say)
        if restored is not None:
            say(f"resuming from step {restored.step} in {checkpoints.directory}")
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
        say(f"starting from the weights in {config.init_weights}")
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
        say(f"resuming with changed settings: {changed}")


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))
