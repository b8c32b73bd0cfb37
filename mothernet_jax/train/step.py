"""The train step: prior -> generate -> child loss -> AdamW, one pure function, jitted per split bucket.

One optimiser step, all on device:

1. keys: `fold_in(task_root, step)`, then per micro-batch `fold_in(., micro)`, then per prior call
   `fold_in(., global_call_index)`. Each device samples only its own calls, and the tasks depend on
   the global index alone, so the result does not depend on how many devices share the batch.
2. `priors.sample_batch` draws the tasks for the step's split position s (drawn on the host from
   the seed and the step, see `TrainStep.split`); the training rows are padded to a bucket
   (a multiple of `split_bucket` rows), the static shape this function is compiled for.
3. `generate_layers` on the padded training rows (padding masked as keys), the child's logits on
   the test rows (rows >= s), cross-entropy over all max_classes logits, mean per dataset, then mean
   over the valid datasets of the whole (global, accumulated) batch.
4. gradients summed over micro-batches (`lax.scan`) and devices (`psum`), then clipping + AdamW.

The per-device function runs under `jax.shard_map` over a one-axis mesh (`TrainStep`) or under
`jax.pmap` (`PmapTrainStep`) with the same axis name; both give the same numbers.
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from mothernet_jax.child import mlp_logits
from mothernet_jax.config import ModelConfig
from mothernet_jax.generation import generate_layers
from mothernet_jax.model.mothernet import init_params
from mothernet_jax.train.config import TrainConfig
from mothernet_jax.train.mesh import DATA_AXIS, make_mesh, put_replicated, replicated

SPLIT_BLOCK = 1024  # split positions are drawn for this many steps at a time (one transfer)
MAX_CACHED_FUNCTIONS = 32  # jitted steps kept across TrainStep instances (least recently used go)
_FUNCTIONS: collections.OrderedDict = collections.OrderedDict()
TRACES: collections.Counter = collections.Counter()  # traces per cache key (see TrainStep.traces)
_COMPILATIONS = itertools.count()  # names the barriers after each compilation (same order everywhere)


class TrainState(NamedTuple):
    """Everything a checkpoint holds; randomness comes from the config's seed and `step`."""

    step: jax.Array  # () int32, optimiser steps taken
    params: Any  # the MotherNet parameters, float32
    opt_state: Any  # optax state (clip + AdamW)


# -- keys -----------------------------------------------------------------------------------------------


def _root(seed: int, purpose: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), purpose)


def init_key(seed: int) -> jax.Array:
    return _root(seed, 0)


def task_key(seed: int, step) -> jax.Array:
    """The key of optimiser step `step`'s tasks."""
    return jax.random.fold_in(_root(seed, 1), step)


def split_key(seed: int) -> jax.Array:
    return _root(seed, 2)


# -- optimiser ----------------------------------------------------------------------------------------


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate of optimiser step `step` (host-side): linear warm-up to the peak (step
    w - 1 reaches w/(w+1) of it), then cosine decay to the floor at `config.steps`."""
    peak, floor = float(config.learning_rate), float(config.min_learning_rate)
    warmup = config.warmup_steps
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    progress = min(max((step - warmup) / max(config.steps - warmup, 1), 0.0), 1.0)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW without its learning rate (Adam moments, decoupled weight
    decay on weight matrices): the step scales the update by the step's rate, an argument, so that
    the schedule (peak, warm-up, floor, length) never recompiles the step."""
    parts = []
    if config.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(config.grad_clip))
    parts.append(optax.scale_by_adam(b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps))
    if config.weight_decay:
        mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
        parts.append(optax.add_decayed_weights(config.weight_decay, mask))
    return optax.chain(*parts)


def init_state(config: TrainConfig, params=None) -> TrainState:
    """A fresh state (pure; jit it with `out_shardings`): step 0, the optimiser initialised;
    parameters from `init_key(config.seed)` unless given."""
    if params is None:
        params = init_params(init_key(config.seed), config.model)
    return TrainState(jnp.zeros((), jnp.int32), params, make_optimizer(config).init(params))


# -- shapes and buckets -----------------------------------------------------------------------------


class PriorShapes(NamedTuple):
    rows: int  # rows per task (training + test)
    features: int  # feature columns the prior emits (<= the model's max_features)


