"""Exported estimators, run with NumPy alone: the members' children, their columns and the encoder
in one pickle-free `.npz` (`Predictor.save` / `load_predictor`).

`Predictor` holds what every export has: the members (a child each, reading its own encoded
columns), the encoder (`runtime.encoding.FeatureEncoder`), the column checks, the members' outputs
on blocks of rows and the file format (a JSON header plus plain arrays). Its two kinds:

- `ClassificationPredictor` (`MotherNetClassifier.export`): the classes, the temperature and each
  member's class groups; `predict_proba` averages the members' probabilities.
- `RegressionPredictor` (`MotherNetRegressor.export`; header `"task": "regression"`): each member's
  target mean and std; `predict` maps every member's one output unit back to y's scale and
  averages them, optionally with the ensemble's predictive std.

The children's arithmetic is `runtime.child`'s (`numpy_logits`, the one NumPy forward pass). This
module imports no JAX. `load_predictor` returns whichever kind the file holds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import numpy as np

from mothernet_jax.runtime.checks import reject_beyond_float32
from mothernet_jax.runtime.child import (
    DEFAULT_TEMPERATURE,
    Child,
    check_task,
    numpy_layers,
    numpy_logits,
    softmax,
    weights_as,
)
from mothernet_jax.runtime.encoding import FeatureEncoder
from mothernet_jax.runtime.npz import (
    EXPORT,
    PredictorFileError,
    atomic_savez,
    check_predictor_file,
    export_noun,
)

FORMAT = "mothernet-jax-predictor"
FORMAT_VERSION = 3  # 2: encoder, member columns and class groups, low-rank factors; 3: skip read-outs
ROW_BLOCK = 2048  # rows predicted at a time: the members' activations stay in cache

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ClassificationPredictor",
    "Predictor",
    "PredictorFileError",
    "RegressionPredictor",
    "check_feature_names",
    "load_predictor",
]


class Predictor:
    """What an exported classifier and regressor share: members and their encoded columns, with
    NumPy alone. Use its kinds, `ClassificationPredictor` and `RegressionPredictor`.

    The raw table (n, n_features) goes once through `encoder` (a `runtime.encoding.FeatureEncoder`:
    categorical codes, quantiles, imputation; None: the columns as floats). Member m reads the
    encoded columns `columns[m]` in that order; its child standardises them (NaN -> 0) and computes
    its outputs (`runtime.child.numpy_logits`). A child's layer weight may be a pair of low-rank
    factors (`runtime.child.factored_logits`).
    """

    def __init__(
        self,
        children: list[Child],
        *,
        n_features: int | None = None,
        encoder: FeatureEncoder | None = None,
        columns: list[np.ndarray] | None = None,
        feature_names: list[str] | None = None,
    ):
        if not children:
            raise ValueError(f"a {type(self).__name__} needs at least one child")
        self.children = [
            Child(
                numpy_layers(c.layers),
                np.asarray(c.mean, np.float32),
                np.asarray(c.std, np.float32),
                None if c.skip is None else np.asarray(c.skip, np.float32),
            )
            for c in children
        ]
        self.encoder = encoder
        width = [c.mean.shape[-1] for c in self.children]
        self.columns = (
            [np.arange(w) for w in width] if columns is None else [np.asarray(c, np.int64) for c in columns]
        )
        if encoder is not None:
            self.n_features = int(encoder.n_features)
        else:
            self.n_features = int(max(width) if n_features is None else n_features)
        self.feature_names = None if feature_names is None else [str(n) for n in feature_names]
        for m, cols in enumerate(self.columns):
            if len(cols) != width[m]:
                raise ValueError(f"member {m}: columns and child do not fit each other")
        if encoder is not None:
            kinds = encoder.layout()[0]
            self._kinds = {int(k) for c in self.columns for k in kinds[c]}
        # The forward pass multiplies by float64 weights: the same row gives the same output in any
        # batch and any row order (float32 matrix kernels round differently by batch size, ~1e-7,
        # and a regressor's target std magnifies that), at float32 inputs' precision; the file
        # keeps the float32 weights.
        self._children64 = [weights_as(c, np.float64) for c in self.children]

    @property
    def outputs(self) -> list[int]:
        """Each member's number of output units."""
        return [c.layers[-1][1].shape[-1] for c in self.children]

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
            reject_beyond_float32(X)
            return X.astype(np.float32)
        return self.encoder.transform(X, kinds=self._kinds)

    def member_outputs(self, encoded: np.ndarray) -> Iterator[tuple[slice, int, np.ndarray]]:
        """(rows, m, member m's outputs (len(rows), outputs[m])) on the encoded rows (`encode(X)`),
        for each block of `ROW_BLOCK` rows and each member in turn."""
        for start in range(0, encoded.shape[0], ROW_BLOCK):
            rows = slice(start, start + ROW_BLOCK)
            for m, (child, columns) in enumerate(zip(self._children64, self.columns, strict=True)):
                yield rows, m, numpy_logits(child, encoded[rows, columns])

    # -- file format: one .npz of plain arrays plus a JSON header, never pickle ---------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the predictor to `path` (a pickle-free .npz), atomically."""
        arrays, header = self._member_arrays()
        task_arrays, task_header = self._task_arrays()
        arrays.update(task_arrays)
        arrays["header"] = np.array(json.dumps({**header, **task_header}))
        atomic_savez(path, arrays)

    def _task_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """The arrays and header keys of the kind (classes and groups, or target scales)."""
        raise NotImplementedError

    def _member_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """What classifier and regressor files share: the members' children and columns, the
        encoder, and the header that describes them."""
        arrays: dict[str, np.ndarray] = {}
        layer_kinds = []
        for m, child in enumerate(self.children):
            arrays[f"member{m}/mean"] = child.mean
            arrays[f"member{m}/std"] = child.std
            arrays[f"member{m}/columns"] = self.columns[m]
            kinds = []
            for j, (w, b) in enumerate(child.layers):
                if isinstance(w, tuple):
                    arrays[f"member{m}/layer{j}/weight_a"], arrays[f"member{m}/layer{j}/weight_b"] = w
                    kinds.append("factored")
                else:
                    arrays[f"member{m}/layer{j}/weight"] = w
                    kinds.append("dense")
                arrays[f"member{m}/layer{j}/bias"] = b
            if child.skip is not None:
                arrays[f"member{m}/skip"] = child.skip
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
            "n_features": self.n_features,
            "feature_names": self.feature_names,
            "encoder": encoder_header,
        }
        return arrays, header

    @classmethod
    def load(cls, path: str | os.PathLike) -> Predictor:
        """The predictor exported to `path`, of the kind its header says (a kind's `load` refuses
        the other kind); PredictorFileError (one line, naming the path) for a folder, a file that
        is not an export (a weight file, any other file), or a damaged one."""
        check_predictor_file(path)
        try:
            predictor = _read(path)
        except PredictorFileError:
            raise
        except Exception as error:  # zipfile, zlib, NumPy and KeyError: all mean a damaged file
            reason = "it holds pickled (object) arrays" if "pickle" in str(error) else f"{error}"
            noun = export_noun(path).removeprefix("an ")
            raise PredictorFileError(
                f"{path} is a damaged or truncated {noun} ({type(error).__name__}: {reason})"
            ) from None
        if not isinstance(predictor, cls):
            raise PredictorFileError(f"{path} is {export_noun(path)}, not a {cls.__name__}")
        return predictor


