"""The controls every accuracy claim of MotherNet is measured against.

- `untrained`: the same estimator, the loaded weights' config and their default settings (what the
  weight file's manifest recommends, as "auto" resolves them), with the hypernetwork's parameters
  **untrained**: `init_params(jax.random.key(seed), config)`, one key per split (the split's seed,
  so that a mean over datasets and splits is a mean over initialisations). What the estimator
  scores with it is what its architecture and read-out give without meta-learning.
- `random_features`: no hypernetwork: `n_draws` random ReLU networks of the child's shape (its
  hidden layers and width), each on the standardised inputs, read out by the estimator's refitted
  read-out over [hidden / scale, inputs] (`estimator.output_layer`: L2 logistic regression for a
  classifier, ridge with GCV for a regressor), the draws' predictions averaged. Inputs are
  prepared as the linear baselines prepare theirs (median imputation, one-hot categorical columns,
  standard scaling).

The gap default - untrained is the meta-learning's share of an accuracy; `docs/FAST_DEFAULTS.md` and
`docs/REGRESSION.md` report it beside every default.

And what JAX users get: `GenerateClassifier`, one `mothernet_jax.generate` call on the raw training
rows (categorical codes as numbers, NaN as missing), its child's `predict_proba` on the test rows,
no estimator around it (`read_out`: generate's default, or one it names).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from mothernet_jax.benchmarks.preprocessing import preprocessing

N_DRAWS = 4  # random networks per fit, as the default's 4 members


def default_settings(weights, names) -> dict:
    """The settings `names` as "auto" resolves them for `weights` (None: the shipped weights): the
    manifest's recommendation, else the library default."""
    from mothernet_jax import settings
    from mothernet_jax.estimator.weights import weights_info

    recommended = weights_info(weights)
    return {name: settings.resolve(name, "auto", recommended) for name in names}


def untrained_weights(weights, seed: int):
    """(init_params(key(seed), config), config) for the config of `weights` (None: shipped)."""
    import jax

    from mothernet_jax.estimator.weights import resolve_weights
    from mothernet_jax.model.mothernet import init_params

    config = resolve_weights(weights).config
    return init_params(jax.random.key(int(seed)), config), config


def untrained_estimator(estimator, categorical_mask, seed, *, weights=None, **_):
    """`estimator` (MotherNetClassifier or MotherNetRegressor) with untrained parameters and the
    default settings of `weights`."""
    from mothernet_jax import settings

    names = settings.CLASSIFIER if estimator.__name__ == "MotherNetClassifier" else settings.REGRESSOR
    return estimator(
        weights=untrained_weights(weights, seed),
        random_state=seed,
        categorical_features=np.asarray(categorical_mask, dtype=bool),
        **default_settings(weights, names),
    )


def _child_shape(weights) -> tuple[int, int]:
    """(hidden layers, width) of the child of `weights`' config."""
    from mothernet_jax.estimator.weights import resolve_weights

    config = resolve_weights(weights).config
    return config.child_hidden_layers, config.child_hidden_size


def random_relu_layers(rng: np.random.Generator, d: int, layers: int, width: int) -> list[tuple]:
    """Random ReLU layers (W (in, width), b (width)): He-scaled Gaussian weights N(0, 2 / in) and
    standard normal biases, so that each unit cuts the standardised inputs at its own offset."""
    out, fan_in = [], d
    for _ in range(layers):
        out.append((rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, width)), rng.normal(0.0, 1.0, width)))
        fan_in = width
    return out


