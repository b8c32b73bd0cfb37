"""MotherNetClassifier: the scikit-learn classifier around `generate`, with a batched ensemble.

    from mothernet_jax import MotherNetClassifier
    clf = MotherNetClassifier().fit(X_train, y_train)      # shipped weights, their settings
    proba = clf.predict_proba(X_test)
    clf.export("model.npz")                                 # NumPy-only: mothernet_jax.load_predictor

`fit` is `MotherNetEstimator`'s (`estimator.base`): it resolves `weights=` (`estimator.weights`),
encodes the table (`runtime.encoding`), plans the members (`estimator.plan.plan_members`),
generates their children in jitted calls of a fixed number of members
(`estimator.member_generation`: memory stays bounded whatever the number of classes), optionally
fine-tunes them with Adam, refits their read-out by logistic regression (`estimator.output_layer`)
and keeps them as NumPy arrays in a `runtime.predictor.ClassificationPredictor`. `predict_proba` is that predictor: the
same NumPy code runs in the estimator and in an exported file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from mothernet_jax import settings
from mothernet_jax.estimator import schedule
from mothernet_jax.estimator.base import MotherNetEstimator
from mothernet_jax.estimator.fitting import TrainingTable
from mothernet_jax.estimator.output_layer import logistic_output_layers
from mothernet_jax.estimator.plan import MemberPlan, plan_members
from mothernet_jax.runtime.encoding import missing_mask
from mothernet_jax.runtime.predictor import ClassificationPredictor

# -- the estimator ----------------------------------------------------------------------------------


class MotherNetClassifier(ClassifierMixin, MotherNetEstimator):
    """MotherNet as a scikit-learn classifier: an ensemble of generated MLPs, no training loop.

    Settings marked "auto" take what the weight file recommends in its manifest (the key of the same
    name), else the library's default (`mothernet_jax.settings`); ``settings_`` says what fit used.
    The shipped weights' recommendations, and the measurements they come from:
    docs/FAST_DEFAULTS.md.

    Parameters
    ----------
    weights : None, path, Weights or (params, ModelConfig)
        None: the shipped weights (`mothernet_jax.pretrained`); a path: a weight file (a shipped
        name, "small", finds the shipped file); or a params pytree with its config, best as `mothernet_jax.Weights` (what `load_pretrained` returns),
        which prints in one short line and is shared, not copied, by `sklearn.clone`. A regression
        model's weights (task="regression") are refused in one line: use `MotherNetRegressor`.
    n_estimators : int or "auto"
        Ensemble members (library default 4, each of at most 256 context rows). Member 0 is the reference configuration (no
        rotation, no label shift, raw numeric columns, ordinal categorical codes), so ``n_estimators=1`` is the reference
        ``MotherNetClassifier`` (plus the limits below). Members 1, 2, ... cycle through quantile
        transform on/off x one-hot/ordinal categorical codes, and each draws a cyclic rotation of its
        columns and a shift of the class labels (mod k). Members are generated in jitted calls of a
        fixed size (`estimator.member_generation.MEMBER_ROWS_PER_CALL`: 8,192 padded context rows a
        call, so the default 4 members of 256 rows take one call), so peak memory does not grow with the number of members or classes and fit time grows
        linearly with them.
    random_state : int, RandomState or None
        Seeds the member draws and subsamples; the same seed gives the same classifier.
    temperature : float, default 0.8
        predict_proba = softmax(logits / temperature), averaged over the members, for children as
        generated (output_layer="generated"). With output_layer="refit" (the shipped weights' and the
        library's default) the read-out is fitted to the training labels at this temperature, so
        the probabilities do not depend on it; it then only scales the fine-tuning's loss
        (finetune_steps > 0). Any positive real number (NumPy's too).
    max_train_rows : int, None or "auto"
        Context rows: with more training rows, each member reads its own stratified subsample of
        this many rows (every class kept; library default 256). Attention costs rows squared.
        None: no limit (about 17 GiB for 20,000 rows with the shipped weights); fit estimates the
        memory first and raises a MemoryError naming this setting when it exceeds what is available.
    categorical_features : "auto", bool mask, indices or column names
        "auto": the columns holding a value that is not a number, whatever their storage: numbers
        stored as text ("3.5", as from some CSV readers) are numbers, and so are dates and times
        (datetime dtypes or objects; seconds since 1970-01-01 UTC) and durations (seconds); the
        pandas category dtype is categorical, and so is a text or object column whose training
        values are all missing. Any mix of pandas dtypes works (nullable, category, string,
        datetimes with a time zone, ...). Listing a datetime column here keeps its dates as
        levels. Levels are encoded as ordinal codes, or one-hot (columns of at most 10 levels) in
        the one-hot members. A level not seen in training is treated as missing. A categorical
        column with nearly one level per row (an identifier, or dates stored as text) gets a
        warning that names it: its levels cannot generalise to new rows.
    multiclass : "auto", "native" or "one_vs_rest"
        How a task with k > 2 classes is put to the model (library default "native"). "native": every
        member sees all k classes (up to 10; groups of classes above, see below), so fit costs the
        same at any k. "one_vs_rest": k binary tasks, each class against the others,
        ``n_estimators`` members per class (k times the members, so fit and predict cost k times
        as much, unless ``max_members`` caps them); a class's probability is its members' "this
        class" probability plus the share of the other members' "other classes" probability.
    max_members : int, None or "auto"
        With one-vs-rest, at most this many members in all (library default None: no cap): each
        class gets min(n_estimators, max_members // k) members, at least one, and where k exceeds
        max_members the classes are put natively; so fit and predict cost at most max_members
        members whatever the number of classes.
    finetune_steps : int or "auto"
        After generation, at most this many Adam steps on each child's cross-entropy over its
        member's training rows ("MotherNet + gradient descent"), vmapped over the members of each
        generation call (library default 0: the children as generated).
    finetune_learning_rate : float or "auto"
        Adam's step size (library default 1e-3, the reference's).
    finetune_layers : "all", "output" or "auto"
        Which layers change (library default "all"); "output": the last layer only, a convex
        problem on the child's fixed hidden features, cheaper and slower to overfit. "output" with
        fine-tuning steps and output_layer="refit" is refused (ValueError): the refit would replace
        the fine-tuned read-out.
    finetune_rows : int, None or "auto"
        About this many of the member's rows, drawn at random, per step (library default None:
        all of them).
    finetune_holdout : float in [0, 0.5] or "auto"
        Early stopping: this share of each member's rows is kept out of the fine-tuning and scored
        every 5 steps; the child keeps its best (the child as generated included) and stops after
        20 steps without a better one. 0 (library default): no early stopping.
    finetune_pool : int, None or "auto"
        The rows each member's fine-tuning fits and holds out from: its own stratified sample of
        this many training rows (all of them where there are fewer). None (library default): its
        context rows (`max_train_rows`).
    output_layer : "generated", "refit", "refit_prior" or "auto"
        "generated": the children as generated (and fine-tuned). "refit" (library default): after
        that, each child's read-out is refitted on every training row: L2 logistic regression of
        every class (whatever class group the member was generated for) on its last hidden layer
        and its standardised inputs (`estimator.output_layer`; the child gains a linear `skip`
        read-out of its inputs); beyond 20,000 rows solved over row blocks from a stratified
        subsample's solution. "refit_prior": the same with the penalty pulling the read-out toward
        the generated one (||w - w_generated||^2) instead of toward zero: few rows trust the
        hypernetwork, many the data (measured against "refit" in docs/FAST_DEFAULTS.md).
    n_jobs : int or None, default None
        Threads of the NumPy, SciPy and scikit-learn work inside fit and predict (the BLAS and
        OpenMP pools, limited with threadpoolctl for the call and restored after it), as
        scikit-learn's n_jobs: None one, -1 every core, -2 all but one. One is the fastest on a
        shared or busy machine (the read-out's small products spend more time waiting for threads
        than computing: docs/FAST_DEFAULTS.md, "Threads"). XLA's pool, which generates the
        children, is sized when JAX starts (one thread per core; PJRT_NPROC sets it).

    The "auto" settings beyond 10,000 training rows (`estimator.schedule`, measured in
    docs/SCALE.md, "The row schedule's map"): the children are fine-tuned on a large sample of the rows
    (300 steps of 512 rows from each member's 8,192, a fifth held out to stop early, step size
    3e-3) before the read-out is refitted; a setting given explicitly (finetune_steps=0) wins.

    The model's limits, handled per member:

    - more than ``max_features`` (100) encoded columns: the member keeps the 50 with the highest
      ANOVA F-score and 50 drawn at random from the rest;
    - more than ``max_classes`` (10) classes: the member sees at most 10 groups of classes (an
      error-correcting output code: a random permutation pi of the classes, class c in group
      pi(c) mod m with m in 10, 9, 7, 8, one round of members for every permutation, so that every
      pair of classes is separated by some member; n_estimators is raised to one round, 2 members
      up to 90 classes). With the refitted read-out (the default) each member's read-out then
      predicts every class from the features generated for its groups; with
      output_layer="generated" a member's group probability is shared evenly by the group's
      classes. Members are averaged, so the probabilities of all classes sum to one;
    - missing values: numeric NaN is imputed with the training mean of the encoded column (the
      convention the hypernetwork was meta-trained with: NaN -> 0 after standardisation), and
      where the member has room left under 100 columns it also reads a "was missing" indicator
      for each of its numeric columns that had missing training values; categorical missing
      values are a level of their own. Infinite values, and numbers beyond float32's range
      (|x| > 3.4e38, which the model computing in float32 would see as inf), raise ValueError
      naming the column; so does a missing label in y.

    The first fit of a process turns on a persistent compilation cache for the whole process
    (`estimator.compile_cache`: JAX's cache folder and minimum compile time, each unless you set
    it); MOTHERNET_JAX_COMPILATION_CACHE=0 in the environment turns it off.

    Attributes: classes_, n_features_in_, feature_names_in_ (pandas input), categorical_features_
    (bool mask), settings_ (every "auto" setting as fit resolved it), multiclass_ ("native" or
    "one_vs_rest": what fit did), finetune_steps_ (the step limit fit used), ensemble_ (one dict per member: what it reads), predictor_ (the `runtime.predictor.ClassificationPredictor` that predict_proba runs and `export`
    writes).
    """

    _settings = settings.CLASSIFIER
    _schedule = schedule.CLASSIFIER
    _task = "classification"
    _wrong_task = (
        "{weights} are a regression model (ModelConfig.task='regression'): use MotherNetRegressor with them"
    )
    _plan_fields = ("n_groups", "quantile", "onehot", "feature_shift", "label_shift")

    def __init__(
        self,
        weights=None,
        *,
        n_estimators: int | str = "auto",
        random_state=None,
        temperature: float = 0.8,
        max_train_rows: int | None | str = "auto",
        categorical_features="auto",
        multiclass: str = "auto",
        finetune_steps: int | str = "auto",
        finetune_learning_rate: float | str = "auto",
        finetune_layers: str = "auto",
        finetune_rows: int | None | str = "auto",
        finetune_holdout: float | str = "auto",
        max_members: int | None | str = "auto",
        output_layer: str = "auto",
        finetune_pool: int | None | str = "auto",
        n_jobs: int | None = None,
    ):
        super().__init__(
            weights, n_estimators=n_estimators, random_state=random_state, max_train_rows=max_train_rows,
            categorical_features=categorical_features, finetune_steps=finetune_steps,
            finetune_learning_rate=finetune_learning_rate, finetune_layers=finetune_layers,
            finetune_rows=finetune_rows, finetune_holdout=finetune_holdout, output_layer=output_layer,
            finetune_pool=finetune_pool, n_jobs=n_jobs,
        )  # fmt: skip
        self.temperature = temperature
        self.multiclass = multiclass
        self.max_members = max_members

    # -- fit: what differs from the regressor's ----------------------------------------------------

    def _check_target(self, y) -> None:
        reject_missing_labels(y)

    @staticmethod
    def _targets(y) -> tuple[np.ndarray, np.ndarray]:
        """(classes, y's codes in them) of validated labels; ValueError in one line for fewer than 2."""
        check_classification_targets(y)
        classes, y_codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            only = _as_python(classes[0])
            raise ValueError(f"MotherNetClassifier needs at least 2 classes; y has 1 class ({only!r})")
        return classes, y_codes

    def _plan(self, table: TrainingTable) -> list[MemberPlan]:
        classes, y_codes = table.targets
        strategy, n_estimators = member_budget(len(classes), table.chosen)
        table.chosen["multiclass"] = strategy  # settings_ says what fit did
        return plan_members(
            table.encoder,
            table.encoded,
            y_codes,
            n_classes=len(classes),
            n_estimators=n_estimators,
            max_train_rows=table.chosen["max_train_rows"],
            max_features=table.config.max_features,
            max_classes=table.config.max_classes,
            rng=table.rng("plan"),
            one_vs_rest=strategy == "one_vs_rest",
            finetune_pool=table.chosen["finetune_pool"] if table.chosen["finetune_steps"] else None,
        )

    def _generate(self, table: TrainingTable, plans: list[MemberPlan]) -> tuple[list, Any]:
        return table.generate(table.targets[1], plans, temperature=float(self.temperature))

    def _read_out(self, table: TrainingTable, plans: list[MemberPlan], children: list) -> ClassificationPredictor:
        classes, y_codes = table.targets
        temperature = float(self.temperature)
        groups = [p.groups for p in plans]
        output_layer = table.chosen["output_layer"]
        if settings.is_refit(output_layer):  # every member's read-out predicts every class
            children = logistic_output_layers(
                children,
                table.encoded,
                [p.columns for p in plans],
                y_codes,
                len(classes),
                temperature=temperature,
                rng=table.rng("read_out"),
                prior_groups=groups if output_layer == "refit_prior" else None,
            )
            groups = [np.arange(len(classes)) for _ in plans]
        self.classes_ = classes
        self.multiclass_ = table.chosen["multiclass"]
        return ClassificationPredictor(
            children,
            classes=classes,
            temperature=temperature,
            encoder=table.encoder,
            columns=[p.columns for p in plans],
            groups=groups,
            feature_names=table.feature_names,
        )

    # -- predict ---------------------------------------------------------------------------------

    def predict_proba(self, X) -> np.ndarray:
        """X: (n, d) raw rows -> (n, n_classes) probabilities (in the order of classes_)."""
        return self._predict_with("predict_proba", X)

    def predict(self, X) -> np.ndarray:
        """X: (n, d) raw rows -> (n,) the most probable class of each row."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def member_budget(n_classes: int, chosen: dict) -> tuple[str, int]:
    """(strategy, members per class for one-vs-rest else members) for k classes: one-vs-rest gives
    every class n_estimators members, at most max_members in all (at least one a class), and puts
    the classes natively where k exceeds max_members."""
    strategy, n_estimators, cap = chosen["multiclass"], chosen["n_estimators"], chosen["max_members"]
    if n_classes <= 2:
        return "native", n_estimators
    if strategy == "one_vs_rest" and cap is not None:
        if n_classes > cap:
            return "native", n_estimators
        return strategy, max(1, min(n_estimators, cap // n_classes))
    return strategy, n_estimators


def reject_missing_labels(y) -> None:
    """ValueError, in one line, if y holds a missing label (None, NaN, pandas NA or NaT), whatever
    its storage (a list, NumPy, a pandas Series of any dtype); scikit-learn's own checks would
    fail later with a TypeError comparing None with str, or "boolean value of NA is ambiguous"."""
    values = y.to_numpy() if hasattr(y, "to_numpy") and hasattr(y, "dtype") else np.asarray(y)
    if values.ndim == 0 or values.dtype.kind not in "fcmMO":
        return
    missing = missing_mask(values.reshape(-1))
    if missing.any():
        raise ValueError(
            f"y contains missing labels ({int(missing.sum())} of {missing.size}, the first in row "
            f"{int(np.flatnonzero(missing)[0])}): drop those rows, or give them a label"
        )


def _as_python(value):
    """A NumPy scalar as the Python value it holds (np.int64(0) -> 0), for messages."""
    return value.item() if isinstance(value, np.generic) else value
