"""The parts of `MotherNetClassifier` (`mothernet_jax.classifier`), one role a module:

- `encoding`: raw columns (numbers, categories, text, dates) -> one numeric table (NumPy alone);
- `plan`: which rows, columns and classes each ensemble member sees (`plan_members`);
- `member_generation`: the members' children, generated (and fine-tuned) in fixed-size jitted chunks;
- `fitting`: what the classifier's and the regressor's `fit` share (settings, table, weights, generation);
- `weights`: what the estimator's `weights=` parameter names, resolved to params and a config.

Importing this package imports none of them (`encoding` is read by exported predictors, without JAX).
"""