class RandomFeaturesBase(BaseEstimator):
    """Random ReLU networks of the child's shape, each read out by the refitted read-out."""

    def __init__(self, categorical_mask=None, random_state=None, layers=2, width=128, n_draws=N_DRAWS):
        self.categorical_mask = categorical_mask
        self.random_state = random_state
        self.layers = layers
        self.width = width
        self.n_draws = n_draws

    def _features(self, x, draw: int, scale: float | None = None):
        from mothernet_jax.runtime.child import hidden_features

        z = np.asarray(self.prepare_.transform(x), np.float64)
        hidden = hidden_features((*self.layers_[draw], None), z, np)  # the hidden layers (no read-out)
        if scale is None:
            spread = float(hidden.std())
            scale = spread if spread > 0 else 1.0
        return np.concatenate([hidden / scale, z], axis=1), scale

    def _fit_features(self, x):
        mask = np.zeros(np.shape(x)[1], bool) if self.categorical_mask is None else self.categorical_mask
        self.prepare_ = preprocessing(mask, scale=True).fit(x)
        d = self.prepare_.transform(x[:1]).shape[1]
        rng = np.random.default_rng(self.random_state)
        self.layers_ = [random_relu_layers(rng, d, self.layers, self.width) for _ in range(self.n_draws)]
        return [self._features(x, i) for i in range(self.n_draws)]


class RandomFeaturesClassifier(ClassifierMixin, RandomFeaturesBase):
    """`random_features` for classification: L2 logistic regression (`output_layer.logistic_read_out`)."""

    def fit(self, x, y):
        from mothernet_jax.estimator.output_layer import logistic_read_out

        self.classes_, codes = np.unique(y, return_inverse=True)
        self.fits_ = []
        for features, scale in self._fit_features(x):
            w, b = logistic_read_out(features, codes, len(self.classes_))
            self.fits_.append((w, b, scale))
        return self

    def predict_proba(self, x):
        from mothernet_jax.runtime.child import softmax

        probabilities = [softmax(self._features(x, i, s)[0] @ w + b, np) for i, (w, b, s) in enumerate(self.fits_)]
        return np.mean(probabilities, axis=0)

    def predict(self, x):
        return self.classes_[np.argmax(self.predict_proba(x), axis=1)]


class RandomFeaturesRegressor(RegressorMixin, RandomFeaturesBase):
    """`random_features` for regression: ridge with GCV (`output_layer.ridge_gcv`)."""

    def fit(self, x, y):
        from mothernet_jax.estimator.output_layer import Moments, ridge_gcv

        y = np.asarray(y, np.float64)
        self.fits_ = []
        for features, scale in self._fit_features(x):
            moments = Moments(features.shape[1])
            moments.add(features, y)
            fit = ridge_gcv(moments)
            self.fits_.append((fit.w, fit.b, scale))
        return self

    def predict(self, x):
        return np.mean([self._features(x, i, s)[0] @ w + b for i, (w, b, s) in enumerate(self.fits_)], axis=0)


def random_features(estimator: type, categorical_mask, seed, *, weights=None, **_):
    """A `RandomFeatures*` of the child's shape of `weights` (None: the shipped weights)."""
    layers, width = _child_shape(weights)
    return estimator(categorical_mask=np.asarray(categorical_mask, bool), random_state=seed, layers=layers, width=width)


class GenerateClassifier(ClassifierMixin, BaseEstimator):
    """`mothernet_jax.generate(params, X, y, read_out=...)` and the child's `predict_proba`: what a JAX
    user calls, with no estimator around it (read_out None: generate's default). Raw rows (at most the model's max_features columns and
    max_classes classes), labels as codes 0..k-1."""

    def __init__(self, weights=None, read_out=None, untrained_seed=None):
        self.weights = weights
        self.read_out = read_out
        self.untrained_seed = untrained_seed

    def fit(self, x, y):
        from mothernet_jax.estimator.weights import resolve_weights
        from mothernet_jax.generation import generate

        params, config = (untrained_weights(self.weights, self.untrained_seed) if self.untrained_seed is not None
                          else resolve_weights(self.weights))  # fmt: skip
        self.classes_, codes = np.unique(y, return_inverse=True)
        options = {} if self.read_out is None else {"read_out": self.read_out}  # None: generate's default
        self.child_ = generate(params, np.asarray(x, np.float32), codes, config=config, **options)
        return self

    def predict_proba(self, x):
        from mothernet_jax.model.child import predict_proba

        return np.asarray(predict_proba(self.child_, np.asarray(x, np.float32)), np.float64)

    def predict(self, x):
        return self.classes_[np.argmax(self.predict_proba(x), axis=1)]
