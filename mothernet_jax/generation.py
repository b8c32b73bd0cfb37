"""generate(params, X, y): the reference preprocessing and the one forward pass, returning a child.

(The module is `generation`, not `generate`, so that `mothernet_jax.generate` stays the function.)

Three levels, each a pure function:

- `generate_layers(params, x, y, n_rows)`: the hypernetwork on inputs that are already preprocessed
  and padded (what the prior produces and the training loss uses); the child's layers come out in
  the padded input space.
- `generate_batch(params, X, y, n_rows, n_features)`: many raw datasets at once, padded to common
  shapes; applies the reference preprocessing inside and folds it into the children. jit/vmap-able.
- `generate(params, X, y)`: one raw dataset from NumPy; validates it, pads rows to a bucket of 128
  (repeated calls do not recompile) and returns a child sliced to its d features and k classes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mothernet_jax.child import CLIP, Child
from mothernet_jax.config import ModelConfig
from mothernet_jax.model.mothernet import MotherNet
from mothernet_jax.model.weight_head import Layer, child_layers

ROW_BUCKET = 128  # training rows are padded to a multiple of this
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

    x: (B, T, max_features) float, y: (B, T) int, n_rows: (B,) int (rows >= n_rows are padding).
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
    clipped to +-100, times 100 / n_features, zero-padded; and mean, std: (B, F). A column with at
    most one observed value gets mean 0 and std inf, so it contributes nothing (as NaN would).
    """
    batch, rows, features = X.shape
    row_mask = (jnp.arange(rows)[None, :] < n_rows[:, None])[..., None]
    feature_mask = (jnp.arange(features)[None, :] < n_features[:, None])[:, None, :]
    observed = row_mask & feature_mask & ~jnp.isnan(X)
    count = observed.sum(axis=1)
    mean = jnp.where(observed, X, 0.0).sum(axis=1) / jnp.maximum(count, 1)
    sq = jnp.where(observed, (X - mean[:, None, :]) ** 2, 0.0).sum(axis=1)
    std = jnp.sqrt(sq / jnp.maximum(count - 1, 1)) + STD_EPS
    degenerate = count <= 1
    mean = jnp.where(degenerate, 0.0, mean)
    std = jnp.where(degenerate, jnp.inf, std)
    z = jnp.clip((X - mean[:, None, :]) / std[:, None, :], -CLIP, CLIP)
    scale = (config.max_features / jnp.maximum(n_features, 1)).astype(jnp.float32)
    z = jnp.where(row_mask & feature_mask, z * scale[:, None, None], 0.0)
    z = jnp.pad(z, ((0, 0), (0, 0), (0, config.max_features - features)))
    return z, mean, std


def generate_batch(
    params,
    X: jax.Array,
    y: jax.Array,
    n_rows: jax.Array,
    n_features: jax.Array,
    *,
    config: ModelConfig,
    attention: str | None = None,
    factored: bool = False,
) -> Child:
    """Children for many raw datasets in one call (pure; jit and vmap it freely).

    X: (B, T, F) raw features, F <= max_features, padded with anything beyond n_rows / n_features;
    y: (B, T) int labels in 0..max_classes-1; n_rows, n_features: (B,) int.
    Returns a batched `Child`: W1 (B, F, P) (rows beyond n_features are zero), ..., W_out (B, P, K)
    over all max_classes outputs; mean, std (B, F). factored=True keeps each low-rank weight as
    its factors (A, S) (W1's A (B, F, r) carries the zero rows and the 100 / d scaling), for
    `child.factored_logits`: cheaper per row when r (in + P) < in x P.
    """
    X = X.astype(jnp.float32)
    z, mean, std = standardise(X, n_rows, n_features, config)
    row_mask = jnp.arange(X.shape[1])[None, :] < n_rows[:, None]
    y = jnp.where(row_mask, jnp.clip(y, 0, config.max_classes - 1), 0).astype(jnp.int32)
    layers = generate_layers(params, z, y, n_rows, config=config, attention=attention, factored=factored)
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
def _generate_jit(params, X, y, n_rows, n_features, *, config, attention=None):
    return generate_batch(params, X, y, n_rows, n_features, config=config, attention=attention)


# -- the user-facing single-dataset call ------------------------------------------------------------


def validate_dataset(X, y, config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Check one raw training set; return X as float32 (n, d) and y as int32 (n,).

    Raises ValueError naming the problem: X not 2-D, lengths differ, no rows, too many features,
    infinite values, labels not integers or outside 0..max_classes-1. NaN is accepted.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n_rows, n_features), got shape {X.shape}")
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of labels, got shape {y.shape}")
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
    if not np.issubdtype(X.dtype, np.number) and X.dtype != bool:
        raise ValueError(f"X must be numeric, got dtype {X.dtype}")
    X = X.astype(np.float32)
    if np.isinf(X).any():
        raise ValueError("X contains infinite values (NaN is accepted as missing, inf is not)")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError("y must hold integer class labels 0..k-1, got non-integer values")
    elif not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer class labels 0..k-1, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= config.max_classes:
        raise ValueError(
            f"labels must lie in 0..{config.max_classes - 1}, got values from {y.min()} to {y.max()}"
        )
    return X, y.astype(np.int32)


def generate(
    params, X, y, *, config: ModelConfig, n_classes: int | None = None, attention: str | None = None
) -> Child:
    """Generate the child classifier for one training set, in one forward pass.

    X: (n, d) raw features, d <= 100 (NaN allowed); y: (n,) integer labels 0..k-1.
    Returns a `Child` that takes raw rows: layers W1 (d, P) ... W_out (P, k), mean and std (d,);
    k = n_classes or max(y) + 1. Rows are padded to a multiple of 128, so datasets of similar size
    share one compiled function.
    """
    X, y = validate_dataset(X, y, config)
    n, d = X.shape
    k = int(y.max()) + 1 if n_classes is None else int(n_classes)
    if not 1 <= k <= config.max_classes or k <= y.max():
        raise ValueError(f"n_classes={n_classes} does not fit labels up to {y.max()}")
    rows = bucket_rows(n)
    X_pad = np.zeros((1, rows, config.max_features), np.float32)
    X_pad[0, :n, :d] = X
    y_pad = np.zeros((1, rows), np.int32)
    y_pad[0, :n] = y
    child = _generate_jit(
        params, X_pad, y_pad, np.array([n]), np.array([d]), config=config, attention=attention
    )
    child = jax.tree_util.tree_map(lambda a: a[0], child)
    layers = [list(layer) for layer in child.layers]
    layers[0][0] = layers[0][0][:d]  # drop the zero rows of the padded features
    layers[-1] = [layers[-1][0][:, :k], layers[-1][1][:k]]  # keep the dataset's k classes
    return Child(tuple(map(tuple, layers)), child.mean[:d], child.std[:d])
