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
from typing import Any, NamedTuple

import numpy as np

from mothernet_jax.npz import PredictorFileError, atomic_savez, check_export_path

CLIP = 100.0  # the reference clips standardised features to +-100
DEFAULT_TEMPERATURE = 0.8  # predict_proba = softmax(logits / 0.8), as the reference
FORMAT = "mothernet-jax-predictor"
ROW_BLOCK = 2048  # the NumPy predictor runs this many rows at a time: its activations stay in cache
FORMAT_VERSION = 2  # 2: encoder, member columns and class groups, low-rank factors


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


def standardise_rows(x, mean, std, xp):
    """Raw rows as the child reads them: clip((x - mean) / std, +-100), NaN -> 0.
    x: (..., n, d); mean, std: (..., d); xp: numpy or jax.numpy."""
    z = xp.clip((x - mean[..., None, :]) / std[..., None, :], -CLIP, CLIP)
    return xp.where(xp.isnan(z), 0.0, z)


def factored_logits(layers, z, xp=None):
    """The child MLP on standardised rows, relu between layers; the one logits function of the JAX
    and the NumPy paths (the training loss calls it on the prior's preprocessed rows).

    layers: ((weight, b), ...) with weight either W (in, out) or (A (in, r), S (r, out)), applied as
    (h A) S, which costs r (in + out) instead of in x out per row. z: (n, in) -> logits (n, K).
    """
    if xp is None:
        import jax.numpy as xp
    h = z
    for i, (weight, bias) in enumerate(layers):
        h = (h @ weight[0]) @ weight[1] if isinstance(weight, tuple) else h @ weight
        h = h + bias[..., None, :]
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

    z = standardise_rows(jnp.asarray(x, jnp.float32), child.mean, child.std, jnp)
    return factored_logits(child.layers, z, jnp)


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
        z = standardise_rows(np.asarray(x, np.float32), child.mean, child.std, np)
    return factored_logits(child.layers, z.astype(np.float32), np)


def numpy_predict_proba(child: Child, x: np.ndarray, temperature: float = DEFAULT_TEMPERATURE) -> np.ndarray:
    """`predict_proba` with NumPy alone. x: (n, d) -> (n, k)."""
    return _softmax(numpy_logits(child, x) / temperature, np)


# -- the exported classifier ----------------------------------------------------------------------


def _numpy_layers(layers) -> tuple:
    def weight(w):
        return (
            tuple(np.asarray(f, np.float32) for f in w) if isinstance(w, tuple) else np.asarray(w, np.float32)
        )

    return tuple((weight(w), np.asarray(b, np.float32)) for w, b in layers)


