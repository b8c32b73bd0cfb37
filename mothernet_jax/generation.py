"""generate(params, X, y): the reference preprocessing and the one forward pass, returning a child.

(The module is `generation`, not `generate`, so that `mothernet_jax.generate` stays the function.)

One implementation, three entry points, each a pure JAX function (jit, vmap and grad them):

- `generate_layers(params, x, y, n_rows, config=)`: the hypernetwork on inputs already
  preprocessed and padded (what the prior produces and the training loss uses); the child's layers
  come out in the padded input space.
- `generate_batch(params, X, y, n_rows, n_features)`: raw datasets padded to common shapes
  (B, T, F); applies the reference preprocessing and folds it into the children. This is the
  implementation; it stays a name of its own for callers that hold padded batches and for
  `factored=True` (the classifier), and it equals `jax.vmap(generate)` with the padding arguments
  and `n_classes=max_classes` (tests check that).
- `generate(params, X, y)`: one raw dataset (n, d): `generate_batch` on a batch of one, with the
  checks a user needs and the child cut to its classes. From concrete inputs it pads rows to a
  bucket of 128 (similar sizes share one compiled function); traced, it runs as it is.

`config=` is optional in the last two: left out, it is recovered from the params' names and shapes
(`model.identify.config_of`: a preset's or a shipped weight file's config), which works on tracers
too; params of any other config need `config=`.

Regression (a model whose `ModelConfig.task` is "regression", e.g. the `tiny-regression` and
`small-regression` presets): y is a float target (n,). `generate` standardises it itself over the
training rows, z = (y - mean) / std (mean and unbiased std, ddof 1 as the regression prior, of the
first n_rows values: `standardise_target`), and the hypernetwork reads z. The child it emits
predicts z with ONE output unit, but its output layer comes back already mapped to y's scale:
W_out * std, b_out * std + mean. So the returned `Child` predicts y in y's own units, nothing to map
back: `predict_regression(child, X)` (`model.child`; or `child_logits(child, X)[:, 0]`, or
`runtime.child.numpy_predict_regression` without JAX) gives (n,) predictions of y. A constant target (std 0,
one row included) gives a child that predicts that constant exactly. The training loss
(train/step.py) works in standardised units and calls `generate_layers` with z directly (the prior
standardises its targets). To get standardised predictions from a returned child, compute
(prediction - mean) / std with the training rows' mean and std (`standardise_target` returns them).
The arithmetic is float32: standardise y beforehand (the estimator does, per member) when its mean
is large against its spread.
"""

from __future__ import annotations

import functools
import operator
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from mothernet_jax.config import ModelConfig
from mothernet_jax.model.identify import resolve_config
from mothernet_jax.model.mothernet import MotherNet
from mothernet_jax.model.read_out import fit_child
from mothernet_jax.model.weight_head import Layer, child_layers
from mothernet_jax.runtime.checks import reject_beyond_float32
from mothernet_jax.runtime.child import CLIP, DEFAULT_TEMPERATURE, Child

ROW_BUCKET = 128  # training rows are padded to a multiple of this
READ_OUTS = ("logistic", "ridge", "generated")  # generate's read_out
STD_EPS = 1e-6  # added to the nan-std, as the reference


