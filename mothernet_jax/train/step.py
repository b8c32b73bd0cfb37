"""The train step: prior -> generate -> child loss -> optimiser, as pure per-device functions.

`device_sample` draws the tasks; it is jitted once (the step, micro-batch and split are traced), so
the prior compiles once per configuration. `device_step` is the optimiser step on those tasks,
jitted per split bucket (the padded number of training rows is its static shape):

1. keys: `fold_in(task_root, step)`, then per micro-batch `fold_in(., micro)`, then per prior call
   `fold_in(., global_call_index)`. Each device samples only its own calls, and the tasks depend on
   the global index alone, so the result does not depend on how many devices share the batch.
2. the task's prior (`task_sampler`: `priors.sample_batch`, or `priors.sample_regression_batch`) draws the tasks for the step's split position s (drawn on the host from
   the seed and the step, see `stepper.TrainStep.split`); the step pads the training rows to a bucket (a
   multiple of `split_bucket` rows).
3. `generate_layers` on the padded training rows (padding masked as keys), the child's outputs on
   the test rows (rows >= s), the task's loss per row (`ROW_LOSSES`: cross-entropy over all
   max_classes logits, or for task="regression" the squared error of the one output against the
   target standardised over the training rows), mean per dataset, then mean over the valid datasets
   of the whole (global, accumulated) batch.
4. gradients summed over micro-batches (`lax.scan`) and devices (`psum`), then clipping and the
   optimiser (`optimizer.py`: AdamW, Muon or schedule-free AdamW), and the moving average of
   the weights where `ema_decay` is on.

The host side that compiles and calls them is `stepper.py` (`TrainStep`). The model's task picks the
prior (`task_sampler`) and the loss (`ROW_LOSSES`), here and nowhere else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mothernet_jax.config import ModelConfig
from mothernet_jax.generation import generate_layers
from mothernet_jax.model.mothernet import init_params
from mothernet_jax.model.read_out import dense, fit_read_out, read_out_outputs, standardise_columns
from mothernet_jax.runtime.child import factored_logits, hidden_features
from mothernet_jax.train.config import TrainConfig
from mothernet_jax.train.mesh import DATA_AXIS
from mothernet_jax.train.optimizer import ema_rate, make_optimizer, tree_norm


class TrainState(NamedTuple):
    """Everything a checkpoint holds; randomness comes from the config's seed and `step`."""

    step: jax.Array  # () int32, optimiser steps taken
    params: Any  # the MotherNet parameters, float32
    opt_state: Any  # optax state (clip + the optimiser)
    ema: Any = None  # moving average of params (TrainConfig.ema_decay > 0), else None


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


def init_state(config: TrainConfig, params=None) -> TrainState:
    """A fresh state (pure; jit it with `out_shardings`): step 0, the optimiser initialised;
    parameters from `init_key(config.seed)` unless given."""
    if params is None:
        params = init_params(init_key(config.seed), config.model)
    ema = jax.tree.map(jnp.copy, params) if config.ema_decay > 0 else None
    return TrainState(jnp.zeros((), jnp.int32), params, make_optimizer(config).init(params), ema)


# -- shapes and buckets -----------------------------------------------------------------------------


class PriorShapes(NamedTuple):
    rows: int  # rows per task (training + test)
    features: int  # feature columns the prior emits (<= the model's max_features)


@functools.lru_cache(maxsize=32)
def prior_shapes(prior, sample_fn: Callable) -> PriorShapes:
    """The task shapes of a prior config, from `jax.eval_shape` (nothing is sampled; kept)."""
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


# -- the task: which prior draws the datasets, which loss scores the child ------------------------------


def task_sampler(model: ModelConfig) -> Callable:
    """The prior of the model's task: `priors.sample_batch` (classes) or
    `priors.sample_regression_batch` (a continuous target standardised over the training rows);
    both `(key, prior_config, batch_size, split) -> task` with x, y and valid."""
    import priors

    return priors.sample_regression_batch if model.task == "regression" else priors.sample_batch


