"""mothernet_jax: MotherNet in JAX/Flax.

A transformer hypernetwork reads a tabular training set and, in one forward pass, emits the weights
of a small MLP (the child) that classifies new rows.

    import mothernet_jax as mn
    config = mn.preset("paper")
    params = mn.init_params(jax.random.key(0), config)
    child = mn.generate(params, X_train, y_train)  # config recovered from the params' shapes
    proba = mn.predict_proba(child, X_test)

Names load on first use, so that `mothernet_jax.load_predictor` runs without importing JAX (the NumPy-only
runtime, `mothernet_jax.runtime`).
"""

from mothernet_jax.lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it, one per line
_EXPORTS = {
    "ModelConfig": "mothernet_jax.config",
    "preset": "mothernet_jax.config",
    "init_params": "mothernet_jax.model.mothernet",
    "count_params": "mothernet_jax.model.mothernet",
    "config_of": "mothernet_jax.model.identify",
    "MotherNet": "mothernet_jax.model.mothernet",
    "generate": "mothernet_jax.generation",
    "generate_batch": "mothernet_jax.generation",
    "generate_layers": "mothernet_jax.generation",
    "Child": "mothernet_jax.runtime.child",
    "child_logits": "mothernet_jax.model.child",
    "predict_proba": "mothernet_jax.model.child",
    "predict_regression": "mothernet_jax.model.child",
    "to_numpy": "mothernet_jax.runtime.child",
    "load_predictor": "mothernet_jax.runtime.predictor",
    "load_pretrained": "mothernet_jax.pretrained",
    "save_pretrained": "mothernet_jax.pretrained",
    "Weights": "mothernet_jax.pretrained",
    "MotherNetClassifier": "mothernet_jax.estimator.classifier",
    "MotherNetRegressor": "mothernet_jax.estimator.regressor",
}
_SUBMODULES = (
    "config",
    "model",
    "generation",
    "runtime",
    "train",
    "benchmarks",
    "pretrained",
    "estimator",
    "predictor",
    "demo",
)

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), _EXPORTS, _SUBMODULES)
