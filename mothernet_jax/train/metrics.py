"""What a run reports: metric lines in `<workdir>/metrics.jsonl` and the step log (which feeds the
progress bar, `mothernet_jax.progress.Progress`).

`MetricWriter.measure(name, value)` is called where a value is computed; `write(step)` appends the
values measured since the last line as one JSON line (with `step` and the wall `time`). `StepLog`
reads each step's metrics on the host (one step late, so the host never waits for the device),
raises `NonFiniteLossError` at the first non-finite loss or gradient, keeps the per-step losses and
measures the window of steps since the last line. Lines of a training window carry `loss` (the mean
over its steps with a valid dataset; None if none had one), `loss_steps`, `last_loss`, the last
step's own metrics (`grad_norm`, `learning_rate`, `valid_fraction`, `schedule_progress`; a step
without a valid dataset has `valid_fraction` 0 and `last_loss` and `grad_norm` None, never 0),
`datasets_per_step`, `datasets_per_s`, `seconds_per_step`, `elapsed_s` and, under a budget,
`budget_spent_s`; validation lines carry `val_auc` and friends (see `loop.py`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mothernet_jax.runtime.npz import atomic_write
from mothernet_jax.train.config import TrainConfig
from mothernet_jax.train.mesh import host_values, is_main_process

METRICS = "metrics.jsonl"


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient norm became NaN or infinite; training stopped."""


def say(message: str) -> None:
    """One line of the training log on stderr (process 0 only)."""
    if is_main_process():
        print(f"[mothernet-jax train] {message}", file=sys.stderr, flush=True)


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """The metric lines written to `<workdir>/metrics.jsonl`, in order."""
    path = Path(workdir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def roll_back(workdir: str | os.PathLike, step: int) -> int:
    """Drop the lines of `<workdir>/metrics.jsonl` past `step` (those of steps a resumed run
    replays from its checkpoint at `step`, validation lines included) and any torn line (a process
    killed while writing), so that every step has one line; rewrites the file atomically. Returns
    the number of lines dropped."""
    path = Path(workdir) / METRICS
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for text in path.read_text().splitlines():
        if not text.strip():
            continue
        try:
            line = json.loads(text)
            keep = isinstance(line, dict) and int(line["step"]) <= step
        except (ValueError, KeyError, TypeError):
            keep = False
        if keep:
            kept.append(text)
        else:
            dropped += 1
    if dropped:
        data = "".join(f"{text}\n" for text in kept).encode()
        atomic_write(path, lambda f: f.write(data))
    return dropped


class MetricWriter:
    """`measure(name, value)` where a value is computed; `write(step)` appends them as one line to
    `path` (None: the values are dropped, e.g. on processes other than 0)."""

    def __init__(self, path: Path | None, wall: Callable[[], float] = time.time):
        self.path, self.wall = path, wall
        self._measured: dict[str, Any] = {}

    def measure(self, name: str, value: Any) -> None:
        self._measured[name] = value

    def write(self, step: int) -> None:
        line = {"step": step, **self._measured, "time": self.wall()}
        self._measured = {}
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(line) + "\n")


class StepLog:
    """The steps of one `train` call as the host sees them. `queue(step, metrics, progress)` right
    after dispatching a step reads the step before it (done by then: the host never waits for the
    device), checks its loss and gradient norm, keeps its loss and writes a line every
    `config.log_every` steps and at `end`; `flush()` reads the queued step now (before a save or a
    validation); `write()` writes the window of steps read since the last line. `losses[i]` is the
    loss of step `first + i` (NaN where its batch held no valid dataset). `budget` (a
    `budget.BudgetClock`) times the steps and the window."""

    def __init__(self, config: TrainConfig, first: int, end: int, writer: MetricWriter, bar, budget):
        self.config, self.end, self.writer, self.bar, self.budget = config, end, writer, bar, budget
        self.losses: list[float] = []
        self.read_until = first  # steps before this one were read
        self._queued: tuple[int, dict, float] | None = None
        self._window: list[float] = []  # finite losses since the last line
        self._since = (budget.now(), first)  # the time and step of the last line
        self._values: dict[str, float] = {}  # the last step's metrics
        self._rate = (budget.now(), 0)  # datasets/s on the bar, over about 10 s
        self._datasets = 0

    def queue(self, step: int, metrics: dict, progress: float) -> None:
        self.flush()
        self._queued = (step, metrics, progress)

    def flush(self) -> None:
        if self._queued is not None:
            queued, self._queued = self._queued, None
            self._read(*queued)

    def _read(self, step: int, metrics: dict, progress: float) -> None:
        values = {k: float(v) for k, v in host_values(metrics).items()}
        for name in ("loss", "grad_norm"):
            if not math.isfinite(values[name]):
                raise NonFiniteLossError(f"non-finite {name} ({values[name]}) at step {step}: training stopped.")
        values["schedule_progress"] = progress
        if values["valid_fraction"] > 0:
            self.losses.append(values["loss"])
            self._window.append(values["loss"])
        else:  # no valid dataset: the 0s the step reports are no loss and no gradient
            self.losses.append(math.nan)
            values["loss"] = values["grad_norm"] = None
        self._values = values
        self.read_until = step + 1
        self.budget.step_read(step)
        self._datasets += self.config.datasets_per_step(step)
        now = self.budget.now()
        t0, n0 = self._rate
        if now - t0 > 10:
            self._rate = (now, self._datasets)
        fields = {"loss": values["loss"] if values["loss"] is not None else "none",
                  "datasets_per_s": round((self._datasets - n0) / max(now - t0, 1e-9), 1)}
        if self.budget.budget_s:
            fields["budget"] = f"{100 * progress:.0f}%"
        self.bar.update(1, **fields)
        if self.read_until % self.config.log_every == 0 or self.read_until == self.end:
            self.write()

    def write(self) -> None:
        """Measure the window of steps read since the last line and write its line (nothing if
        the window is empty)."""
        done, (t0, s0), now = self.read_until, self._since, self.budget.now()
        if done <= s0:
            return
        seconds = now - t0
        measure = self.writer.measure
        measure("loss", float(np.mean(self._window)) if self._window else None)  # None: no valid dataset
        measure("loss_steps", len(self._window))  # the steps in that mean
        measure("last_loss", self._values.get("loss"))  # None: the last step had no valid dataset
        for name, value in self._values.items():  # grad_norm, learning_rate, valid_fraction, ...
            if name != "loss":
                measure(name, value)
        measure("datasets_per_step", self.config.datasets_per_step(done - 1))
        datasets = sum(self.config.datasets_per_step(s) for s in range(s0, done))
        measure("datasets_per_s", datasets / seconds if seconds > 0 else None)
        measure("seconds_per_step", seconds / (done - s0))
        measure("elapsed_s", self.budget.elapsed())
        if self.budget.budget_s:
            measure("budget_spent_s", self.budget.spent(now))
        self.writer.write(done)
        self._window, self._since = [], (now, done)
