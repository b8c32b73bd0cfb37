"""MotherNetClassifier end to end: reference parity, one jitted call, wide and messy data, export."""

import collections
import subprocess
import sys

import jax
import numpy as np
import pandas as pd
import pytest
from shared_data import FIXTURES, needs_fixtures

import mothernet_jax as mn
from mothernet_jax import load_predictor
from mothernet_jax.estimator import member_generation
from mothernet_jax.estimator.classifier import MotherNetClassifier
from mothernet_jax.generation import generate_batch
from mothernet_jax.model.convert import from_reference
from mothernet_jax.runtime.child import factored_logits

CONFIG = mn.preset("tiny")



def dense(weight):
    return weight[0] @ weight[1] if isinstance(weight, tuple) else weight


def blobs(n=200, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return rng.normal(size=(k, d))[y] * 2 + rng.normal(size=(n, d)), y


# -- reference parity ---------------------------------------------------------------------------


@needs_fixtures
def test_one_member_reproduces_the_reference_classifier(highest_precision):
    c = np.load(FIXTURES / "classifier_tiny_class_average.npz")
    f = np.load(FIXTURES / "tiny_class_average.npz")
    config = mn.preset("tiny_class_average")
    params = from_reference({k[6:]: f[k] for k in f.files if k.startswith("state/")}, config)
    clf = MotherNetClassifier(
        weights=(params, config), n_estimators=1, max_train_rows=1024, output_layer="generated"
    ).fit(c["X_train"], c["y_train"])
    assert clf.ensemble_[0] == {
        "n_rows": 80, "n_columns": 12, "n_groups": 3, "quantile": False, "onehot": False,
        "feature_shift": 0, "label_shift": 0,
    }  # fmt: skip
    np.testing.assert_array_equal(clf.classes_, c["classes"])
    child = clf.predictor_.children[0]
    np.testing.assert_allclose(child.mean, c["mean"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(child.std, c["std"], rtol=1e-5, atol=1e-5)
    for j, (weight, bias) in enumerate(child.layers):
        np.testing.assert_allclose(dense(weight), c[f"exported/layer{j}/weight"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(bias, c[f"exported/layer{j}/bias"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(clf.predict_proba(c["X_test"]), c["predict_proba"], atol=1e-5)


def test_member_children_are_generate_batch_with_the_factors_kept(getkey, tiny_weights):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, 128, CONFIG.max_features)).astype(np.float32)
    y = rng.integers(0, 4, size=(3, 128)).astype(np.int32)
    n_rows, n_features = np.array([128, 70, 9]), np.array([100, 7, 30])
    X[1, :, 7:] = 0.0
    X[2, :, 30:] = 0.0
    with jax.default_matmul_precision("highest"):
        layers, mean, std = member_generation.generate_members(
            tiny_weights.params, X, y, n_rows, n_features, config=CONFIG
        )
        expected = jax.jit(generate_batch, static_argnames="config")(
            tiny_weights.params, X, y, n_rows, n_features, config=CONFIG
        )
    assert CONFIG.low_rank and all(isinstance(weight, tuple) for weight, _ in layers[:-1])  # factors kept
    for (weight, bias), (w_ref, b_ref) in zip(layers, expected.layers, strict=True):
        np.testing.assert_allclose(dense(weight), w_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bias, b_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean, expected.mean, rtol=1e-6)
    np.testing.assert_allclose(std, expected.std, rtol=1e-6)
    z = rng.normal(size=(5, CONFIG.max_features)).astype(np.float32)
    ours = factored_logits(jax.tree_util.tree_map(lambda a: a[0], layers), z, jax.numpy)
    theirs = factored_logits(jax.tree_util.tree_map(lambda a: a[0], expected.layers), z, jax.numpy)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


# -- the batched ensemble ---------------------------------------------------------------------------


def test_the_ensemble_is_one_jitted_call_traced_once_and_seeded(monkeypatch, tiny_weights):
    counts = collections.Counter()

    def traced(*args, **kwargs):
        counts["traces"] += 1
        return member_generation.member_layers(*args, **kwargs)

    jitted = jax.jit(traced, static_argnames=("config",))

    def call(*args, **kwargs):
        counts["calls"] += 1
        return jitted(*args, **kwargs)

    monkeypatch.setattr(member_generation, "generate_members", call)
    X, y = blobs(150, 6, 3, seed=0)
    first = MotherNetClassifier(weights=tiny_weights, n_estimators=8, random_state=3).fit(X, y)
    assert counts == {"traces": 1, "calls": 1}
    assert len(first.predictor_.children) == 8
    X2, y2 = blobs(140, 6, 3, seed=1)  # same row bucket and width: no new trace
    MotherNetClassifier(weights=tiny_weights, n_estimators=8, random_state=4).fit(X2, y2)
    assert counts == {"traces": 1, "calls": 2}

    again = MotherNetClassifier(weights=tiny_weights, n_estimators=8, random_state=3).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), first.predict_proba(X))
    assert again.ensemble_ == first.ensemble_
    other = MotherNetClassifier(weights=tiny_weights, n_estimators=8, random_state=5).fit(X, y)
    assert other.ensemble_ != first.ensemble_
    variants = {(m["quantile"], m["onehot"]) for m in first.ensemble_}
    assert variants == {(True, False), (False, False)}  # no categorical column: no one-hot variant
    assert len({(m["quantile"], m["feature_shift"], m["label_shift"]) for m in first.ensemble_}) == 8


def test_fine_tuning_fits_the_training_rows(tiny_weights):
    X, y = blobs(200, 4, 3, seed=2)
    generated = dict(weights=tiny_weights, n_estimators=2, random_state=0, output_layer="generated")
    plain = MotherNetClassifier(**generated).fit(X, y)
    tuned = MotherNetClassifier(**generated, finetune_steps=60).fit(X, y)
    assert (tuned.predict(X) == y).mean() > max(0.9, (plain.predict(X) == y).mean())


# -- wide, many-class, messy data ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def messy():
    """12 classes, 150 numeric features, 3000 rows, 5% NaN, two string-valued categorical columns."""
    rng = np.random.default_rng(0)
    n, d, k = 3000, 150, 12
    y = rng.integers(0, k, n)
    X = rng.normal(size=(k, d))[y] + rng.normal(size=(n, d))
    X[rng.random((n, d)) < 0.05] = np.nan
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(d)])
    colours = np.array(["red", "green", "blue", "cyan", "grey", "pink"])
    first = colours[(y + rng.integers(0, 2, n)) % 6].astype(object)
    second = np.array(["u", "v", "w"], dtype=object)[y % 3]
    first[rng.random(n) < 0.05] = None
    second[rng.random(n) < 0.05] = np.nan
    frame = pd.concat([frame, pd.DataFrame({"colour": first, "letter": second})], axis=1)
    return frame, np.array([f"class{c:02d}" for c in y])


def test_wide_many_class_data_with_missing_values_and_strings(messy, tiny_weights):
    frame, labels = messy
    clf = MotherNetClassifier(
        weights=tiny_weights, n_estimators=8, random_state=0, finetune_steps=40, max_train_rows=1024
    )
    clf.fit(frame, labels)
    assert list(np.flatnonzero(clf.categorical_features_)) == [150, 151]
    assert all(m["n_columns"] <= 100 and m["n_rows"] == 1024 and m["n_groups"] <= 10 for m in clf.ensemble_)
    proba = clf.predict_proba(frame)
    assert proba.shape == (3000, 12) and np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert set(clf.predict(frame)) == set(clf.classes_)
    # members generated for groups of classes; each one's refitted read-out predicts all 12
    assert {m["n_groups"] for m in clf.ensemble_} <= {8, 9, 10}
    assert all(c.layers[-1][1].shape == (12,) for c in clf.predictor_.children)
    assert all(g.tolist() == list(range(12)) for g in clf.predictor_.groups)


def test_more_than_ten_classes_raise_the_member_count_to_one_round(tiny_weights):
    rng = np.random.default_rng(0)
    y = np.arange(300) % 12
    X = rng.normal(size=(300, 3)) + y[:, None]
    clf = MotherNetClassifier(weights=tiny_weights, n_estimators=1, random_state=0).fit(X, y)
    assert [m["n_groups"] for m in clf.ensemble_] == [10, 9]
    np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1.0, atol=1e-6)