def prior_shapes(prior, sample_fn: Callable) -> PriorShapes:
    """The task shapes of a prior config, from `jax.eval_shape` (nothing is sampled)."""
    task = jax.eval_shape(lambda key: sample_fn(key, prior, 1, 2), jax.random.key(0))
    _, rows, features = task.x.shape
    return PriorShapes(int(rows), int(features))


def split_bucket(split: int, rows: int, quantum: int) -> int:
    """The padded number of training rows for split position `split`: a multiple of `quantum`,
    at most `rows`."""
    return min(-(-split // quantum) * quantum, rows)


def bucket_floor(bucket: int, quantum: int) -> int:
    """Every split of this bucket is above this row: the child is evaluated from here on."""
    return (bucket - 1) // quantum * quantum


def resolve_attention(config: TrainConfig) -> str | None:
    """The `jax.nn.dot_product_attention` implementation: fused cuDNN on NVIDIA GPUs with bf16
    compute (it rejects float32), XLA elsewhere."""
    if config.attention == "cudnn":
        return "cudnn"
    if config.attention == "xla":
        return "xla"
    device = jax.devices()[0]
    head_dim = config.model.embed_dim // config.model.n_heads
    if (
        device.platform == "gpu"
        and "nvidia" in device.device_kind.lower()
        and config.model.dtype == "bfloat16"
        and head_dim % 8 == 0
        and head_dim <= 128
    ):
        return "cudnn"
    return None


# -- the loss -----------------------------------------------------------------------------------------


def _clean(task, model: ModelConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Features padded to the model's width; invalid datasets and non-finite values zeroed, so that
    nothing non-finite enters the forward pass (its gradient would be NaN even where masked)."""
    valid = task.valid.astype(bool)
    x = task.x.astype(jnp.float32)
    x = jnp.pad(x, ((0, 0), (0, 0), (0, model.max_features - x.shape[2])))
    x = jnp.where(valid[:, None, None] & jnp.isfinite(x), x, 0.0)
    y = jnp.clip(task.y.astype(jnp.int32), 0, model.max_classes - 1)
    y = jnp.where(valid[:, None], y, 0)
    return x, y, valid


def task_losses(
    params, task, split, *, model: ModelConfig, bucket: int, floor: int, attention: str | None = None
) -> tuple[jax.Array, jax.Array]:
    """Per-dataset child cross-entropy on the test rows.

    task: x (B, R, F), y (B, R), valid (B,); split: () int, floor < split <= bucket <= R.
    Returns loss (B,) float32 (mean over the test rows) and valid (B,) bool.
    """
    x, y, valid = _clean(task, model)
    batch, rows = y.shape
    n_rows = jnp.full((batch,), split, jnp.int32)
    layers = generate_layers(params, x[:, :bucket], y[:, :bucket], n_rows, config=model, attention=attention)
    logits = jax.vmap(mlp_logits)(layers, x[:, floor:])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y[:, floor:])
    is_test = (jnp.arange(floor, rows) >= split)[None, :]
    per_dataset = jnp.sum(jnp.where(is_test, ce, 0.0), axis=1) / (rows - split).astype(jnp.float32)
    return per_dataset, valid


def _loss_sum(params, task, split, **kwargs):
    per_dataset, valid = task_losses(params, task, split, **kwargs)
    return jnp.sum(jnp.where(valid, per_dataset, 0.0)), jnp.sum(valid).astype(jnp.float32)


# -- the per-device step --------------------------------------------------------------------------------


def device_step(
    state: TrainState,
    split: jax.Array,
    learning_rate: jax.Array,
    *,
    config: TrainConfig,
    sample_fn: Callable,
    bucket: int,
    micro_batches: int,
    local_calls: int,
    axis_name: str = DATA_AXIS,
    attention: str | None = None,
    on_trace: Callable[[], None] = lambda: None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step as seen by one device of the `axis_name` axis (shard_map or pmap).

    state: replicated; split: () int32; learning_rate: () float32. The device draws prior calls
    [device * local_calls, (device + 1) * local_calls) of each micro-batch.
    Returns the new (replicated) state and scalar metrics of the global batch.
    """
    on_trace()
    floor = bucket_floor(bucket, config.split_bucket)
    loss_kwargs = dict(model=config.model, bucket=bucket, floor=floor, attention=attention)
    step_key = task_key(config.seed, state.step)
    calls = jax.lax.axis_index(axis_name) * local_calls + jnp.arange(local_calls)

    def sample(key):
        keys = jax.vmap(jax.random.fold_in, (None, 0))(key, calls)
        draw = lambda k: sample_fn(k, config.prior, config.prior_batch, split)
        if local_calls == 1:
            return draw(keys[0])
        # lax.map, not vmap: each call keeps its unbatched size choices (DESIGN.md section 4)
        tasks = jax.lax.map(draw, keys)
        return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), tasks)

    def micro(index):
        tasks = sample(jax.random.fold_in(step_key, index))
        grad_fn = jax.value_and_grad(_loss_sum, has_aux=True)
        (loss_sum, count), grads = grad_fn(state.params, tasks, split, **loss_kwargs)
        return grads, loss_sum, count

    if micro_batches == 1:
        totals = micro(0)
    else:

        def body(carry, index):
            return jax.tree.map(jnp.add, carry, micro(index)), None

        zeros = (jax.tree.map(jnp.zeros_like, state.params), jnp.float32(0), jnp.float32(0))
        totals, _ = jax.lax.scan(body, zeros, jnp.arange(micro_batches))
    grads, loss_sum, count = jax.lax.psum(totals, axis_name)
    scale = 1.0 / jnp.maximum(count, 1.0)
    grads = jax.tree.map(lambda g: g * scale, grads)
    optimizer = make_optimizer(config)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    updates = jax.tree.map(lambda u: -learning_rate * u, updates)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": loss_sum * scale,
        "grad_norm": jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads))),
        "learning_rate": learning_rate,
        "valid_fraction": count / (micro_batches * config.batch_size),
    }
    return TrainState(state.step + 1, params, opt_state), metrics


