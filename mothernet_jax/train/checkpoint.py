"""Checkpoints: an orbax `CheckpointManager` in `<workdir>/checkpoints`, the config beside the weights.

Each step folder holds `state` (the `TrainState`: step, parameters, optimiser state), `config`
(the `TrainConfig` as JSON) and `progress` (JSON: the schedule's progress, the budget seconds spent
and the training seconds, which a resumed run goes on from). Saves are synchronous and atomic: orbax
writes into a temporary folder and renames it on commit, so a process killed while saving leaves the
previous checkpoints intact (the half-written folder is ignored, and removed on the next start). The
latest `keep` are kept. When a periodic save is due is orbax's decision (`due`): every `every`
steps, or at a preemption sync point where JAX's preemption service reports one.

`restore_latest` resumes from the newest checkpoint that reads back: a truncated or corrupted one
(damaged files, bad JSON) is skipped with a one-line warning naming its folder, and removed once an
earlier one reads back (the run then writes that step again).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as save_decision_policy

from mothernet_jax.train.config import ConfigError, TrainConfig
from mothernet_jax.train.step import TrainState

CHECKPOINTS = "checkpoints"


class Restored(NamedTuple):
    step: int
    state: TrainState
    config: TrainConfig
    progress: dict[str, Any]  # {"schedule_progress", "budget_spent_s", "train_seconds"}; fewer in older ones


class Checkpoints:
    """`<workdir>/checkpoints`: save, find the latest, restore. All processes call every method."""

    def __init__(self, workdir: str | os.PathLike, keep: int = 3, every: int = 0):
        self.workdir = Path(workdir).absolute()
        self.directory = self.workdir / CHECKPOINTS
        policies = [save_decision_policy.PreemptionCheckpointingPolicy()]
        if every:
            policies.append(save_decision_policy.FixedIntervalPolicy(every))
        options = ocp.CheckpointManagerOptions(
            save_decision_policy=save_decision_policy.AnySavePolicy(policies),
            max_to_keep=keep,
            create=True,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=False,
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "config", "progress")
        )
        self.unreadable: set[int] = set()  # steps whose folder failed to read back

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def due(self, step: int) -> bool:
        """Whether the state after `step` steps is to be saved now (every `every` steps, or at a
        preemption sync point); all processes ask at the same steps."""
        return self.manager.should_save(step)

    def save(
        self, state: TrainState, config: TrainConfig, step: int, progress: dict[str, Any] | None = None
    ) -> None:
        """Save `state` as step `step` (a no-op if that step is already saved and readable);
        returns once committed."""
        if step in self.manager.all_steps():
            return
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            config=ocp.args.JsonSave(config.to_dict()),
            progress=ocp.args.JsonSave(dict(progress or {})),
        )
        self.manager.save(step, args=args, force=True)
        self.manager.wait_until_finished()

    def restore(self, abstract_state: TrainState, step: int | None = None) -> TrainState:
        """The state saved at `step` (default: the latest), placed as `abstract_state`'s shardings."""
        step = self._step(step)
        with _quiet_orbax():
            restored = self.manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
            )
        return restored.state

    def config(self, step: int | None = None) -> TrainConfig:
        """The TrainConfig saved with `step` (default: the latest)."""
        step = self._step(step)
        with _quiet_orbax():
            restored = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        if not isinstance(restored.config, dict):
            raise ValueError(f"the saved config is not a JSON object: {restored.config!r:.80}")
        return TrainConfig.from_dict(restored.config)

    def progress(self, step: int | None = None) -> dict[str, Any]:
        """The budget bookkeeping saved with `step`: {} for checkpoints written before it existed."""
        step = self._step(step)
        if not (self.directory / str(step) / "progress").exists():
            return {}
        with _quiet_orbax():
            restored = self.manager.restore(step, args=ocp.args.Composite(progress=ocp.args.JsonRestore()))
        if not isinstance(restored.progress, dict):
            raise ValueError(f"the saved progress is not a JSON object: {restored.progress!r:.80}")
        return restored.progress

    def restore_latest(
        self,
        abstract_state: TrainState,
        *,
        check: Callable[[TrainConfig], None] = lambda config: None,
        warn: Callable[[str], None] = print,
    ) -> Restored | None:
        """The newest checkpoint that reads back, or None when there is no checkpoint.

        `check(saved_config)` may refuse a checkpoint (its error propagates). An unreadable one is
        skipped with a one-line `warn`ing naming its folder; when none reads back, `ConfigError`
        names the work directory.
        """
        steps = self.all_steps()
        for step in reversed(steps):
            try:
                config = self.config(step)
            except Exception as error:  # orbax and tensorstore raise many types on damaged files
                self._skip(step, error, warn)
                continue
            check(config)
            try:
                state, progress = self.restore(abstract_state, step), self.progress(step)
            except Exception as error:
                self._skip(step, error, warn)
                continue
            for damaged in sorted(self.unreadable):  # all newer than `step`: the run writes them again
                self.manager.delete(damaged)
            self.unreadable.clear()
            return Restored(step, state, config, progress)
        if steps:
            raise ConfigError(
                f"no checkpoint in {self.workdir} reads back (tried steps {steps}); move its "
                f"{CHECKPOINTS}/ folder away to start afresh"
            )
        return None

    def latest_config(self, warn: Callable[[str], None] = print) -> TrainConfig | None:
        """The config of the newest checkpoint whose config reads back (None: no checkpoint)."""
        steps = self.all_steps()
        for step in reversed(steps):
            try:
                return self.config(step)
            except Exception as error:
                self._skip(step, error, warn)
        if steps:
            raise ConfigError(f"no checkpoint in {self.workdir} holds a readable config (steps {steps})")
        return None

    def _skip(self, step: int, error: Exception, warn: Callable[[str], None]) -> None:
        self.unreadable.add(step)
        reason = " ".join(str(error).split())[:160] or type(error).__name__
        warn(
            f"checkpoint {self.directory / str(step)} is unreadable ({type(error).__name__}: {reason}); "
            "trying the one before"
        )

    def _step(self, step: int | None) -> int:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return step

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


@contextlib.contextmanager
def _quiet_orbax():
    """Orbax logs a traceback for each failed read before raising; the caller reports it in one
    line instead."""
    loggers = [logging.getLogger(name) for name in ("absl", "orbax")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def latest_config(workdir: str | os.PathLike, warn: Callable[[str], None] = print) -> TrainConfig | None:
    """The config of the latest readable checkpoint in `workdir`, or None where there is none."""
    if not (Path(workdir) / CHECKPOINTS).is_dir():
        return None
    checkpoints = Checkpoints(workdir)
    try:
        return checkpoints.latest_config(warn)
    finally:
        checkpoints.close()
