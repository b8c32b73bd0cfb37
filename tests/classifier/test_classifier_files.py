"""Every file error names the path and says what is wrong, in one line: export targets, exported
classifiers and weight files given to the estimator."""

import json
import zipfile

import numpy as np
import pytest
from estimator_helpers import random_weights

import mothernet_jax as mn
from mothernet_jax.estimator.classifier import MotherNetClassifier
from mothernet_jax.pretrained import WeightFileError, save_pretrained
from mothernet_jax.runtime.predictor import PredictorFileError, load_predictor

CONFIG = mn.preset("tiny")


@pytest.fixture(scope="module")
def tiny_weights():
    """A random `tiny` model, made when a test of this module first asks for it (not at import)."""
    return random_weights(CONFIG, 3)


@pytest.fixture(scope="module")
def fitted(tiny_weights):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    return MotherNetClassifier(weights=tiny_weights, n_estimators=1).fit(X, y), X


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    assert "allow_pickle" not in message, message  # never suggest loading pickles
    return message


def test_export_creates_a_missing_folder_or_names_what_is_wrong(fitted, tmp_path):
    clf, X = fitted
    target = tmp_path / "missing" / "folder" / "model.npz"
    clf.export(target)
    np.testing.assert_allclose(load_predictor(target).predict_proba(X), clf.predict_proba(X), atol=1e-7)
    assert [p.name for p in target.parent.iterdir()] == ["model.npz"]  # no temporary file left

    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(OSError) as error:
        clf.export(tmp_path / "a_file" / "model.npz")
    assert f"cannot create the folder {tmp_path / 'a_file'}" in one_line(error)

    with pytest.raises(IsADirectoryError) as error:
        clf.export(tmp_path)
    assert f"{tmp_path} is a folder" in one_line(error)

    too_long = tmp_path / "written" / ("x" * 300 + ".npz")  # the rename fails, as root too
    with pytest.raises(OSError) as error:
        clf.export(too_long)
    assert f"cannot write {too_long}: File name too long" in one_line(error)
    assert ".tmp-" not in str(error.value) and list((tmp_path / "written").iterdir()) == []


def test_load_predictor_names_the_path_and_the_problem(fitted, tmp_path, tiny_weights):
    clf, _ = fitted
    good = tmp_path / "model.npz"
    clf.export(good)
    data = good.read_bytes()

    cases = {}
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    cases["truncated.npz"] = "damaged or truncated exported classifier or regressor"
    weights = tmp_path / "weights.msgpack"
    save_pretrained(weights, tiny_weights.params, CONFIG, dtype="float32")
    cases["weights.msgpack"] = "is a weight file, not an exported classifier"
    (tmp_path / "notes.txt").write_text("hello")
    cases["notes.txt"] = r"not an exported classifier or regressor \(not a .npz archive\)"
    (tmp_path / "empty.npz").write_bytes(b"")
    cases["empty.npz"] = r"not an exported classifier or regressor \(empty\)"
    np.save(tmp_path / "array.npy", np.zeros(3))
    cases["array.npy"] = "a single NumPy array"
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    cases["other.npz"] = "not an exported classifier"
    np.savez(tmp_path / "objects.npz", header=np.array([{"a": 1}], dtype=object))
    cases["objects.npz"] = "pickled"
    (tmp_path / "folder").mkdir()
    cases["folder"] = "is a folder"
    with zipfile.ZipFile(good) as archive, zipfile.ZipFile(tmp_path / "member_missing.npz", "w") as out:
        for name in archive.namelist():
            if name != "member0/mean.npy":
                out.writestr(name, archive.read(name))
    cases["member_missing.npz"] = "damaged or truncated exported classifier "
    for name, problem in cases.items():
        with pytest.raises(PredictorFileError, match=problem) as error:
            load_predictor(tmp_path / name)
        assert str(tmp_path / name) in one_line(error), name
    with pytest.raises(FileNotFoundError, match="nothing.npz does not exist"):
        load_predictor(tmp_path / "nothing.npz")


def test_weights_that_are_not_a_weight_file(fitted, tmp_path, tiny_weights):
    clf, X = fitted
    y = (X[:, 0] > 0).astype(int)
    export = tmp_path / "model.npz"
    clf.export(export)
    renamed = tmp_path / "model.msgpack"  # an export under a weight file's name
    renamed.write_bytes(export.read_bytes())
    weights = tmp_path / "w.msgpack"
    save_pretrained(weights, tiny_weights.params, CONFIG, dtype="float32")
    weights.with_suffix(".json").write_text("{not json")
    cases = {
        export: "is an exported classifier .* use mothernet_jax.load_predictor",
        renamed: "is an exported classifier .* use mothernet_jax.load_predictor",
        tmp_path: "is a folder, not a weight file",
        weights: r"w.json is not a valid manifest \(not JSON",
    }
    for path, problem in cases.items():
        with pytest.raises(WeightFileError, match=problem) as error:
            MotherNetClassifier(weights=path, n_estimators=1).fit(X, y)
        assert str(path if path != weights else path.with_suffix(".json")) in one_line(error)
    weights.with_suffix(".json").write_text(json.dumps([1, 2]))
    with pytest.raises(WeightFileError, match="not a JSON object"):
        MotherNetClassifier(weights=weights, n_estimators=1).fit(X, y)
