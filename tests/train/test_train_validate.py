"""Validation during training: which datasets it may read, what it measures, and its cost."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from shared_data import DATASETS, needs_datasets

from mothernet_jax.train.validate import TABPFN_TEST, ValidationConfig, Validator, validation_paths


def _write(folder: Path, name: str, rows: int = 60, classes: int = 2, categorical: bool = False, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) if classes == 2 else rng.integers(0, classes, rows)
    y[:classes] = np.arange(classes)
    cat = np.array([categorical, False, False])
    if categorical:
        x[:, 0] = (x[:, 0] > 0).astype(np.float32)
    np.savez(folder / f"{name}.npz", X=x, y=y, categorical=cat)


@needs_datasets
def test_validation_never_reads_a_tabpfn_test_dataset():
    """On the shared datasets: exactly the manifest's rows whose tabpfn_split is not `test`."""
    paths = validation_paths(DATASETS)
    manifest = [line.split("\t") for line in (DATASETS / "MANIFEST.tsv").read_text().splitlines()]
    header, rows = manifest[0], manifest[1:]
    split = header.index("tabpfn_split")
    expected = sorted(r[0] for r in rows if r[split] != "test")
    assert sorted(p.stem for p in paths) == expected and len(expected) == 18
    assert not {p.stem for p in paths} & TABPFN_TEST


def test_a_folder_without_manifest_still_leaves_out_the_tabpfn_test_names(tmp_path):
    for name in ("credit-g", "tic-tac-toe", "mine", "other"):
        _write(tmp_path, name)
    assert [p.stem for p in validation_paths(tmp_path)] == ["mine", "other"]
    (tmp_path / "MANIFEST.tsv").write_text("name\ttabpfn_split\nmine\ttest\nother\t-\n")
    assert [p.stem for p in validation_paths(tmp_path)] == ["other"]
    empty = tmp_path / "empty"
    empty.mkdir()
    _write(empty, "credit-g")
    with pytest.raises(FileNotFoundError, match="outside the TabPFN test set"):
        validation_paths(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        validation_paths(tmp_path / "nowhere")


def test_the_validator_scores_the_weights_it_is_given(tmp_path):
    import mothernet_jax as mn

    _write(tmp_path, "easy", seed=1)
    _write(tmp_path, "cats", categorical=True, seed=2)
    params, config = mn.load_pretrained()
    validator = Validator(tmp_path, config, ValidationConfig(splits=1, n_estimators=1))
    scores = validator(params)
    assert set(scores["val_datasets"]) == {"easy", "cats"}
    assert scores["val_datasets"]["easy"] > 0.9  # x0 > 0 decides the class
    assert scores["val_auc"] == pytest.approx(np.mean(list(scores["val_datasets"].values())))
    assert scores["val_auc_categorical"] == pytest.approx(scores["val_datasets"]["cats"])
    json.dumps(scores)
    # other weights, other score: the validator measures the parameters, not a cached model
    noisy = mn.init_params(__import__("jax").random.key(0), config)
    assert not math.isclose(validator(noisy)["val_auc"], scores["val_auc"])
    # the control is the untrained hypernetwork of split 0's key, at the same settings
    assert scores["val_auc_untrained"] == pytest.approx(validator(noisy)["val_auc"], abs=1e-12)
    assert scores["val_gap"] == pytest.approx(scores["val_auc"] - scores["val_auc_untrained"])


def test_bad_protocol_values_name_the_field():
    with pytest.raises(ValueError, match="ValidationConfig.splits"):
        ValidationConfig(splits=0)
    with pytest.raises(ValueError, match="ValidationConfig.multiclass"):
        ValidationConfig(multiclass="auto")


def test_validate_every_logs_val_auc_lines_and_the_cli_checks_its_options(tmp_path, capsys):
    from train_helpers import FAST_COMPILE, make_config

    from mothernet_jax import cli
    from mothernet_jax.train import read_metrics, train, validate

    _write(tmp_path, "easy", seed=1)
    config = make_config(steps=3)
    validator = validate.for_training(config.model, tmp_path)
    assert validator.names == ["easy"]
    result = train(config, tmp_path / "run", progress=False, compiler_options=FAST_COMPILE,
                   validator=validator, validate_every=1e-6)  # fmt: skip
    lines = [m for m in read_metrics(tmp_path / "run") if "val_auc" in m]
    # every step is past the (tiny) interval, and once more at the end
    assert [m["step"] for m in lines] == [1, 2, 3, 3]
    for m in lines:
        assert m["datasets"] == 8 * m["step"] and 0 < m["val_auc"] <= 1 and m["seconds"] > 0
        assert set(m["val_datasets"]) == {"easy"}
    assert [m["seconds"] for m in lines] == sorted(m["seconds"] for m in lines)
    assert result.step == 3
    # resumed, the training seconds go on from those stored in the checkpoint
    train(config.replace(steps=4), tmp_path / "run", progress=False, compiler_options=FAST_COMPILE,
          validator=validator)  # fmt: skip
    resumed = [m for m in read_metrics(tmp_path / "run") if "val_auc" in m][-1]
    assert resumed["step"] == 4 and resumed["seconds"] > lines[-1]["seconds"]
    bad = ["train", "--preset", "tiny", "--workdir", str(tmp_path / "bad"), "--steps", "1"]
    assert cli.main([*bad, "--validate-every", "10", "--validation-data", str(tmp_path / "none")]) == 1
    assert "validation data" in capsys.readouterr().err
    assert cli.main([*bad, "--validate-every", "-1", "--validation-data", str(tmp_path)]) == 1
    assert "--validate-every must be a positive number" in capsys.readouterr().err


def test_the_command_scores_weight_files_and_names_a_bad_one(tmp_path, capsys):
    """`python -m mothernet_jax.train.validate` on the shipped file: the Validator's figure."""
    import mothernet_jax as mn
    from mothernet_jax.pretrained import PACKAGE_DIR
    from mothernet_jax.train import validate

    DEFAULT_WEIGHTS = PACKAGE_DIR / "small.msgpack"

    _write(tmp_path, "easy", seed=1)
    _write(tmp_path, "cats", categorical=True, seed=2)
    assert validate.main([str(DEFAULT_WEIGHTS), "--data", str(tmp_path), "--json"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    params, config = mn.load_pretrained()
    expected = Validator(tmp_path, config)(params)
    assert line["val_auc"] == pytest.approx(expected["val_auc"]) and line["weights"] == str(DEFAULT_WEIGHTS)
    assert set(line["val_datasets"]) == {"easy", "cats"}
    assert validate.main([str(tmp_path / "missing.msgpack"), "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("validate: ") and "missing.msgpack" in err and len(err.splitlines()) == 1
