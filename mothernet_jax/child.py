"""The generated child MLP: data (a pytree of arrays) and pure functions over it.

A `Child` holds the dense layers in data space and the standardisation of the training rows, so it
takes raw rows: z = clip((x - mean) / std, +-100), NaN -> 0, then relu(z W1 + b1) ... W_out + b_out.
The same code runs on JAX arrays (jit, vmap, grad: `child_logits`, `predict_proba`) and on NumPy
arrays (`numpy_predict_proba`, `load_predictor`).

This module imports no JAX at import time, so that `load_predictor` runs in a process where JAX is
never imported (a deployment with NumPy alone).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, NamedTuple

import numpy as np

CLIP = 100.0  # the reference clips standardised features to +-100
DEFAULT_TEMPERATURE = 0.8  # predict_proba = softmax(logits / 0.8), as the reference
FORMAT = "mothernet-jax-predictor"
FORMAT_VERSION = 1


class Child(NamedTuple):
    """A generated classifier. Leading batch dimensions are allowed on every leaf (many children).

    layers: ((W1 (d, P), b1 (P)), ..., (W_out (P, k), b_out (k))), in data space: the 100/d
        scaling of the preprocessing and the low-rank factors are folded into the weights.
    mean, std: (d,) the training rows' nan-mean and nan-std (ddof 1) + 1e-6.
    """

    layers: tuple[tuple[Any, Any], ...]
    mean: Any
    std: Any


# -- one forward pass for both array libraries -----------------------------------------------------


def _standardise(child: Child, x, xp):
    z = xp.clip((x - child.mean[..., None, :]) / child.std[..., None, :], -CLIP, CLIP)
    return xp.where(xp.isnan(z), 0.0, z)


def mlp_logits(layers, z, xp=None):
    """The child MLP on preprocessed rows. z: (n, F) -> (n, K); relu between layers.

    Used directly by the training loss, whose inputs come preprocessed from the prior.
    """
    if xp is None:
        import jax.numpy as xp
    h = z
    for i, (weight, bias) in enumerate(layers):
        h = h @ weight + bias[..., None, :]
        if i < len(layers) - 1:
            h = xp.maximum(h, 0.0)
    return h


def _softmax(logits, xp):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = xp.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


# -- JAX ----------------------------------------------------------------------------------------


def child_logits(child: Child, x):
    """Logits of the child on raw rows. x: (n, d) float (NaN allowed) -> (n, k) float32."""
    import jax.numpy as jnp

    return mlp_logits(child.layers, _standardise(child, jnp.asarray(x, jnp.float32), jnp), jnp)


def predict_proba(child: Child, x, temperature: float = DEFAULT_TEMPERATURE):
    """Class probabilities softmax(logits / temperature). x: (n, d) -> (n, k)."""
    import jax

    return jax.nn.softmax(child_logits(child, x) / temperature, axis=-1)


def to_numpy(child: Child) -> Child:
    """The same child with NumPy float32 arrays (for pickling, export and NumPy-only prediction)."""
    layers = tuple((np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in child.layers)
    return Child(layers, np.asarray(child.mean, np.float32), np.asarray(child.std, np.float32))


# -- NumPy --------------------------------------------------------------------------------------


def numpy_logits(child: Child, x: np.ndarray) -> np.ndarray:
    """`child_logits` with NumPy alone. x: (n, d) -> (n, k)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        z = _standardise(child, np.asarray(x, np.float32), np)
    return mlp_logits(child.layers, z.astype(np.float32), np)


def numpy_predict_proba(child: Child, x: np.ndarray, temperature: float = DEFAULT_TEMPERATURE) -> np.ndarray:
    """`predict_proba` with NumPy alone. x: (n, d) -> (n, k)."""
    return _softmax(numpy_logits(child, x) / temperature, np)


class Predictor:
    """An exported classifier: one or more children whose probabilities are averaged.

    Each member may read a subset of the input columns (`member_columns`); probabilities come out
    in the order of `classes`.
    """

    def __init__(
        self,
        children: list[Child],
        *,
        classes: np.ndarray | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        n_features: int | None = None,
    ):
        if not children:
            raise ValueError("a Predictor needs at least one child")
        self.children = [to_numpy(c) for c in children]
        self.temperature = float(temperature)
        k = self.children[0].layers[-1][0].shape[-1]
        self.classes = np.arange(k) if classes is None else np.asarray(classes)
        self.n_features = int(self.children[0].mean.shape[-1] if n_features is None else n_features)

    def predict_proba(self, X) -> np.ndarray:
        """X: (n, n_features) float -> (n, n_classes) probabilities, NumPy only."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n, {self.n_features}), got {X.shape}")
        probs = [numpy_predict_proba(c, X, self.temperature) for c in self.children]
        return np.mean(probs, axis=0)

    def predict(self, X) -> np.ndarray:
        return self.classes[np.argmax(self.predict_proba(X), axis=1)]

    # -- file format: one .npz of plain arrays plus a JSON header, never pickle ---------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the predictor to `path` (a pickle-free .npz), atomically."""
        arrays: dict[str, np.ndarray] = {}
        for m, child in enumerate(self.children):
            arrays[f"member{m}/mean"] = child.mean
            arrays[f"member{m}/std"] = child.std
            for j, (w, b) in enumerate(child.layers):
                arrays[f"member{m}/layer{j}/weight"] = w
                arrays[f"member{m}/layer{j}/bias"] = b
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "n_members": len(self.children),
            "n_layers": [len(c.layers) for c in self.children],
            "temperature": self.temperature,
            "n_features": self.n_features,
        }
        arrays["header"] = np.array(json.dumps(header))
        arrays["classes"] = self.classes
        atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Predictor:
        with np.load(path, allow_pickle=False) as data:
            if "header" not in data:
                raise ValueError(f"{path} is not a mothernet-jax predictor file (no header)")
            header = json.loads(str(data["header"]))
            if header.get("format") != FORMAT:
                raise ValueError(f"{path} is not a mothernet-jax predictor file")
            if header.get("version") != FORMAT_VERSION:
                raise ValueError(f"{path}: unsupported predictor format version {header.get('version')}")
            children = []
            for m in range(header["n_members"]):
                layers = tuple(
                    (data[f"member{m}/layer{j}/weight"], data[f"member{m}/layer{j}/bias"])
                    for j in range(header["n_layers"][m])
                )
                children.append(Child(layers, data[f"member{m}/mean"], data[f"member{m}/std"]))
            return cls(
                children,
                classes=data["classes"],
                temperature=header["temperature"],
                n_features=header["n_features"],
            )


def load_predictor(path: str | os.PathLike) -> Predictor:
    """Load an exported classifier; needs NumPy only."""
    return Predictor.load(path)


def atomic_savez(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """np.savez to a temporary file in the same folder, then rename: never a half-written file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
