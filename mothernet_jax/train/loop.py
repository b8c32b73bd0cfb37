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
import os
import time
from pathlib import Path
from typing import Any

import jax
from jax.sharding import Mesh

from mothernet_jax.train.checkpoint import Checkpoints
from mothernet_jax.train.config import ConfigError, TrainConfig
from mothernet_jax.train.driver import TrainStep
from mothernet_jax.train.export import EXPORT_DTYPES, LINEAGE, export_weights, lineage
from mothernet_jax.train.mesh import is_main_process
from mothernet_jax.train.run import METRICS, NonFiniteLossError, Run, RunPlan, StopSignals, host_values, say
from mothernet_jax.train.schedule import BudgetClock
from mothernet_jax.train.step import TrainState, eval_params

__all__ = ["NonFiniteLossError", "TrainResult", "check_resumable", "host_values", "read_metrics", "train"]

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
    validate_every: float | None = None,
    validation_data: str | os.PathLike | None = None,
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
    validate_every: every this many wall seconds, and at the end, score the weights that would be
    exported on real datasets that are not TabPFN-test datasets (`validate.Validator`, from
    `validation_data`, default `../shared/datasets` beside a source checkout) and log `val_auc`.
    """
    started = time.monotonic()
    workdir = None if workdir is None else Path(workdir)
    main = is_main_process()
    if export_dtype not in EXPORT_DTYPES:
        raise ConfigError(f"export dtype must be one of {EXPORT_DTYPES}, got {export_dtype!r}")
    if config.budget_s and jax.process_count() > 1:
        raise ConfigError("a budget (--budget) needs one process: use --time-limit and --steps on several")
    validator = None
    if validate_every is not None:
        validator = make_validator(config, validate_every, validation_data)
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
        run = Run(RunPlan(
            config=config, stepper=stepper, checkpoints=checkpoints, workdir=workdir, first=first, end=end,
            started=started, time_limit=time_limit, clock=clock, show=progress and main,
            export=export is not None, validator=validator, validate_every=validate_every,
        ))  # fmt: skip

        def write(params, steps, losses, reason):
            if export is not None and main:
                export_weights(export, params, config, steps=steps, losses=losses, carried=carried,
                               stop_reason=reason, dtype=export_dtype)  # fmt: skip
                say(f"exported the parameters of step {steps} to {export}")

        try:
            with StopSignals() as signals:
                run.compile(compile_threads)
                state = run.loop(state, signals)
        except NonFiniteLossError:
            if export is not None and run.last_saved is not None:
                good = checkpoints.restore(stepper.abstract_state(), run.last_saved)
                losses = run.losses[: max(0, run.last_saved - first)]
                write(host_values(eval_params(good, config)), run.last_saved, losses, "non_finite_loss")
            elif export is not None:
                say(f"nothing exported to {export}: no checkpoint was saved before the non-finite loss")
            raise
        write(host_values(eval_params(state, config)), run.step, run.losses, run.stop_reason)
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


# -- start: resume, initial weights, or fresh --------------------------------------------------------------


def make_validator(config: TrainConfig, every: float, data: str | os.PathLike | None):
    """The `Validator` of `train(validate_every=...)`: one clear error when it cannot be built."""
    from mothernet_jax.train.validate import Validator, default_data_dir

    if not every > 0:
        raise ConfigError(f"--validate-every must be a positive number of seconds, got {every!r}")
    folder = data if data is not None else default_data_dir()
    if folder is None:
        raise ConfigError(
            "--validate-every needs validation datasets: pass --validation-data DIR (a folder of .npz "
            "datasets; ../shared/datasets beside a source checkout is the default)"
        )
    try:
        return Validator(folder, config.model)
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(f"validation data: {error}") from None


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


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """The metric lines written to `<workdir>/metrics.jsonl`, in order."""
    path = Path(workdir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
