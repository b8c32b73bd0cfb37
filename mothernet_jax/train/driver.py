"""The host-side driver of the train step: split positions, buckets, the compiled prior and steps.

`TrainStep(config, mesh)` draws the split position of each optimiser step on the host (from the
seed and the step number, so it is the same on every host and after a resume), samples the step's
tasks with the prior function (compiled once: the split is traced), picks the bucket, and calls the
step compiled ahead of time for that bucket, both under `jax.shard_map` over the mesh.
`compile(plan(first, end))` compiles everything a run needs before its first step, the buckets in
parallel threads. Compiled functions are cached across instances, so a resumed `train` call in the
same process does not compile again. `PmapTrainStep` (pmap.py) runs the same per-device functions under
`jax.pmap`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import itertools
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mothernet_jax.train.budget import learning_rate as scheduled_rate
from mothernet_jax.train.config import ConfigError, TrainConfig
from mothernet_jax.train.mesh import DATA_AXIS, make_mesh, put_replicated, replicated
from mothernet_jax.train.step import (
    TrainState,
    device_sample,
    device_step,
    init_state,
    prior_shapes,
    resolve_attention,
    split_bucket,
    split_key,
)

SPLIT_BLOCK = 1024  # split positions are drawn for this many steps at a time (one transfer)
PLAN_STEPS = 4096  # `TrainStep.plan` draws the splits of at most this many steps
MAX_CACHEDCOMPILED = 32  # compiled steps kept across TrainStep instances (least recently used go)
COMPILED: collections.OrderedDict = collections.OrderedDict()  # cache key -> compiled function
TRACES: collections.Counter = collections.Counter()  # traces per cache key (see TrainStep.traces)
_COMPILATIONS = itertools.count()  # names the barriers after each compilation (same order everywhere)


def wait_for_all_processes(name: str) -> None:
    """A barrier over every JAX process (`multihost_utils.sync_global_devices`); a no-op in a
    single process."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def _counted(function: Callable, cache_key: tuple) -> Callable:
    """`function`, counting each of its traces under `cache_key` in TRACES."""

    @functools.wraps(function)
    def traced(*args, **kwargs):
        TRACES.update([cache_key])
        return function(*args, **kwargs)

    return traced


@functools.partial(jax.jit, static_argnames=("low", "high"))
def _split_block(key, first, *, low, high):
    steps = first + jnp.arange(SPLIT_BLOCK)
    return jax.vmap(lambda s: jax.random.randint(jax.random.fold_in(key, s), (), low, high))(steps)


