"""What runs with NumPy alone: the deployment layer of an exported estimator.

- `child`: the generated child (`Child`), its arithmetic written once over an array library
  (`standardise_rows`, `hidden_features`, `factored_logits`: the JAX code calls them with
  jax.numpy) and the one NumPy forward pass (`numpy_logits`, `numpy_predict_proba`);
- `encoding`: raw columns (numbers, categories, text, dates) -> one numeric table (`FeatureEncoder`);
- `predictor`: the exported estimators (`Predictor`; `ClassificationPredictor`,
  `RegressionPredictor`) and `load_predictor`;
- `npz`: their pickle-free .npz files, atomic writes of any file, the checks of a file before reading it;
- `checks`: checks of input values (`reject_infinite`, `reject_beyond_float32`).

These modules import NumPy, the standard library and one another, nothing else: no JAX, nothing of
`model/`, `estimator/` or `train/` (tests/architecture checks the imports; tests/runtime runs
them in a process where importing JAX fails). Every other layer may import them. Importing this
package imports none of them; `mothernet_jax.load_predictor` is the public name of the loader.
"""
