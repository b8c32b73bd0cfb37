"""The scikit-learn estimators, `MotherNetClassifier` (`classifier`) and `MotherNetRegressor`
(`regressor`), on one base, `MotherNetEstimator` (`base`: the shared parameters and their checks,
tags, the fit template, predict and export), and their parts, one role a module:

- `fitting`: what the fit template runs before the plan (settings, table, targets, weights, encoding,
  seed) and the generation (`TrainingTable.generate`);
- `plan`: which rows, columns and classes each ensemble member sees (`plan_members`,
  `plan_regression_members`);
- `member_generation`: the members' children, generated (and fine-tuned) in fixed-size jitted chunks;
- `finetune`: fine-tuning the children at fit time (steps, layers, learning rate, early stopping);
- `output_layer`: the children's read-out refitted on every training row (`output_layer="refit"`);
- `schedule`: the "auto" settings beyond a measured count of training rows;
- `threads`: `n_jobs`, the BLAS / OpenMP threads of `fit` and `predict`;
- `compile_cache`: the default persistent compilation cache;
- `weights`: what the estimator's `weights=` parameter names, resolved to params and a config.

The column encoding and the predictors that fit keeps are the runtime's (`mothernet_jax.runtime`:
NumPy alone, what an export runs). The public names are `mothernet_jax.MotherNetClassifier` and
`mothernet_jax.MotherNetRegressor`; importing this package imports none of its modules.
"""