class Predictor:
    """An exported classifier: members whose class probabilities are averaged, with NumPy alone.

    The raw table (n, n_features) goes once through `encoder` (a `preprocessing.FeatureEncoder`:
    categorical codes, quantiles, imputation; None: the columns as floats). Member m reads the
    encoded columns `columns[m]` in that order; its child standardises them (NaN -> 0) and gives
    softmax(logits / temperature) over its output groups; class c receives the probability of group
    `groups[m][c]` divided by that group's number of classes. Without grouping (groups[m] the
    identity or a rotation) this is the plain average of the members' class probabilities.
    A child's layer weight may be a pair of low-rank factors (`factored_logits`).
    """

    def __init__(
        self,
        children: list[Child],
        *,
        classes: np.ndarray | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        n_features: int | None = None,
        encoder=None,
        columns: list[np.ndarray] | None = None,
        groups: list[np.ndarray] | None = None,
        feature_names: list[str] | None = None,
    ):
        if not children:
            raise ValueError("a Predictor needs at least one child")
        self.children = [
            Child(_numpy_layers(c.layers), np.asarray(c.mean, np.float32), np.asarray(c.std, np.float32))
            for c in children
        ]
        self.temperature = float(temperature)
        self.encoder = encoder
        width = [c.mean.shape[-1] for c in self.children]
        self.columns = (
            [np.arange(w) for w in width] if columns is None else [np.asarray(c, np.int64) for c in columns]
        )
        outputs = [c.layers[-1][1].shape[-1] for c in self.children]
        k = outputs[0] if groups is None else len(groups[0])
        self.groups = (
            [np.arange(k) for _ in self.children]
            if groups is None
            else [np.asarray(g, np.int64) for g in groups]
        )
        self.classes = np.arange(k) if classes is None else np.asarray(classes)
        if encoder is not None:
            self.n_features = int(encoder.n_features)
        else:
            self.n_features = int(max(width) if n_features is None else n_features)
        self.feature_names = None if feature_names is None else [str(n) for n in feature_names]
        for m, (cols, grp, out) in enumerate(zip(self.columns, self.groups, outputs, strict=True)):
            if len(cols) != width[m] or len(grp) != len(self.classes) or (len(grp) and grp.max() >= out):
                raise ValueError(f"member {m}: columns, groups and child do not fit each other")
        # the probability of a group is shared evenly by its classes
        self._shares = [
            1.0 / np.bincount(g, minlength=out)[g] for g, out in zip(self.groups, outputs, strict=True)
        ]
        if encoder is not None:
            kinds = encoder.layout()[0]
            self._kinds = {int(k) for c in self.columns for k in kinds[c]}

    # -- prediction ----------------------------------------------------------------------------

    def _table(self, X) -> np.ndarray:
        if hasattr(X, "columns") and hasattr(X, "iloc"):  # a pandas DataFrame, without importing pandas
            names = list(X.columns)
            if self.feature_names is not None and names and all(isinstance(n, str) for n in names):
                check_feature_names(names, self.feature_names)
            X = X.to_numpy()
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X has shape {X.shape}; this predictor expects (n, {self.n_features}) features")
        return X

    def encode(self, X) -> np.ndarray:
        """The encoded table (n, n_columns) that the members read (NaN imputed)."""
        X = self._table(X)
        if self.encoder is None:
            if X.dtype.kind not in "biuf":
                X = X.astype(np.float64)
            if np.isinf(X).any():
                raise ValueError("X contains infinite values (NaN is accepted as missing, inf is not)")
            return X.astype(np.float32)
        return self.encoder.transform(X, kinds=self._kinds)

    def predict_proba(self, X) -> np.ndarray:
        """X: (n, n_features) raw rows (numbers, strings, NaN) -> (n, n_classes) probabilities."""
        encoded = self.encode(X)
        proba = np.zeros((encoded.shape[0], len(self.classes)))
        for start in range(0, encoded.shape[0], ROW_BLOCK):
            rows = slice(start, start + ROW_BLOCK)
            for child, columns, groups, shares in zip(
                self.children, self.columns, self.groups, self._shares, strict=True
            ):
                z = encoded[rows, columns].astype(np.float32)  # a copy: standardised in place
                with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                    z -= child.mean
                    z /= child.std
                np.clip(z, -CLIP, CLIP, out=z)
                if self.encoder is None:  # the encoder imputes; raw columns may hold NaN
                    z[np.isnan(z)] = 0.0
                logits = factored_logits(child.layers, z, np)
                proba[rows] += _softmax(logits / self.temperature, np)[:, groups] * shares
        return proba / len(self.children)

    def predict(self, X) -> np.ndarray:
        return self.classes[np.argmax(self.predict_proba(X), axis=1)]

    # -- file format: one .npz of plain arrays plus a JSON header, never pickle ---------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the predictor to `path` (a pickle-free .npz), atomically."""
        classes = self.classes
        if classes.dtype.kind == "O":
            classes = np.asarray(classes.tolist())
            if classes.dtype.kind == "O":
                raise ValueError("the class labels must be numbers or strings to be saved without pickle")
        arrays: dict[str, np.ndarray] = {}
        layer_kinds = []
        for m, child in enumerate(self.children):
            arrays[f"member{m}/mean"] = child.mean
            arrays[f"member{m}/std"] = child.std
            arrays[f"member{m}/columns"] = self.columns[m]
            arrays[f"member{m}/groups"] = self.groups[m]
            kinds = []
            for j, (w, b) in enumerate(child.layers):
                if isinstance(w, tuple):
                    arrays[f"member{m}/layer{j}/weight_a"], arrays[f"member{m}/layer{j}/weight_b"] = w
                    kinds.append("factored")
                else:
                    arrays[f"member{m}/layer{j}/weight"] = w
                    kinds.append("dense")
                arrays[f"member{m}/layer{j}/bias"] = b
            layer_kinds.append(kinds)
        encoder_header = None
        if self.encoder is not None:
            encoder_header, encoder_arrays = self.encoder.to_arrays("encoder/")
            arrays.update(encoder_arrays)
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "n_members": len(self.children),
            "layers": layer_kinds,
            "temperature": self.temperature,
            "n_features": self.n_features,
            "feature_names": self.feature_names,
            "encoder": encoder_header,
        }
        arrays["header"] = np.array(json.dumps(header))
        arrays["classes"] = classes
        atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Predictor:
        """The predictor exported to `path`; PredictorFileError (one line, naming the path) for a
        folder, a file that is not an export (a weight file, any other file), or a damaged one."""
        check_export_path(path)
        try:
            return cls._load(path)
        except PredictorFileError:
            raise
        except Exception as error:  # zipfile, zlib, NumPy and KeyError: all mean a damaged file
            reason = "it holds pickled (object) arrays" if "pickle" in str(error) else f"{error}"
            raise PredictorFileError(
                f"{path} is a damaged or truncated exported classifier ({type(error).__name__}: {reason})"
            ) from None

    @classmethod
    def _load(cls, path: str | os.PathLike) -> Predictor:
        with np.load(path, allow_pickle=False) as data:
            if "header" not in data:
                raise PredictorFileError(
                    f"{path} is a .npz archive but not an exported classifier (no header)"
                )
            header = json.loads(str(data["header"]))
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise PredictorFileError(f"{path} is a .npz archive but not an exported classifier")
            version = header.get("version")
            if version not in (1, FORMAT_VERSION):
                raise PredictorFileError(f"{path}: unsupported exported-classifier format version {version}")
            layer_kinds = header.get("layers") or [["dense"] * n for n in header["n_layers"]]
            children, columns, groups = [], [], []
            for m in range(header["n_members"]):
                key = f"member{m}/layer{{}}/"
                layers = tuple(
                    (
                        (data[key.format(j) + "weight_a"], data[key.format(j) + "weight_b"])
                        if kind == "factored"
                        else data[key.format(j) + "weight"],
                        data[key.format(j) + "bias"],
                    )
                    for j, kind in enumerate(layer_kinds[m])
                )
                children.append(Child(layers, data[f"member{m}/mean"], data[f"member{m}/std"]))
                if version > 1:
                    columns.append(data[f"member{m}/columns"])
                    groups.append(data[f"member{m}/groups"])
            encoder = None
            if header.get("encoder") is not None:
                from mothernet_jax.preprocessing import FeatureEncoder

                encoder = FeatureEncoder.from_arrays(header["encoder"], data, "encoder/")
            return cls(
                children,
                classes=data["classes"],
                temperature=header["temperature"],
                n_features=header["n_features"],
                encoder=encoder,
                columns=columns or None,
                groups=groups or None,
                feature_names=header.get("feature_names"),
            )


def load_predictor(path: str | os.PathLike) -> Predictor:
    """Load an exported classifier (`MotherNetClassifier.export`); needs NumPy alone.
    Raises PredictorFileError naming the path for anything that is not a sound export."""
    return Predictor.load(path)


def check_feature_names(names: list[str], fitted: list[str]) -> None:
    """ValueError, worded as scikit-learn's, unless a DataFrame's column names are the fitted ones
    in the fitted order."""
    if names == fitted:
        return
    unseen = [n for n in names if n not in fitted]
    missing = [n for n in fitted if n not in names]
    message = "The feature names should match those that were passed during fit."
    if unseen:
        message += f" Feature names unseen at fit time: {unseen}."
    if missing:
        message += f" Feature names seen at fit time, yet now missing: {missing}."
    if not unseen and not missing:
        message += f" Feature names must be in the same order as they were in fit: {fitted}."
    raise ValueError(message)