class TrainStep:
    """`state, metrics = train_step(state, step)` over a data-parallel mesh.

    Picks the step's split position and bucket on the host, samples the tasks (the prior compiled
    once; `prior_traces` counts), and calls the step jitted for that bucket (compiled once per
    (bucket, micro-batches); `traces` counts). The state is replicated over `mesh` (`init` builds
    one); metrics are replicated scalars.
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
        # the host's fields do not change the step: keep them out of the compilation cache key
        self._init_config = config.device_part()
        self._step_config = self._init_config.replace(seed=0)  # the tasks come from the prior function
        self._keys: dict[tuple[int, int], tuple] = {}
        self._splits: tuple[int, np.ndarray | None] = (-1, None)

    def _setup_devices(self, mesh):
        self.mesh = make_mesh() if mesh is None else mesh
        self.n_devices = self.mesh.size

    def _check(self):
        config, rows, features = self.config, self.shapes.rows, self.shapes.features
        if features > config.model.max_features:
            raise ConfigError(
                f"the prior emits {features} features, the model reads {config.model.max_features}"
            )
        prior_classes = getattr(config.prior, "max_classes", None)
        if prior_classes is not None and prior_classes > config.model.max_classes:
            raise ConfigError(
                f"the prior draws {prior_classes} classes, the model has {config.model.max_classes}"
            )
        if not config.min_split < rows:
            raise ConfigError(f"min_split ({config.min_split}) must be below the prior's {rows} rows")
        calls = config.batch_size // config.prior_batch
        if calls % self.n_devices:
            raise ConfigError(
                f"batch_size / prior_batch = {calls} prior calls per micro-batch must be a multiple of "
                f"the {self.n_devices} devices"
            )
        self.local_calls = calls // self.n_devices

    # -- split positions ---------------------------------------------------------------------------

    def split(self, step: int) -> int:
        """The split position of optimiser step `step`: U(config.split_range(rows)) from
        `fold_in(split_key(seed), step)`; the same on every host and on resume. Under
        `split_curriculum_steps` the draw is scaled into min_split .. `config.split_limit(step)`."""
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
        split = int(values[step % SPLIT_BLOCK])
        full = self.config.split_range(self.shapes.rows)
        limit = self.config.split_limit(step, self.shapes.rows)
        if limit < full.stop - 1:
            split = full.start + (split - full.start) * (limit - full.start + 1) // len(full)
        return split

    def bucket(self, split: int) -> int:
        return split_bucket(split, self.shapes.rows, self.config.split_bucket)

    def buckets(self) -> tuple[int, ...]:
        """Every bucket a split can fall in (one compiled step each)."""
        return tuple(sorted({self.bucket(s) for s in self.config.split_range(self.shapes.rows)}))

    # -- compiled functions ------------------------------------------------------------------------

    def _placement(self):
        return self.mesh if self.mesh is not None else tuple(self.devices)

    def _prior_key(self) -> tuple:
        options = tuple(sorted(self.compiler_options.items()))
        config = self.config
        return ("prior", options, type(self).__name__, config.prior, config.seed, config.prior_batch,
                self.local_calls, self.sample_fn, self._placement())  # fmt: skip

    def _cache_key(self, bucket: int, micro_batches: int) -> tuple:
        options = tuple(sorted(self.compiler_options.items()))
        return ("step", options, type(self).__name__, self._step_config, self._placement(),
                self.attention, bucket, micro_batches)  # fmt: skip

    def _prior_fn(self, cache_key: tuple) -> Callable:
        sample = functools.partial(
            device_sample,
            config=self.config,
            sample_fn=self.sample_fn,
            local_calls=self.local_calls,
            axis_name=DATA_AXIS,
        )
        return _counted(sample, cache_key)

    def _device_fn(self, bucket: int, cache_key: tuple) -> Callable:
        step = functools.partial(
            device_step,
            config=self._step_config,
            bucket=bucket,
            axis_name=DATA_AXIS,
            attention=self.attention,
        )
        return _counted(step, cache_key)

    def _build_prior(self, cache_key: tuple) -> Callable:
        sharded = jax.shard_map(
            self._prior_fn(cache_key),
            mesh=self.mesh,
            in_specs=(P(), P(), P()),
            out_specs=P(DATA_AXIS),
            check_vma=False,
        )
        return jax.jit(sharded)

    def _build(self, bucket: int, cache_key: tuple) -> Callable:
        sharded = jax.shard_map(
            self._device_fn(bucket, cache_key),
            mesh=self.mesh,
            in_specs=(P(), P(DATA_AXIS), P(), P()),
            out_specs=(P(), P()),
            check_vma=False,
        )
        return jax.jit(sharded, donate_argnums=0)

    def _prior_example(self) -> tuple:
        return (np.int32(0), np.int32(0), np.int32(self.config.min_split))

    def _step_example(self, micro_batches: int, tasks=None) -> tuple:
        """Abstract arguments of the step: the state, the tasks (as the prior returns them, sharded
        over the mesh; default: the compiled prior's), split, rate."""
        if tasks is None:
            tasks = self.prior_function().out_info
        sharding = NamedSharding(self.mesh, P(DATA_AXIS))
        tasks = jax.tree.map(lambda t: jax.ShapeDtypeStruct(t.shape, t.dtype, sharding=sharding), tasks)
        return (
            self.abstract_state(),
            (tasks,) * micro_batches,
            np.int32(self.config.min_split),
            np.float32(0),
        )

    def prior_function(self) -> Callable:
        """The compiled `(step, micro, split) -> priors.Task` (all () int32): the tasks of one
        micro-batch, sharded over the mesh's data axis. Compiled once per prior configuration and
        devices (the split is traced), shared by every `TrainStep` of them."""
        key = self._prior_key()
        if key not in COMPILED:
            function = self._build_prior(key)
            COMPILED[key] = self._finish(self._lower(function, self._prior_example()), "prior")
            self._evict()
        COMPILED.move_to_end(key)
        return COMPILED[key]

    def function(self, bucket: int, micro_batches: int, *example) -> Callable:
        """The compiled `(state, tasks, split, learning_rate) -> (state, metrics)` for one bucket
        (`tasks`: one Task per micro-batch, from `prior_function`), compiled ahead of time for
        `example` (default: abstract arguments) and shared by every `TrainStep` of the same config
        and devices (a resumed `train` call in the same process does not compile again).

        With several processes, all of them finish compiling before any runs the step: the first
        collective must not wait for a slower compiler (gloo gives up after 30 s)."""
        key = self._cache_key(bucket, micro_batches)
        self._keys[(bucket, micro_batches)] = key
        if key not in COMPILED:
            example = example or self._step_example(micro_batches)
            lowered = self._lower(self._build(bucket, key), example)
            COMPILED[key] = self._finish(lowered, f"step {bucket}x{micro_batches}")
            self._evict()
        COMPILED.move_to_end(key)
        return COMPILED[key]

    def plan(self, first: int, end: int) -> list[tuple[int, int]]:
        """The (bucket, micro-batches) pairs that steps [first, end) run: the buckets of their split
        positions (every bucket when they are more than PLAN_STEPS steps), for each micro-batch
        count of the first PLAN_STEPS steps (later accumulation phases compile when they start)."""
        stop = min(end, first + PLAN_STEPS)
        if end > stop:
            buckets = set(self.buckets())
        else:
            buckets = {self.bucket(self.split(s)) for s in range(first, stop)}
        starts = [first] + [start for start, _ in self.config.accumulation if first < start < stop]
        micro = {self.config.micro_batches(s) for s in starts}
        return sorted((b, m) for b in buckets for m in micro)

    def compile(self, pairs: Sequence[tuple[int, int]], *, threads: int | None = None) -> dict[Any, float]:
        """Compile the prior and the step of each (bucket, micro-batches) pair now, before the first
        step. Lowering (tracing) runs here, one at a time; the XLA compilations run in `threads`
        threads as each is lowered (default: one per part, at most the CPU count; XLA releases the
        GIL), a failed one again alone. Returns seconds per part: "prior" and each pair (its
        lowering + compilation), and "total" (wall clock); parts compiled earlier in this process
        are left out."""
        began = time.perf_counter()
        try:
            seconds = self._compile_parts(pairs, threads)
        except Exception as error:  # the fused attention may reject a shape: fall back once to XLA
            if not self._auto_cudnn:
                raise
            self._fall_back_to_xla(error)
            seconds = self._compile_parts(pairs, threads)
        seconds["total"] = time.perf_counter() - began
        return seconds

    def _compile_parts(self, pairs, threads) -> dict[Any, float]:
        parts = []  # (name, cache key, build, example); the prior first: the steps read its shapes
        prior_key, tasks = self._prior_key(), None
        if prior_key not in COMPILED:
            parts.append(("prior", prior_key, lambda: self._build_prior(prior_key), self._prior_example()))
        for bucket, micro_batches in pairs:
            key = self._cache_key(bucket, micro_batches)
            self._keys[(bucket, micro_batches)] = key
            if key not in COMPILED:
                parts.append(
                    ((bucket, micro_batches), key, functools.partial(self._build, bucket, key), None)
                )

        def compile_one(lowered):
            began = time.perf_counter()
            try:
                compiled = lowered.compile(compiler_options=self.compiler_options or None)
            except Exception as error:  # retried alone below
                compiled = error
            return compiled, time.perf_counter() - began

        seconds: dict[Any, float] = {}
        jobs = []
        threads = threads or min(len(parts), os.cpu_count() or 1)
        with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
            for name, key, build, example in parts:
                began = time.perf_counter()
                if example is None:  # a step: tasks as the prior returns them
                    example = self._step_example(name[1], tasks)
                lowered = self._lower(build(), example)
                if name == "prior":
                    tasks = lowered.out_info
                seconds[name] = time.perf_counter() - began
                jobs.append((name, key, lowered, pool.submit(compile_one, lowered)))
            results = [(name, key, lowered, future.result()) for name, key, lowered, future in jobs]
        for name, key, lowered, (compiled, compile_s) in results:
            if isinstance(compiled, Exception):  # a failure in parallel may be the parallelism's
                began = time.perf_counter()
                compiled = lowered.compile(compiler_options=self.compiler_options or None)
                compile_s = time.perf_counter() - began
            wait_for_all_processes(f"mothernet-jax train {name} compiled #{next(_COMPILATIONS)}")
            COMPILED[key] = compiled
            seconds[name] += compile_s
        self._evict()
        return seconds

    def _lower(self, function: Callable, example: tuple):
        return function.lower(*example)

    def _finish(self, lowered, what: str) -> Callable:
        compiled = lowered.compile(compiler_options=self.compiler_options or None)
        wait_for_all_processes(f"mothernet-jax train {what} compiled #{next(_COMPILATIONS)}")
        return compiled

    @staticmethod
    def _evict() -> None:
        while len(COMPILED) > MAX_CACHEDCOMPILED:
            COMPILED.popitem(last=False)

    def _fall_back_to_xla(self, error: Exception) -> None:
        warnings.warn(f"cuDNN attention failed ({type(error).__name__}: {error}); using XLA", stacklevel=3)
        self.attention, self._auto_cudnn = None, False
        self._keys.clear()

    def trace_count(self, bucket: int, micro_batches: int = 1) -> int:
        """How often any `TrainStep` of this config and devices traced the step for this bucket."""
        return TRACES[self._cache_key(bucket, micro_batches)]

    @property
    def traces(self) -> collections.Counter:
        """How often the step was traced (= compiled) per (bucket, micro-batches), for this config."""
        return collections.Counter({bm: TRACES[key] for bm, key in self._keys.items()})

    @property
    def prior_traces(self) -> int:
        """How often the prior was traced (= compiled) for this prior configuration and devices."""
        return TRACES[self._prior_key()]

    def sample(self, step: int, split: int) -> tuple:
        """The tasks of optimiser step `step` at split position `split`: one Task per micro-batch."""
        sample = self.prior_function()
        args = (np.int32(step), np.int32(split))
        return tuple(sample(args[0], np.int32(m), args[1]) for m in range(self.config.micro_batches(step)))

    def __call__(
        self, state: TrainState, step: int, learning_rate: float | None = None
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        """Optimiser step `step` at `learning_rate` (default: the step-based schedule's rate)."""
        split = self.split(step)
        bucket, micro_batches = self.bucket(split), self.config.micro_batches(step)
        rate = scheduled_rate(self.config, step) if learning_rate is None else learning_rate
        args = (self.sample(step, split), np.int32(split), np.float32(rate))
        first = (bucket, micro_batches) not in self._keys
        try:
            return self.function(bucket, micro_batches, state, *args)(state, *args)
        except Exception as error:  # the fused attention may reject a shape: fall back once to XLA
            if not (first and self._auto_cudnn):
                raise
            self._fall_back_to_xla(error)
            return self.function(bucket, micro_batches, state, *args)(state, *args)

    # -- state -----------------------------------------------------------------------------------

    def init(self, params=None) -> TrainState:
        """A fresh replicated state; from host `params` (e.g. loaded weights) if given. The jitted
        initialisation is kept per config and mesh (a resumed `train` call does not compile it)."""
        key = ("init", self._init_config, self._placement(), params is None)
        if key not in COMPILED:
            COMPILED[key] = jax.jit(
                functools.partial(init_state, self._init_config), out_shardings=replicated(self.mesh)
            )
            self._evict()
        if params is None:
            return COMPILED[key]()
        return COMPILED[key](put_replicated(params, self.mesh))

    def abstract_state(self) -> TrainState:
        """Shapes, dtypes and shardings of the state (what a checkpoint restores into)."""
        key = ("abstract state", self._init_config, self._placement())
        if key not in COMPILED:
            shapes = jax.eval_shape(functools.partial(init_state, self._init_config))
            sharding = replicated(self.mesh)
            COMPILED[key] = jax.tree.map(
                lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes
            )
        return COMPILED[key]
