"""Checkpoints: an orbax `CheckpointManager` in `<workdir>/checkpoints`, the config beside the weights.

Each step folder holds `state` (the `TrainState`: step, parameters, optimiser state) and `config`
(the `TrainConfig` as JSON). Saves are synchronous and atomic: orbax writes into a temporary folder
and renames it on commit, so a process killed while saving leaves the previous checkpoints intact
(the half-written folder is ignored, and removed on the next start). The latest `keep` are kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import orbax.checkpoint as ocp

from mothernet_jax.train.config import TrainConfig
from mothernet_jax.train.step import TrainState

CHECKPOINTS = "checkpoints"


class Checkpoints:
    """`<workdir>/checkpoints`: save, find the latest, restore. All processes call every method."""

    def __init__(self, workdir: str | os.PathLike, keep: int = 3):
        self.directory = Path(workdir).absolute() / CHECKPOINTS
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=False,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "config"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, state: TrainState, config: TrainConfig, step: int) -> None:
        """Save `state` as step `step` (a no-op if that step is already saved); returns once
        committed."""
        if step in self.manager.all_steps():
            return
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config.to_dict())
        )
        self.manager.save(step, args=args, force=True)
        self.manager.wait_until_finished()

    def restore(self, abstract_state: TrainState, step: int | None = None) -> TrainState:
        """The state saved at `step` (default: the latest), placed as `abstract_state`'s shardings."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        )
        return restored.state

    def config(self, step: int | None = None) -> TrainConfig:
        """The TrainConfig saved with `step` (default: the latest)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        restored = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return TrainConfig.from_dict(restored.config)

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def latest_config(workdir: str | os.PathLike) -> TrainConfig | None:
    """The config of the latest checkpoint in `workdir`, or None where there is none."""
    if not (Path(workdir) / CHECKPOINTS).is_dir():
        return None
    checkpoints = Checkpoints(workdir)
    try:
        return None if checkpoints.latest_step() is None else checkpoints.config()
    finally:
        checkpoints.close()
