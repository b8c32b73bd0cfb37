"""Meta-training a regression model (task="regression"): the MSE loss of the step, a tiny run whose
loss falls, the presets, and the export / import of its weights."""

import json
import zlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from shared_data import REGRESSION, needs_regression
from train_helpers import TEST_PRIOR, fast_train

import mothernet_jax as mn
from mothernet_jax.evaluation import regression_split
from mothernet_jax.generation import generate_layers, standardise_target
from mothernet_jax.runtime.child import factored_logits
from mothernet_jax.train import config as train_config
from mothernet_jax.train import read_metrics, train
from mothernet_jax.train.step import bucket_floor, task_losses
from mothernet_jax.train.validate import RegressionValidator, for_training


class LinearTask(NamedTuple):
    x: jax.Array
    y: jax.Array
    valid: jax.Array


def linear_tasks(key, prior, batch_size, split):
    """A stand-in regression prior of the real one's shapes: y = x (w + v) + noise, w shared by every
    dataset (what a few steps can learn), v drawn per dataset; y standardised over the training
    rows, as the regression prior returns it. The last dataset of a batch is invalid."""
    rows, features = prior.n_rows, prior.max_features
    k_x, k_v, k_e = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (batch_size, rows, features))
    w = jnp.linspace(-1.0, 1.0, features)
    v = 0.3 * jax.random.normal(k_v, (batch_size, features))
    y = jnp.einsum("brf,bf->br", x, w[None, :] + v) + 0.1 * jax.random.normal(k_e, (batch_size, rows))
    z, _, _ = standardise_target(y, jnp.full((batch_size,), split, jnp.int32))
    train_rows = jnp.arange(rows)[None, :] < split
    mean = jnp.sum(jnp.where(train_rows, y, 0.0), axis=1, keepdims=True) / split
    std = jnp.sqrt(jnp.sum(jnp.where(train_rows, (y - mean) ** 2, 0.0), axis=1, keepdims=True) / (split - 1))
    y = jnp.where(train_rows, z, (y - mean) / std)  # the test rows in the training rows' units
    valid = jnp.arange(batch_size) < max(batch_size - 1, 1)
    return LinearTask(x, jnp.where(valid[:, None], y, jnp.nan), valid)


def regression_config(**changes) -> train_config.TrainConfig:
    defaults = dict(prior=TEST_PRIOR, steps=6, checkpoint_every=2, log_every=1)
    return train_config.preset("tiny-regression").replace(**(defaults | changes))


def test_regression_presets():
    for name, classify in (("tiny-regression", "tiny"), ("small-regression", "small")):
        config, base = train_config.preset(name), train_config.preset(classify)
        assert config.model.task == "regression" and config.model.pooling == "target_moments"
        assert config.replace(model=base.model) == base  # the classifier's recipe otherwise
    assert train_config.preset("small-regression").model == mn.preset("small-regression").replace(dtype="bfloat16")


def test_the_step_loss_is_the_squared_error_of_the_standardised_target():
    config = regression_config()
    params = mn.init_params(jax.random.key(0), config.model)
    task = linear_tasks(jax.random.key(1), TEST_PRIOR, 3, 50)
    bucket, floor = 128, bucket_floor(128, 128)
    losses, valid = jax.jit(
        lambda p, t: task_losses(p, t, jnp.int32(50), model=config.model, bucket=bucket, floor=floor)
    )(params, task)
    assert valid.tolist() == [True, True, False]
    # by hand, per dataset: the child generated from the 50 training rows, its output on the 78
    # test rows, the mean squared error against their standardised targets
    x = jnp.pad(task.x, ((0, 0), (0, 0), (0, config.model.max_features - TEST_PRIOR.max_features)))
    for i in range(2):
        layers = generate_layers(params, x[i : i + 1, :50], task.y[i : i + 1, :50], jnp.array([50]), config=config.model)
        output = factored_logits([(w[0], b[0]) for w, b in layers], x[i, 50:], jnp)
        expected = np.mean((np.asarray(output[:, 0]) - np.asarray(task.y[i, 50:])) ** 2)
        np.testing.assert_allclose(float(losses[i]), expected, rtol=1e-4)
    assert np.isfinite(float(losses[2]))  # an invalid dataset (NaN targets) is zeroed, not NaN


def _write_datasets(folder):
    """Three small regression datasets in the shared format: two the split rule puts in validation
    (named val-*), one in test (test-*); returns their names."""
    folder.mkdir()
    names = {"validation": [], "test": []}
    for i in range(200):
        part = regression_split(f"set-{i}")
        if len(names[part]) < (2 if part == "validation" else 1):
            names[part].append(f"set-{i}")
    rng = np.random.default_rng(0)
    for name in names["validation"] + names["test"]:
        x = rng.normal(size=(80, 3)).astype(np.float32)
        x[::7, 1] = np.nan
        y = x[:, 0] * 5.0 + 20.0 + rng.normal(size=80) * 0.5
        np.savez(folder / f"{name}.npz", X=x, y=y, categorical=np.zeros(3, bool))
    assert all(zlib.crc32(n.encode()) % 3 == 0 for n in names["test"])
    return names