# -- export -----------------------------------------------------------------------------------------


def test_export_predicts_the_same_without_jax(messy, tmp_path, tiny_weights):
    frame, labels = messy
    frame, labels = frame.iloc[:400], labels[:400]
    clf = MotherNetClassifier(weights=tiny_weights, n_estimators=3, random_state=0).fit(frame, labels)
    path = tmp_path / "model.npz"
    clf.export(path)
    test = frame.iloc[:50].copy()
    test.iloc[0, 151] = "never seen"
    np.savez(
        tmp_path / "X.npz",
        numbers=test.iloc[:, :150].to_numpy(np.float64),
        strings=test.iloc[:, 150:].fillna("<missing>").to_numpy(str),
    )
    script = f"""
import sys, numpy as np
from mothernet_jax import load_predictor
data = np.load({str(tmp_path / "X.npz")!r})
strings = data["strings"].astype(object)
strings[strings == "<missing>"] = None
X = np.concatenate([data["numbers"].astype(object), strings], axis=1)
predictor = load_predictor({str(path)!r})
np.save({str(tmp_path / "proba.npy")!r}, predictor.predict_proba(X))
np.save({str(tmp_path / "label.npy")!r}, predictor.predict(X))
assert "jax" not in sys.modules, "jax was imported"
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    np.testing.assert_allclose(np.load(tmp_path / "proba.npy"), clf.predict_proba(test), atol=1e-7)
    np.testing.assert_array_equal(np.load(tmp_path / "label.npy"), clf.predict(test))
    in_process = load_predictor(path)
    np.testing.assert_allclose(in_process.predict_proba(test), clf.predict_proba(test), atol=1e-7)


# -- errors -----------------------------------------------------------------------------------------


def test_clear_errors(tiny_weights):
    X, y = blobs(60, 3, 2)
    clf = MotherNetClassifier(weights=tiny_weights, n_estimators=1).fit(X, y)
    bad = X.copy()
    bad[0, 1] = np.inf
    with pytest.raises(ValueError, match="infinite values in column 1 "):
        MotherNetClassifier(weights=tiny_weights).fit(bad, y)
    with pytest.raises(ValueError, match="infinite values in column 1 "):
        clf.predict_proba(bad)
    with pytest.raises(ValueError, match="0 sample"):
        MotherNetClassifier(weights=tiny_weights).fit(np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(ValueError, match="1 class"):
        MotherNetClassifier(weights=tiny_weights).fit(X, np.ones(60))
    with pytest.raises(ValueError, match="features"):
        clf.predict_proba(X[:, :2])
    strings = X.astype(object)
    strings[:, 0] = "word"
    with pytest.raises(ValueError, match="non-numeric"):
        MotherNetClassifier(weights=tiny_weights, categorical_features=[]).fit(strings, y)
    for bad_parameter in ({"n_estimators": 0}, {"temperature": 0.0}, {"categorical_features": [7]}):
        with pytest.raises(ValueError):
            MotherNetClassifier(weights=tiny_weights, **bad_parameter).fit(X, y)
    with pytest.raises(ValueError, match="weights"):
        MotherNetClassifier(weights=42).fit(X, y)


def test_predictor_still_reads_version_1_files(tmp_path):
    import json

    from mothernet_jax.runtime.child import Child
    from mothernet_jax.runtime.npz import atomic_savez
    from mothernet_jax.runtime.predictor import ClassificationPredictor

    rng = np.random.default_rng(0)
    layers = ((rng.normal(size=(4, 8)).astype(np.float32), np.zeros(8, np.float32)),
              (rng.normal(size=(8, 3)).astype(np.float32), np.zeros(3, np.float32)))  # fmt: skip
    child = Child(layers, np.zeros(4, np.float32), np.ones(4, np.float32))
    header = {"format": "mothernet-jax-predictor", "version": 1, "n_members": 1, "n_layers": [2],
              "temperature": 0.8, "n_features": 4}  # fmt: skip
    arrays = {"header": np.array(json.dumps(header)), "classes": np.array(["a", "b", "c"])}
    arrays.update({"member0/mean": child.mean, "member0/std": child.std})
    for j, (w, b) in enumerate(layers):
        arrays[f"member0/layer{j}/weight"], arrays[f"member0/layer{j}/bias"] = w, b
    atomic_savez(tmp_path / "v1.npz", arrays)
    X = rng.normal(size=(5, 4))
    X[0, 1] = np.nan
    expected = ClassificationPredictor([child], classes=np.array(["a", "b", "c"])).predict_proba(X)
    np.testing.assert_allclose(load_predictor(tmp_path / "v1.npz").predict_proba(X), expected)


# -- one-vs-rest ------------------------------------------------------------------------------------


def test_one_vs_rest_members_and_probabilities(tmp_path, tiny_weights):
    X, y = blobs(240, 5, 4)
    clf = MotherNetClassifier(
        weights=tiny_weights, n_estimators=2, random_state=0, multiclass="one_vs_rest", output_layer="generated"
    ).fit(X, y)
    assert clf.multiclass_ == "one_vs_rest"
    assert len(clf.ensemble_) == 8 and all(m["n_groups"] == 2 for m in clf.ensemble_)
    refit = MotherNetClassifier(weights=tiny_weights, n_estimators=2, random_state=0, multiclass="one_vs_rest").fit(X, y)
    assert refit.multiclass_ == "one_vs_rest" and len(refit.ensemble_) == 8  # binary members, read-outs of 4 classes
    assert all(g.tolist() == [0, 1, 2, 3] for g in refit.predictor_.groups)
    np.testing.assert_allclose(refit.predict_proba(X).sum(axis=1), 1.0, atol=1e-6)
    groups = np.stack(clf.predictor_.groups)  # (members, classes)
    alone = (groups[:, :, None] == groups[:, None, :]).sum(axis=2) == 1  # class alone in its group
    assert alone.sum(axis=0).tolist() == [2, 2, 2, 2] and alone.sum(axis=1).tolist() == [1] * 8
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    path = tmp_path / "ovr.npz"
    clf.export(path)
    np.testing.assert_allclose(load_predictor(path).predict_proba(X), proba, atol=1e-7)
    # binary tasks are never split; native keeps one member per estimator
    binary = MotherNetClassifier(weights=tiny_weights, n_estimators=2, multiclass="one_vs_rest").fit(X, y % 2)
    assert binary.multiclass_ == "native" and len(binary.ensemble_) == 2
    native = MotherNetClassifier(weights=tiny_weights, n_estimators=2, multiclass="native").fit(X, y)
    assert len(native.ensemble_) == 2 and native.ensemble_[0]["n_groups"] == 4


def test_auto_multiclass_follows_the_weight_file(tmp_path, tiny_weights):
    from mothernet_jax.pretrained import save_pretrained, update_info

    X, y = blobs(120, 3, 3)
    path = tmp_path / "tiny.msgpack"
    save_pretrained(path, tiny_weights.params, CONFIG, info={"steps": 1}, dtype="float32")
    assert MotherNetClassifier(weights=path, n_estimators=1).fit(X, y).multiclass_ == "native"
    update_info(path, {"multiclass": "one_vs_rest"})
    clf = MotherNetClassifier(weights=path, n_estimators=1).fit(X, y)
    assert clf.multiclass_ == "one_vs_rest" and len(clf.ensemble_) == 3
    assert (
        MotherNetClassifier(weights=path, n_estimators=1, multiclass="native").fit(X, y).multiclass_
        == "native"
    )
    assert (
        MotherNetClassifier(weights=tiny_weights, n_estimators=1).fit(X, y).multiclass_ == "native"
    )  # no manifest
    with pytest.raises(ValueError, match="multiclass must be one of"):
        MotherNetClassifier(weights=tiny_weights, multiclass="ovr").fit(X, y)


def test_auto_finetune_steps_follow_the_weight_file(tmp_path, tiny_weights):
    from mothernet_jax.pretrained import save_pretrained, update_info

    X, y = blobs(80, 3, 2)
    path = tmp_path / "tiny.msgpack"
    save_pretrained(path, tiny_weights.params, CONFIG, info={"steps": 1}, dtype="float32")
    as_generated = MotherNetClassifier(weights=path, n_estimators=1, random_state=0).fit(X, y)
    assert as_generated.finetune_steps_ == 0
    update_info(path, {"finetune_steps": 20})
    auto = MotherNetClassifier(weights=path, n_estimators=1, random_state=0).fit(X, y)
    explicit = MotherNetClassifier(weights=path, n_estimators=1, random_state=0, finetune_steps=20).fit(X, y)
    assert auto.finetune_steps_ == 20
    np.testing.assert_allclose(auto.predict_proba(X), explicit.predict_proba(X), atol=1e-6)
    assert np.abs(auto.predict_proba(X) - as_generated.predict_proba(X)).max() > 1e-3
    zero = MotherNetClassifier(weights=path, n_estimators=1, random_state=0, finetune_steps=0).fit(X, y)
    np.testing.assert_allclose(zero.predict_proba(X), as_generated.predict_proba(X), atol=1e-6)
    with pytest.raises(ValueError, match="manifest field 'finetune_steps' is -3; expected an integer >= 0"):
        update_info(path, {"finetune_steps": -3})  # refused before anything is written
    assert MotherNetClassifier(weights=path, n_estimators=1).fit(X, y).finetune_steps_ == 20
    with pytest.raises(ValueError, match="finetune_steps must be an integer"):
        MotherNetClassifier(weights=tiny_weights, finetune_steps="some").fit(X, y)


# -- numbers as text, dates, column names -------------------------------------------------------------


def test_numbers_stored_as_text_give_the_same_classifier_as_floats(tiny_weights):
    X, y = blobs(200, 6, 4, seed=3)
    X[::17, 2] = np.nan
    floats = MotherNetClassifier(weights=tiny_weights, n_estimators=3, random_state=0).fit(X, y)
    expected = floats.predict_proba(X)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    for stored in (X.astype(str), frame.astype(str), frame.astype("string")):
        clf = MotherNetClassifier(weights=tiny_weights, n_estimators=3, random_state=0).fit(stored, y)
        assert not clf.categorical_features_.any()
        np.testing.assert_allclose(clf.predict_proba(stored), expected, atol=1e-6)
    np.testing.assert_allclose(floats.predict_proba(X.astype(str)), expected, atol=1e-6)


def test_a_datetime_column_is_a_number_unless_listed_as_categorical(tmp_path, tiny_weights):
    rng = np.random.default_rng(0)
    n = 120
    when = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365 * 24, n), unit="h")
    y = (when.month > 6).astype(int)  # the date alone decides the class
    frame = pd.DataFrame({"when": when, "noise": rng.normal(size=n)})
    frame.loc[5, "when"] = pd.NaT
    clf = MotherNetClassifier(weights=tiny_weights, n_estimators=2, random_state=0, finetune_steps=60)
    clf.fit(frame, y)
    assert clf.categorical_features_.tolist() == [False, False]
    seconds = clf.predictor_.encoder.transform(frame.to_numpy(), kinds={0})[:3, 0]
    np.testing.assert_allclose(seconds, (when[:3] - pd.Timestamp("1970-01-01")).total_seconds())
    assert (clf.predict(frame) == y).mean() > 0.8
    path = tmp_path / "dates.npz"
    clf.export(path)
    np.testing.assert_allclose(load_predictor(path).predict_proba(frame), clf.predict_proba(frame), atol=1e-7)
    listed = MotherNetClassifier(weights=tiny_weights, n_estimators=1, categorical_features=["when"])
    with pytest.warns(UserWarning, match="'when' has"):  # one level per date: it warns
        listed.fit(frame, y)
    assert listed.categorical_features_.tolist() == [True, False]


def test_exported_predictor_checks_column_names_as_the_estimator(tmp_path, tiny_weights):
    X, y = blobs(100, 3, 2)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    clf = MotherNetClassifier(weights=tiny_weights, n_estimators=2, random_state=0).fit(frame, y)
    clf.export(tmp_path / "m.npz")
    predictor = load_predictor(tmp_path / "m.npz")
    expected = clf.predict_proba(frame)
    np.testing.assert_allclose(predictor.predict_proba(frame), expected, atol=1e-7)
    np.testing.assert_allclose(predictor.predict_proba(X), expected, atol=1e-7)  # positional NumPy
    bad = [
        (frame[["b", "a", "c"]], "same order"),  # reordered
        (frame.rename(columns={"b": "B"}), r"unseen at fit time: \['B'\].*missing: \['b'\]"),  # renamed
        (frame.assign(d=1.0), r"unseen at fit time: \['d'\]"),  # one more
    ]
    for other, detail in bad:
        for model in (clf, predictor):
            with pytest.raises(ValueError, match="The feature names should match those that were passed"):
                model.predict_proba(other)
        with pytest.raises(ValueError, match=detail):
            predictor.predict_proba(other)
