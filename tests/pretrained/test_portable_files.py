"""Weight files say nothing of the machine that wrote them (issue 31): no absolute path in the shipped
manifests or weight files, nor in what training exports; rewriting a file's info keeps every stored
bit of its weights, and the manifest's SHA-256 follows the rewritten file."""

import hashlib
import json
import shutil

import jax
import numpy as np
import pytest
from flax import serialization, traverse_util

import mothernet_jax as mn
from mothernet_jax.pretrained import (
    SHIPPED_NAMES,
    is_absolute_path,
    load_info,
    load_pretrained,
    portable,
    sha256_of,
    shipped_path,
    update_info,
)
from mothernet_jax.train import preset
from mothernet_jax.train.export import export_weights

# the stored parameter arrays of the shipped files as trained (before their manifests lost the
# absolute paths of init_weights): `stored_params_digest` of each file at commit d391ad0
TRAINED_DIGESTS = {
    "small": "bf2367f351a8f9140df99fbc056ae62b02490e4a16a84b1b881422395d7b06df",
    "small-regression": "6aae0671c84c460862ab4547c5b0823dbed0188f94758c4fa39784af89980bcd",
}

# the starts of absolute paths of the machines that trained (and of most others)
FOLDERS = (b"/work/", b"/home/", b"/Users/", b"/root/", b"/tmp/", b"/mnt/", b"/data/")


def stored_params_digest(path) -> str:
    """SHA-256 of a weight file's parameter arrays as stored (names, dtypes, shapes and bytes), its
    config and info left out."""
    payload = serialization.msgpack_restore(path.read_bytes())
    flat = traverse_util.flatten_dict(payload["params"], sep="/")
    digest = hashlib.sha256()
    for name in sorted(flat):
        array = np.asarray(flat[name])
        digest.update(f"{name}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def absolute_paths(value, where="") -> list[str]:
    """Every string in a JSON value that is an absolute path, with where it is."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in absolute_paths(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in absolute_paths(item, f"{where}[{i}]")]
    return [f"{where}: {value}"] if isinstance(value, str) and is_absolute_path(value) else []


def paths_in_weight_file(path) -> list[str]:
    """The absolute paths in a weight file: its manifest, and the config and info inside the file."""
    payload = serialization.msgpack_restore(path.read_bytes())
    inside = {"config": json.loads(payload["config"]), "info": json.loads(payload["info"])}
    return absolute_paths(json.loads(path.with_suffix(".json").read_text()), "manifest") + absolute_paths(
        inside, "file"
    )


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_the_shipped_files_hold_no_absolute_path_and_the_weights_as_trained(name):
    path = shipped_path(name)
    assert paths_in_weight_file(path) == []
    for stored in (path.read_bytes(), path.with_suffix(".json").read_bytes()):  # nor in the raw bytes
        assert not [folder for folder in FOLDERS if folder in stored], path
    assert stored_params_digest(path) == TRAINED_DIGESTS[name]  # bitwise the trained weights
    info = load_info(path)
    assert info["sha256"] == sha256_of(path) and info["bytes"] == path.stat().st_size
    load_pretrained(path)  # the hash check passes
    assert load_info(name) == info  # the shipped name finds the same file


def test_rewriting_the_info_keeps_every_stored_bit_and_updates_the_hash(tmp_path):
    """update_info (how the shipped files were rewritten) drops the absolute paths, keeps the arrays
    bitwise and writes the new file's SHA-256 into the manifest, which load_pretrained checks."""
    copy = tmp_path / "small.msgpack"
    shutil.copyfile(shipped_path("small"), copy)
    shutil.copyfile(shipped_path("small").with_suffix(".json"), copy.with_suffix(".json"))
    before, _ = load_pretrained(copy)
    old_hash = load_info(copy)["sha256"]
    new_hash = update_info(copy, {"note": "/home/someone/runs/phase9/small.msgpack"})
    assert new_hash != old_hash and load_info(copy)["sha256"] == new_hash == sha256_of(copy)
    assert load_info(copy)["note"] == "small.msgpack" and paths_in_weight_file(copy) == []
    assert stored_params_digest(copy) == TRAINED_DIGESTS["small"]
    after, _ = load_pretrained(copy)
    jax.tree_util.tree_map(np.testing.assert_array_equal, after, before)


def test_portable_keeps_file_names_and_everything_else():
    value = {
        "a": "/abs/dir/w.msgpack",
        "b": ["C:\\Users\\me\\w.msgpack", "~/w.msgpack", "relative/w.msgpack", "budget"],
        "c": {"d": 1, "e": None, "f": "\\\\server\\share\\w.msgpack"},
    }
    assert portable(value) == {
        "a": "w.msgpack",
        "b": ["w.msgpack", "w.msgpack", "relative/w.msgpack", "budget"],
        "c": {"d": 1, "e": None, "f": "w.msgpack"},
    }


def test_what_training_exports_holds_no_absolute_path(tmp_path):
    """A training run's export (train/export.py): its config's init_weights, and the history its
    init weights carried in, name files, never folders of the machine that trained."""
    config = mn.preset("tiny")
    params = jax.tree_util.tree_map(np.asarray, mn.init_params(jax.random.key(0), config))
    init = tmp_path / "runs" / "phase1" / "tiny.msgpack"
    train_config = preset("tiny").replace(init_weights=str(init.resolve()))
    earlier = {"steps": 5, "datasets_seen": 40, "train_config": {"init_weights": "/data/phase0/tiny.msgpack"}}
    export = tmp_path / "out" / "tiny.msgpack"
    export_weights(
        export,
        params,
        train_config,
        steps=3,
        losses=[0.7, 0.6],
        carried={"history": [earlier]},
        stop_reason="steps",
    )
    assert paths_in_weight_file(export) == []
    info = load_info(export)
    assert info["train_config"]["init_weights"] == "tiny.msgpack"
    assert [p["train_config"]["init_weights"] for p in info["history"]] == ["tiny.msgpack", "tiny.msgpack"]
    assert str(tmp_path).encode() not in export.read_bytes()
    for stored in (export.read_bytes(), export.with_suffix(".json").read_bytes()):
        assert not [folder for folder in FOLDERS if folder in stored]
