"""The weights that ship with the package: offline, checked, and good enough to classify."""

import json
import subprocess
import sys

import pytest

from mothernet_jax.pretrained import DEFAULT_NAME, PACKAGE_DIR, load_info, load_pretrained, sha256_of

# Runs in a fresh interpreter whose sockets refuse to connect: the shipped weights must need no
# network. Two datasets that ship inside scikit-learn (no download). argv[1]: the estimator's
# options, as JSON.
OFFLINE_SCRIPT = """
import json, socket, sys

def refuse(*args, **kwargs):
    raise OSError("network access attempted")

socket.socket.connect = refuse
socket.create_connection = refuse

from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.model_selection import train_test_split
from mothernet_jax import MotherNetClassifier

options = json.loads(sys.argv[1])
out = {}
for name, loader in (("breast_cancer", load_breast_cancer), ("wine", load_wine)):
    X, y = loader(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    clf = MotherNetClassifier(random_state=0, **options).fit(X_train, y_train)
    predicted = clf.predict(X_test)
    out[name] = {"accuracy": float((predicted == y_test).mean()), "multiclass": clf.multiclass_,
                 "labels": sorted(set(predicted.tolist()))}
print(json.dumps(out))
"""


def classify_offline(**options) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT, json.dumps(options)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a fresh process; the default run pins the shipped weights' probabilities and fits at their defaults
def test_shipped_weights_classify_offline():
    """Two members (the recommended read-out, no fine-tuning): the cheap form of the check below."""
    out = classify_offline(n_estimators=2, finetune_steps=0)
    assert out["breast_cancer"]["accuracy"] >= 0.9 and out["breast_cancer"]["labels"] == [0, 1]
    assert out["wine"]["accuracy"] >= 0.85 and out["wine"]["multiclass"] == "native"
    assert out["wine"]["labels"] == [0, 1, 2]


@pytest.mark.slow
def test_shipped_weights_classify_offline_at_the_defaults():
    out = classify_offline()
    assert out["breast_cancer"]["accuracy"] >= 0.9 and out["breast_cancer"]["labels"] == [0, 1]
    assert out["wine"]["accuracy"] >= 0.85 and out["wine"]["multiclass"] == "native"


def test_shipped_file_matches_its_manifest_and_size_budget():
    info = load_info()
    path = PACKAGE_DIR / f"{DEFAULT_NAME}.msgpack"
    assert sha256_of(path) == info["sha256"] and path.stat().st_size == info["bytes"]
    assert path.stat().st_size <= 12 * 2**20 and info["storage_dtype"] == "bfloat16"
    assert info["multiclass"] in ("native", "one_vs_rest")
    assert info["steps"] > 0 and info["datasets_seen"] == info["steps"] * info["train_config"]["batch_size"]
    params, config = load_pretrained()
    import mothernet_jax as mn

    assert config == mn.preset("small") and mn.count_params(config) <= 5_100_000


