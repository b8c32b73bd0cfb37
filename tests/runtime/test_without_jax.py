"""The runtime runs where JAX cannot be imported: every module of `mothernet_jax.runtime` imports,
exported predictors load and predict, and the runtime's own tests pass, in a process whose
`import jax` (and flax, optax, orbax) raises ImportError. The parent process writes the files and
the expected outputs; the child process has only NumPy (and the standard library)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import test_runtime as runtime_tests

from mothernet_jax.runtime.encoding import FeatureEncoder
from mothernet_jax.runtime.predictor import ClassificationPredictor, RegressionPredictor

ROOT = Path(__file__).resolve().parents[2]

# Prepended to every script: a finder that makes importing JAX or its libraries fail.
WITHOUT_JAX = """
import importlib.abc, sys
BLOCKED = {"jax", "jaxlib", "flax", "optax", "orbax", "chex"}
class WithoutJax(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: this process runs without JAX")
        return None
sys.meta_path.insert(0, WithoutJax())
try:
    import jax
except ImportError:
    pass
else:
    raise AssertionError("the blocker let jax in")
"""


def run_without_jax(script: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(Path(__file__).parent)]),
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_JAX + script, *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )


def test_every_runtime_module_imports_and_exports_load_and_predict_without_jax(tmp_path):
    rng = np.random.default_rng(0)
    X, categorical = runtime_tests.mixed_table(80)
    encoder = FeatureEncoder.fit(X, categorical, ["x", "colour", "day"])
    children, columns = runtime_tests.encoded_members(rng, encoder, k=3)
    classifier = ClassificationPredictor(children, classes=np.array([3, 5, 8]), encoder=encoder, columns=columns,
                                         feature_names=["x", "colour", "day"])  # fmt: skip
    children, columns = runtime_tests.encoded_members(rng, encoder, k=1)
    regressor = RegressionPredictor(children, target_mean=[1.0, 2.0, 3.0], target_std=[2.0, 1.0, 0.5],
                                    predictive_std=0.25, encoder=encoder, columns=columns)  # fmt: skip
    classifier.save(tmp_path / "classifier.npz")
    regressor.save(tmp_path / "regressor.npz")
    np.save(tmp_path / "X.npy", X, allow_pickle=True)  # the test's table (objects), not an export
    script = """
import importlib, pkgutil
import numpy as np
import mothernet_jax, mothernet_jax.runtime
modules = [m.name for m in pkgutil.walk_packages(mothernet_jax.runtime.__path__, "mothernet_jax.runtime.")]
assert len(modules) >= 5, modules
for name in modules:
    importlib.import_module(name)
from mothernet_jax.predictor import load_predictor as former_home  # where README once pointed
assert former_home is mothernet_jax.load_predictor
X = np.load("X.npy", allow_pickle=True)
classifier = mothernet_jax.load_predictor("classifier.npz")
regressor = mothernet_jax.load_predictor("regressor.npz")
np.save("proba.npy", classifier.predict_proba(X))
np.save("labels.npy", classifier.predict(X))
np.save("y.npy", np.stack(regressor.predict(X, return_std=True)))
assert not [m for m in sys.modules if m.partition(".")[0] in BLOCKED], "a JAX library was imported"
print(len(modules), "modules")
"""
    done = run_without_jax(script, tmp_path)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "proba.npy"), classifier.predict_proba(X))
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), classifier.predict(X))
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.stack(regressor.predict(X, return_std=True)))


def test_the_runtime_tests_pass_without_jax(tmp_path):
    # the suite's conftest.py imports JAX (devices, caches): this run reads none of it
    script = "import pytest; sys.exit(pytest.main(sys.argv[1:]))"
    # in this one process (addopts' pytest-xdist workers would not be this JAX-less one)
    done = run_without_jax(script, tmp_path, "--noconftest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                           str(Path(__file__).with_name("test_runtime.py")))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout
