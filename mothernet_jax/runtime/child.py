"""The generated child MLP: data (a pytree of arrays), its one forward pass, and the NumPy entry points.

A `Child` holds the dense layers in data space and the standardisation of the training rows, so it
takes raw rows: z = clip((x - mean) / std, +-100), NaN -> 0, then relu(z W1 + b1) ... W_out + b_out.
The arithmetic (`standardise_rows`, `hidden_features`, `factored_logits`, `child_outputs`,
`softmax`) is written once over an array library `xp` (numpy or jax.numpy, passed by the caller):
the JAX entry points (`mothernet_jax.model.child`: jit, vmap, grad), the training loss, the
fine-tuning and the fitted read-outs call it with jax.numpy; `numpy_logits` and
`numpy_predict_proba` here call it with NumPy, the one NumPy forward pass that every exported
predictor member runs.

NumPy alone: this module imports no JAX, so that an exported predictor runs in a process where
JAX cannot be imported (a deployment with NumPy alone).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

CLIP = 100.0  # the reference clips standardised features to +-100
DEFAULT_TEMPERATURE = 0.8  # predict_proba = softmax(logits / 0.8), as the reference


class Child(NamedTuple):
    """A generated classifier (or regressor: k = 1 output unit, in the target's units). Leading
    batch dimensions are allowed on every leaf (many children).

    layers: ((W1 (d, P), b1 (P)), ..., (W_out (P, k), b_out (k))), in data space: the 100/d
        scaling of the preprocessing and the low-rank factors are folded into the weights.
    mean, std: (d,) the training rows' nan-mean and nan-std (ddof 1) + 1e-6.
    skip: None (as generated), or (d, k) weights of a linear read-out of the standardised rows added
        to the output: z @ skip (`estimator.output_layer` fits it with the last layer).
    """

    layers: tuple[tuple[Any, Any], ...]
    mean: Any
    std: Any
    skip: Any = None


# -- one forward pass for both array libraries -----------------------------------------------------


def standardise_rows(x, mean, std, xp):
    """Raw rows as the child reads them: clip((x - mean) / std, +-100), NaN -> 0.
    x: (..., n, d); mean, std: (..., d); xp: numpy or jax.numpy."""
    z = xp.clip((x - mean[..., None, :]) / std[..., None, :], -CLIP, CLIP)
    return xp.where(xp.isnan(z), 0.0, z)


def _apply(weight, h):
    return (h @ weight[0]) @ weight[1] if isinstance(weight, tuple) else h @ weight


def hidden_features(layers, z, xp):
    """The child's last hidden layer on standardised rows: relu after every layer but the output
    layer; with no hidden layer, z itself (the output layer reads the inputs). The one function
    that the forward pass, the fine-tuning and the fitted read-outs (`model.read_out`,
    `estimator.output_layer`) share, so that what a read-out is fitted on is what it is applied to.

    layers: ((weight, b), ...) as `factored_logits` takes them; z: (..., n, in) -> (..., n, P);
    xp: numpy or jax.numpy.
    """
    h = z
    for weight, bias in layers[:-1]:
        h = xp.maximum(_apply(weight, h) + bias[..., None, :], 0.0)
    return h


def factored_logits(layers, z, xp):
    """The child MLP on standardised rows, relu between layers; the one logits function of the JAX
    and the NumPy paths (the training loss calls it on the prior's preprocessed rows).

    layers: ((weight, b), ...) with weight either W (in, out) or (A (in, r), S (r, out)), applied as
    (h A) S, which costs r (in + out) instead of in x out per row. z: (n, in) -> logits (n, K).
    """
    weight, bias = layers[-1]
    return _apply(weight, hidden_features(layers, z, xp)) + bias[..., None, :]


def child_outputs(child: Child, z, xp):
    """The child's outputs on standardised rows z (n, d): the MLP, plus z @ skip where it has one."""
    outputs = factored_logits(child.layers, z, xp)
    return outputs if child.skip is None else outputs + z @ child.skip


def softmax(logits, xp):
    """Softmax over the last axis, with `xp` (jax.numpy or numpy)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = xp.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def check_columns(child: Child, x) -> None:
    """ValueError, in one line, unless the rows x (..., n, d) have the child's d columns (those of
    its training set); a shape check, so it runs on tracers too."""
    d = child.mean.shape[-1]
    if x.ndim == 0 or x.shape[-1] != d:
        got = "no columns" if x.ndim == 0 else f"{x.shape[-1]} columns"
        raise ValueError(f"X has {got} (shape {tuple(x.shape)}); this child expects {d} columns, as its training set")


def check_task(child: Child, task: str) -> None:
    """ValueError, in one line, when the child's output count says it is not for `task`: a
    regression child has one output unit, a classifier's one per class (at least 2). A shape
    check, so it runs on tracers too."""
    outputs = child.layers[-1][1].shape[-1]
    if task == "regression" and outputs != 1:
        raise ValueError(
            f"this child has {outputs} outputs, a classifier's (one per class): use predict_proba, "
            "not predict_regression"
        )
    if task == "classification" and outputs == 1:
        raise ValueError(
            "this child has 1 output unit, a regressor's (or a classifier of one class): use "
            "predict_regression, not predict_proba"
        )


# -- NumPy --------------------------------------------------------------------------------------


def numpy_logits(child: Child, x: np.ndarray) -> np.ndarray:
    """`model.child.child_logits` with NumPy alone, in float32. x: (n, d) -> (n, k)."""
    x = np.asarray(x, np.float32)
    check_columns(child, x)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        z = standardise_rows(x, child.mean, child.std, np)
    return child_outputs(child, z.astype(np.float32), np)


def numpy_predict_proba(child: Child, x: np.ndarray, temperature: float = DEFAULT_TEMPERATURE) -> np.ndarray:
    """`model.child.predict_proba` with NumPy alone: the one NumPy forward pass (an exported
    classifier runs it for each member). x: (n, d) raw rows (NaN allowed) -> (n, k)."""
    check_task(child, "classification")
    return softmax(numpy_logits(child, x) / temperature, np)


def numpy_predict_regression(child: Child, x: np.ndarray) -> np.ndarray:
    """`model.child.predict_regression` with NumPy alone. x: (n, d) raw rows (NaN allowed) -> (n,)
    float32."""
    check_task(child, "regression")
    return numpy_logits(child, x)[..., 0]


def to_numpy(child: Child) -> Child:
    """The same child with NumPy float32 arrays (for pickling, export and NumPy-only prediction);
    reads JAX arrays through `np.asarray`, without importing JAX."""
    layers = tuple((np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in child.layers)
    skip = None if child.skip is None else np.asarray(child.skip, np.float32)
    return Child(layers, np.asarray(child.mean, np.float32), np.asarray(child.std, np.float32), skip)


def weights_as(child: Child, dtype) -> Child:
    """The child with its weights (layers and skip read-out) as NumPy arrays of `dtype`, its mean and
    std as they are (the rows are standardised in float32 either way)."""
    skip = None if child.skip is None else np.asarray(child.skip, dtype)
    return Child(numpy_layers(child.layers, dtype), child.mean, child.std, skip)


def numpy_layers(layers, dtype=np.float32) -> tuple:
    """A child's layers as NumPy arrays of `dtype` (low-rank factor pairs kept as pairs)."""

    def weight(w):
        return tuple(np.asarray(f, dtype) for f in w) if isinstance(w, tuple) else np.asarray(w, dtype)

    return tuple((weight(w), np.asarray(b, dtype)) for w, b in layers)
