"""The host-side driver of the train step: split positions, buckets, one compiled step each.

`TrainStep(config, mesh)` draws the split position of each optimiser step on the host (from the
seed and the step number, so it is the same on every host and after a resume), picks its bucket,
and calls the step compiled ahead of time for that bucket under `jax.shard_map` over the mesh.
Compiled steps are cached across instances, so a resumed `train` call in the same process does
not compile again. `PmapTrainStep` runs the same per-device function under `jax.pmap`.
"""

from __future__ import annotations

import collections
import functools
import itertools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from mothernet_jax.train.config import TrainConfig
from mothernet_jax.train.mesh import DATA_AXIS, make_mesh, put_replicated, replicated
from mothernet_jax.train.step import (
    TrainState,
    device_step,
    init_state,
    learning_rate,
    prior_shapes,
    resolve_attention,
    split_bucket,
    split_key,
)

SPLIT_BLOCK = 1024  # split positions are drawn for this many steps at a time (one transfer)
MAX_CACHED_FUNCTIONS = 32  # compiled steps kept across TrainStep instances (least recently used go)
_FUNCTIONS: collections.OrderedDict = collections.OrderedDict()
TRACES: collections.Counter = collections.Counter()  # traces per cache key (see TrainStep.traces)
_COMPILATIONS = itertools.count()  # names the barriers after each compilation (same order everywhere)


def wait_for_all_processes(name: str, timeout_s: float = 3600.0) -> None:
    """A barrier over every JAX process (the coordination service's, not a collective); a no-op
    in a single process."""
    if jax.process_count() == 1:
        return
    from jax._src import distributed

    client = distributed.global_state.client
    if client is not None and hasattr(client, "wait_at_barrier"):
        client.wait_at_barrier(name, timeout_in_ms=int(timeout_s * 1000))
    else:  # pragma: no cover - older or newer JAX without the client barrier
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


@functools.partial(jax.jit, static_argnames=("low", "high"))
def _split_block(key, first, *, low, high):
    steps = first + jnp.arange(SPLIT_BLOCK)
    return jax.vmap(lambda s: jax.random.randint(jax.random.fold_in(key, s), (), low, high))(steps)


