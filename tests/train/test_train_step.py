"""The train step: the masked child loss, split buckets, and one compilation per bucket."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_helpers import FAST_COMPILE, TEST_PRIOR, make_config

import priors
from mothernet_jax.config import preset as model_preset
from mothernet_jax.model.mothernet import init_params
from mothernet_jax.train.mesh import make_mesh
from mothernet_jax.train.step import split_bucket, task_losses
from mothernet_jax.train.stepper import TrainStep

MODEL = model_preset("tiny")


def _task(key, batch=3, rows=256, classes=4):
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (batch, rows, 20))  # a prior may emit fewer features than the model reads
    y = jax.random.randint(ky, (batch, rows), 0, classes)
    return priors.Task(
        x=x,
        y=y,
        valid=jnp.ones((batch,), bool),
        n_features=jnp.full((batch,), 20),
        n_classes=jnp.full((batch,), classes),
        categorical=jnp.zeros((batch, 20), bool),
    )


def _mean_loss(params, task, split, bucket, floor=0):
    losses, valid = task_losses(params, task, split, model=MODEL, bucket=bucket, floor=floor)
    return jnp.sum(jnp.where(valid, losses, 0.0)) / jnp.sum(valid), losses


def test_invalid_and_non_finite_datasets_do_not_touch_the_loss_or_gradient(getkey):
    params = init_params(getkey(), MODEL)
    task = _task(getkey())
    invalid = task._replace(valid=task.valid.at[1].set(False))
    garbage = invalid._replace(
        x=task.x.at[1].set(jnp.nan).at[1, 0, 0].set(jnp.inf), y=task.y.at[1].set(10_000)
    )
    grad = jax.jit(jax.value_and_grad(_mean_loss, has_aux=True), static_argnums=(3,))
    grad = grad.lower(params, garbage, jnp.int32(100), 128).compile(compiler_options=FAST_COMPILE)
    (loss, _), grads = grad(params, garbage, jnp.int32(100))
    (clean_loss, per_dataset), clean_grads = grad(params, invalid, jnp.int32(100))
    assert np.isfinite(loss) and float(loss) == pytest.approx(float(clean_loss), rel=1e-6)
    assert float(loss) == pytest.approx(float(per_dataset[0] + per_dataset[2]) / 2, rel=1e-6)
    for g, h in zip(jax.tree.leaves(grads), jax.tree.leaves(clean_grads), strict=True):
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, h, rtol=1e-5, atol=1e-7)


def test_padding_the_training_rows_to_a_larger_bucket_changes_nothing(getkey):
    params = init_params(getkey(), MODEL)
    task = _task(getkey())
    split = jnp.int32(100)
    losses = jax.jit(task_losses, static_argnames=("model", "bucket", "floor"))
    tight, _ = losses(params, task, split, model=MODEL, bucket=128, floor=0)
    padded, _ = losses(params, task, split, model=MODEL, bucket=256, floor=0)
    np.testing.assert_allclose(tight, padded, rtol=2e-5)
    # the cross-entropy is over all max_classes logits, so a fresh model scores about ln(10)
    assert np.all(np.abs(np.asarray(tight) - np.log(10)) < 1.0)


def test_split_positions_are_deterministic_uniform_and_bucketed():
    config = make_config(prior=TEST_PRIOR.replace(n_rows=256), seed=3)
    first, second = TrainStep(config, make_mesh(jax.devices()[:1])), TrainStep(config, make_mesh())
    splits = [first.split(s) for s in range(3000)]
    assert splits == [second.split(s) for s in range(3000)]
    assert min(splits) == 2 and max(splits) == 255
    assert abs(np.mean(splits) - 128.5) < 5
    assert first.buckets() == (128, 256)
    assert [split_bucket(s, 256, 128) for s in (2, 128, 129, 255)] == [128, 128, 256, 256]
    assert split_bucket(290, 300, 128) == 300


def _same_tasks(key, prior, batch_size, split):
    """A sampler that ignores its key: every call returns the same tasks."""
    del key, split
    kx, kw = jax.random.split(jax.random.key(42))
    x = jax.random.normal(kx, (batch_size, 256, 10))
    y = jnp.argmax(x @ jax.random.normal(kw, (10, 3)), axis=-1).astype(jnp.int32)
    return priors.Task(
        x=x,
        y=y,
        valid=jnp.arange(batch_size) != 1,  # one invalid dataset per call
        n_features=jnp.full((batch_size,), 10),
        n_classes=jnp.full((batch_size,), 3),
        categorical=jnp.zeros((batch_size, 10), bool),
    )


# The two tests below check the step's own arithmetic and shapes; a sampler that returns the same
# tasks from every key isolates them from the prior (and compiles faster). The real prior runs in
# every other step test; test_train_checkpoint checks that it, too, compiles once for its bucket.
STUB = make_config(
    prior=TEST_PRIOR.replace(n_rows=256), batch_size=4, prior_batch=4, warmup_steps=0, steps=8, seed=1
)


def test_the_step_compiles_once_per_split_bucket():
    stepper = TrainStep(
        STUB, make_mesh(jax.devices()[:1]), sample_fn=_same_tasks, compiler_options=FAST_COMPILE
    )
    buckets = [stepper.bucket(stepper.split(s)) for s in range(STUB.steps)]
    assert set(buckets) == {128, 256}, buckets  # this seed visits both buckets in 8 steps
    # everything compiles before the first step (the buckets in two threads), the prior once
    assert stepper.plan(0, STUB.steps) == [(128, 1), (256, 1)]
    seconds = stepper.compile(stepper.plan(0, STUB.steps), threads=2)
    assert set(seconds) == {"prior", (128, 1), (256, 1), "total"}
    assert stepper.traces == {(128, 1): 1, (256, 1): 1} and stepper.prior_traces == 1
    state = stepper.init()
    for step in range(STUB.steps):
        state, metrics = stepper(state, step)
        assert np.isfinite(float(metrics["loss"]))
    assert int(state.step) == STUB.steps
    assert stepper.traces == {(128, 1): 1, (256, 1): 1} and stepper.prior_traces == 1


def test_gradient_accumulation_averages_over_the_micro_batches():
    """Two micro-batches of the same 4 tasks give the step of one micro-batch of them."""
    mesh = make_mesh(jax.devices()[:1])
    results = []
    for micro_batches in (1, 2):
        config = STUB.replace(accumulation=((0, micro_batches),))
        stepper = TrainStep(config, mesh, sample_fn=_same_tasks, compiler_options=FAST_COMPILE)
        state = stepper.init()
        for step in range(2):
            state, metrics = stepper(state, step)
        assert stepper.traces == {(256, micro_batches): 1}  # steps 0 and 1 share a bucket (seed 1)
        assert float(metrics["valid_fraction"]) == pytest.approx(0.75)
        results.append((float(metrics["loss"]), jax.device_get(state.params)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
