"""Weight files as a new user meets them (issue 22): a manifest field with a bad value, a pickle given
as weights, and the weights `mothernet-jax train --export` writes, used as README says."""

import json
import pickle

import jax
import numpy as np
import pytest

import mothernet_jax as mn
from mothernet_jax.estimator.classifier import MotherNetClassifier
from mothernet_jax.pretrained import (
    SHIPPED_NAMES,
    WeightFileError,
    load_info,
    load_pretrained,
    save_pretrained,
)
from mothernet_jax.train import preset
from mothernet_jax.train.export import export_weights


@pytest.fixture(scope="module")
def tiny():
    """Made once for the module (each test saves its own file)."""
    config = mn.preset("tiny")
    return jax.tree_util.tree_map(np.asarray, mn.init_params(jax.random.key(0), config)), config


@pytest.fixture
def saved(tmp_path, tiny):
    params, config = tiny
    path = tmp_path / "tiny.msgpack"
    save_pretrained(path, params, config, info={"steps": 7, "multiclass": "native"}, dtype="float32")
    return path


def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    return X, (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1)


def test_the_shipped_manifest_passes_its_own_checks():
    info = load_info()
    assert info["multiclass"] == "native" and info["finetune_steps"] == 0 and info["output_layer"] == "refit"


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("multiclass", "bogus", "one of native, one_vs_rest"),  # was accepted: multiclass_ == "bogus"
        ("finetune_steps", 1.5, "an integer >= 0"),
        ("finetune_steps", True, "an integer >= 0"),
        ("sha256", "abc", "64 lowercase hexadecimal digits"),
        ("bytes", -1, "an integer >= 0"),
        ("storage_dtype", "int8", "one of bfloat16, float32, float16"),
        ("config", {"embed_dim": "big"}, "a ModelConfig as a JSON object"),
        ("steps", "many", "an integer >= 0"),
        ("loss_last_50", "low", "a finite number or null"),
        ("history", {"steps": 1}, "a list of JSON objects"),
    ],
)
def test_every_manifest_field_is_checked_in_one_line_naming_it(saved, field, value, expected):
    manifest_path = saved.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    manifest[field] = value
    manifest_path.write_text(json.dumps(manifest))
    X, y = data()
    for load in (load_info, load_pretrained, lambda p: MotherNetClassifier(weights=p, n_estimators=1).fit(X, y)):
        with pytest.raises(WeightFileError, match=f"manifest field '{field}' is .*; expected {expected}") as error:
            load(saved)
        message = str(error.value)
        assert "\n" not in message and str(manifest_path) in message


def test_model_settings_removed_since_a_file_was_written_load_at_their_former_defaults(saved):
    # the shipped files were written when ModelConfig had RMSNorm, pre-norm, a residual scale and
    # extra head layers (never measured, docs/TRAINING.md): their manifests and payloads hold them off
    removed = {"head_extra_layers": 0, "norm": "layernorm", "norm_first": False, "residual_scale": 1.0}
    for name in SHIPPED_NAMES:
        assert removed.items() <= load_info(name)["config"].items()
        assert load_pretrained(name).config == mn.preset(name)
    # a file that turned one on cannot be computed by this version: refused, naming the setting
    manifest_path = saved.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    manifest["config"].update(removed, norm="rmsnorm")
    manifest_path.write_text(json.dumps(manifest))
    for load in (load_info, load_pretrained):
        with pytest.raises(WeightFileError, match="manifest field 'config' .* ModelConfig.norm = \"rmsnorm\" cannot") as error:
            load(saved)
        assert "\n" not in str(error.value)


def test_a_pickle_given_as_weights_is_not_a_weight_file(tmp_path, tiny):
    params, _ = tiny
    X, y = data()
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps(params))
    garbage = tmp_path / "weights.msgpack"
    garbage.write_bytes(b"\x00" * 100)
    cases = {pickled: r"is not a weight file \(a Python pickle", garbage: r"is not a weight file \(no mothernet"}
    for path, problem in cases.items():
        for load in (load_pretrained, load_info, lambda p: MotherNetClassifier(weights=p).fit(X, y)):
            with pytest.raises(WeightFileError, match=problem) as error:  # was: "the .json manifest is missing"
                load(path)
            message = str(error.value)
            assert "\n" not in message and message.startswith(str(path)) and "manifest" not in message


def test_weights_exported_by_train_work_as_readme_says(tmp_path, tiny):
    """README: MotherNetClassifier(weights="runs/x/small.msgpack") and mn.load_pretrained(path) take
    what `mothernet-jax train --export` writes (`train.export.export_weights`)."""
    params, config = tiny
    path = tmp_path / "runs" / "x" / "tiny.msgpack"
    export_weights(path, params, preset("tiny"), steps=3, losses=[0.7, 0.6, 0.5], carried={}, stop_reason="steps")
    loaded, loaded_config = mn.load_pretrained(path)
    assert loaded_config == config
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, params)
    X, y = data()
    proba = MotherNetClassifier(weights=str(path), n_estimators=2, random_state=0).fit(X, y).predict_proba(X)
    expected = (
        MotherNetClassifier(weights=mn.Weights(params, config), n_estimators=2, random_state=0).fit(X, y).predict_proba(X)
    )
    np.testing.assert_allclose(proba, expected, atol=1e-6)


def test_a_self_trained_export_gets_the_measured_defaults(tmp_path):
    """A fresh training run's export recommends nothing: the estimators take the library's defaults,
    which are the shipped weights' measured settings (4 members of 256 rows, the refitted read-out),
    so predict(X, return_std=True) works on a self-trained regressor (issue 31)."""
    from mothernet_jax.estimator.regressor import MotherNetRegressor
    from mothernet_jax.settings import REGRESSOR

    config = mn.preset("tiny-regression")
    params = jax.tree_util.tree_map(np.asarray, mn.init_params(jax.random.key(0), config))
    path = tmp_path / "mine.msgpack"
    export_weights(path, params, preset("tiny-regression"), steps=3, losses=[0.7], carried={}, stop_reason="steps")
    assert not set(REGRESSOR) & set(load_info(path))  # it recommends nothing
    X, _ = data()
    reg = MotherNetRegressor(weights=str(path), random_state=0).fit(X, X @ np.array([1.0, -1.0, 0.5]))
    assert {k: reg.settings_[k] for k in ("n_estimators", "max_train_rows", "output_layer")} == {
        "n_estimators": 4,
        "max_train_rows": 256,
        "output_layer": "refit",
    }
    mean, std = reg.predict(X, return_std=True)
    assert mean.shape == std.shape == (60,) and np.all(std > 0)
    # README says so (tests/documents)