def bucket_rows(n: int, bucket: int = ROW_BUCKET) -> int:
    """The padded row count for n training rows."""
    return max(bucket, -(-n // bucket) * bucket)


def generate_layers(
    params,
    x: jax.Array,
    y: jax.Array,
    n_rows: jax.Array,
    *,
    config: ModelConfig,
    attention: str | None = None,
    factored: bool = False,
) -> list[Layer]:
    """The child's layers for preprocessed, padded datasets.

    x: (B, T, max_features) float, y: (B, T) int (regression: float, standardised over the
    training rows), n_rows: (B,) int (rows >= n_rows are padding).
    Returns [(W1 (B, F, P), b1 (B, P)), ..., (W_out (B, P, K), b_out (B, K))], float32; with
    factored=True a low-rank weight is its factors (A (B, in, r), S (B, r, P)) (`child_layers`).
    """
    out = MotherNet(config, attention).apply({"params": params}, x, y, n_rows)
    return child_layers(out.generated, out.shared, config, factored=factored)


def standardise(
    X: jax.Array, n_rows: jax.Array, n_features: jax.Array, config: ModelConfig
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The reference preprocessing on padded raw datasets.

    X: (B, T, F) raw (NaN allowed), n_rows, n_features: (B,) int. Returns the transformer input
    (B, T, max_features): standardised with the training rows' nan-mean and nan-std (ddof 1) + 1e-6,
    clipped to +-100, times 100 / n_features, missing entries and padding 0; and mean, std: (B, F).
    A column with at most one observed value gets mean 0 and std inf, so it contributes nothing (as
    NaN would). Padding and missing entries never enter an arithmetic operation, so gradients stay
    finite whatever they hold (NaN, inf); a constant column gets a zero gradient through its std.
    """
    batch, rows, features = X.shape
    row_mask = (jnp.arange(rows)[None, :] < n_rows[:, None])[..., None]
    feature_mask = (jnp.arange(features)[None, :] < n_features[:, None])[:, None, :]
    observed = row_mask & feature_mask & ~jnp.isnan(X)
    X = jnp.where(observed, X, 0.0)
    count = observed.sum(axis=1)
    mean = X.sum(axis=1) / jnp.maximum(count, 1)
    sq = jnp.where(observed, (X - mean[:, None, :]) ** 2, 0.0).sum(axis=1)
    var = sq / jnp.maximum(count - 1, 1)
    spread = var > 0  # sqrt has no derivative at 0
    std = jnp.where(spread, jnp.sqrt(jnp.where(spread, var, 1.0)), 0.0) + STD_EPS
    degenerate = count <= 1
    mean = jnp.where(degenerate, 0.0, mean)
    std = jnp.where(degenerate, jnp.inf, std)
    z = jnp.clip((X - mean[:, None, :]) / std[:, None, :], -CLIP, CLIP)
    scale = (config.max_features / jnp.maximum(n_features, 1)).astype(jnp.float32)
    z = jnp.where(observed, z * scale[:, None, None], 0.0)  # NaN -> 0, as the x encoder does
    z = jnp.pad(z, ((0, 0), (0, 0), (0, config.max_features - features)))
    return z, mean, std


def standardise_target(y: jax.Array, n_rows: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A regression target standardised over the training rows.

    y: (B, T) float (anything beyond n_rows, NaN and inf included, is ignored), n_rows: (B,) int.
    Returns z (B, T) = (y - mean) / std on the training rows (0 elsewhere), and mean, std (B,): the
    mean and the unbiased std (ddof 1, as the regression prior standardises) of the first n_rows
    values. A constant target (one row included) has std 0 and z 0 (gradients stay finite: sqrt
    and the division never see 0).
    """
    row_mask = jnp.arange(y.shape[1])[None, :] < n_rows[:, None]
    y = jnp.where(row_mask, y.astype(jnp.float32), 0.0)
    count = row_mask.sum(axis=1).astype(jnp.float32)
    mean = y.sum(axis=1) / jnp.maximum(count, 1.0)
    var = jnp.where(row_mask, (y - mean[:, None]) ** 2, 0.0).sum(axis=1) / jnp.maximum(count - 1.0, 1.0)
    spread = var > 0
    std = jnp.where(spread, jnp.sqrt(jnp.where(spread, var, 1.0)), 0.0)
    z = jnp.where(row_mask, (y - mean[:, None]) / jnp.where(spread, std, 1.0)[:, None], 0.0)
    return z, mean, std


def generate_batch(
    params,
    X: jax.Array,
    y: jax.Array,
    n_rows: jax.Array,
    n_features: jax.Array,
    *,
    config: ModelConfig | None = None,
    attention: str | None = None,
    factored: bool = False,
) -> Child:
    """Children for many raw datasets in one call (pure; jit and vmap it freely).

    X: (B, T, F) raw features, F <= max_features, padded with anything beyond n_rows / n_features;
    y: (B, T) int labels in 0..max_classes-1 (clipped into it); regression: float targets, raw
    (standardised here, and the output layer mapped back: see the module docstring); n_rows,
    n_features: (B,) int.
    Returns a batched `Child`: W1 (B, F, P) (rows beyond n_features are zero), ..., W_out (B, P, K)
    over all max_classes outputs (regression: W_out (B, P, 1), in y's units); mean, std (B, F) (0 and 1 beyond n_features). factored=True
    keeps each low-rank weight as its factors (A, S) (W1's A (B, F, r) carries the zero rows and
    the 100 / d scaling), for `runtime.child.factored_logits`: cheaper per row when r (in + P) < in x P.
    config: left out, recovered from the params' shapes (`model.identify.config_of`). No checks of
    values: `generate` is the checked call, and `jax.vmap(generate)` computes the same children.
    """
    config = resolve_config(params, config)
    X = X.astype(jnp.float32)
    z, mean, std = standardise(X, n_rows, n_features, config)
    regression = config.task == "regression"
    if regression:
        y, y_mean, y_std = standardise_target(y, n_rows)
    else:
        row_mask = jnp.arange(X.shape[1])[None, :] < n_rows[:, None]
        y = jnp.where(row_mask, jnp.clip(y, 0, config.max_classes - 1), 0).astype(jnp.int32)
    layers = generate_layers(params, z, y, n_rows, config=config, attention=attention, factored=factored)
    if regression:  # the output unit predicts z: map it to y's scale, y = z * std + mean
        w_out, b_out = layers[-1]
        layers = [*layers[:-1], (w_out * y_std[:, None, None], b_out * y_std[:, None] + y_mean[:, None])]
    (w1, b1), rest = layers[0], layers[1:]
    features = X.shape[2]
    feature_mask = jnp.arange(features)[None, :] < n_features[:, None]
    scale = (config.max_features / jnp.maximum(n_features, 1)).astype(jnp.float32)
    rows = jnp.where(feature_mask, scale[:, None], 0.0)[..., None]  # (B, F, 1): zero rows, 100 / d
    if isinstance(w1, tuple):
        w1 = (w1[0][:, :features] * rows, w1[1])
    else:
        w1 = w1[:, :features] * rows
    mean = jnp.where(feature_mask, mean, 0.0)
    std = jnp.where(feature_mask, std, 1.0)
    return Child(((w1, b1), *map(tuple, rest)), mean, std)


@functools.partial(jax.jit, static_argnames=("config", "attention"))
def generate_batch_jit(params, X, y, n_rows, n_features, *, config: ModelConfig, attention=None) -> Child:
    """`generate_batch` jitted with a static config (required here): the compiled core that
    `generate` calls on concrete inputs, one compilation per (config, row bucket, batch)."""
    return generate_batch(params, X, y, n_rows, n_features, config=config, attention=attention)


# -- the user-facing single-dataset call ------------------------------------------------------------


def _as_array(a):
    """An array-like as itself when it has a shape and dtype (NumPy, JAX, tracer), else NumPy."""
    return a if hasattr(a, "shape") and hasattr(a, "dtype") else np.asarray(a)


def _concrete(a) -> np.ndarray | None:
    """`a` as a NumPy array, or None when it is traced (inside jit, vmap, grad, ...)."""
    try:
        return np.asarray(a)
    except jax.errors.TracerArrayConversionError:
        return None


def check_shapes(X, y, config: ModelConfig) -> None:
    """The checks that read only shapes and dtypes, so they run on tracers too.

    Raises ValueError naming the problem: X not 2-D, y not 1-D, lengths differ, no rows, no
    features, more than max_features features, X not numeric, y neither integer nor float.
    """
    what = "targets" if config.task == "regression" else "labels"
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n_rows, n_features), got shape {X.shape}")
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of {what}, got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y must have the same number of rows, got {X.shape[0]} and {y.shape[0]}")
    if X.shape[0] == 0:
        raise ValueError("X has no rows: a training set needs at least one row")
    if X.shape[1] == 0:
        raise ValueError("X has no features")
    if X.shape[1] > config.max_features:
        raise ValueError(
            f"X has {X.shape[1]} features; this model takes at most {config.max_features} "
            "(MotherNetClassifier selects features for wider data)"
        )
    if not jnp.issubdtype(X.dtype, jnp.number) and X.dtype != bool:
        raise ValueError(f"X must be numeric, got dtype {X.dtype}")
    if not (jnp.issubdtype(y.dtype, jnp.integer) or jnp.issubdtype(y.dtype, jnp.floating)):
        if config.task == "regression":
            raise ValueError(f"y must hold numeric targets, got dtype {y.dtype}")
        raise ValueError(f"y must hold integer class labels 0..k-1, got dtype {y.dtype}")


def check_values(X: np.ndarray | None, y: np.ndarray | None, config: ModelConfig):
    """The checks that read values, on the concrete ones (None: traced, not checked here).

    X: (n, d) the real rows and features; y: (n,) their labels. Returns X as float32 and y as
    int32 (or None). Raises ValueError for infinite features, non-integer labels or labels outside
    0..max_classes-1 (and for finite values beyond float32's range, which would become inf). NaN is
    accepted in X. Regression: y must be finite (and within float32's range); returned as float32.
    """
    if X is not None:
        reject_beyond_float32(X)
        X = X.astype(np.float32)
    if y is not None and config.task == "regression":
        if not np.all(np.isfinite(y)):
            raise ValueError("y must hold finite targets, got NaN or inf")
        reject_beyond_float32(y)
        y = y.astype(np.float32)
    elif y is not None:
        if np.issubdtype(y.dtype, np.floating):
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise ValueError("y must hold integer class labels 0..k-1, got non-integer values")
        y = y.astype(np.int64)
        if y.min() < 0 or y.max() >= config.max_classes:
            raise ValueError(
                f"labels must lie in 0..{config.max_classes - 1}, got values from {y.min()} to {y.max()}"
            )
        y = y.astype(np.int32)
    return X, y


def _count(value, name: str, upper: int) -> tuple[jax.Array | int, int | None]:
    """A padding argument (n_rows or n_features): (as given, its int value or None when traced)."""
    if value is None:
        return upper, upper
    if np.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {np.shape(value)}")
    concrete = _concrete(value)
    if concrete is None:
        if not jnp.issubdtype(value.dtype, jnp.integer):
            raise ValueError(f"{name} must be an integer, got dtype {value.dtype}")
        return value, None
    if not np.issubdtype(concrete.dtype, np.integer):
        raise ValueError(f"{name} must be an integer, got {concrete!r}")
    count = int(concrete)
    if not 1 <= count <= upper:
        raise ValueError(f"{name}={count} must lie in 1..{upper} (the size of that axis of X)")
    return count, count


def valid_dataset(X, y, n_classes: int | None, *, n_rows=None, n_features=None) -> jax.Array:
    """Whether a (possibly traced) training set passes `generate`'s checks of values: a () bool.

    X: (n, d), y: (n,), n_rows / n_features as `generate` takes them (None: all). False when a
    real entry of X is infinite, or a real label is not an integer in 0..n_classes-1
    (n_classes=None: a regression target, which must be finite). A traced
    `generate` skips these checks (a check would make every function around it effectful, which
    costs each call of a jitted function the fast dispatch path); compute this beside it to mask
    a loss, or to check under `jax.experimental.checkify`:
    `checkify.check(valid_dataset(X, y, k), "bad training set")`.
    """
    X, y = jnp.asarray(X), jnp.asarray(y)
    n, d = X.shape
    rows = jnp.arange(n) < (n if n_rows is None else n_rows)
    columns = jnp.arange(d) < (d if n_features is None else n_features)
    finite = ~jnp.any(rows[:, None] & columns[None, :] & jnp.isinf(X))
    if n_classes is None:
        return finite & jnp.all(~rows | jnp.isfinite(y))
    labels = (y >= 0) & (y < n_classes)
    if jnp.issubdtype(y.dtype, jnp.floating):
        labels &= y == jnp.round(y)
    return finite & jnp.all(~rows | labels)


def generate(
    params,
    X,
    y,
    *,
    config: ModelConfig | None = None,
    n_classes: int | None = None,
    n_rows=None,
    n_features=None,
    attention: str | None = None,
    read_out: str = "logistic",
) -> Child:
    """Generate the child classifier (or regressor) for one training set, in one forward pass. A
    JAX function: jit it, vmap it over datasets of one shape, differentiate through it.

    X: (n, d) raw features, d <= max_features (NaN allowed); y: (n,) integer labels 0..k-1, or
    for a regression model (task="regression") float targets, finite, on any scale.
    Returns a `Child` that takes raw rows (d columns): layers W1 (d, P), ..., W_out (P, k), mean
    and std (d,). Regression: W_out (P, 1) with the output already in y's units (y standardised
    over the training rows inside, the output layer mapped back; see the module docstring):
    `predict_regression(child, X_test)` gives (n,) predictions of y.

    config: the params' `ModelConfig`; left out, it is recovered from the params' names and shapes
        (`model.identify.config_of`: the presets and the shipped weights' configs), which raises a
        ValueError asking for config= when that cannot be decided (any other config).
    n_classes: k, the child's outputs; a Python int (static); not for regression (one output). Left out: max(y) + 1 from concrete
        labels, but inside jit / vmap / grad (traced y) the labels are unknown, so the child has
        all max_classes outputs (10 for the shipped weights, whatever y holds) and a UserWarning
        says so: pass n_classes, e.g. ``jax.jit(lambda X, y: generate(params, X, y, n_classes=2))``.
    n_rows, n_features: optional padding, ints or traced int scalars: only the first n_rows rows
        and the first n_features columns are the dataset; what lies beyond is ignored (any value,
        NaN and inf included). The child keeps d columns: W1's rows beyond n_features are zero and
        their mean 0, std 1. So one compiled function serves datasets of many sizes, and
        `jax.vmap(generate)` over padded stacks computes what `generate_batch` does.
    attention: the `jax.nn.dot_product_attention` implementation (None: on CPU the same
        attention in the head-major form XLA fuses, `transformer.head_major_attention`; elsewhere
        JAX's choice).
    read_out: how the child's read-out is made. "logistic" (default): solved on the training rows
        (`model.read_out.fit_child`) as the estimators refit theirs, an L2 logistic regression (C = 1) of
        the classes over the child's last hidden layer and its standardised inputs, by unrolled
        Newton steps (one-vs-rest above two classes); the child gains a `skip` read-out of its
        inputs and its logits are stored times `predict_proba`'s default temperature, so that
        `predict_proba(child, X)` gives the fitted model's probabilities. "ridge": the same
        features, ridge regression to the one-hot classes in closed form (leave-one-out penalty and
        logit scale; the read-out of the meta-training loss `read_out="ridge"`). Both compose with
        jit, vmap and grad. A regression model's child gets the ridge read-out for either.
        "generated": the child exactly as the hypernetwork emits it (the reference implementation's).
        The default is the measured best (docs/FAST_DEFAULTS.md, "What the meta-learning adds"):
        on the 53 validation datasets mean AUC 0.7987 with the logistic read-out, 0.7954 with the
        ridge, 0.7062 as generated, against logistic regression's 0.8084 (and 0.8003 for the
        logistic read-out of an untrained hypernetwork's children).

    Checks: shapes always (ValueError: X 2-D, y 1-D, same length, 1 <= d <= max_features). Values
    (infinite features, labels not integers or outside 0..max_classes-1 or beyond n_classes) raise
    ValueError when concrete. Traced, they are skipped: float labels are rounded and labels
    clipped into 0..max_classes-1, and an infinite feature gives a non-finite child;
    `valid_dataset` computes them as a traced bool (to mask a loss, or for checkify). From
    concrete X, y (and padding), rows are padded to a multiple of 128 on the host, so datasets of
    similar size share one compiled function; traced, nothing leaves the device.
    """
    config = resolve_config(params, config)
    if read_out not in READ_OUTS:
        raise ValueError(f"read_out must be one of {', '.join(READ_OUTS)}, got {read_out!r}")
    X, y = _as_array(X), _as_array(y)
    check_shapes(X, y, config)
    n, d = X.shape
    regression = config.task == "regression"
    if regression and n_classes is not None:
        raise ValueError("n_classes is for classification: this model regresses (one output unit)")
    if n_classes is not None:
        try:
            n_classes = operator.index(n_classes)
        except TypeError:
            raise TypeError(
                f"n_classes must be a Python int (it fixes the child's shape), got {n_classes!r}"
            ) from None
        if not 1 <= n_classes <= config.max_classes:
            raise ValueError(f"n_classes={n_classes} must lie in 1..{config.max_classes}")
    n_rows, rows = _count(n_rows, "n_rows", n)
    n_features, features = _count(n_features, "n_features", d)
    X_host, y_host = _concrete(X), _concrete(y)
    X_real = None if X_host is None or rows is None or features is None else X_host[:rows, :features]
    y_real = None if y_host is None or rows is None else y_host[:rows]
    X_real, y_real = check_values(X_real, y_real, config)
    if not regression and y_real is not None and n_classes is not None and y_real.max() >= n_classes:
        raise ValueError(f"n_classes={n_classes} does not fit labels up to {y_real.max()}")

    if X_real is not None and y_real is not None:  # concrete: pad rows to a bucket on the host
        if regression:
            k = 1
        else:
            k = int(y_real.max()) + 1 if n_classes is None else n_classes
        padded = bucket_rows(rows)
        X_pad = np.zeros((1, padded, config.max_features), np.float32)
        X_pad[0, :rows, :features] = X_real
        y_pad = np.zeros((1, padded), np.float32 if regression else np.int32)
        y_pad[0, :rows] = y_real
        child = generate_batch_jit(
            params, X_pad, y_pad, np.array([rows]), np.array([features]), config=config, attention=attention
        )
    else:  # traced: the same computation on the arrays as they are
        if n_classes is None and not regression:
            warnings.warn(
                f"generate traced (inside jit, vmap or grad) without n_classes: the child has all "
                f"max_classes={config.max_classes} outputs, whatever y holds; pass n_classes=k",
                UserWarning,
                stacklevel=2,
            )
        k = config.n_outputs if n_classes is None else n_classes
        X, y = jnp.asarray(X), jnp.asarray(y)
        n_rows = jnp.asarray(n_rows, jnp.int32)
        n_features = jnp.asarray(n_features, jnp.int32)
        if regression:
            y = y.astype(jnp.float32)
        else:
            y = (jnp.round(y) if jnp.issubdtype(y.dtype, jnp.floating) else y).astype(jnp.int32)
        child = generate_batch(
            params,
            X.astype(jnp.float32)[None],
            y[None],
            n_rows[None],
            n_features[None],
            config=config,
            attention=attention,
        )
    child = jax.tree_util.tree_map(lambda a: a[0], child)
    layers = [list(layer) for layer in child.layers]
    layers[0][0] = layers[0][0][:d]  # the eager call pads features to max_features
    layers[-1] = [layers[-1][0][:, :k], layers[-1][1][:k]]  # the dataset's k classes (regression: 1)
    child = Child(tuple(map(tuple, layers)), child.mean[:d], child.std[:d])
    if read_out == "generated":
        return child
    solver = "ridge" if regression else read_out
    if X_real is not None and y_real is not None:  # concrete: the padded rows, one compilation per bucket
        return _fit_child_jit(child, X_pad[0, :, :d], y_pad[0], rows, features, regression=regression, solver=solver)
    return fit_child(child, X, y, n_rows=n_rows, n_features=n_features, regression=regression, solver=solver,
                     logit_factor=DEFAULT_TEMPERATURE)  # fmt: skip


@functools.partial(jax.jit, static_argnames=("regression", "solver"))
def _fit_child_jit(child: Child, X, y, n_rows, n_features, *, regression: bool, solver: str) -> Child:
    return fit_child(child, X, y, n_rows=n_rows, n_features=n_features, regression=regression, solver=solver,
                     logit_factor=DEFAULT_TEMPERATURE)  # fmt: skip
