"""Recipe levers: the optimisers (AdamW, Muon, schedule-free AdamW), the fitted read-out in the loss,
the moving average of the weights (what validation and export read), and the split range."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_helpers import FAST_COMPILE, TEST_PRIOR, descend, fast_train, make_config, mean_task_loss

import priors
from mothernet_jax.model.mothernet import init_params
from mothernet_jax.train.optimizer import eval_params, muon_labels
from mothernet_jax.train.step import init_key
from mothernet_jax.train.stepper import TrainStep

OPTIMIZERS = ["adamw", "muon", "schedule_free_adamw"]


@pytest.fixture(scope="module")
def fixed_tasks():
    """16 tasks of the test prior, split at row 64 (one 128-row bucket)."""
    sample = jax.jit(lambda key: priors.sample_batch(key, TEST_PRIOR, 16, 64))
    return sample(jax.random.key(3))


@pytest.mark.slow
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimiser_lowers_the_loss_of_the_tiny_model(name, fixed_tasks):
    config = make_config(optimizer=name, learning_rate=3e-3)
    loss = functools.partial(mean_task_loss, tasks=fixed_tasks, config=config)
    state, losses = descend(loss, config, peak=3e-3)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    final = float(loss(eval_params(state, config)))
    assert final < 0.8 * np.mean(losses[:5])  # schedule-free: its averaged weights fit too


@pytest.mark.slow  # 30 steps of the fitted read-out's training step: a minute or more on a loaded 2-core machine
def test_the_training_step_with_the_fitted_read_out_lowers_the_loss():
    """read_out='ridge' (the read-out solved on each task's training rows inside the step) trains:
    30 steps on 4 tasks lower the loss by more than 10% (tests/model/test_read_out.py checks the
    solve and its gradient; 16 tasks take 4x the time for a like drop)."""
    tasks = jax.jit(lambda key: priors.sample_batch(key, TEST_PRIOR, 4, 64))(jax.random.key(3))
    config = make_config(read_out="ridge")
    _, losses = descend(functools.partial(mean_task_loss, tasks=tasks, config=config), config, peak=1e-3)
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5]), losses


def test_muon_takes_the_transformer_matrices_and_adam_the_rest():
    params = jax.eval_shape(lambda key: init_params(key, make_config().model), jax.random.key(0))  # shapes suffice
    labels = muon_labels(params)
    flat = {jax.tree_util.keystr(path): label for path, label in jax.tree_util.tree_leaves_with_path(labels)}
    muon = sorted(k for k, v in flat.items() if v == "muon")
    assert muon and all("transformer" in k and "kernel" in k for k in muon)
    assert flat["['transformer']['layer_0']['norm1']['scale']"] == "adam"
    assert flat["['weight_head']['output']['kernel']"] == "adam"
    assert flat["['x_encoder']['linear']['kernel']"] == "adam"


@pytest.mark.slow
def test_the_moving_average_is_what_is_exported(tmp_path):
    from mothernet_jax.pretrained import load_pretrained
    from mothernet_jax.train.optimizer import ema_rate

    export = tmp_path / "w.msgpack"
    config = make_config(steps=4, ema_decay=0.5, optimizer="muon", warmup_steps=0)
    # stop after every step (resuming is exact), keeping each step's parameters
    states = [fast_train(config, tmp_path / "run", stop_at=k).state for k in range(4)]
    states.append(fast_train(config, tmp_path / "run", export=export).state)
    expected = states[0].params
    for t in range(4):
        rate = float(ema_rate(config, jnp.int32(t)))
        expected = jax.tree.map(lambda e, p, r=rate: r * e + (1 - r) * p, expected, states[t + 1].params)
    final = states[-1]
    for a, b in zip(jax.tree.leaves(final.ema), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    gap = lambda a, b: max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(
        jax.tree.leaves(a), jax.tree.leaves(b), strict=True))  # fmt: skip
    assert gap(final.ema, final.params) > 1e-4  # an average, not the last weights
    params, _ = load_pretrained(export)
    assert gap(params, final.ema) < gap(params, final.params)  # the file holds the average


def test_schedule_free_exports_its_averaged_weights(tmp_path):
    from mothernet_jax.pretrained import load_pretrained

    export = tmp_path / "w.msgpack"
    config = make_config(steps=3, optimizer="schedule_free_adamw", learning_rate=1e-2)
    result = fast_train(config, None, export=export, export_dtype="bfloat16")
    params, _ = load_pretrained(export)
    # every array is the averaged weights rounded to the export dtype, bit for bit
    averaged = eval_params(result.state, config)
    as_stored = lambda tree: [np.asarray(jnp.asarray(x).astype(jnp.bfloat16), np.float32) for x in jax.tree.leaves(tree)]
    for a, b in zip(jax.tree.leaves(params), as_stored(averaged), strict=True):
        np.testing.assert_array_equal(np.asarray(a, np.float32), b)
    # the averaged weights are neither the last iterate's nor the initial ones
    assert any(not np.array_equal(a, b) for a, b in zip(as_stored(averaged), as_stored(result.state.params), strict=True))
    initial = init_params(init_key(config.seed), config.model)
    assert any(not np.array_equal(a, b) for a, b in zip(as_stored(averaged), as_stored(initial), strict=True))


def test_max_split_bounds_the_training_rows():
    config = make_config(max_split=40)
    stepper = TrainStep(config, compiler_options=FAST_COMPILE)
    splits = [stepper.split(s) for s in range(300)]
    assert min(splits) >= config.min_split and max(splits) <= 40 and len(set(splits)) > 20
    assert stepper.buckets() == (128,)
    assert config.split_range(128) == range(2, 41)
    assert make_config().split_range(128) == range(2, 128)


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(optimizer="sgd"), "optimizer"),
        (dict(ema_decay=1.0), "ema_decay"),
        (dict(ema_decay=-0.1), "ema_decay"),
        (dict(muon_momentum=1.0), "muon_momentum"),
        (dict(max_split=1), "max_split"),
    ],
)
def test_bad_recipe_values_name_the_field(change, field):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        make_config(**change)


def test_the_average_warms_up_from_the_first_steps():
    from mothernet_jax.train.optimizer import ema_rate

    config = make_config(ema_decay=0.999)
    rates = [float(ema_rate(config, jnp.int32(t))) for t in (0, 10, 100, 100_000)]
    assert rates[0] == pytest.approx(0.1) and rates[1] == pytest.approx(11 / 20)
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.999)
