"""Shipped weights: one pickle-free msgpack file per model, with its config and a checked SHA-256.

File layout (`flax.serialization` msgpack, no pickle, nothing executable):

    {"format": "mothernet-jax-weights", "version": 1,
     "config": <ModelConfig as JSON>, "info": <JSON: steps, datasets seen, ...>,
     "params": <the params pytree; arrays stored as bfloat16 or float32>}

Beside it, `NAME.json` records the file's SHA-256 (and the same info, for people). The loader checks
every field of the manifest that the library writes or reads (`MANIFEST_FIELDS`: e.g. "multiclass"
must be "native" or "one_vs_rest"), the hash before it parses anything, then every array's shape
against the config, so a corrupted or truncated file is an error, never a silently wrong model; a
file that is not a weight file at all (a pickle, say) is refused as such before anything is read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import serialization

from mothernet_jax.config import PRESETS, ModelConfig
from mothernet_jax.runtime.npz import ZIP_MAGIC, atomic_write, export_noun
from mothernet_jax.settings import LIBRARY_DEFAULTS, SETTINGS, check_combination

FORMAT = "mothernet-jax-weights"
VERSION = 1
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_NAME = "small"


MANIFEST_KEYS = ("file", "sha256", "bytes", "storage_dtype", "config")  # written by save_pretrained
STORAGE_DTYPES = ("bfloat16", "float32", "float16")
MARKER = FORMAT.encode()  # every weight file holds its format name near its start (after the config)


class WeightFileError(ValueError):
    """A weight file that is missing, corrupted, truncated or does not fit its config."""


class MissingWeightFileError(WeightFileError, FileNotFoundError):
    """A weight file, or the manifest (NAME.json) beside it, that does not exist; also a
    FileNotFoundError."""


class Weights(NamedTuple):
    """A params pytree with its config, as `load_pretrained` returns them: `params, config =
    load_pretrained()` unpacks it, and `MotherNetClassifier(weights=...)` takes it.

    It is immutable, so copying it shares the arrays (`copy.deepcopy` and `sklearn.clone` of an
    estimator holding it copy nothing), and its repr is one short line, not 5 M numbers.
    """

    params: Any
    config: ModelConfig

    def __repr__(self) -> str:
        name = next((n for n, make in PRESETS.items() if make() == self.config), "custom")
        count = sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(self.params))
        size = f"{count / 1e6:.1f}M" if count >= 1e6 else f"{count:,}"
        return f"Weights(config={name}, {size} parameters)"

    def __copy__(self) -> Weights:
        return self

    def __deepcopy__(self, memo) -> Weights:
        return self


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_absolute_path(value: str) -> bool:
    """Whether a string is an absolute path of some machine: POSIX (/...), home (~/...), or Windows
    (C:\\... or \\\\server\\...)."""
    return value.startswith(("/", "~")) or PureWindowsPath(value).is_absolute()


def portable(value):
    """`value` (JSON: dicts, lists, strings, numbers) with every absolute path replaced by its file
    name, so that a manifest says nothing of the machine that wrote it: e.g. a training config's
    ``"init_weights": "/home/me/runs/small.msgpack"`` becomes ``"small.msgpack"``."""
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [portable(item) for item in value]
    if isinstance(value, str) and is_absolute_path(value):
        return PureWindowsPath(value).name if "\\" in value else PurePosixPath(value).name
    return value


def save_pretrained(
    path: str | os.PathLike,
    params,
    config: ModelConfig,
    *,
    info: dict[str, Any] | None = None,
    dtype: str = "bfloat16",
) -> str:
    """Write `params` and `config` to `path` (msgpack) and `path` with suffix .json (manifest).

    Both writes are atomic (temporary file, then rename). Arrays are stored as `dtype`
    ("bfloat16" halves the file; "float32" keeps every bit). `info` is written `portable`: an
    absolute path in it (a training config's init_weights) becomes its file name. Returns the
    file's SHA-256.
    """
    path = Path(path)
    info = portable(dict(info or {}))
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(STORAGE_DTYPES)}; got {dtype!r}")
    check_manifest({"storage_dtype": dtype, "config": config.to_dict(), **(info or {})}, path.with_suffix(".json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    store = np.dtype(jax.numpy.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    arrays = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32).astype(store), params)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_json(),
        "info": json.dumps(info, sort_keys=True),
        "params": serialization.to_state_dict(arrays),
    }
    data = serialization.msgpack_serialize(payload)
    atomic_write(path, lambda f: f.write(data))
    digest = sha256_of(path)
    manifest = {
        "file": path.name,
        "sha256": digest,
        "bytes": path.stat().st_size,
        "storage_dtype": dtype,
        "config": config.to_dict(),
        **info,
    }
    text = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    atomic_write(path.with_suffix(".json"), lambda f: f.write(text))
    return digest


REGRESSION_NAME = "small-regression"  # MotherNetRegressor's weights (where shipped)
SHIPPED_NAMES = (DEFAULT_NAME, REGRESSION_NAME)


def shipped_path(name: str = DEFAULT_NAME) -> Path:
    """The path of a weight file shipped in the package (it may be absent)."""
    return PACKAGE_DIR / f"{name}.msgpack"


def _default_path() -> Path:
    return shipped_path(DEFAULT_NAME)


def weight_path(path: str | os.PathLike | None) -> Path:
    """Where the weights that `path` names are: None, the shipped default (`small`); a shipped name
    (`SHIPPED_NAMES`: "small", "small-regression") where no file of that name is in the working
    directory, its file in the package; else the path itself."""
    if path is None:
        return _default_path()
    if isinstance(path, str) and path in SHIPPED_NAMES and not os.path.exists(path):
        return shipped_path(path)
    return Path(path)


def load_pretrained(path: str | os.PathLike | None = None, *, check_hash: bool = True) -> Weights:
    """The shipped weights (or those at `path`, or of a shipped name: `load_pretrained(
    "small-regression")`) as `Weights(params, config)`, params in float32; `params, config =
    load_pretrained()` unpacks them.

    Offline: reads the file installed with the package. Raises `WeightFileError` (a ValueError)
    if the file is missing, its SHA-256 differs from its manifest, it cannot be parsed, or an array
    does not fit the config.
    """
    path = weight_path(path)
    _check_weight_path(path)
    manifest_path = path.with_suffix(".json")
    manifest = _read_manifest(manifest_path) if manifest_path.exists() else None
    if check_hash:
        if manifest is None:
            raise MissingWeightFileError(f"{manifest_path} is missing: cannot check the SHA-256 of {path}")
        actual = sha256_of(path)
        if actual != manifest.get("sha256"):
            raise WeightFileError(
                f"{path} is corrupted or truncated: its SHA-256 is {actual}, the manifest says "
                f"{manifest.get('sha256')}"
            )
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
    except Exception as error:  # msgpack raises several types on damaged input
        raise WeightFileError(f"{path} is not a readable weight file: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightFileError(f"{path} is not a mothernet-jax weight file")
    if payload.get("version") != VERSION:
        raise WeightFileError(f"{path}: unsupported weight file version {payload.get('version')}")
    config = ModelConfig.from_json(payload["config"])
    params = _check_params(payload["params"], config, path)
    return Weights(params, config)


def _check_weight_path(path: Path) -> None:
    """WeightFileError, in one line naming the path, for what cannot be a weight file: nothing
    there, a folder, an exported classifier or regressor (a .npz archive)."""
    if path.is_dir():
        raise WeightFileError(f"{path} is a folder, not a weight file: give the .msgpack file inside it")
    if not path.exists():
        if path in [shipped_path(name) for name in SHIPPED_NAMES]:
            hint = " (the package was installed without its weights)"
        else:
            hint = f"; the shipped weights are named {' and '.join(repr(n) for n in SHIPPED_NAMES)}"
        raise MissingWeightFileError(f"weight file {path} does not exist{hint}")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if head.startswith(ZIP_MAGIC) or path.suffix == ".npz":
        raise WeightFileError(
            f"{path} is {export_noun(path)} (a .npz archive), not a weight file: "
            "use mothernet_jax.load_predictor to load it"
        )
    if MARKER not in head and not path.with_suffix(".json").exists():  # with a manifest: its hash tells
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            what = "a Python pickle, which mothernet-jax never loads"
        else:
            what = "empty" if not head else "no mothernet-jax msgpack header"
        raise WeightFileError(
            f"{path} is not a weight file ({what}): weight files are written by "
            "mothernet_jax.save_pretrained or mothernet-jax train --export"
        )


def _read_manifest(manifest_path: Path) -> dict[str, Any]:
    """The JSON manifest beside a weight file; WeightFileError naming it if it is missing, not
    JSON, or not a JSON object."""
    if manifest_path.is_dir():
        raise WeightFileError(f"{manifest_path} is a folder, not a weight file's manifest")
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise MissingWeightFileError(
            f"{manifest_path} is missing: a weight file's manifest sits beside it"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightFileError(f"{manifest_path} is not a valid manifest (not JSON: {error})") from None
    if not isinstance(manifest, dict):
        raise WeightFileError(f"{manifest_path} is not a valid manifest (not a JSON object)")
    check_manifest(manifest, manifest_path)
    return manifest


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _model_config(value) -> bool:
    return isinstance(value, dict) and not _model_config_error(value)


def _model_config_error(value: dict) -> str:
    """"" when `value` is a ModelConfig's JSON object, else why not, after a colon: a field it
    lacks, one it does not know, a value it refuses (a removed setting at other than its former
    default)."""
    try:
        ModelConfig.from_dict(value)
    except Exception as error:
        return f": {error}"
    return ""


# every field the library writes or reads: field -> (test, what it must be). Other fields are free
# notes (update_info(path, {"note": ...})).
MANIFEST_FIELDS = {
    "file": (lambda v: isinstance(v, str) and bool(v), "a file name"),
    "sha256": (
        lambda v: isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v),
        "64 lowercase hexadecimal digits",
    ),
    "bytes": (_count, "an integer >= 0"),
    "storage_dtype": (lambda v: v in STORAGE_DTYPES, f"one of {', '.join(STORAGE_DTYPES)}"),
    "config": (_model_config, "a ModelConfig as a JSON object"),
    # the estimators' settings the weights recommend ("auto" parameters): checked as the estimators
    # check them, worded in JSON's terms (null, not None)
    **{name: (test, expected.replace("None", "null")) for name, (test, expected, _, _) in SETTINGS.items()},
    "steps": (_count, "an integer >= 0"),
    "datasets_seen": (_count, "an integer >= 0"),
    "total_steps": (_count, "an integer >= 0"),
    "total_datasets_seen": (_count, "an integer >= 0"),
    "loss_last_50": (
        lambda v: v is None or (isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)),
        "a finite number or null",
    ),
    "stop_reason": (lambda v: isinstance(v, str), "a string"),
    "train_config": (lambda v: isinstance(v, dict), "a JSON object"),
    "history": (lambda v: isinstance(v, list) and all(isinstance(p, dict) for p in v), "a list of JSON objects"),
}


def check_manifest(manifest: dict[str, Any], where: Path) -> None:
    """WeightFileError, in one line naming the manifest `where` and the field, for a field of
    `MANIFEST_FIELDS` whose value is not what it must be (e.g. ``"multiclass": "bogus"``), or
    recommended settings that contradict each other (`settings.check_combination`)."""
    for field, (test, expected) in MANIFEST_FIELDS.items():
        if field in manifest and not test(manifest[field]):
            value = json.dumps(manifest[field])
            value = value if len(value) <= 60 else value[:57] + "..."
            why = ""  # a config's reason, e.g. the name of a removed setting it holds
            if field == "config" and isinstance(manifest[field], dict):
                why = _model_config_error(manifest[field])
            raise WeightFileError(f"{where}: manifest field {field!r} is {value}; expected {expected}{why}")
    recommended = {name: manifest[name] for name in SETTINGS if name in manifest}
    if recommended:
        try:  # settings the estimators would refuse together (as they resolve them)
            check_combination({**LIBRARY_DEFAULTS, **recommended})
        except ValueError as error:
            raise WeightFileError(f"{where}: the manifest recommends {error}") from None


def load_info(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest beside a weight file: SHA-256, config, steps, datasets seen, ...
    Raises WeightFileError, naming the file, for a folder, an exported estimator, or a missing or
    malformed manifest."""
    path = weight_path(path)
    _check_weight_path(path)
    return _read_manifest(path.with_suffix(".json"))


def update_info(
    path: str | os.PathLike, changes: dict[str, Any], *, dest: str | os.PathLike | None = None
) -> str:
    """Rewrite the weight file at `path` (to `dest`, default in place) with its info updated by
    `changes` (a value of None removes the key): e.g. the classifier's recommended
    ``{"multiclass": "one_vs_rest"}``. The arrays keep their stored dtype and every bit; both
    writes are atomic. Returns the new SHA-256."""
    path = Path(path)
    params, config = load_pretrained(path)
    info = {k: v for k, v in load_info(path).items() if k not in MANIFEST_KEYS}
    info.update(changes)
    info = {k: v for k, v in info.items() if v is not None}
    storage = load_info(path).get("storage_dtype", "bfloat16")
    return save_pretrained(path if dest is None else dest, params, config, info=info, dtype=storage)


def _check_params(stored, config: ModelConfig, path: Path):
    from mothernet_jax.model.mothernet import init_params

    expected = jax.eval_shape(lambda k: init_params(k, config), jax.random.key(0))
    expected_flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(expected)[0]}
    try:
        restored = serialization.from_state_dict(expected, stored)
    except Exception as error:
        raise WeightFileError(
            f"{path}: the stored parameters do not fit the stored config: {error}"
        ) from error
    out = {}
    for key, value in jax.tree_util.tree_flatten_with_path(restored)[0]:
        name = jax.tree_util.keystr(key)
        value = np.asarray(value)
        if value.shape != expected_flat[name].shape:
            raise WeightFileError(
                f"{path}: {name} has shape {value.shape}, expected {expected_flat[name].shape}"
            )
        if not np.all(np.isfinite(value.astype(np.float32))):
            raise WeightFileError(f"{path}: {name} holds non-finite values")
        out[name] = value.astype(np.float32)
    leaves = [out[jax.tree_util.keystr(k)] for k, _ in jax.tree_util.tree_flatten_with_path(expected)[0]]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(expected), leaves)