class TrainStep:
    """`state, metrics = train_step(state, step)` over a data-parallel mesh.

    Picks the step's split position and bucket on the host, and calls the step jitted for that
    bucket (compiled once per (bucket, micro-batches); `traces` counts). The state is replicated
    over `mesh` (`init` builds one); metrics are replicated scalars.
    """

    def __init__(
        self,
        config: TrainConfig,
        mesh: Mesh | None = None,
        *,
        sample_fn: Callable | None = None,
        compiler_options: dict[str, Any] | None = None,
    ):
        if sample_fn is None:
            import priors

            sample_fn = priors.sample_batch
        self.config = config
        self.sample_fn = sample_fn
        # XLA options for every compilation, e.g. {"xla_backend_optimization_level": 0}: faster
        # compiles, slower steps (the tests use it)
        self.compiler_options = dict(compiler_options or {})
        self.shapes = prior_shapes(config.prior, sample_fn)
        self._setup_devices(mesh)
        self._check()
        self.attention = resolve_attention(config)
        self._auto_cudnn = config.attention == "auto" and self.attention == "cudnn"
        # bookkeeping fields do not change the step: keep them out of the compilation cache key
        self._step_config = config.replace(
            steps=1,
            learning_rate=0.0,
            warmup_steps=0,
            min_learning_rate=0.0,
            accumulation=((0, 1),),
            max_split=None,
            checkpoint_every=0,
            keep_checkpoints=1,
            log_every=1,
            init_weights=None,
        )
        self._keys: dict[tuple[int, int], tuple] = {}
        self._splits: tuple[int, np.ndarray | None] = (-1, None)

    def _setup_devices(self, mesh):
        self.mesh = make_mesh() if mesh is None else mesh
        self.n_devices = self.mesh.size

    def _check(self):
        config, rows, features = self.config, self.shapes.rows, self.shapes.features
        if features > config.model.max_features:
            raise ValueError(
                f"the prior emits {features} features, the model reads {config.model.max_features}"
            )
        prior_classes = getattr(config.prior, "max_classes", None)
        if prior_classes is not None and prior_classes > config.model.max_classes:
            raise ValueError(
                f"the prior draws {prior_classes} classes, the model has {config.model.max_classes}"
            )
        if not config.min_split < rows:
            raise ValueError(f"min_split ({config.min_split}) must be below the prior's {rows} rows")
        calls = config.batch_size // config.prior_batch
        if calls % self.n_devices:
            raise ValueError(
                f"batch_size / prior_batch = {calls} prior calls per micro-batch must be a multiple of "
                f"the {self.n_devices} devices"
            )
        self.local_calls = calls // self.n_devices

    # -- split positions ---------------------------------------------------------------------------

    def split(self, step: int) -> int:
        """The split position of optimiser step `step`: U(config.split_range(rows)) from
        `fold_in(split_key(seed), step)`; the same on every host and on resume."""
        block, values = self._splits
        if step // SPLIT_BLOCK != block:
            block = step // SPLIT_BLOCK
            values = np.asarray(
                _split_block(
                    split_key(self.config.seed),
                    block * SPLIT_BLOCK,
                    low=self.config.split_range(self.shapes.rows).start,
                    high=self.config.split_range(self.shapes.rows).stop,
                )
            )
            self._splits = (block, values)
        return int(values[step % SPLIT_BLOCK])

    def bucket(self, split: int) -> int:
        return split_bucket(split, self.shapes.rows, self.config.split_bucket)

    def buckets(self) -> tuple[int, ...]:
        """Every bucket a split can fall in (one compiled step each)."""
        return tuple(sorted({self.bucket(s) for s in self.config.split_range(self.shapes.rows)}))

    # -- compiled functions ------------------------------------------------------------------------

    def _device_fn(self, bucket: int, micro_batches: int, cache_key: tuple) -> Callable:
        return functools.partial(
            device_step,
            config=self._step_config,
            sample_fn=self.sample_fn,
            bucket=bucket,
            micro_batches=micro_batches,
            local_calls=self.local_calls,
            axis_name=DATA_AXIS,
            attention=self.attention,
            on_trace=lambda: TRACES.update([cache_key]),
        )

    def _build(self, bucket: int, micro_batches: int, cache_key: tuple) -> Callable:
        sharded = jax.shard_map(
            self._device_fn(bucket, micro_batches, cache_key),
            mesh=self.mesh,
            in_specs=(P(), P(), P()),
            out_specs=(P(), P()),
            check_vma=False,
        )
        return jax.jit(sharded, donate_argnums=0)

    def _cache_key(self, bucket: int, micro_batches: int) -> tuple:
        placement = self.mesh if self.mesh is not None else tuple(self.devices)
        options = tuple(sorted(self.compiler_options.items()))
        return (
            options,
            type(self).__name__,
            self._step_config,
            self.sample_fn,
            placement,
            self.attention,
            bucket,
            micro_batches,
        )

    def function(self, bucket: int, micro_batches: int, *example) -> Callable:
        """The compiled `(state, split, learning_rate) -> (state, metrics)` for one bucket, compiled
        ahead of time for the `example` arguments, and shared by every `TrainStep` of the same
        config and devices (a resumed `train` call in the same process does not compile again).

        With several processes, all of them finish compiling before any runs the step: the first
        collective must not wait for a slower compiler (gloo gives up after 30 s)."""
        key = self._cache_key(bucket, micro_batches)
        self._keys[(bucket, micro_batches)] = key
        if key in _FUNCTIONS:
            _FUNCTIONS.move_to_end(key)
        else:
            _FUNCTIONS[key] = self._compile(self._build(bucket, micro_batches, key), example)
            while len(_FUNCTIONS) > MAX_CACHED_FUNCTIONS:
                _FUNCTIONS.popitem(last=False)
        return _FUNCTIONS[key]

    def _compile(self, function: Callable, example: tuple) -> Callable:
        compiled = function.lower(*example).compile(compiler_options=self.compiler_options or None)
        wait_for_all_processes(f"mothernet-jax train step compiled #{next(_COMPILATIONS)}")
        return compiled

    def trace_count(self, bucket: int, micro_batches: int = 1) -> int:
        """How often any `TrainStep` of this config and devices traced the step for this bucket."""
        return TRACES[self._cache_key(bucket, micro_batches)]

    @property
    def traces(self) -> collections.Counter:
        """How often the step was traced (= compiled) per (bucket, micro-batches), for this config."""
        return collections.Counter({bm: TRACES[key] for bm, key in self._keys.items()})

    def __call__(self, state: TrainState, step: int) -> tuple[TrainState, dict[str, jax.Array]]:
        split = self.split(step)
        bucket, micro_batches = self.bucket(split), self.config.micro_batches(step)
        args = (np.int32(split), np.float32(learning_rate(self.config, step)))
        first = (bucket, micro_batches) not in self._keys
        try:
            return self.function(bucket, micro_batches, state, *args)(state, *args)
        except Exception as error:  # the fused attention may reject a shape: fall back once to XLA
            if not (first and self._auto_cudnn):
                raise
            warnings.warn(
                f"cuDNN attention failed ({type(error).__name__}: {error}); using XLA", stacklevel=2
            )
            self.attention, self._auto_cudnn = None, False
            self._keys.clear()
            return self.function(bucket, micro_batches, state, *args)(state, *args)

    # -- state -----------------------------------------------------------------------------------

    def init(self, params=None) -> TrainState:
        """A fresh replicated state; from host `params` (e.g. loaded weights) if given."""
        sharding = replicated(self.mesh)
        if params is None:
            return jax.jit(lambda: init_state(self.config), out_shardings=sharding)()
        params = put_replicated(params, self.mesh)
        return jax.jit(lambda p: init_state(self.config, p), out_shardings=sharding)(params)

    def abstract_state(self) -> TrainState:
        """Shapes, dtypes and shardings of the state (what a checkpoint restores into)."""
        shapes = jax.eval_shape(lambda: init_state(self.config))
        sharding = replicated(self.mesh)
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


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

    def _build(self, bucket: int, micro_batches: int, cache_key: tuple) -> Callable:
        return jax.pmap(
            self._device_fn(bucket, micro_batches, cache_key),
            axis_name=DATA_AXIS,
            in_axes=(0, None, None),
            devices=self.devices,
            donate_argnums=0,
        )

    def _compile(self, function: Callable, example: tuple) -> Callable:
        if not self.compiler_options:
            return function  # pmap compiles on its first call (one process: nothing to wait for)
        return function.lower(*example).compile(compiler_options=self.compiler_options)

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