class ClassificationPredictor(Predictor):
    """An exported classifier: members whose class probabilities are averaged, with NumPy alone.

    Member m gives softmax(outputs / temperature) over its output groups; class c receives the
    probability of group `groups[m][c]` divided by that group's number of classes. Without grouping
    (groups[m] the identity or a rotation) this is the plain average of the members' class
    probabilities. classes: the labels (default 0..k-1); members: `Predictor`'s keywords (n_features,
    encoder, columns, feature_names).
    """

    def __init__(
        self,
        children: list[Child],
        *,
        classes: np.ndarray | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        groups: list[np.ndarray] | None = None,
        **members,
    ):
        super().__init__(children, **members)
        self.temperature = float(temperature)
        outputs = self.outputs
        k = outputs[0] if groups is None else len(groups[0])
        self.groups = (
            [np.arange(k) for _ in self.children] if groups is None else [np.asarray(g, np.int64) for g in groups]
        )
        self.classes = np.arange(k) if classes is None else np.asarray(classes)
        for m, (grp, out) in enumerate(zip(self.groups, outputs, strict=True)):
            if len(grp) != len(self.classes) or (len(grp) and grp.max() >= out):
                raise ValueError(f"member {m}: columns, groups and child do not fit each other")
        # the probability of a group is shared evenly by its classes
        self._shares = [1.0 / np.bincount(g, minlength=out)[g] for g, out in zip(self.groups, outputs, strict=True)]

    def predict_proba(self, X) -> np.ndarray:
        """X: (n, n_features) raw rows (numbers, strings, NaN) -> (n, n_classes) probabilities."""
        encoded = self.encode(X)
        for child in self.children:
            check_task(child, "classification")
        proba = np.zeros((encoded.shape[0], len(self.classes)))
        for rows, m, logits in self.member_outputs(encoded):
            member = softmax(logits / self.temperature, np)
            proba[rows] += member[:, self.groups[m]] * self._shares[m]
        return proba / len(self.children)

    def predict(self, X) -> np.ndarray:
        """X: (n, n_features) raw rows -> (n,) the most probable class of each row."""
        return self.classes[np.argmax(self.predict_proba(X), axis=1)]

    def _task_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        classes = self.classes
        if classes.dtype.kind == "O":
            classes = np.asarray(classes.tolist())
            if classes.dtype.kind == "O":
                raise ValueError("the class labels must be numbers or strings to be saved without pickle")
        arrays = {f"member{m}/groups": groups for m, groups in enumerate(self.groups)}
        arrays["classes"] = classes
        return arrays, {"temperature": self.temperature}


