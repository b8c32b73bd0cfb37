"""The methods a benchmark compares: a registry of name -> factory of unfitted scikit-learn classifiers.

A factory is called as `build(categorical_mask, seed, **options)` once per split and returns a fresh
estimator. Baselines are the defaults a practitioner would try first, wrapped in the preprocessing
they need: imputation, one-hot encoding of the categorical columns and, for the models that are
sensitive to it, standard scaling. Optional libraries (XGBoost, LightGBM, and MotherNet's own
classifier) are imported inside their factories, so this module imports without them.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier

from mothernet_jax.benchmarks.preprocessing import pipeline


@dataclasses.dataclass(frozen=True, kw_only=True)
class Method:
    """A named way to build a classifier for one split."""

    name: str
    label: str  # for figures: "Random forest"
    description: str  # one line for the summary: model and settings
    build: Callable[..., object]  # (categorical_mask, seed, **options) -> unfitted estimator
    requires: tuple[str, ...] = ()  # "module" or "module:attribute" that must import
    preflight: Callable[..., None] | None = None  # (**options); raises where they cannot work

    def unavailable(self) -> str | None:
        """None where the method can run here, else why not (the import error)."""
        for requirement in self.requires:
            module, _, attribute = requirement.partition(":")
            try:
                loaded = importlib.import_module(module)
            except Exception as error:
                return f"cannot import {module}: {type(error).__name__}: {error}"
            if attribute and not hasattr(loaded, attribute):
                return f"{module} has no {attribute}"
        return None


def fit_native_hist_gradient_boosting(model_class, x, y, categorical_mask, random_state):
    """`model_class` (HistGradientBoostingClassifier or ...Regressor) fitted with native missing values
    and categorical columns; returns (model, the columns kept).

    A categorical column becomes native only where its training codes are below `max_bins` (255), the
    limit of the native splitter; wider ones (cylinder-bands has 429 levels) stay ordinal numbers.
    Columns with no value in the training part are dropped: scikit-learn 1.9's binning raises on them.
    """
    x = np.asarray(x, dtype=np.float64)
    mask = np.zeros(x.shape[1], dtype=bool)
    if categorical_mask is not None:
        mask = np.asarray(categorical_mask, dtype=bool)
    columns = np.flatnonzero(~np.all(np.isnan(x), axis=0))
    x, mask = x[:, columns], mask[columns]
    with np.errstate(invalid="ignore"):
        fits = np.all(np.isnan(x) | ((x >= 0) & (x < 255)), axis=0)
    native = mask & fits
    model = model_class(categorical_features=native if native.any() else None, random_state=random_state)
    return model.fit(x, y), columns


class NativeHistGradientBoostingBase(BaseEstimator):
    """`model_class` (HistGradientBoostingClassifier or ...Regressor) with native missing values and
    categorical columns (see `fit_native_hist_gradient_boosting`); a subclass adds its mixin and
    its predictions on `model_` over `self.kept(x)`."""

    model_class: type

    def __init__(self, categorical_mask=None, random_state=None):
        self.categorical_mask = categorical_mask
        self.random_state = random_state

    def fit(self, x, y):
        self.model_, self.columns_ = fit_native_hist_gradient_boosting(
            self.model_class, x, y, self.categorical_mask, self.random_state
        )
        return self

    def kept(self, x) -> np.ndarray:
        """`x` as float64, on the columns kept at fit time."""
        return np.asarray(x, dtype=np.float64)[:, self.columns_]


class NativeHistGradientBoosting(ClassifierMixin, NativeHistGradientBoostingBase):
    """`HistGradientBoostingClassifier` with native missing values and categorical columns."""

    model_class = HistGradientBoostingClassifier

    def fit(self, x, y):
        super().fit(x, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, x):
        return self.model_.predict_proba(self.kept(x))

    def predict(self, x):
        return self.classes_[np.argmax(self.predict_proba(x), axis=1)]


# ---------------------------------------------------------------------------------------------
# Factories
# ---------------------------------------------------------------------------------------------


def _mothernet(categorical_mask, seed, *, weights=None, multiclass="auto", finetune_steps="auto", **_):
    from mothernet_jax.estimator.classifier import MotherNetClassifier

    return MotherNetClassifier(
        weights=weights,
        random_state=seed,
        categorical_features=np.asarray(categorical_mask, dtype=bool),
        multiclass=multiclass,
        finetune_steps=finetune_steps,
    )


def _mothernet_preflight(*, weights=None, **_):
    # Reads (and caches) the weights once, so that a missing file skips the method with its reason
    # instead of failing every split.
    from mothernet_jax.estimator.weights import resolve_weights

    resolve_weights(weights)


def _logistic_regression(categorical_mask, seed, **_):
    return pipeline(categorical_mask, LogisticRegression(max_iter=1000, random_state=seed), scale=True)


def _knn(model_class, categorical_mask, seed, *, n_jobs=None, **_):
    return pipeline(categorical_mask, model_class(n_neighbors=5, n_jobs=n_jobs), scale=True)


def _random_forest(model_class, categorical_mask, seed, *, n_jobs=None, **_):
    model = model_class(n_estimators=100, n_jobs=n_jobs, random_state=seed)
    return pipeline(categorical_mask, model, scale=False)


def _hist_gradient_boosting(model_class, categorical_mask, seed, **_):
    return model_class(categorical_mask=categorical_mask, random_state=seed)


def shared_baselines(knn: type, random_forest: type, native_hist_gradient_boosting: type) -> list[Method]:
    """The k-NN, random forest and gradient boosting baselines, alike for both tasks but for their
    classes: KNeighborsClassifier or ...Regressor, RandomForest..., a `NativeHistGradientBoostingBase`."""
    hgb = native_hist_gradient_boosting.model_class.__name__
    return [
        Method(
            name="knn",
            label="k-NN",
            description=f"{knn.__name__}(n_neighbors=5); impute, one-hot, scale",
            build=functools.partial(_knn, knn),
        ),
        Method(
            name="random_forest",
            label="Random forest",
            description=f"{random_forest.__name__}(n_estimators=100); impute, one-hot",
            build=functools.partial(_random_forest, random_forest),
        ),
        Method(
            name="hist_gradient_boosting",
            label="Gradient boosting",
            description=f"{hgb} defaults; native NaN and categorical columns",
            build=functools.partial(_hist_gradient_boosting, native_hist_gradient_boosting),
        ),
    ]


def _mlp(categorical_mask, seed, **_):
    model = MLPClassifier(hidden_layer_sizes=(100,), max_iter=500, random_state=seed)
    return pipeline(categorical_mask, model, scale=True)


def _xgboost(categorical_mask, seed, *, n_jobs=None, **_):
    from xgboost import XGBClassifier

    model = XGBClassifier(n_estimators=100, tree_method="hist", n_jobs=n_jobs, random_state=seed)
    return pipeline(categorical_mask, model, scale=False, impute=False)


def _lightgbm(categorical_mask, seed, *, n_jobs=None, **_):
    from lightgbm import LGBMClassifier

    model = LGBMClassifier(n_estimators=100, n_jobs=n_jobs, random_state=seed, verbose=-1)
    return pipeline(categorical_mask, model, scale=False, impute=False)


def _untrained(categorical_mask, seed, *, weights=None, **_):
    from mothernet_jax.benchmarks.controls import untrained_estimator
    from mothernet_jax.estimator.classifier import MotherNetClassifier

    return untrained_estimator(MotherNetClassifier, categorical_mask, seed, weights=weights)


def _random_features(categorical_mask, seed, *, weights=None, **_):
    from mothernet_jax.benchmarks.controls import RandomFeaturesClassifier, random_features

    return random_features(RandomFeaturesClassifier, categorical_mask, seed, weights=weights)


def _generate(read_out, categorical_mask, seed, *, weights=None, **_):
    from mothernet_jax.benchmarks.controls import GenerateClassifier

    return GenerateClassifier(weights=weights, read_out=read_out)


def _generate_untrained(categorical_mask, seed, *, weights=None, **_):
    from mothernet_jax.benchmarks.controls import GenerateClassifier

    return GenerateClassifier(weights=weights, untrained_seed=seed)


def mothernet_methods(
    mothernet: Callable, untrained: Callable, random: Callable, preflight: Callable, estimator: str, weights: str
) -> list[Method]:
    """MotherNet and the two controls of `benchmarks.controls` as methods, alike for both tasks.

    estimator: the class name (MotherNetClassifier or MotherNetRegressor); weights: which file the
    mothernet method loads, for its description."""
    module = f"mothernet_jax.estimator.{estimator.removeprefix('MotherNet').lower()}:{estimator}"
    control = "at the weights' default settings, init_params(key(split seed)): the control"
    return [
        *[
            Method(
                name=name,
                label=label,
                description=f"{estimator} {text}",
                build=build,
                requires=(module,),
                preflight=preflight,
            )
            for name, label, text, build in [
                ("mothernet", "MotherNet", f"({weights}), default ensemble", mothernet),
                ("untrained", "MotherNet, untrained", control, untrained),
            ]
        ],
        Method(
            name="random_features",
            label="Random ReLU features",
            description="4 random ReLU nets of the child's shape + the inputs, the refitted read-out; impute, one-hot, scale",
            build=random,
            preflight=preflight,
        ),
    ]


def generate_methods() -> list[Method]:
    """`mothernet_jax.generate` and its child with no estimator: each read-out, and the untrained control."""
    rows = [
        (
            f"generate_{read_out}" if read_out else "generate",
            f"generate ({read_out})" if read_out else "generate",
            f"mothernet_jax.generate(params, X, y{f', read_out={read_out!r}' if read_out else ''}) and its child: "
            "no estimator",
            functools.partial(_generate, read_out),
        )
        for read_out in (None, "logistic", "ridge", "generated")
    ]
    rows.append((
        "generate_untrained",
        "generate, untrained",
        "mothernet_jax.generate (its default read-out) with init_params(key(split seed)): the control",
        _generate_untrained,
    ))  # fmt: skip
    return [
        Method(name=name, label=label, description=description, build=build, preflight=_mothernet_preflight)
        for name, label, description, build in rows
    ]


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        *mothernet_methods(
            _mothernet,
            _untrained,
            _random_features,
            _mothernet_preflight,
            "MotherNetClassifier",
            "shipped weights or --weights",
        ),
        *generate_methods(),
        Method(
            name="logistic_regression",
            label="Logistic regression",
            description="LogisticRegression(C=1, max_iter=1000); impute, one-hot, scale",
            build=_logistic_regression,
        ),
        *shared_baselines(KNeighborsClassifier, RandomForestClassifier, NativeHistGradientBoosting),
        Method(
            name="mlp",
            label="MLP",
            description="MLPClassifier(hidden_layer_sizes=(100,), max_iter=500); impute, one-hot, scale",
            build=_mlp,
        ),
        Method(
            name="xgboost",
            label="XGBoost",
            description="XGBClassifier(n_estimators=100, tree_method='hist'); native NaN, one-hot",
            build=_xgboost,
            requires=("xgboost",),
        ),
        Method(
            name="lightgbm",
            label="LightGBM",
            description="LGBMClassifier(n_estimators=100); native NaN, one-hot",
            build=_lightgbm,
            requires=("lightgbm",),
        ),
    ]
}


def resolve_methods(
    names: Sequence[str] | None = None, *, registry: dict[str, Method] | None = None, **options
) -> tuple[dict[str, Callable[[np.ndarray, int], object]], dict[str, str]]:
    """Factories `(categorical_mask, seed) -> estimator` for `names` (None: every registered method).

    options: passed to every factory, which takes what it knows: `weights` (MotherNet), `n_jobs`.
    Returns the runnable factories, in the order of `names`, and {name: reason} for those skipped
    because an import or the method's preflight (MotherNet: reading the weights) failed. Raises
    ValueError for a name that is not registered. registry: the methods to choose from (default
    METHODS, the classifiers; `benchmarks.regression.REGRESSION_METHODS` for regressors).
    """
    registry = METHODS if registry is None else registry
    names = list(registry) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(registry)}")
    factories, skipped = {}, {}
    for name in names:
        method = registry[name]
        reason = method.unavailable()
        if reason is None and method.preflight is not None:
            try:
                method.preflight(**options)
            except Exception as error:
                reason = f"{type(error).__name__}: {error}"
        if reason is None:
            factories[name] = functools.partial(method.build, **options)
        else:
            skipped[name] = reason
    return factories, skipped
