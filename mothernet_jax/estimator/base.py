"""MotherNetEstimator: what `MotherNetClassifier` and `MotherNetRegressor` share.

The shared parameters and their one table of checks (`PARAMETER_CHECKS`), the tags, the fit
template, prediction through the fitted predictor and `export`. A fit runs, in this order:

    prepare (settings, table, targets, weights, encoding, seed: `fitting.prepare_fit`)
    -> plan (which rows, columns and classes each member sees)        `_plan`, the subclass's
    -> generate (and fine-tune) the members' children                 `_generate`
    -> read-out (refitted where the settings say) -> the predictor    `_read_out`, the subclass's

and keeps the predictor (`predictor_`), which `predict` and `export` run with NumPy alone. A
subclass supplies what differs: its settings (`_settings`), the "auto" settings' schedule by rows
(`_schedule`), its targets (`_check_target`, `_targets`), the task its weights must have (`_task`),
its plan, its read-out and its predictor.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from mothernet_jax import settings
from mothernet_jax.estimator.fitting import TrainingTable, categorical_mask, prepare_fit, weights_name
from mothernet_jax.estimator.member_generation import is_regression
from mothernet_jax.estimator.plan import MemberPlan
from mothernet_jax.estimator.schedule import Schedule
from mothernet_jax.estimator.threads import check_n_jobs, own_threads
from mothernet_jax.runtime.encoding import plain_dtypes


def check_temperature(value) -> None:
    """ValueError, in one line, unless `value` is a positive real number (NumPy's too)."""
    if not settings.is_number(value) or not value > 0:
        raise ValueError(f"temperature must be a positive number, got {value!r}")


def _setting_check(name: str) -> Callable[[Any], None]:
    """The check of a setting a weight file can recommend: "auto", or what `settings.check` takes
    (the function the manifest's checks use too)."""

    def check(value) -> None:
        if not (isinstance(value, str) and value == "auto"):
            settings.check(name, value)

    return check


# parameter -> its check (ValueError in one line naming it), in the order fit checks them; an
# estimator checks those of its parameters. weights, random_state and categorical_features are
# checked where fit resolves them (`weights.resolve_weights`, `check_random_state`, `categorical_mask`).
PARAMETER_CHECKS: dict[str, Callable[[Any], None]] = {
    **{name: _setting_check(name) for name in settings.RECOMMENDABLE},
    "n_jobs": check_n_jobs,
    "temperature": check_temperature,
}


class MotherNetEstimator(BaseEstimator):
    """The parameters both estimators take (documented by each) and the fit template above."""

    _settings: tuple[str, ...]  # the settings of `settings.SETTINGS` this estimator takes
    _schedule: Schedule  # the "auto" settings beyond a number of training rows (`estimator.schedule`)
    _task: str  # the ModelConfig.task of the weights it takes
    _wrong_task: str  # the message for weights of the other task, "{weights}" naming them
    _plan_fields: tuple[str, ...]  # the `MemberPlan` fields that ensemble_ reports

    def __init__(
        self,
        weights=None,
        *,
        n_estimators: int | str = "auto",
        random_state=None,
        max_train_rows: int | None | str = "auto",
        categorical_features="auto",
        finetune_steps: int | str = "auto",
        finetune_learning_rate: float | str = "auto",
        finetune_layers: str = "auto",
        finetune_rows: int | None | str = "auto",
        finetune_holdout: float | str = "auto",
        output_layer: str = "auto",
        finetune_pool: int | None | str = "auto",
        n_jobs: int | None = None,
    ):
        # scikit-learn's rule: store each parameter as given; fit checks them (`_check_parameters`)
        self.weights, self.random_state, self.n_jobs = weights, random_state, n_jobs
        self.n_estimators, self.max_train_rows = n_estimators, max_train_rows
        self.categorical_features, self.output_layer = categorical_features, output_layer
        self.finetune_steps, self.finetune_learning_rate = finetune_steps, finetune_learning_rate
        self.finetune_layers, self.finetune_rows = finetune_layers, finetune_rows
        self.finetune_holdout, self.finetune_pool = finetune_holdout, finetune_pool

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        return tags

    # -- fit -------------------------------------------------------------------------------------

    def fit(self, X, y):
        """Generate the ensemble for the training table X (n, d) and its targets y (n,)."""
        self._check_parameters()
        default_weights = self._default_weights()
        self._check_target(y)
        with own_threads(self.n_jobs):
            table = prepare_fit(
                self, X, y, names=self._settings, targets=self._targets, check_model=self._check_model,
                weights=default_weights, schedule=self._schedule,
            )  # fmt: skip
            plans = self._plan(table)
            children, finetune = self._generate(table, plans)
            predictor = self._read_out(table, plans, children)
        self.categorical_features_ = table.mask
        self.settings_ = table.chosen
        self.finetune_steps_ = finetune.steps
        self.ensemble_ = [self._describe(p) for p in plans]
        self.predictor_ = predictor
        return self

    def _default_weights(self):
        """What `weights=None` stands for (None: the shipped classification weights)."""
        return None

    def _check_target(self, y) -> None:
        """ValueError, in one line, for targets the estimator cannot read (before scikit-learn's checks)."""

    @staticmethod
    def _targets(y) -> Any:
        """The validated y (n,) as the plan reads it (`TrainingTable.targets`)."""
        raise NotImplementedError

    def _plan(self, table: TrainingTable) -> list[MemberPlan]:
        raise NotImplementedError

    def _generate(self, table: TrainingTable, plans: list[MemberPlan]) -> tuple[list, Any]:
        """(children, the fine-tuning used) of the plans, from the targets as the model reads them."""
        return table.generate(table.targets, plans)

    def _read_out(self, table: TrainingTable, plans: list[MemberPlan], children: list):
        """The predictor of the children, their read-out refitted where the settings say."""
        raise NotImplementedError

    def _describe(self, plan: MemberPlan) -> dict:
        """What one member reads, for `ensemble_`."""
        return {"n_rows": len(plan.rows), "n_columns": len(plan.columns)} | {
            name: getattr(plan, name) for name in self._plan_fields
        }

    # -- predict ---------------------------------------------------------------------------------

    def _predict_with(self, method: str, X, **kwargs):
        """`predictor_.<method>(X, **kwargs)` on the raw rows X (n, d), checked as scikit-learn checks
        them, under the estimator's threads."""
        check_is_fitted(self)
        X = validate_data(self, plain_dtypes(X), reset=False, dtype=None, ensure_all_finite=False)
        with own_threads(getattr(self, "n_jobs", None)):
            return getattr(self.predictor_, method)(X, **kwargs)

    def export(self, path: str | os.PathLike) -> None:
        """Write the fitted estimator (encoder, children, what its predictions need) to one
        pickle-free .npz file; `mothernet_jax.load_predictor(path)` predicts the same with NumPy
        alone."""
        check_is_fitted(self)
        self.predictor_.save(path)

    # -- parameters ------------------------------------------------------------------------------

    def _check_parameters(self) -> None:
        """ValueError, in one line naming the parameter, for the first invalid one (`PARAMETER_CHECKS`)."""
        params = self.get_params(deep=False)
        for name, check in PARAMETER_CHECKS.items():
            if name in params:
                check(params[name])

    def _check_model(self, config) -> None:
        if is_regression(config) != (self._task == "regression"):
            raise ValueError(self._wrong_task.format(weights=weights_name(self.weights)))

    def _categorical_mask(self, n_features: int) -> np.ndarray:
        return categorical_mask(
            self.categorical_features, n_features, getattr(self, "feature_names_in_", None)
        )
