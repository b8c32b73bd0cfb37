"""`PmapTrainStep`: the train step under `jax.pmap` instead of `jax.shard_map` over a mesh.

For pipelines built on pmap: the same per-device prior and step functions (`step.py`) and the same
split positions and buckets as `TrainStep`, with a leading device axis on the state and metrics
(`replicate` / `unreplicate`). Each bucket compiles on its first call; checkpointing and `train`
use the mesh step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from mothernet_jax.train.config import TrainConfig
from mothernet_jax.train.driver import COMPILED, TrainStep
from mothernet_jax.train.mesh import DATA_AXIS
from mothernet_jax.train.step import TrainState, init_state


class PmapTrainStep(TrainStep):
    """The same step under `jax.pmap(axis_name="data")`: the state carries a leading device axis
    (`replicate` / `unreplicate`), metrics too."""

    def __init__(
        self,
        config: TrainConfig,
        devices: Sequence[jax.Device] | None = None,
        *,
        sample_fn: Callable | None = None,
        compiler_options: dict[str, Any] | None = None,
    ):
        self.devices = list(jax.local_devices() if devices is None else devices)
        super().__init__(config, None, sample_fn=sample_fn, compiler_options=compiler_options)

    def _setup_devices(self, mesh):
        self.mesh = None
        self.n_devices = len(self.devices)

    def _build_prior(self, cache_key: tuple) -> Callable:
        return jax.pmap(  # pmap needs a mapped argument: one index per device (unused)
            lambda index, step, micro, split: self._prior_fn(cache_key)(step, micro, split),
            axis_name=DATA_AXIS,
            in_axes=(0, None, None, None),
            devices=self.devices,
        )

    def _build(self, bucket: int, cache_key: tuple) -> Callable:
        return jax.pmap(
            self._device_fn(bucket, cache_key),
            axis_name=DATA_AXIS,
            in_axes=(0, 0, None, None),
            devices=self.devices,
            donate_argnums=0,
        )

    def prior_function(self) -> Callable:
        key = self._prior_key()
        if key not in COMPILED:
            mapped, indices = self._build_prior(key), np.arange(self.n_devices)
            if self.compiler_options:  # else pmap compiles on the first call
                options = self.compiler_options
                mapped = mapped.lower(indices, *self._prior_example()).compile(compiler_options=options)
            COMPILED[key] = lambda step, micro, split: mapped(indices, step, micro, split)
            self._evict()
        return COMPILED[key]

    def function(self, bucket: int, micro_batches: int, *example) -> Callable:
        key = self._cache_key(bucket, micro_batches)
        self._keys[(bucket, micro_batches)] = key
        if key not in COMPILED:
            function = self._build(bucket, key)
            if self.compiler_options and example:  # else pmap compiles on the first call
                function = function.lower(*example).compile(compiler_options=self.compiler_options)
            COMPILED[key] = function
            self._evict()
        return COMPILED[key]

    def compile(self, pairs, *, threads=None):
        raise NotImplementedError("PmapTrainStep compiles each bucket on its first call")

    def replicate(self, tree):
        n = self.n_devices
        return jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n, *np.shape(x))), tree)

    @staticmethod
    def unreplicate(tree):
        return jax.tree.map(lambda x: x[0], tree)

    def init(self, params=None) -> TrainState:
        state = jax.jit(lambda p: init_state(self.config, p))(params)
        return self.replicate(jax.device_get(state))

    def abstract_state(self) -> TrainState:
        raise NotImplementedError("checkpointing runs on the mesh step (TrainStep)")
