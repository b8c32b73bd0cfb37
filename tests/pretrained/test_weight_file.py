"""The weight file format: round trip, and clear errors for damaged files."""

import json

import jax
import numpy as np
import pytest

import mothernet_jax as mn
from mothernet_jax.pretrained import WeightFileError, load_info, load_pretrained, save_pretrained


@pytest.fixture(scope="module")
def tiny():
    """Made once for the module (each test saves its own file)."""
    config = mn.preset("tiny")
    return mn.init_params(jax.random.key(0), config), config


@pytest.fixture
def saved(tmp_path, tiny):
    params, config = tiny
    path = tmp_path / "tiny.msgpack"
    save_pretrained(path, params, config, info={"steps": 7}, dtype="float32")
    return path, params, config


def test_round_trip_keeps_config_params_and_info(saved):
    path, params, config = saved
    loaded, loaded_config = load_pretrained(path)
    assert loaded_config == config
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, jax.tree_util.tree_map(np.asarray, params))
    assert load_info(path)["steps"] == 7


def test_bfloat16_storage_is_half_the_size_and_close(tmp_path, saved):
    path, params, config = saved
    small = tmp_path / "bf16.msgpack"
    save_pretrained(small, params, config)
    assert small.stat().st_size < 0.6 * path.stat().st_size
    loaded, _ = load_pretrained(small)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-3), loaded, params
    )


def test_a_truncated_file_is_refused(saved):
    path = saved[0]
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(WeightFileError, match="corrupted or truncated"):
        load_pretrained(path)


def test_a_flipped_byte_is_refused(saved):
    path = saved[0]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightFileError, match="SHA-256"):
        load_pretrained(path)


def test_damage_without_the_hash_check_is_still_an_error(saved):
    path = saved[0]
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(WeightFileError):
        load_pretrained(path, check_hash=False)


def test_params_that_do_not_fit_the_config_are_refused(tmp_path, saved):
    _, params, _ = saved
    path = tmp_path / "mismatch.msgpack"
    save_pretrained(path, params, mn.preset("tiny").replace(embed_dim=32, n_heads=2))
    with pytest.raises(WeightFileError, match="shape|fit"):
        load_pretrained(path)


def test_missing_file_and_manifest_are_named(tmp_path, saved):
    with pytest.raises(WeightFileError, match="does not exist"):
        load_pretrained(tmp_path / "nothing.msgpack")
    path = saved[0]
    path.with_suffix(".json").unlink()
    with pytest.raises(WeightFileError, match="missing"):
        load_pretrained(path)


def test_manifest_records_the_hash(saved):
    path = saved[0]
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert len(manifest["sha256"]) == 64 and manifest["file"] == path.name


def test_update_info_keeps_every_bit_and_writes_atomically(tmp_path, saved):
    from mothernet_jax.pretrained import update_info

    path, params, config = saved
    before = path.read_bytes()
    copy = tmp_path / "copy.msgpack"
    update_info(path, {"multiclass": "one_vs_rest", "steps": None}, dest=copy)
    assert path.read_bytes() == before  # the source is untouched
    info = load_info(copy)
    assert info["multiclass"] == "one_vs_rest" and "steps" not in info
    loaded, loaded_config = load_pretrained(copy)
    assert loaded_config == config
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, jax.tree_util.tree_map(np.asarray, params))
    bf16 = tmp_path / "bf16.msgpack"
    save_pretrained(bf16, params, config)
    rounded = load_pretrained(bf16)[0]
    update_info(bf16, {"note": "x"})  # bfloat16 storage stays bfloat16, bit for bit
    assert load_info(bf16)["storage_dtype"] == "bfloat16" and load_info(bf16)["note"] == "x"
    jax.tree_util.tree_map(np.testing.assert_array_equal, load_pretrained(bf16)[0], rounded)


def test_bad_manifests_folders_and_exports_are_weight_file_errors_naming_the_path(tmp_path, saved):
    path = saved[0]
    manifest = path.with_suffix(".json")
    manifest.write_text('{"sha256": "ab')  # cut short
    for load in (load_pretrained, load_info):
        with pytest.raises(WeightFileError, match=r"tiny.json is not a valid manifest \(not JSON") as error:
            load(path)
        assert str(manifest) in str(error.value) and "\n" not in str(error.value)
    manifest.unlink()
    with pytest.raises(WeightFileError, match="tiny.json is missing") as error:
        load_info(path)
    assert isinstance(error.value, FileNotFoundError)  # callers that catch a missing manifest still do
    with pytest.raises(WeightFileError, match=f"{tmp_path} is a folder, not a weight file"):
        load_pretrained(tmp_path)
    export = tmp_path / "model.npz"
    np.savez(export, header=np.array("{}"))
    for load in (load_pretrained, load_info):
        with pytest.raises(WeightFileError, match="is an exported classifier .*use mothernet_jax.load_predictor"):
            load(export)
