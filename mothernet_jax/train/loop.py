"""`train(config, workdir)`: the training loop the CLI, notebooks and tests share.

It resumes from the latest checkpoint in `workdir` (else starts from `config.init_weights` or a
fresh initialisation), runs jitted steps (`TrainStep`) until `config.steps`, and

- checkpoints every `config.checkpoint_every` steps, at the end, and when it stops early: on SIGINT
  or SIGTERM, at `time_limit` seconds, or at `stop_at`;
- appends metrics as JSON lines to `<workdir>/metrics.jsonl` and draws a progress bar;
- raises `NonFiniteLossError` at the first non-finite loss or gradient, naming the step, and saves
  nothing after it, so the last checkpoint is the last good state.

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
from mothernet_jax.train.config import TrainConfig
from mothernet_jax.train.driver import TrainStep
from mothernet_jax.train.mesh import is_main_process
from mothernet_jax.train.step import TrainState

METRICS = "metrics.jsonl"
CONFIG = "config.json"
LINEAGE = "lineage.json"  # what the init weights carried in (see `_lineage`)


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient norm became NaN or infinite; training stopped."""


@dataclasses.dataclass
class TrainResult:
    """What `train` returns. `losses[i]` is the loss of step `first_step + i`."""

    config: TrainConfig
    state: TrainState
    step: int  # optimiser steps taken in total
    first_step: int  # the step this call started (resumed) from
    losses: list[float]
    stop_reason: str  # "completed", "stop_at", "time_limit", "SIGINT", "SIGTERM"
    workdir: Path | None
    seconds: float  # wall-clock time of this call

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
    mesh: Mesh | None = None,
    progress: bool = True,
    sample_fn=None,
    compiler_options: dict[str, Any] | None = None,
) -> TrainResult:
    """Meta-train (or resume) until `config.steps`; see the module docstring.

    workdir: checkpoints, `config.json` and `metrics.jsonl` go here; None trains in memory only.
    time_limit: seconds of wall-clock time after which to stop cleanly (checkpoint included).
    stop_at: stop (and checkpoint) after this many steps, keeping the schedule of `config.steps`.
    export: write the final parameters with `mothernet_jax.pretrained.save_pretrained`.
    mesh: the data-parallel mesh (default: every device of every process).
    sample_fn: the task sampler (default `priors.sample_batch`); compiler_options: XLA options for
    the step's compilation (see `TrainStep`).
    """
    started = time.monotonic()
    workdir = None if workdir is None else Path(workdir)
    main = is_main_process()
    stepper = TrainStep(config, mesh, sample_fn=sample_fn, compiler_options=compiler_options)
    checkpoints = None
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        checkpoints = Checkpoints(workdir, keep=config.keep_checkpoints)
    try:
        state, first = _initial_state(config, stepper, checkpoints)
        lineage = _lineage(config, workdir, fresh=first == 0)
        if workdir is not None and main:
            (workdir / CONFIG).write_text(config.to_json() + "\n")
            if lineage:
                (workdir / LINEAGE).write_text(json.dumps(lineage, indent=1) + "\n")
        end = config.steps if stop_at is None else min(config.steps, stop_at)
        run = _Run(config, stepper, checkpoints, workdir, first, end, time_limit, started, progress and main)
        with _StopSignals() as signals:
            state = run.loop(state, signals)
        if export is not None and main:
            from mothernet_jax.pretrained import save_pretrained

            info = {
                "steps": run.step,
                "datasets_seen": config.datasets_seen(run.step),
                "loss_last_50": float(np.mean(run.losses[-50:])) if run.losses else None,
                "train_config": config.to_dict(),
            }
            info.update(_exported_lineage(lineage, info))
            save_pretrained(export, host_values(state.params), config.model, info=info)
            _say(f"exported the parameters to {export}")
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
    )


def _lineage(config: TrainConfig, workdir: Path | None, *, fresh: bool) -> dict[str, Any]:
    """What `config.init_weights` carries into this run's export: its training history (a list of
    phases, each {steps, datasets_seen, train_config}) and the classifier's "multiclass"
    recommendation. Read from the weight file when the run starts fresh, then kept in the work
    directory, so that a resumed run still knows it after the export has replaced the init file."""
    saved = None if workdir is None else workdir / LINEAGE
    if saved is not None and saved.exists() and not fresh:
        return json.loads(saved.read_text())
    if not config.init_weights:
        return {}
    from mothernet_jax.pretrained import load_info

    try:
        info = load_info(config.init_weights)
    except FileNotFoundError:  # a weight file without its manifest: no history to carry
        return {}
    history = info.get("history") or [
        {key: info[key] for key in ("steps", "datasets_seen", "train_config") if key in info}
    ]
    lineage = {"history": history}
    if "multiclass" in info:
        lineage["multiclass"] = info["multiclass"]
    return lineage