def _cross_entropy(outputs: jax.Array, y: jax.Array) -> jax.Array:
    """outputs: (B, R, max_classes) logits, y: (B, R) int -> (B, R)."""
    return optax.softmax_cross_entropy_with_integer_labels(outputs, y)


def _squared_error(outputs: jax.Array, y: jax.Array) -> jax.Array:
    """outputs: (B, R, 1) the standardised prediction, y: (B, R) the standardised target -> (B, R)."""
    return (outputs[..., 0] - y) ** 2


ROW_LOSSES = {"classification": _cross_entropy, "regression": _squared_error}  # the loss of each test row


def _clean(task, model: ModelConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Features padded to the model's width; invalid datasets and non-finite values zeroed, so that
    nothing non-finite enters the forward pass (its gradient would be NaN even where masked).
    y: labels clipped into 0..max_classes-1, or for regression the float target."""
    valid = task.valid.astype(bool)
    x = task.x.astype(jnp.float32)
    x = jnp.pad(x, ((0, 0), (0, 0), (0, model.max_features - x.shape[2])))
    x = jnp.where(valid[:, None, None] & jnp.isfinite(x), x, 0.0)
    if model.task == "regression":
        y = task.y.astype(jnp.float32)
        y = jnp.where(valid[:, None] & jnp.isfinite(y), y, 0.0)
    else:
        y = jnp.clip(task.y.astype(jnp.int32), 0, model.max_classes - 1)
        y = jnp.where(valid[:, None], y, 0)
    return x, y, valid


def task_losses(
    params,
    task,
    split,
    *,
    model: ModelConfig,
    bucket: int,
    floor: int,
    attention: str | None = None,
    read_out: str = "generated",
    read_out_prior: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Per-dataset child loss on the test rows (`ROW_LOSSES[model.task]`).

    task: x (B, R, F), y (B, R), valid (B,); split: () int, floor < split <= bucket <= R.
    read_out: "generated" (the child as the hypernetwork emits it), "ridge" or "logistic" (its
    read-out solved on the task's training rows, `fitted_outputs`; read_out_prior: toward the
    generated one).
    Returns loss (B,) float32 (mean over the test rows) and valid (B,) bool.
    """
    x, y, valid = _clean(task, model)
    batch, rows = y.shape
    n_rows = jnp.full((batch,), split, jnp.int32)
    layers = generate_layers(params, x[:, :bucket], y[:, :bucket], n_rows, config=model, attention=attention)
    if read_out == "generated":
        outputs = jax.vmap(lambda layers, x: factored_logits(layers, x, jnp))(layers, x[:, floor:])
    else:
        outputs = fitted_outputs(layers, x, y, split, model=model, prior=read_out_prior, solver=read_out)[:, floor:]
    losses = ROW_LOSSES[model.task](outputs, y[:, floor:])
    is_test = (jnp.arange(floor, rows) >= split)[None, :]
    per_dataset = jnp.sum(jnp.where(is_test, losses, 0.0), axis=1) / (rows - split).astype(jnp.float32)
    return per_dataset, valid


def fitted_outputs(layers, x, y, split, *, model: ModelConfig, prior: bool, solver: str = "ridge") -> jax.Array:
    """The children's outputs on every row (B, R, k) with their read-out solved on the training rows
    (rows < split; `model.read_out.fit_read_out`: ridge, the penalty by leave-one-out, or L2 logistic
    regression, over the last hidden layer and the inputs standardised over those rows), as the
    estimators' refitted read-out reads them. Gradients flow through the solve into the generated
    hidden layers. A regression model's read-out is the ridge for either solver.
    """
    train = jnp.arange(x.shape[1]) < split
    regression = model.task == "regression"

    def one(task_layers, x_task, y_task):
        hidden = hidden_features(task_layers, x_task, jnp)
        z = standardise_columns(x_task, train)
        w_gen = dense(task_layers[-1][0])
        fitted = fit_read_out(hidden, z, w_gen, y_task, train, regression=regression, prior=prior, solver=solver)
        return read_out_outputs(fitted, hidden, z)

    return jax.vmap(one)(layers, x, y)


def _loss_sum(params, task, split, **kwargs):
    per_dataset, valid = task_losses(params, task, split, **kwargs)
    return jnp.sum(jnp.where(valid, per_dataset, 0.0)), jnp.sum(valid).astype(jnp.float32)


# -- the per-device prior and step ------------------------------------------------------------------------


def device_sample(
    step: jax.Array,
    micro: jax.Array,
    split: jax.Array,
    *,
    config: TrainConfig,
    sample_fn: Callable,
    local_calls: int,
    axis_name: str = DATA_AXIS,
):
    """The tasks of micro-batch `micro` of optimiser step `step`, as drawn by one device of the
    `axis_name` axis: prior calls [device * local_calls, (device + 1) * local_calls).

    step, micro, split: () int32, all traced (one compilation serves every step and bucket).
    Returns a `priors.Task` of local_calls * prior_batch datasets (x: (B, R, F)).
    """
    key = jax.random.fold_in(task_key(config.seed, step), micro)
    calls = jax.lax.axis_index(axis_name) * local_calls + jnp.arange(local_calls)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, calls)
    draw = lambda k: sample_fn(k, config.prior, config.prior_batch, split)
    if local_calls == 1:
        return draw(keys[0])
    # lax.map, not vmap: each call keeps its unbatched size choices (docs/ARCHITECTURE.md section 4)
    tasks = jax.lax.map(draw, keys)
    return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), tasks)