# -- the host-side driver: split positions, buckets, one compiled function each ---------------------


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
        """The split position of optimiser step `step`: U{min_split .. rows - 1} from
        `fold_in(split_key(seed), step)`; the same on every host and on resume."""
        block, values = self._splits
        if step // SPLIT_BLOCK != block:
            block = step // SPLIT_BLOCK
            values = np.asarray(
                _split_block(
                    split_key(self.config.seed),
                    block * SPLIT_BLOCK,
                    low=self.config.min_split,
                    high=self.shapes.rows,
                )
            )
            self._splits = (block, values)
        return int(values[step % SPLIT_BLOCK])

    def bucket(self, split: int) -> int:
        return split_bucket(split, self.shapes.rows, self.config.split_bucket)

    def buckets(self) -> tuple[int, ...]:
        """Every bucket a split can fall in (one compiled step each)."""
        return tuple(sorted({self.bucket(s) for s in range(self.config.min_split, self.shapes.rows)}))

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


def flops_per_dataset(model: ModelConfig, split: int, rows: int) -> float:
    """Model FLOPs of one training step per dataset: 3 x forward (forward + backward), counting the
    transformer on the s training rows (no padding), the encoders, pooling, the weight head and the
    child on the rows - s test rows."""
    d, t, f, k = model.embed_dim, split, model.max_features, model.max_classes
    encoders = 2 * t * (f + k) * d
    layer = 2 * t * (4 * d * d + 2 * d * model.ffn_dim) + 4 * t * t * d
    h = model.head_hidden_size
    head = 2 * (model.pooled_size * h + model.head_extra_layers * h * h + h * model.n_generated)
    if model.pooling == "output_attention":
        e = model.pooling_embed_dim
        head += 2 * (e * e + 2 * t * d * e + 2 * t * e + e * e)
    p, n_test = model.child_hidden_size, rows - split
    widths = [f] + [p] * model.child_hidden_layers + [k]
    child = 2 * n_test * sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    if model.low_rank:  # W_l = A_l S_l, per dataset
        child += 2 * model.rank * p * sum(widths[:-2])
    return 3.0 * (encoders + model.n_layers * layer + head + child)


def mean_flops_per_dataset(model: ModelConfig, rows: int, min_split: int = 2) -> float:
    """`flops_per_dataset` averaged over the uniform split positions."""
    splits = range(min_split, rows)
    return math.fsum(flops_per_dataset(model, s, rows) for s in splits) / len(splits)
