"""What the estimator tests share: random weights of a preset, and scikit-learn's conformance checks
collected on an estimator without weights (each test passes them)."""

import functools

import jax
import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

import mothernet_jax as mn


def random_weights(config: mn.ModelConfig, seed: int) -> mn.Weights:
    """A random model of `config` (mn.init_params with key `seed`), its leaves NumPy arrays."""
    return mn.Weights(jax.tree_util.tree_map(np.asarray, mn.init_params(jax.random.key(seed), config)), config)


def check_id(obj) -> str:
    """Short test ids: the estimator's class name (its parameters left out), a check's name and
    keywords."""
    if isinstance(obj, BaseEstimator):
        return type(obj).__name__
    if isinstance(obj, functools.partial):
        keywords = ",".join(f"{k}={v}" for k, v in obj.keywords.items())
        return f"{obj.func.__name__}({keywords})" if keywords else obj.func.__name__
    return str(obj)


def sklearn_checks(estimator: BaseEstimator, expected_failed: dict[str, str]):
    """A test's parametrize mark over every check of scikit-learn's parametrize_with_checks on
    `estimator` (as `estimator, check`), those of `expected_failed` (check name -> why) expected to
    fail, with short ids."""
    checks = parametrize_with_checks([estimator], expected_failed_checks=lambda _: expected_failed)
    return pytest.mark.parametrize(*checks.args, ids=check_id)
