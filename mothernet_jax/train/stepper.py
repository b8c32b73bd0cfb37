"""TrainStep: the one builder of the compiled training step, and its host side.

`TrainStep` is the host side: it draws each step's split, picks its bucket, and runs the per-device
functions under `jax.shard_map` over the one-axis data mesh, compiled ahead of time (`compile`, the
buckets in parallel threads) and cached across instances, so a resumed `train` call in the same
process does not compile again.
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
    task_sampler,
)

SPLIT_BLOCK = 1024  # split positions are drawn for this many steps at a time (one transfer)
PLAN_STEPS = 4096  # `TrainStep.plan` draws the splits of at most this many steps
MAX_CACHED = 32  # compiled functions kept across TrainStep instances (least recently used go)
COMPILED: collections.OrderedDict = collections.OrderedDict()  # cache key -> compiled function
TRACES: collections.Counter = collections.Counter()  # traces per cache key (see TrainStep.traces)
_COMPILATIONS = itertools.count()  # names the barriers after each compilation (same order everywhere)


def wait_for_all_processes(name: str) -> None:
    """A barrier over every JAX process (`multihost_utils.sync_global_devices`); a no-op in a
    single process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


@functools.partial(jax.jit, static_argnames=("low", "high"))
def _split_block(key, first, *, low, high):
    steps = first + jnp.arange(SPLIT_BLOCK)
    return jax.vmap(lambda s: jax.random.randint(jax.random.fold_in(key, s), (), low, high))(steps)