@pytest.mark.slow
def test_the_demo_runs_on_the_shipped_weights():
    """README's first command: `python -m mothernet_jax.demo` (here on wine, 3 classes), with
    `MotherNetClassifier()` at the shipped weights' settings. Slow: a fresh process fits MotherNet
    twice and the baselines."""
    done = subprocess.run(
        [sys.executable, "-m", "mothernet_jax.demo", "--dataset", "wine"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert "shipped" in lines and f"{load_info()['sha256'][:12]}" in lines["shipped"]
    auc, accuracy = float(lines["MotherNet"][1]), float(lines["MotherNet"][2])
    assert auc >= 0.9 and accuracy >= 0.8, done.stdout
    # fit time is reported after a warm-up fit, and the first fit (with compilation) apart
    assert lines["method"][4:8] == ["first", "fit", "s", "fit"], done.stdout
    first_fit, fit = float(lines["MotherNet"][3]), float(lines["MotherNet"][4])
    assert fit < first_fit, done.stdout
    assert "first fit s includes JIT compilation" in done.stdout
    assert "HistGradientBoosting" in lines
    assert "MotherNetClassifier settings: n_estimators=4, max_train_rows=256, output_layer=refit" in done.stdout  # the defaults


def test_the_demo_fits_the_classifier_as_it_comes():
    """`python -m mothernet_jax.demo` without options compares `MotherNetClassifier()` at its
    defaults (every setting "auto", the shipped weights), not settings of its own (it once passed
    n_estimators=8); --n-estimators overrides that one setting alone (issue 31)."""
    from sklearn.base import clone

    from mothernet_jax import demo
    from mothernet_jax.estimator.classifier import MotherNetClassifier

    as_it_comes = MotherNetClassifier(random_state=0).get_params()
    shown = demo.methods(demo.parser().parse_args([]))["MotherNet"]
    assert type(shown) is MotherNetClassifier and clone(shown).get_params() == as_it_comes
    chosen = demo.methods(demo.parser().parse_args(["--n-estimators", "2"]))["MotherNet"].get_params()
    assert chosen == {**as_it_comes, "n_estimators": 2}  # its docstring says so: tests/documents


def test_the_shipped_names_load_their_files():
    """`mn.load_pretrained("small-regression")` (and "small") loads the shipped file of that name, as
    weights="small-regression" does; a name that is neither says which names are shipped (issue 31)."""
    import jax
    import numpy as np

    import mothernet_jax as mn
    from mothernet_jax.pretrained import SHIPPED_NAMES, WeightFileError, shipped_path

    assert SHIPPED_NAMES == ("small", "small-regression")
    for name in SHIPPED_NAMES:
        by_name, by_path = mn.load_pretrained(name), load_pretrained(shipped_path(name))
        assert by_name.config == by_path.config
        assert by_name.config.task == ("regression" if name == "small-regression" else "classification")
        jax.tree_util.tree_map(np.testing.assert_array_equal, by_name.params, by_path.params)
        assert load_info(name) == load_info(shipped_path(name))
    with pytest.raises(WeightFileError) as error:
        mn.load_pretrained("small_regression")
    assert str(error.value) == (
        "weight file small_regression does not exist; the shipped weights are named 'small' and 'small-regression'"
    )


def test_the_library_defaults_are_the_measured_defaults_the_shipped_weights_recommend():
    """Weights that recommend nothing (random ones, a fresh training run's export) get the settings
    the shipped weights were measured at (issue 31; the docs' "library default" columns say so:
    tests/documents)."""
    from mothernet_jax.pretrained import REGRESSION_NAME, shipped_path
    from mothernet_jax.settings import CLASSIFIER, LIBRARY_DEFAULTS, REGRESSOR

    for name, settings in (("small", CLASSIFIER), (REGRESSION_NAME, REGRESSOR)):
        info = load_info(shipped_path(name))
        assert {key: info[key] for key in settings if key in info} == {
            key: LIBRARY_DEFAULTS[key] for key in settings if key in info
        }, name
    assert LIBRARY_DEFAULTS["n_estimators"] == 4 and LIBRARY_DEFAULTS["max_train_rows"] == 256
    assert LIBRARY_DEFAULTS["output_layer"] == "refit" and LIBRARY_DEFAULTS["multiclass"] == "native"


def test_the_defaults_are_what_the_manifest_recommends():
    """MotherNetClassifier() resolves every "auto" setting to the shipped manifest's recommendation
    (docs/FAST_DEFAULTS.md's table says the same values: tests/documents)."""
    import numpy as np

    from mothernet_jax import MotherNetClassifier
    from mothernet_jax.settings import CLASSIFIER, LIBRARY_DEFAULTS

    info = load_info()
    expected = {name: info.get(name, LIBRARY_DEFAULTS[name]) for name in CLASSIFIER}
    X = np.random.default_rng(0).normal(size=(60, 3))
    clf = MotherNetClassifier(random_state=0, finetune_steps=0).fit(X, np.arange(60) % 2)
    assert clf.settings_ == {**expected, "finetune_steps": 0, "multiclass": "native"}  # binary: native


REGRESSION_SCRIPT = """
import json, socket
socket.socket.connect = lambda *a, **k: (_ for _ in ()).throw(OSError("network access attempted"))
from sklearn.datasets import load_diabetes
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from mothernet_jax import MotherNetRegressor
X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, random_state=0)
reg = MotherNetRegressor(random_state=0, finetune_steps=0).fit(X_train, y_train)
print(json.dumps({"r2": float(r2_score(y_test, reg.predict(X_test)))}))
"""


@pytest.mark.slow  # a fresh process fits the default ensemble; the regression defaults test below loads the
# shipped regression weights at the defaults in the default run, test_shipped_weights_classify_offline the offline path
def test_shipped_regression_weights_load_and_regress_offline():
    """MotherNetRegressor() reads the shipped small-regression weights (no weights= given), offline,
    and its default ensemble explains a real target (scikit-learn's diabetes, no download)."""
    from mothernet_jax.config import preset
    from mothernet_jax.pretrained import REGRESSION_NAME, shipped_path

    path = shipped_path(REGRESSION_NAME)
    params, config = load_pretrained(path)
    assert config == preset("small-regression").replace(dtype=config.dtype)
    assert load_info(path)["sha256"] == sha256_of(path)
    done = subprocess.run([sys.executable, "-c", REGRESSION_SCRIPT], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["r2"] > 0.3  # the mean scores 0; ridge: about 0.45


def test_the_regression_defaults_are_what_the_manifest_recommends():
    """MotherNetRegressor() resolves every "auto" setting to the shipped small-regression manifest's
    recommendation (docs/REGRESSION.md's table says the same values: tests/documents)."""
    import numpy as np

    from mothernet_jax import MotherNetRegressor
    from mothernet_jax.pretrained import REGRESSION_NAME, shipped_path
    from mothernet_jax.settings import LIBRARY_DEFAULTS, REGRESSOR

    info = load_info(shipped_path(REGRESSION_NAME))
    expected = {name: info.get(name, LIBRARY_DEFAULTS[name]) for name in REGRESSOR}
    assert expected["output_layer"] == "refit"
    X = np.random.default_rng(0).normal(size=(60, 3))
    reg = MotherNetRegressor(random_state=0).fit(X, X @ np.arange(1.0, 4.0))
    assert reg.settings_ == expected and len(reg.ensemble_) == expected["n_estimators"]


def test_the_shipped_weights_generate_the_pinned_children():
    """The classification path (generate and the child as generated) gives the probabilities it
    gave before regression was added (commit 0be5d2f~1; shipped_probabilities.npz, computed there
    and again at 95a1bd6, identical): two datasets that ship inside scikit-learn, 120 training and
    40 test rows each."""
    from pathlib import Path

    import numpy as np
    from sklearn.datasets import load_breast_cancer, load_wine

    import mothernet_jax as mn

    params, _ = load_pretrained()
    pinned = np.load(Path(__file__).with_name("shipped_probabilities.npz"))
    for name, loader in (("breast_cancer", load_breast_cancer), ("wine", load_wine)):
        X, y = loader(return_X_y=True)
        order = np.random.default_rng(0).permutation(len(y))
        train, test = order[:120], order[120:160]
        child = mn.generate(params, X[train].astype(np.float32), y[train], read_out="generated")
        proba = np.asarray(mn.predict_proba(child, X[test].astype(np.float32)))
        np.testing.assert_allclose(proba, pinned[name], atol=1e-5, err_msg=name)
