"""scikit-learn conformance: every check of parametrize_with_checks, pickling, cloning.

The weights are a random `tiny` model, so the estimator under test fine-tunes its children (100 Adam
steps): generated children of untrained weights are near chance, and `check_classifiers_train`
asks for 83% training accuracy. No check is expected to fail. The checks are collected on an
estimator without weights (nothing is made at import); each check runs it with the tiny weights.
"""

import copy
import pickle

import jax
import numpy as np
import pytest
from estimator_helpers import random_weights, sklearn_checks
from sklearn.base import clone

import mothernet_jax as mn
from mothernet_jax.estimator.classifier import MotherNetClassifier

CONFIG = mn.preset("tiny")


@pytest.fixture(scope="module")
def tiny_weights():
    """A random `tiny` model, made when a test of this module first asks for it (not at import)."""
    return random_weights(CONFIG, 0)


# check name -> why it cannot pass; empty: every check passes.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@sklearn_checks(
    MotherNetClassifier(n_estimators=2, random_state=0, finetune_steps=100, output_layer="refit"), EXPECTED_FAILED_CHECKS
)
def test_sklearn_compatible(estimator, check, tiny_weights):
    check(clone(estimator).set_params(weights=tiny_weights))


def test_pickle_keeps_predictions_and_clone_keeps_parameters(tiny_weights):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = np.array(["yes", "no", "maybe"])[rng.integers(0, 3, 120)]
    clf = MotherNetClassifier(weights=tiny_weights, n_estimators=4, random_state=1).fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(restored.predict(X), clf.predict(X))
    twin = clone(clf)
    assert twin.get_params()["n_estimators"] == 4 and not hasattr(twin, "predictor_")


def test_weights_print_short_and_clone_without_copying_the_arrays(tiny_weights):
    weights = mn.load_pretrained()
    params, config = weights  # unpacks as the (params, config) pair it always was
    assert isinstance(weights, mn.Weights) and config == mn.preset("small")
    assert repr(weights) == "Weights(config=small, 5.0M parameters)"
    assert (
        repr(mn.Weights(tiny_weights.params, CONFIG.replace(n_heads=4)))
        == "Weights(config=custom, 343,722 parameters)"
    )
    clf = MotherNetClassifier(weights=weights, n_estimators=3)
    assert len(repr(clf)) < 120 and "Weights(config=small" in repr(clf)
    leaves = jax.tree_util.tree_leaves(params)
    for twin in (clone(clf), copy.deepcopy(clf)):
        shared = jax.tree_util.tree_leaves(twin.get_params()["weights"].params)
        assert len(shared) == len(leaves) and all(a is b for a, b in zip(shared, leaves, strict=True))
        assert twin.get_params()["n_estimators"] == 3
    X, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 2
    fitted = MotherNetClassifier(
        weights=mn.Weights(tiny_weights.params, CONFIG), n_estimators=1, random_state=0
    ).fit(X, y)
    from_pair = MotherNetClassifier(
        weights=(tiny_weights.params, CONFIG), n_estimators=1, random_state=0
    ).fit(X, y)
    np.testing.assert_array_equal(fitted.predict_proba(X), from_pair.predict_proba(X))
