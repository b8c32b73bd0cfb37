"""MotherNetRegressor: the scikit-learn regressor around `generate` for a regression model, with a
batched ensemble; `MotherNetEstimator` (`estimator.base`) holds what it shares with the classifier.

    from mothernet_jax import MotherNetRegressor
    reg = MotherNetRegressor(weights="small-regression").fit(X_train, y_train)
    y_pred = reg.predict(X_test)
    reg.export("model.npz")                     # NumPy-only: mothernet_jax.load_predictor(...).predict

`fit` resolves `weights=` (a model whose `ModelConfig.task` is "regression"; None: the shipped
`small-regression` weights where the package has them), encodes the table as the classifier does
(`runtime.encoding`), plans the members (`estimator.plan.plan_regression_members`: rows stratified
by quantile bins of the target, columns as the classifier's members), standardises the target over
each member's rows, generates the children in bounded chunks (`estimator.member_generation`),
optionally fine-tunes them on the squared error (`estimator.finetune`, loss="mse"), optionally refits
their read-out by ridge regression on all training rows (`estimator.output_layer`), and keeps them in
a `runtime.predictor.RegressionPredictor`, which maps each member's output back to y's scale and averages
the members.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin

from mothernet_jax import settings
from mothernet_jax.estimator import schedule
from mothernet_jax.estimator.base import MotherNetEstimator
from mothernet_jax.estimator.fitting import TrainingTable
from mothernet_jax.estimator.member_generation import member_target_scales
from mothernet_jax.estimator.output_layer import ridge_output_layers
from mothernet_jax.estimator.plan import MemberPlan, plan_regression_members
from mothernet_jax.pretrained import REGRESSION_NAME, shipped_path
from mothernet_jax.runtime.predictor import RegressionPredictor


class MotherNetRegressor(RegressorMixin, MotherNetEstimator):
    """MotherNet as a scikit-learn regressor: an ensemble of generated MLPs with one output unit.

    Settings marked "auto" take what the weight file recommends in its manifest (the key of the same
    name), else the library's default (`mothernet_jax.settings`); ``settings_`` says what fit used.

    Parameters
    ----------
    weights : None, path, Weights or (params, ModelConfig)
        A regression model (`ModelConfig.task == "regression"`, e.g. the `tiny-regression` or
        `small-regression` presets; a shipped name, "small-regression", finds the shipped file).
        None: the shipped weights,
        `mothernet_jax/pretrained/small-regression.msgpack`, where the package has them (else one
        line saying so).
    n_estimators : int or "auto"
        Ensemble members (library default 4). Member 0 reads the raw numeric columns and ordinal
        categorical codes in their order; members 1, 2, ... cycle through quantile transform on/off x
        one-hot/ordinal categorical codes and draw a cyclic rotation of their columns, as the
        classifier's members (there is no label shift). Generated in jitted calls of a fixed size.
    random_state : int, RandomState or None
        Seeds the member draws and subsamples.
    max_train_rows : int, None or "auto"
        Context rows: with more training rows, each member reads its own subsample of this many rows,
        stratified by 10 quantile bins of the target (library default 256). None: no limit (fit
        checks the memory first, as the classifier's).
    categorical_features : "auto", bool mask, indices or column names
        As `MotherNetClassifier`'s.
    finetune_steps, finetune_learning_rate, finetune_layers, finetune_rows, finetune_holdout, finetune_pool
        As `MotherNetClassifier`'s, with the squared error of the member-standardised target as the
        loss (finetune_pool's sample stratified by the target's deciles).
    output_layer : "generated", "refit", "refit_prior" or "auto"
        "generated": the children as generated (and fine-tuned). "refit" (library default): after
        that, each child's read-out is refitted in closed form, the ridge regression of its
        member-standardised target on its last hidden layer and its standardised inputs over every
        training row, the penalty chosen by generalised cross-validation (`estimator.output_layer`);
        one pass over the rows, no optimiser steps. "refit_prior": the ridge penalty pulls toward
        the generated read-out instead of toward zero (GCV chooses how far).
    n_jobs : int or None, default None
        Threads of the NumPy and scikit-learn work inside fit and predict, as
        `MotherNetClassifier`'s (None: one; restored after the call).

    The "auto" settings from 2,000 training rows (`estimator.schedule`, measured in
    docs/SCALE.md, "The row schedule's map"): the children are fine-tuned on a large sample of the rows
    before the read-out is refitted, as the classifier's beyond 10,000; a setting given
    explicitly (finetune_steps=0) wins.

    The target: numeric, finite, at least 2 rows (ValueError in one line otherwise). Each member
    standardises it over its own rows (mean 0, std 1); its child predicts that, and `predict` maps
    every member back (times the member's std, plus its mean, in float64) and averages them. A
    constant target (a cross-validation fold can hold one) is predicted exactly, for every row, with
    a predictive std of 0, as scikit-learn's regressors do.

    The first fit of a process turns on a persistent compilation cache, as the classifier's
    (`estimator.compile_cache`; MOTHERNET_JAX_COMPILATION_CACHE=0 turns it off).

    Attributes: n_features_in_, feature_names_in_ (pandas input), categorical_features_ (bool
    mask), settings_, finetune_steps_, ensemble_ (one dict per member), predictor_ (the
    `runtime.predictor.RegressionPredictor` that predict runs and `export` writes).
    """

    _settings = settings.REGRESSOR
    _schedule = schedule.REGRESSOR
    _task = "regression"
    _wrong_task = (
        "{weights} are a classification model; MotherNetRegressor needs a regression model "
        "(ModelConfig.task='regression')"
    )
    _plan_fields = ("quantile", "onehot", "feature_shift")

    # -- fit: what differs from the classifier's ---------------------------------------------------

    def _default_weights(self):
        shipped = shipped_path(REGRESSION_NAME)
        if self.weights is None and not shipped.exists():
            raise ValueError(
                "MotherNetRegressor needs weights=: no regression weights are shipped with this package "
                f"({shipped.name}; a file, or (params, config) of a model with task='regression')"
            )
        return shipped

    def _check_target(self, y) -> None:
        check_target(y)

    @staticmethod
    def _targets(y) -> np.ndarray:
        """Validated y as float64; ValueError in one line for fewer than 2 rows."""
        y = np.asarray(y, dtype=np.float64)
        if len(y) < 2:
            raise ValueError(f"MotherNetRegressor needs at least 2 training rows; got n_samples={len(y)}")
        return y

    def _plan(self, table: TrainingTable) -> list[MemberPlan]:
        return plan_regression_members(
            table.encoder,
            table.encoded,
            table.targets,
            n_estimators=table.chosen["n_estimators"],
            max_train_rows=table.chosen["max_train_rows"],
            max_features=table.config.max_features,
            rng=table.rng("plan"),
            finetune_pool=table.chosen["finetune_pool"] if table.chosen["finetune_steps"] else None,
        )

    def _read_out(self, table: TrainingTable, plans: list[MemberPlan], children: list) -> RegressionPredictor:
        y, output_layer = table.targets, table.chosen["output_layer"]
        target_mean, target_std = member_target_scales(y, plans)
        member_errors = None
        if settings.is_refit(output_layer):
            children, member_errors = ridge_output_layers(
                children, table.encoded, [p.columns for p in plans], y, target_mean, target_std,
                prior=output_layer == "refit_prior",
            )  # fmt: skip
        constant = np.ptp(y) == 0
        if constant:  # every member's rows hold the one value: scaled by 0, each predicts it exactly
            target_std = np.zeros_like(target_std)
        predictor = RegressionPredictor(
            children,
            target_mean=target_mean,
            target_std=target_std,
            encoder=table.encoder,
            columns=[p.columns for p in plans],
            feature_names=table.feature_names,
        )
        if member_errors is not None:
            predictor.predictive_std = (
                0.0
                if constant
                else ensemble_error(member_errors, predictor.member_predictions(table.encoded))
            )
        return predictor

    # -- predict ---------------------------------------------------------------------------------

    def predict(self, X, return_std: bool = False):
        """X: (n, d) raw rows -> (n,) float64 predictions of y, the members' average.

        return_std (needs output_layer="refit"): also (n,) the predictive standard deviation, the
        same for every row: the ensemble's estimated prediction error (`ensemble_error`: each
        member's read-out's leave-one-out error estimate, the square root of its GCV score, less
        the members' spread). The Gaussian interval mean +- 1.645 std is a 90% prediction interval
        (docs/REGRESSION.md measures its coverage)."""
        return self._predict_with("predict", X, return_std=return_std)


def ensemble_error(member_errors: np.ndarray, member_predictions: np.ndarray) -> float:
    """The ensemble mean's estimated prediction error from its members' (member_errors (members,),
    each a leave-one-out estimate) by the ambiguity decomposition (Krogh and Vedelsby 1995): the
    mean's squared error is the members' mean squared error less their mean squared spread around
    it, the spread measured on the training rows (member_predictions (members, n)). At least a
    tenth of the members' mean squared error, so a poor spread estimate cannot make it vanish."""
    squared = float(np.mean(np.square(member_errors)))
    return float(np.sqrt(max(squared - float(member_predictions.var(axis=0).mean()), 0.1 * squared)))


def check_target(y) -> None:
    """ValueError, in one line, unless y holds numbers and only finite ones (a list, NumPy, a pandas
    Series of any dtype); shapes are left to scikit-learn's checks."""
    if y is None:
        raise ValueError("MotherNetRegressor requires y to be passed, but the target y is None")
    values = y.to_numpy() if hasattr(y, "to_numpy") and hasattr(y, "dtype") else np.asarray(y)
    values = values.reshape(-1)
    if values.dtype.kind == "c":
        raise ValueError("Complex data not supported: y holds complex numbers; a regressor needs real ones")
    if values.dtype.kind not in "biuf":
        try:
            values = values.astype(np.float64)
        except (TypeError, ValueError):
            bad = next((v for v in values.tolist() if not _is_number(v)), values[0] if values.size else None)
            raise ValueError(
                f"y must be numeric for a regressor; it holds {bad!r} (dtype {values.dtype})"
            ) from None
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        raise ValueError(
            f"y contains {int((~finite).sum())} non-finite values (NaN or inf) of {values.size}, the first "
            f"in row {int(np.flatnonzero(~finite)[0])}: drop those rows"
        )


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
