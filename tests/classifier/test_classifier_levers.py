"""The classifier's levers (members, context rows, multiclass strategy, fine-tuning: steps, layers,
learning rate, rows per step, early stopping) do what their documentation says, and "auto" takes
the weight file's recommendation."""

import jax
import numpy as np
import pytest

import mothernet_jax as mn
from mothernet_jax import settings
from mothernet_jax.estimator.classifier import MotherNetClassifier
from mothernet_jax.pretrained import save_pretrained, update_info

CONFIG = mn.preset("tiny")



def blobs(n=120, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = rng.normal(size=(n, d)) + 1.5 * y[:, None]
    return X, y


def fit(weights, X, y, **kwargs):
    return MotherNetClassifier(weights=weights, random_state=0, **kwargs).fit(X, y)


def layer_arrays(child):
    """Every array of a child's layers, the factored ones multiplied out."""
    out = []
    for weight, bias in child.layers:
        out.append((weight[0] @ weight[1] if isinstance(weight, tuple) else weight, bias))
    return out


RECOMMENDED = {
    "multiclass": "one_vs_rest",
    "n_estimators": 3,
    "max_train_rows": 40,
    "finetune_steps": 7,
    "finetune_learning_rate": 0.02,
    "finetune_layers": "output",
    "finetune_rows": 16,
    "finetune_holdout": 0.25,
    "max_members": 12,
    "finetune_pool": 30,
    "output_layer": "generated",  # the library's default is "refit" (which fine-tuning "output" contradicts)
}


def test_every_auto_setting_follows_the_weight_file_and_explicit_values_win(tmp_path, tiny_weights):
    assert set(RECOMMENDED) == set(settings.CLASSIFIER)
    X, y = blobs()
    path = tmp_path / "tiny.msgpack"
    save_pretrained(path, tiny_weights.params, CONFIG, info={"steps": 1}, dtype="float32")
    plain = fit(path, X, y)
    assert plain.settings_ == {n: settings.LIBRARY_DEFAULTS[n] for n in settings.CLASSIFIER}  # a manifest that recommends nothing
    assert len(plain.ensemble_) == settings.LIBRARY_DEFAULTS["n_estimators"] == 4
    assert plain.ensemble_[0]["n_rows"] == 120  # all: fewer than the library's 256
    update_info(path, RECOMMENDED)
    auto = fit(path, X, y)
    assert auto.settings_ == RECOMMENDED
    assert len(auto.ensemble_) == 3 * 3  # one-vs-rest: 3 members per class
    assert {m["n_rows"] for m in auto.ensemble_} == {40}  # context rows
    assert {m["n_groups"] for m in auto.ensemble_} == {2}
    explicit = fit(path, X, y, **RECOMMENDED)
    np.testing.assert_allclose(auto.predict_proba(X), explicit.predict_proba(X), atol=1e-6)
    mine = fit(path, X, y, multiclass="native", n_estimators=2, max_train_rows=60, finetune_steps=0)
    assert mine.settings_["multiclass"] == "native" and len(mine.ensemble_) == 2
    assert {m["n_rows"] for m in mine.ensemble_} == {60} and {m["n_groups"] for m in mine.ensemble_} == {3}


@pytest.mark.parametrize(
    "name, value",
    [
        ("n_estimators", 0),
        ("max_train_rows", 0),
        ("finetune_steps", -1),
        ("finetune_learning_rate", 0.0),
        ("finetune_layers", "middle"),
        ("finetune_rows", 0),
        ("finetune_holdout", 0.9),
        ("multiclass", "ovr"),
        ("max_members", 0),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(name, value, tiny_weights, tmp_path):
    X, y = blobs(30)
    with pytest.raises(ValueError, match=f"^{name} must be ") as error:
        fit(tiny_weights, X, y, **{name: value})
    assert "\n" not in str(error.value)
    path = tmp_path / "tiny.msgpack"
    save_pretrained(path, tiny_weights.params, CONFIG, info={}, dtype="float32")
    with pytest.raises(ValueError, match=f"manifest field '{name}'"):
        update_info(path, {name: value})  # a manifest cannot recommend what the estimator refuses


def test_output_layer_fine_tuning_changes_the_output_layer_only(tiny_weights):
    X, y = blobs()
    as_generated = dict(n_estimators=2, output_layer="generated")
    generated = fit(tiny_weights, X, y, **as_generated, finetune_steps=0)
    tuned = fit(tiny_weights, X, y, **as_generated, finetune_steps=30, finetune_layers="output",
                finetune_learning_rate=0.05)  # fmt: skip
    everything = fit(tiny_weights, X, y, **as_generated, finetune_steps=30, finetune_learning_rate=0.05)
    for a, b, c in zip(generated.predictor_.children, tuned.predictor_.children, everything.predictor_.children, strict=True):
        la, lb, lc = layer_arrays(a), layer_arrays(b), layer_arrays(c)
        for (wa, ba), (wb, bb) in zip(la[:-1], lb[:-1], strict=True):
            np.testing.assert_allclose(wb, wa, atol=1e-5)
            np.testing.assert_allclose(bb, ba, atol=1e-5)
        assert np.abs(lb[-1][0] - la[-1][0]).max() > 1e-3  # the output layer moved
        assert np.abs(lc[0][0] - la[0][0]).max() > 1e-3  # "all" moves the first layer too
    loss = {
        name: -np.mean(np.log(clf.predict_proba(X)[np.arange(len(y)), y]))
        for name, clf in (("generated", generated), ("output", tuned))
    }
    assert loss["output"] < loss["generated"] - 0.05  # the steps fit the training rows


def test_early_stopping_keeps_the_child_as_generated_when_every_step_hurts(tiny_weights):
    X, y = blobs()
    generated = fit(tiny_weights, X, y, n_estimators=2, finetune_steps=0)
    reckless = dict(n_estimators=2, finetune_steps=20, finetune_learning_rate=30.0)  # every step overshoots
    wrecked = fit(tiny_weights, X, y, **reckless)
    stopped = fit(tiny_weights, X, y, finetune_holdout=0.3, **reckless)
    assert np.abs(wrecked.predict_proba(X) - generated.predict_proba(X)).max() > 0.05
    np.testing.assert_allclose(stopped.predict_proba(X), generated.predict_proba(X), atol=1e-5)


def test_early_stopping_keeps_a_step_that_helps(tiny_weights, monkeypatch):
    """When steps lower the loss on the held-out rows, early stopping keeps one of them: the child it
    returns scores better on its member's held-out rows than the child it started from (step 0),
    and the fit's probabilities move."""
    from mothernet_jax.estimator import finetune as finetune_module

    calls, jitted = [], finetune_module.finetune_members

    def recorded(layers, mean, std, X, y, n_rows, n_groups, holdout, *rest, **static):
        tuned = jitted(layers, mean, std, X, y, n_rows, n_groups, holdout, *rest, **static)
        calls.append((layers, tuned, mean, std, X, y, n_groups, holdout, float(rest[1]), static))
        return tuned

    monkeypatch.setattr(finetune_module, "finetune_members", recorded)
    X, y = blobs(200, seed=3)
    generated = fit(tiny_weights, X, y, n_estimators=1, finetune_steps=0)
    assert calls == []
    stopped = fit(tiny_weights, X, y, n_estimators=1, finetune_steps=50, finetune_learning_rate=0.01,
                  finetune_holdout=0.3)  # fmt: skip
    assert np.abs(stopped.predict_proba(X) - generated.predict_proba(X)).max() > 1e-3
    [(start, kept, mean, std, rows, labels, n_groups, holdout, temperature, static)] = calls
    assert static["early_stopping"] and holdout[0].sum() == round(0.3 * len(y))

    def held_out_loss(layers):  # member 0's cross-entropy on its held-out rows, as fine-tuning scores it
        member = jax.tree_util.tree_map(lambda a: np.asarray(a[0], np.float64), layers)
        z = finetune_module.standardise_rows(np.asarray(rows[0], np.float64), np.asarray(mean[0]), np.asarray(std[0]), np)
        logits = finetune_module.factored_logits(member, z, np)[holdout[0], : int(n_groups[0])] / temperature
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return -np.mean(log_p[np.arange(len(log_p)), np.asarray(labels[0])[holdout[0]]])

    assert held_out_loss(kept) < held_out_loss(start) - finetune_module.MIN_IMPROVEMENT


def test_rows_per_step(tiny_weights):
    X, y = blobs()
    full = fit(tiny_weights, X, y, n_estimators=2, finetune_steps=10, finetune_learning_rate=0.01)
    at_least_all = fit(tiny_weights, X, y, n_estimators=2, finetune_steps=10, finetune_learning_rate=0.01,
                       finetune_rows=500)  # fmt: skip
    few = fit(tiny_weights, X, y, n_estimators=2, finetune_steps=10, finetune_learning_rate=0.01, finetune_rows=8)
    np.testing.assert_allclose(at_least_all.predict_proba(X), full.predict_proba(X), atol=1e-6)
    assert np.abs(few.predict_proba(X) - full.predict_proba(X)).max() > 1e-4
    again = fit(tiny_weights, X, y, n_estimators=2, finetune_steps=10, finetune_learning_rate=0.01, finetune_rows=8)
    np.testing.assert_array_equal(again.predict_proba(X), few.predict_proba(X))  # seeded draws


def test_native_multiclass_costs_the_same_members_at_any_class_count(tiny_weights):
    for k in (2, 5, 10):
        X, y = blobs(100, k=k)
        native = fit(tiny_weights, X, y, n_estimators=3, multiclass="native")
        assert len(native.ensemble_) == 3 and {m["n_groups"] for m in native.ensemble_} == {k}
        ovr = fit(tiny_weights, X, y, n_estimators=3, multiclass="one_vs_rest")
        assert len(ovr.ensemble_) == (3 * k if k > 2 else 3)


@pytest.mark.slow  # three fresh processes: about 20 s on an idle 2-core machine
def test_first_fit_compilation_is_cached_across_processes_unless_opted_out(tmp_path):
    import os
    import subprocess
    import sys

    script = (
        "import numpy as np, jax; from mothernet_jax.estimator.classifier import MotherNetClassifier;"
        "import mothernet_jax as mn;"
        "c = mn.preset('tiny'); w = mn.Weights(mn.init_params(jax.random.key(0), c), c);"
        "X = np.random.default_rng(0).normal(size=(40, 3)); y = np.arange(40) % 2;"
        "MotherNetClassifier(w, n_estimators=1).fit(X, y); print(jax.config.jax_compilation_cache_dir)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "MOTHERNET_JAX_COMPILATION_CACHE")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "home-cache")

    def run(**extra):
        done = subprocess.run([sys.executable, "-c", script], env=env | extra, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split()[-1]

    folder = tmp_path / "home-cache" / "mothernet_jax" / "xla"
    assert run() == str(folder)
    assert any(folder.iterdir())  # the generation call's executable was written
    assert run(JAX_COMPILATION_CACHE_DIR=str(tmp_path / "mine")) == str(tmp_path / "mine")  # the user's choice
    assert run(MOTHERNET_JAX_COMPILATION_CACHE="0") == "None"


def test_max_members_caps_one_vs_rest_and_puts_more_classes_natively(tiny_weights):
    for k, members, strategy in ((2, 4, "native"), (3, 9, "one_vs_rest"), (7, 7, "one_vs_rest"), (12, 4, "native")):
        X, y = blobs(120, k=k)
        clf = fit(tiny_weights, X, y, n_estimators=4, multiclass="one_vs_rest", max_members=10)
        assert len(clf.ensemble_) == members and clf.multiclass_ == strategy, k
        groups = {m["n_groups"] for m in clf.ensemble_}
        assert groups == ({2} if strategy == "one_vs_rest" else {k} if k <= 10 else {10, 9})  # 12: groups mod 10, 9
        proba = clf.predict_proba(X)
        assert proba.shape == (120, k) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
