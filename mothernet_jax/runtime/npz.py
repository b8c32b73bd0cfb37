"""Pickle-free .npz files of exported classifiers and regressors, with NumPy alone: atomic writes (of these and of
any other file) whose errors name their target, and a check that refuses, naming the path, what is
not such a file before NumPy reads it (NumPy reads an unknown file as a pickle, and its refusal
suggests allow_pickle)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

ZIP_MAGIC = b"PK\x03\x04"  # the first bytes of a .npz archive


EXPORT = "an exported classifier or regressor"  # what an export is, before its header is read


class PredictorFileError(ValueError):
    """A file that is not a sound exported classifier or regressor: a folder, a weight file, another
    file, or a damaged or truncated export."""


def export_noun(path: str | os.PathLike) -> str:
    """What the .npz archive at `path` says it is: "an exported regressor" or "an exported
    classifier" by its header's task, else (no readable header) `EXPORT`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
        task = header.get("task", "classification") if header.get("format") == "mothernet-jax-predictor" else None
    except Exception:  # not an archive, no header, damaged: the noun stays general
        return EXPORT
    return {"regression": "an exported regressor", "classification": "an exported classifier"}.get(task, EXPORT)


def check_predictor_file(path: str | os.PathLike) -> None:
    """Refuse, naming the path, what is not an exported classifier or regressor, before NumPy reads
    it (NumPy would read any other file as a pickle, and its refusal suggests allow_pickle)."""
    if os.path.isdir(path):
        raise PredictorFileError(f"{path} is a folder, not {EXPORT} (.npz)")
    if not os.path.exists(path):
        raise FileNotFoundError(f"exported classifier or regressor {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(1 << 16)  # a weight file names its format after its config (sorted keys)
    if head.startswith(ZIP_MAGIC):
        return
    if b"mothernet-jax-weights" in head:
        raise PredictorFileError(
            f"{path} is a weight file, not {EXPORT}: pass it as MotherNetClassifier(weights=...) "
            "(or MotherNetRegressor's), fit, then export"
        )
    if not head:
        what = "empty"
    elif head.startswith(b"\x93NUMPY"):
        what = "a single NumPy array"
    else:
        what = "not a .npz archive"
    raise PredictorFileError(f"{path} is not {EXPORT} ({what})")


def atomic_savez(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """np.savez through `atomic_write`: never a half-written file."""
    atomic_write(path, lambda f: np.savez(f, **arrays), suffix=".npz")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any], *, suffix: str = "") -> None:
    """`write(file)` into a temporary file in the same folder, then rename it to `path`: never a
    half-written file. A missing folder is created; an error names `path` (never the temporary
    file)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"{path} is a folder: give a file name, such as {os.path.join(path, 'model.npz')}"
        )
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise type(error)(
            f"cannot create the folder {folder} for {path}: {error.strerror or error}"
        ) from None
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; give the usual mode of a new file
        os.replace(tmp, path)
    except OSError as error:
        raise type(error)(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