def test_a_tiny_regression_run_lowers_its_loss_validates_and_exports_loadable_weights(tmp_path):
    """25 steps of 8 datasets of the stand-in prior at lr 3e-3: the mean loss of the last 10 steps
    is at most half that of the first 10 (measured: 2.13 -> 0.29); the run logs val_r2 lines."""
    names = _write_datasets(tmp_path / "data")
    validator = for_training(mn.preset("tiny-regression"), tmp_path / "data")
    assert isinstance(validator, RegressionValidator) and validator.names == names["validation"]
    path = tmp_path / "tiny-regression.msgpack"
    config = regression_config(steps=25, learning_rate=3e-3, warmup_steps=5, checkpoint_every=0)
    result = fast_train(config, tmp_path / "run", sample_fn=linear_tasks, export=path, validator=validator)
    losses = np.asarray(result.losses)
    assert len(losses) == 25 and np.all(np.isfinite(losses))
    first, last = losses[:10].mean(), losses[-10:].mean()
    assert last <= 0.5 * first, (first, last)
    validated = [line for line in read_metrics(tmp_path / "run") if "val_r2" in line]
    assert len(validated) == 1 and validated[0]["step"] == 25
    assert sorted(validated[0]["val_datasets"]) == names["validation"]
    assert np.isfinite(validated[0]["val_r2"]) and validated[0]["val_r2"] <= 1.0
    # the export: the manifest's config carries the task, and generate needs no config
    assert json.loads(path.with_suffix(".json").read_text())["config"]["task"] == "regression"
    params, model = mn.load_pretrained(path)
    assert model.task == "regression" and model == config.model.replace(dtype="float32")
    assert mn.config_of(params) == mn.preset("tiny-regression")
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    prediction = mn.predict_regression(mn.generate(params, x, x @ np.arange(4.0) + 10.0), x)
    assert prediction.shape == (30,) and np.all(np.isfinite(prediction))


def test_val_r2_scores_the_regressor_at_the_defaults_beside_the_untrained_control(tmp_path):
    names = _write_datasets(tmp_path / "data")
    config = mn.preset("tiny-regression")
    validator = RegressionValidator(tmp_path / "data", config)
    params = mn.init_params(jax.random.key(7), config)
    scores = validator(params)
    assert sorted(scores["val_datasets"]) == names["validation"] and "val_auc" not in scores
    # by hand for one dataset: mean R² over its two splits of MotherNetRegressor at the protocol's
    # settings; the control: the same with init_params(key(split index)), one key per split
    dataset = validator.datasets[0]

    def by_hand(params_of):
        r2 = []
        for split in validator.splits[dataset.name]:
            regressor = mn.MotherNetRegressor(
                (params_of(split.index), config), random_state=split.seed,
                categorical_features=dataset.categorical, **validator.protocol.estimator_settings(),
            ).fit(dataset.x[split.train], dataset.y[split.train])
            residual = dataset.y[split.test] - regressor.predict(dataset.x[split.test])
            r2.append(1 - np.mean(residual**2) / np.var(dataset.y[split.test]))
        return np.mean(r2)

    np.testing.assert_allclose(scores["val_datasets"][dataset.name], by_hand(lambda i: params), rtol=1e-4)
    control = validator.control()["val_datasets"][dataset.name]
    np.testing.assert_allclose(control, by_hand(lambda i: mn.init_params(jax.random.key(i), config)), rtol=1e-4)
    np.testing.assert_allclose(scores["val_r2"], np.mean(list(scores["val_datasets"].values())))
    assert scores["val_gap"] == pytest.approx(scores["val_r2"] - scores["val_r2_untrained"])
    with pytest.raises(ValueError, match="needs a regression model"):
        RegressionValidator(tmp_path / "data", mn.preset("tiny"))


@needs_regression
def test_val_r2_never_reads_a_regression_test_dataset():
    validator = for_training(mn.preset("small-regression"))  # ../shared/regression by default
    everything = sorted(p.stem for p in REGRESSION.glob("*.npz"))
    assert validator.names == [n for n in everything if regression_split(n) == "validation"]
    assert 0 < len(validator.names) < len(everything)


def test_the_task_picks_the_prior():
    import priors
    from mothernet_jax.train.step import task_sampler

    assert task_sampler(mn.preset("tiny")) is priors.sample_batch
    assert task_sampler(mn.preset("tiny-regression")) is priors.sample_regression_batch


@pytest.mark.slow
def test_the_loss_falls_on_the_tiny_regression_preset():
    """The tiny-regression preset on the regression prior, 800 steps of 8 datasets on CPU (about 90 s):
    the median loss of the last 100 steps is at most 0.9 x that of the first 100 (measured: 1.145 ->
    0.924 over sixths of the run; the mean is noisier, heavy-tailed test targets reach +-100)."""
    result = train(train_config.preset("tiny-regression").replace(steps=800), None, progress=False)
    losses = np.asarray(result.losses)
    assert len(losses) == 800 and np.sum(np.isfinite(losses)) >= 790
    first, last = np.nanmedian(losses[:100]), np.nanmedian(losses[-100:])
    assert last <= 0.9 * first, (first, last)


@pytest.mark.slow
def test_the_cli_trains_the_small_regression_preset(tmp_path):
    """`mothernet-jax train --preset small-regression` on CPU: 2 steps of 8 datasets (one split
    bucket), then the export loads as the small-regression model and generates a regressor."""
    from mothernet_jax import cli

    export = tmp_path / "small-regression.msgpack"
    args = ["train", "--preset", "small-regression", "--workdir", str(tmp_path / "run"), "--steps", "2",
            "--no-progress", "--export", str(export)]  # fmt: skip
    sets = ["batch_size=8", "prior_batch=1", "max_split=120", "log_every=1", "model.dtype=float32"]
    assert cli.main(args + [a for s in sets for a in ("--set", s)]) == 0
    lines = read_metrics(tmp_path / "run")
    assert [line["step"] for line in lines] == [1, 2] and all(np.isfinite(line["loss"]) for line in lines)
    params, model = mn.load_pretrained(export)
    assert model == mn.preset("small-regression") and mn.config_of(params) == model
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    assert mn.predict_regression(mn.generate(params, x, x[:, 0] * 2.0), x).shape == (50,)