class TrainStep:
    """`state, metrics = train_step(state, step)` over a data-parallel mesh.

    Picks the step's split position and bucket on the host, samples the tasks (the prior compiled
    once; `prior_traces` counts), and calls the step compiled for that bucket (once per (bucket,
    micro-batches); `traces` counts). The state is replicated over `mesh` (default: every device;
    `init` builds one); metrics are replicated scalars. compiler_options: XLA options for every
    compilation, e.g. {"xla_backend_optimization_level": 0}: faster compiles, slower steps (the tests
    use it).
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
            sample_fn = task_sampler(config.model)
        self.config, self.sample_fn = config, sample_fn
        self.compiler_options = dict(compiler_options or {})
        self.shapes = prior_shapes(config.prior, sample_fn)
        self.mesh = make_mesh() if mesh is None else mesh
        self.local_calls = self._check()
        self.attention = resolve_attention(config)
        self._auto_cudnn = config.attention == "auto" and self.attention == "cudnn"
        # the host's fields do not change the step: keep them out of the compilation cache key
        self._init_config = config.device_part()
        self._step_config = self._init_config.replace(seed=0)  # the tasks come from the prior function
        self._keys: dict[tuple[int, int], tuple] = {}
        self._splits: tuple[int, np.ndarray | None] = (-1, None)

    def _check(self) -> int:
        """Refuse a config the prior and model cannot run; returns the prior calls per device."""
        config, rows, features = self.config, self.shapes.rows, self.shapes.features
        if features > config.model.max_features:
            raise ConfigError(f"the prior emits {features} features, the model reads {config.model.max_features}")
        prior_classes = getattr(config.prior, "max_classes", None)
        classes = config.model.task == "classification"
        if classes and prior_classes is not None and prior_classes > config.model.max_classes:
            raise ConfigError(f"the prior draws {prior_classes} classes, the model has {config.model.max_classes}")
        if not config.min_split < rows:
            raise ConfigError(f"min_split ({config.min_split}) must be below the prior's {rows} rows")
        calls = config.batch_size // config.prior_batch
        if calls % self.mesh.size:
            raise ConfigError(
                f"batch_size / prior_batch = {calls} prior calls per micro-batch must be a multiple of "
                f"the {self.mesh.size} devices"
            )
        return calls // self.mesh.size

    # -- split positions ---------------------------------------------------------------------------

    def split(self, step: int) -> int:
        """The split position of optimiser step `step`: U(config.split_range(rows)) from
        `fold_in(split_key(seed), step)`; the same on every host and on resume."""
        full = self.config.split_range(self.shapes.rows)
        block, values = self._splits
        if step // SPLIT_BLOCK != block:
            block = step // SPLIT_BLOCK
            first = block * SPLIT_BLOCK
            values = np.asarray(_split_block(split_key(self.config.seed), first, low=full.start, high=full.stop))
            self._splits = (block, values)
        return int(values[step % SPLIT_BLOCK])

    def bucket(self, split: int) -> int:
        return split_bucket(split, self.shapes.rows, self.config.split_bucket)

    def buckets(self) -> tuple[int, ...]:
        """Every bucket a split can fall in (one compiled step each)."""
        return tuple(sorted({self.bucket(s) for s in self.config.split_range(self.shapes.rows)}))

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

    # -- the one builder: the jitted shard_map of the prior or of a bucket's step -------------------

    def _key(self, part) -> tuple:
        """The compilation cache key of `part`: "prior", or a (bucket, micro-batches) pair."""
        options = tuple(sorted(self.compiler_options.items()))
        if part == "prior":
            config = self.config
            return ("prior", options, config.prior, config.seed, config.prior_batch, self.local_calls,
                    self.sample_fn, self.mesh)  # fmt: skip
        return ("step", options, self._step_config, self.mesh, self.attention, *part)

    def _build(self, part) -> Callable:
        """`part`'s per-device function (`device_sample` or `device_step`), counting its traces,
        under `jax.shard_map` over the mesh, jitted (the step donates its state)."""
        if part == "prior":
            function = functools.partial(device_sample, config=self.config, sample_fn=self.sample_fn,
                                         local_calls=self.local_calls, axis_name=DATA_AXIS)  # fmt: skip
            in_specs, out_specs, donate = (P(), P(), P()), P(DATA_AXIS), ()
        else:
            function = functools.partial(device_step, config=self._step_config, bucket=part[0],
                                         axis_name=DATA_AXIS, attention=self.attention)  # fmt: skip
            in_specs, out_specs, donate = (P(), P(DATA_AXIS), P(), P()), (P(), P()), (0,)
        key = self._key(part)

        @functools.wraps(function)
        def counted(*args, **kwargs):
            TRACES.update([key])
            return function(*args, **kwargs)

        sharded = jax.shard_map(counted, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
        return jax.jit(sharded, donate_argnums=donate)

    def _example(self, part, tasks) -> tuple:
        """Abstract arguments of `part`; a step's tasks are shaped as the prior returns them
        (`tasks`: the prior's `out_info`), sharded over the mesh."""
        if part == "prior":
            return (np.int32(0), np.int32(0), np.int32(self.config.min_split))
        sharding = NamedSharding(self.mesh, P(DATA_AXIS))
        tasks = jax.tree.map(lambda t: jax.ShapeDtypeStruct(t.shape, t.dtype, sharding=sharding), tasks)
        return (self.abstract_state(), (tasks,) * part[1], np.int32(self.config.min_split), np.float32(0))

    def compile(self, pairs: Sequence[tuple[int, int]], *, threads: int | None = None) -> dict[Any, float]:
        """Compile the prior and the step of each (bucket, micro-batches) pair now, before the first
        step. Lowering (tracing) runs here, one at a time; the XLA compilations run in `threads`
        threads as each is lowered (default: one per part, at most the CPU count; XLA releases the
        GIL), a failed one again alone. Returns seconds per part: "prior" and each pair (its
        lowering + compilation), and "total" (wall clock); parts compiled earlier in this process
        are left out. With several processes, all of them finish compiling a part before any runs
        it: the first collective must not wait for a slower compiler (gloo gives up after 30 s)."""
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
        for pair in pairs:
            self._keys[pair] = self._key(pair)
        parts = [p for p in ["prior", *pairs] if self._key(p) not in COMPILED]  # the prior first

        def compile_one(lowered):
            began = time.perf_counter()
            try:
                compiled = lowered.compile(compiler_options=self.compiler_options or None)
            except Exception as error:  # retried alone below
                compiled = error
            return compiled, time.perf_counter() - began

        seconds: dict[Any, float] = {}
        jobs = []
        tasks = COMPILED[self._key("prior")].out_info if "prior" not in parts else None
        with concurrent.futures.ThreadPoolExecutor(max(1, threads or min(len(parts), os.cpu_count() or 1))) as pool:
            for part in parts:
                began = time.perf_counter()
                lowered = self._build(part).lower(*self._example(part, tasks))
                if part == "prior":
                    tasks = lowered.out_info
                seconds[part] = time.perf_counter() - began
                jobs.append((part, lowered, pool.submit(compile_one, lowered)))
            results = [(part, lowered, future.result()) for part, lowered, future in jobs]
        for part, lowered, (compiled, compile_s) in results:
            if isinstance(compiled, Exception):  # a failure in parallel may be the parallelism's
                began = time.perf_counter()
                compiled = lowered.compile(compiler_options=self.compiler_options or None)
                compile_s = time.perf_counter() - began
            wait_for_all_processes(f"mothernet-jax train {part} compiled #{next(_COMPILATIONS)}")
            COMPILED[self._key(part)] = compiled
            seconds[part] += compile_s
        while len(COMPILED) > MAX_CACHED:
            COMPILED.popitem(last=False)
        return seconds

    def _compiled(self, part) -> Callable:
        key = self._key(part)
        if key not in COMPILED:
            self.compile([] if part == "prior" else [part])
        COMPILED.move_to_end(key)
        return COMPILED[key]

    def prior_function(self) -> Callable:
        """The compiled `(step, micro, split) -> priors.Task` (all () int32): the tasks of one
        micro-batch, sharded over the mesh's data axis. Compiled once per prior configuration and
        devices (the split is traced), shared by every `TrainStep` of them."""
        return self._compiled("prior")

    def function(self, bucket: int, micro_batches: int) -> Callable:
        """The compiled `(state, tasks, split, learning_rate) -> (state, metrics)` for one bucket
        (`tasks`: one Task per micro-batch, from `prior_function`), shared by every `TrainStep` of
        the same config and devices (a resumed `train` call in the same process does not compile
        again)."""
        self._keys[(bucket, micro_batches)] = self._key((bucket, micro_batches))
        return self._compiled((bucket, micro_batches))

    def _fall_back_to_xla(self, error: Exception) -> None:
        warnings.warn(f"cuDNN attention failed ({type(error).__name__}: {error}); using XLA", stacklevel=3)
        self.attention, self._auto_cudnn = None, False
        self._keys.clear()

    def trace_count(self, bucket: int, micro_batches: int = 1) -> int:
        """How often any `TrainStep` of this config and devices traced the step for this bucket."""
        return TRACES[self._key((bucket, micro_batches))]

    @property
    def traces(self) -> collections.Counter:
        """How often the step was traced (= compiled) per (bucket, micro-batches), for this config."""
        return collections.Counter({pair: TRACES[key] for pair, key in self._keys.items()})

    @property
    def prior_traces(self) -> int:
        """How often the prior was traced (= compiled) for this prior configuration and devices."""
        return TRACES[self._key("prior")]

    def sample(self, step: int, split: int) -> tuple:
        """The tasks of optimiser step `step` at split position `split`: one Task per micro-batch."""
        sample = self.prior_function()
        return tuple(sample(np.int32(step), np.int32(m), np.int32(split)) for m in range(self.config.micro_batches(step)))

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
            return self.function(bucket, micro_batches)(state, *args)
        except Exception as error:  # the fused attention may reject a shape: fall back once to XLA
            if not (first and self._auto_cudnn):
                raise
            self._fall_back_to_xla(error)
            return self.function(bucket, micro_batches)(state, *args)

    # -- state -----------------------------------------------------------------------------------

    def init(self, params=None) -> TrainState:
        """A fresh replicated state; from host `params` (e.g. loaded weights) if given. The jitted
        initialisation is kept per config and mesh (a resumed `train` call does not compile it)."""
        key = ("init", self._init_config, self.mesh, params is None)
        if key not in COMPILED:
            init = functools.partial(init_state, self._init_config)
            COMPILED[key] = jax.jit(init, out_shardings=replicated(self.mesh))
        if params is None:
            return COMPILED[key]()
        return COMPILED[key](put_replicated(params, self.mesh))

    def abstract_state(self) -> TrainState:
        """Shapes, dtypes and shardings of the state (what a checkpoint restores into)."""
        key = ("abstract state", self._init_config, self.mesh)
        if key not in COMPILED:
            shapes = jax.eval_shape(functools.partial(init_state, self._init_config))
            sharding = replicated(self.mesh)
            COMPILED[key] = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)
        return COMPILED[key]