def _exported_lineage(lineage: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """History (earlier phases plus this run) and its totals, for the export's info."""
    phases = [*lineage.get("history", []), {k: info[k] for k in ("steps", "datasets_seen", "train_config")}]
    out = {k: v for k, v in lineage.items() if k != "history"}
    out["history"] = phases
    out["total_steps"] = sum(int(p.get("steps", 0)) for p in phases)
    out["total_datasets_seen"] = sum(int(p.get("datasets_seen", 0)) for p in phases)
    return out


def _say(message: str) -> None:
    if is_main_process():
        print(f"[mothernet-jax train] {message}", file=sys.stderr, flush=True)


# -- start: resume, initial weights, or fresh --------------------------------------------------------------


def _initial_state(
    config: TrainConfig, stepper: TrainStep, checkpoints: Checkpoints | None
) -> tuple[TrainState, int]:
    latest = None if checkpoints is None else checkpoints.latest_step()
    if latest is not None:
        check_resumable(checkpoints.config(latest), config)
        state = checkpoints.restore(stepper.abstract_state(), latest)
        _say(f"resuming from step {latest} in {checkpoints.directory}")
        return state, latest
    if config.init_weights:
        from mothernet_jax.pretrained import load_pretrained

        params, model = load_pretrained(config.init_weights)
        if model.replace(dtype=config.model.dtype) != config.model:  # compute dtype may differ
            raise ValueError(
                f"init_weights {config.init_weights}: its model config differs from the training config in "
                f"{_differences(model.to_dict(), config.model.to_dict())}"
            )
        _say(f"starting from the weights in {config.init_weights}")
        return stepper.init(params), 0
    return stepper.init(), 0


def check_resumable(saved: TrainConfig, config: TrainConfig) -> None:
    """Resuming needs the same model and prior; other changes (more steps, another learning rate)
    are allowed and reported."""
    for name in ("model", "prior"):
        old, new = getattr(saved, name), getattr(config, name)
        if old != new:
            raise ValueError(
                f"the checkpoint was trained with another {name} config ({_differences(old.to_dict(), new.to_dict())}); "
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
    def __init__(self, config, stepper, checkpoints, workdir, first, end, time_limit, started, show):
        self.config, self.stepper, self.checkpoints = config, stepper, checkpoints
        self.workdir, self.first, self.end = workdir, first, end
        self.time_limit, self.started = time_limit, started
        self.step = first
        self.losses: list[float] = []
        self.stop_reason = "completed" if end == config.steps else "stop_at"
        self.last_saved = checkpoints.latest_step() if checkpoints is not None else None
        self.bar = Progress(end - first, f"train {first}->{end}", enabled=show) if end > first else None
        self.metrics_file = workdir / METRICS if workdir is not None and is_main_process() else None
        self._pending: tuple[int, dict] | None = None
        self._window: list[float] = []
        self._window_start = (time.monotonic(), first)
        self._rate = (time.monotonic(), 0)  # for datasets/s on the progress bar
        self._datasets = 0
        self._step_seconds = 0.0
        self._save_seconds = 0.0
        self._multiprocess = jax.process_count() > 1

    def loop(self, state: TrainState, signals: _StopSignals) -> TrainState:
        try:
            last = time.monotonic()
            while self.step < self.end:
                state, metrics = self.stepper(state, self.step)
                self._flush()
                self._pending = (self.step, metrics)
                self.step += 1
                now = time.monotonic()
                self._step_seconds, last = now - last, now  # the latest step predicts the next
                reason = self._stop_reason(signals)
                periodic = self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0
                if self.checkpoints is not None and (reason or periodic or self.step == self.end):
                    self._save(state)
                if reason:
                    self.stop_reason = reason
                    _say(f"stopped at step {self.step} ({reason}); rerun the same command to resume")
                    break
            self._flush()
            if self.checkpoints is not None:
                self._save(state)
        finally:
            if self.bar is not None:
                self.bar.close()
        return state

    def _stop_reason(self, signals: _StopSignals) -> str | None:
        reason = signals.received
        if reason is None and self.time_limit is not None:
            elapsed = time.monotonic() - self.started
            if elapsed + self._step_seconds + self._save_seconds >= self.time_limit:
                reason = "time_limit"
        if self._multiprocess:  # every process must stop at the same step
            if self.step % self.config.log_every and self.step != self.end:
                return None
            reason = _agree(reason)
        return reason

    def _save(self, state: TrainState) -> None:
        self._flush()  # never save a state whose loss was not checked
        if self.last_saved == self.step:
            return
        began = time.monotonic()
        self.checkpoints.save(state, self.config, self.step)
        self._save_seconds = time.monotonic() - began
        self.last_saved = self.step

    def _flush(self) -> None:
        """Read the metrics of the previous step, check them, and log them."""
        if self._pending is None:
            return
        step, metrics = self._pending
        self._pending = None
        values = {k: float(v) for k, v in host_values(metrics).items()}
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
        self.losses.append(values["loss"])
        self._window.append(values["loss"])
        datasets = self.config.datasets_per_step(step)
        self._datasets += datasets
        now = time.monotonic()
        done = step + 1
        if self.bar is not None:
            t0, n0 = self._rate
            rate = (self._datasets - n0) / max(now - t0, 1e-9)
            if now - t0 > 10:
                self._rate = (now, self._datasets)
            self.bar.update(1, loss=values["loss"], datasets_per_s=round(rate, 1))
        if done % self.config.log_every == 0 or done == self.end:
            self._log(done, values, now)

    def _log(self, done: int, values: dict[str, float], now: float) -> None:
        t0, s0 = self._window_start
        steps = done - s0
        seconds = now - t0
        datasets = sum(self.config.datasets_per_step(s) for s in range(s0, done))
        line = {
            "step": done,
            "loss": float(np.mean(self._window)),
            "last_loss": values["loss"],
            "grad_norm": values["grad_norm"],
            "learning_rate": values["learning_rate"],
            "valid_fraction": values["valid_fraction"],
            "datasets_per_step": self.config.datasets_per_step(done - 1),
            "datasets_per_s": datasets / seconds if seconds > 0 else None,
            "seconds_per_step": seconds / steps if steps else None,
            "elapsed_s": now - self.started,
            "time": time.time(),
        }
        self._window = []
        self._window_start = (now, done)
        if self.metrics_file is not None:
            with open(self.metrics_file, "a") as f:
                f.write(json.dumps(line) + "\n")


def _agree(reason: str | None) -> str | None:
    """The stop reason of any process, on every process (one small all-gather)."""
    from jax.experimental import multihost_utils

    codes = ["", "time_limit", "SIGTERM", "SIGINT"]
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
