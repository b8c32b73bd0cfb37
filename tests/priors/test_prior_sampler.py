"""sample_task / sample_batch: shapes, invariants of every dataset, determinism, compile once, and
invalid datasets flagged. Everything runs at the paper shapes on one compiled sampler (batch 8)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import priors
from priors import PriorConfig, missing, rng

PAPER = priors.preset("paper")
BATCH = 8


def sample(key, split=576, config=PAPER):
    return jax.device_get(priors.sample_batch(key, config, BATCH, split))


def check_task(task, config: PriorConfig, batch: int):
    rows, f_max, k_max = config.n_rows, config.max_features, config.max_classes
    assert task.x.shape == (batch, rows, f_max) and task.x.dtype == np.float32
    assert task.y.shape == (batch, rows) and task.y.dtype == np.int32
    assert task.valid.shape == task.n_features.shape == task.n_classes.shape == (batch,)
    assert task.valid.dtype == bool and task.categorical.shape == (batch, f_max)
    assert np.isfinite(task.x).all()
    assert task.y.min() >= 0 and task.y.max() < k_max
    assert np.all((task.n_features >= 1) & (task.n_features < f_max))  # safe_randint(1, F): never F
    column = np.arange(f_max)
    unused = column[None, :] >= task.n_features[:, None]
    assert np.all(task.x.transpose(0, 2, 1)[unused] == 0)  # padding columns exactly zero
    assert not np.any(task.categorical & unused)
    assert np.abs(task.x).max() <= 100.0 * f_max  # standardised, clipped to 100, scaled by f_max / F
    for i in range(batch):
        if task.valid[i]:
            labels = np.unique(task.y[i])
            assert np.array_equal(labels, np.arange(task.n_classes[i]))  # compact 0..K'-1
            assert 2 <= task.n_classes[i] <= k_max
        else:
            assert np.all(task.y[i] == 0) and task.n_classes[i] == 1


def test_batch_shapes_and_invariants(getkey):
    check_task(sample(getkey()), PAPER, BATCH)


def test_train_and_test_rows_hold_the_same_classes(getkey):
    for split in (10, 576, 1100):
        task = sample(getkey(), split)
        for i in np.flatnonzero(task.valid):
            assert np.array_equal(np.unique(task.y[i, :split]), np.unique(task.y[i, split:]))


def test_same_key_same_batch_other_key_other_batch():
    a, b = sample(jax.random.key(3)), sample(jax.random.key(3))
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left, right)
    c = sample(jax.random.key(4))
    assert not np.array_equal(a.x, c.x)
    assert len({a.x[i].tobytes() for i in range(BATCH)}) == BATCH  # datasets of a batch differ


def test_compiles_once_per_configuration(getkey, caplog):
    sample(getkey(), 100)  # compiled (or cached) here
    with jax.log_compiles(), caplog.at_level("WARNING"):
        sample(getkey(), 1000)
        sample(getkey(), jnp.int32(7))
        sample(getkey(), jnp.full((BATCH,), 300, jnp.int32))  # per-dataset splits
    compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
    assert not [m for m in compiled if "sample" in m], compiled


def test_invalid_datasets_are_flagged(getkey):
    # no test rows (or no training rows): no class set can be compatible
    for split in (0, PAPER.n_rows):
        task = sample(getkey(), split)
        assert not task.valid.any()
        assert np.all(task.y == 0) and np.isfinite(task.x).all()
    # a single training row cannot hold two classes
    assert not sample(getkey(), 1).valid.any()


def test_no_nan_or_inf_over_400_datasets():
    # also covers the GP prior (about 16 of these datasets) and categorical columns; 10,000: slow
    key = jax.random.key(11)
    n_invalid = 0
    for i in range(400 // BATCH):
        task = priors.sample_batch(jax.random.fold_in(key, i), PAPER, BATCH, 2 + (97 * i) % 1150)
        assert bool(jnp.all(jnp.isfinite(task.x)))
        assert bool(jnp.all((task.y >= 0) & (task.y < PAPER.max_classes)))
        n_invalid += int(jnp.sum(~task.valid))
    assert n_invalid < 40  # the reference ignores about 1%


@pytest.mark.slow
def test_no_nan_or_inf_over_10000_datasets():
    key = jax.random.key(12)
    for i in range(10_000 // BATCH):
        task = priors.sample_batch(jax.random.fold_in(key, i), PAPER, BATCH, 2 + (97 * i) % 1150)
        assert bool(jnp.all(jnp.isfinite(task.x)))
        assert bool(jnp.all((task.y >= 0) & (task.y < PAPER.max_classes)))


def test_sample_task_is_one_dataset_without_the_batch_axis():
    """The cheap default check (shapes, traced only); the slow test below compiles and draws."""
    task = jax.eval_shape(lambda key: priors.sample_task(key, PAPER, 576), jax.random.key(0))
    assert task.x.shape == (PAPER.n_rows, PAPER.max_features) and task.x.dtype == np.float32
    assert task.y.shape == (PAPER.n_rows,) and task.y.dtype == np.int32
    assert task.valid.shape == task.n_features.shape == task.n_classes.shape == ()
    assert task.categorical.shape == (PAPER.max_features,)


@pytest.mark.slow
def test_sample_task(getkey):
    """Compiles the sampler for a batch of one (its own program, at the paper shapes)."""
    key = getkey()
    task = jax.device_get(priors.sample_task(key, PAPER, 576))
    check_task(jax.tree.map(lambda a: np.asarray(a)[None], task), PAPER, 1)
    again = jax.device_get(priors.sample_task(key, PAPER, 576))
    np.testing.assert_array_equal(task.x, again.x)
    # dataset i of a batch depends on (key, i) alone: the task is the first dataset of any batch
    np.testing.assert_array_equal(task.x, sample(key).x[0])


def test_tiny_preset_shapes():
    tiny = priors.preset("tiny")
    task = jax.eval_shape(lambda key: priors.sample_batch(key, tiny, 4, 64), jax.random.key(0))
    assert task.x.shape == (4, tiny.n_rows, 100) and task.y.shape == (4, tiny.n_rows)


def test_gp_prior_sample_is_finite(getkey):
    config = PriorConfig(n_rows=96, max_features=8, max_hidden=17, width_buckets=(17,))
    x, y = jax.jit(lambda s: gp_raw(s, config))(rng.from_key(getkey()))
    assert np.isfinite(np.asarray(y)).all() and np.asarray(y).std() > 0
    assert np.all(np.asarray(x)[:, 3:] == 0)


def gp_raw(stream, config):
    from priors import gp

    return gp.sample_raw(stream, config, jnp.int32(3))


def test_missing_value_injection(getkey):
    config = PriorConfig(nan_prob_no_reason=0.5, nan_prob_a_reason=0.5, set_value_to_nan=1.0)
    x = jnp.ones((200, 100))
    inject = jax.jit(jax.vmap(lambda s: missing.inject(s, x, jnp.int32(40), config)))
    out = np.asarray(inject(jax.vmap(rng.from_key)(jax.random.split(getkey(), 64))))
    missing_rate = np.isnan(out).mean(axis=(1, 2))
    assert np.isnan(out[:, :, 40:]).sum() == 0  # only used columns
    assert 10 < np.sum(missing_rate > 0) < 64  # about half the datasets get missing values


@pytest.mark.slow
def test_grouped_sampling_gives_the_same_datasets(getkey):
    """group_size > 1 (the accelerator layout) draws the same datasets as one at a time."""
    tiny = priors.preset("tiny")
    key = getkey()
    assert jax.eval_shape(lambda k: priors.sample_batch(k, tiny, 16, 64, group_size=8), key).x.shape == (
        16,
        128,
        100,
    )
    one = jax.device_get(priors.sample_batch(key, tiny, 16, 64, group_size=1))
    grouped = jax.device_get(priors.sample_batch(key, tiny, 16, 64, group_size=8))
    np.testing.assert_array_equal(one.n_features, grouped.n_features)
    np.testing.assert_allclose(one.x, grouped.x, atol=1e-4)
    np.testing.assert_array_equal(one.y, grouped.y)