def device_step(
    state: TrainState,
    tasks: tuple,
    split: jax.Array,
    learning_rate: jax.Array,
    *,
    config: TrainConfig,
    bucket: int,
    axis_name: str = DATA_AXIS,
    attention: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step as seen by one device of the `axis_name` axis (under shard_map).

    state: replicated; tasks: one `priors.Task` per micro-batch (this device's share, from
    `device_sample`), training rows padded to `bucket`; split: () int32; learning_rate: () float32.
    Returns the new (replicated) state and scalar metrics of the global batch.
    """
    micro_batches = len(tasks)
    floor = bucket_floor(bucket, config.split_bucket)
    loss_kwargs = dict(
        model=config.model, bucket=bucket, floor=floor, attention=attention,
        read_out=config.read_out, read_out_prior=config.read_out_prior,
    )  # fmt: skip

    def micro(task):
        grad_fn = jax.value_and_grad(_loss_sum, has_aux=True)
        (loss_sum, count), grads = grad_fn(state.params, task, split, **loss_kwargs)
        return grads, loss_sum, count

    if micro_batches == 1:
        totals = micro(tasks[0])
    else:

        def body(carry, task):
            return jax.tree.map(jnp.add, carry, micro(task)), None

        zeros = (jax.tree.map(jnp.zeros_like, state.params), jnp.float32(0), jnp.float32(0))
        stacked = jax.tree.map(lambda *parts: jnp.stack(parts), *tasks)
        totals, _ = jax.lax.scan(body, zeros, stacked)
    grads, loss_sum, count = jax.lax.psum(totals, axis_name)
    scale = 1.0 / jnp.maximum(count, 1.0)
    grads = jax.tree.map(lambda g: g * scale, grads)
    optimizer = make_optimizer(config, learning_rate)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema
    if ema is not None:
        rate = ema_rate(config, state.step)
        ema = jax.tree.map(lambda e, p: rate * e + (1.0 - rate) * p, ema, params)
    metrics = {
        "loss": loss_sum * scale,  # 0 when no dataset of the batch is valid (valid_fraction 0)
        "grad_norm": tree_norm(grads),
        "learning_rate": learning_rate,
        "valid_fraction": count / (micro_batches * config.batch_size),
    }
    return TrainState(state.step + 1, params, opt_state, ema), metrics