class RegressionPredictor(Predictor):
    """An exported regressor: members with one output unit each, with NumPy alone.

    Member m's output is the target standardised over the member's training rows, mapped back as
    `output * target_std[m] + target_mean[m]` (float64); `predict` averages the members.
    predictive_std: the ensemble's estimated prediction error in y's units (`MotherNetRegressor`
    sets it with the refitted read-out), or None; `predict(X, return_std=True)` needs it. members:
    `Predictor`'s keywords (n_features, encoder, columns, feature_names).
    """

    def __init__(
        self,
        children: list[Child],
        *,
        target_mean,
        target_std,
        predictive_std: float | None = None,
        **members,
    ):
        super().__init__(children, **members)
        self.target_mean = np.asarray(target_mean, np.float64).reshape(-1)
        self.target_std = np.asarray(target_std, np.float64).reshape(-1)
        self.predictive_std = None if predictive_std is None else float(predictive_std)
        members = (len(self.children),)
        if set(self.outputs) != {1} or self.target_mean.shape != members or self.target_std.shape != members:
            raise ValueError("a RegressionPredictor needs one output unit and one target mean and std per member")

    def predict(self, X, return_std: bool = False):
        """X: (n, n_features) raw rows (numbers, strings, NaN) -> (n,) float64 predictions of y, the
        members' mean. return_std: also (n,) the predictive standard deviation, `predictive_std`
        for every row (ValueError, in one line, where there is none)."""
        if return_std and self.predictive_std is None:
            raise ValueError(
                "return_std needs the ensemble's error estimate, which the refitted read-out makes: "
                "fit with output_layer='refit'"
            )
        prediction = self.member_predictions(self.encode(X)).mean(axis=0)
        return (prediction, np.full(len(prediction), self.predictive_std)) if return_std else prediction

    def member_predictions(self, encoded: np.ndarray) -> np.ndarray:
        """(members, n) float64: each member's prediction of y on encoded rows (`encode(X)`)."""
        members = np.zeros((len(self.children), encoded.shape[0]))
        for rows, m, output in self.member_outputs(encoded):
            members[m, rows] = output[:, 0] * self.target_std[m] + self.target_mean[m]
        return members

    def _task_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays = {"target/mean": self.target_mean, "target/std": self.target_std}
        if self.predictive_std is not None:
            arrays["target/predictive_std"] = np.array(self.predictive_std)
        return arrays, {"task": "regression"}


def load_predictor(path: str | os.PathLike) -> Predictor:
    """Load an exported classifier (`MotherNetClassifier.export`: a `ClassificationPredictor`) or
    regressor (`MotherNetRegressor.export`: a `RegressionPredictor`); needs NumPy alone.
    Raises PredictorFileError naming the path for anything that is not a sound export."""
    return Predictor.load(path)


def _read(path: str | os.PathLike) -> Predictor:
    """The predictor in the .npz at `path` (any format version), of the kind its header says."""
    with np.load(path, allow_pickle=False) as data:
        if "header" not in data:
            raise PredictorFileError(f"{path} is a .npz archive but not {EXPORT} (no header)")
        header = json.loads(str(data["header"]))
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise PredictorFileError(f"{path} is a .npz archive but not {EXPORT}")
        version = header.get("version")
        if version not in (1, 2, FORMAT_VERSION):
            raise PredictorFileError(f"{path}: unsupported export format version {version}")
        layer_kinds = header.get("layers") or [["dense"] * n for n in header["n_layers"]]
        children, columns = [], []
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
            skip = data[f"member{m}/skip"] if f"member{m}/skip" in data else None
            children.append(Child(layers, data[f"member{m}/mean"], data[f"member{m}/std"], skip))
            if version > 1:
                columns.append(data[f"member{m}/columns"])
        encoder = None
        if header.get("encoder") is not None:
            encoder = FeatureEncoder.from_arrays(header["encoder"], data, "encoder/")
        common = dict(
            n_features=header["n_features"],
            encoder=encoder,
            columns=columns or None,
            feature_names=header.get("feature_names"),
        )
        if header.get("task", "classification") == "regression":
            spread = float(data["target/predictive_std"]) if "target/predictive_std" in data else None
            return RegressionPredictor(
                children, target_mean=data["target/mean"], target_std=data["target/std"],
                predictive_std=spread, **common,
            )  # fmt: skip
        groups = [data[f"member{m}/groups"] for m in range(header["n_members"]) if f"member{m}/groups" in data]
        return ClassificationPredictor(
            children, classes=data["classes"], temperature=header["temperature"], groups=groups or None, **common
        )


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
