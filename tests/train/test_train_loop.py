"""The loop and the CLI: resume by itself, metrics and progress, time limit, weights in and out,
and the loss falls."""

import chex
import numpy as np
import pytest
from train_helpers import committed_steps, fast_train, make_config

from mothernet_jax import cli
from mothernet_jax.train import config as train_config
from mothernet_jax.train import read_metrics, train


@pytest.mark.slow
def test_cli_trains_resumes_by_itself_and_logs(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    args = ["train", "--preset", "tiny", "--workdir", workdir, "--set", "log_every=2"]
    assert cli.main([*args, "--steps", "4", "--stop-at", "2", "--set", "checkpoint_every=2"]) == 0
    first = capsys.readouterr().err
    assert "loss=" in first and "datasets_per_s=" in first  # the progress bar
    assert "step 2/4 (stop_at)" in first
    assert cli.main(["train", "--workdir", workdir, "--no-progress"]) == 0  # the saved config
    second = capsys.readouterr().err
    assert "resuming from step 2" in second and "step 4/4 (completed)" in second
    assert committed_steps(tmp_path / "run") == [2, 4]
    lines = read_metrics(workdir)
    assert [line["step"] for line in lines] == [2, 4]
    for line in lines:
        assert np.isfinite(line["loss"]) and line["datasets_per_s"] > 0 and line["datasets_per_step"] == 8
    assert (tmp_path / "run" / "config.json").exists()


def test_a_time_limit_stops_cleanly_with_a_checkpoint(tmp_path):
    """A limit already spent (by the compiles) stops before the first step: no step would fit."""
    result = fast_train(make_config(steps=1000), tmp_path, time_limit=1e-3)
    assert result.stop_reason == "time_limit" and result.step == 0
    assert committed_steps(tmp_path) == [0]


def test_export_then_start_a_fresh_run_from_the_weights(tmp_path):
    from mothernet_jax.pretrained import load_info, load_pretrained

    exported = tmp_path / "weights.msgpack"
    result = fast_train(make_config(steps=2), tmp_path / "a", export=exported)
    params, model = load_pretrained(exported)
    assert model == result.config.model
    chex.assert_trees_all_close(params, result.params, atol=0.0, rtol=0)  # stored as float32: every bit
    assert load_info(exported)["storage_dtype"] == "float32"
    config = make_config(steps=2, init_weights=str(exported))
    start = fast_train(config, tmp_path / "b", stop_at=0)
    assert start.step == 0 and committed_steps(tmp_path / "b") == [0]
    chex.assert_trees_all_close(start.params, params, atol=0.0, rtol=0)
    other = config.replace(model=config.model.replace(n_layers=1))
    with pytest.raises(ValueError, match="model config differs"):
        fast_train(other, tmp_path / "c")
    # what `train --help` tells a user to do with them
    from mothernet_jax import MotherNetClassifier

    X = np.random.default_rng(0).normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    proba = MotherNetClassifier(weights=str(exported), n_estimators=1).fit(X, y).predict_proba(X)
    assert proba.shape == (40, 2) and np.allclose(proba.sum(axis=1), 1.0)


@pytest.mark.slow
def test_the_loss_falls_on_the_tiny_preset():
    """The tiny preset, 300 steps of 8 datasets on CPU: the mean loss of the last 50 steps is at
    most 0.85 x that of the first 50 (measured: about 0.5)."""
    result = train(train_config.tiny().replace(steps=300), None, progress=False)
    losses = np.asarray(result.losses)
    # NaN: a batch of 8 without a valid dataset (rare; such a step has no loss)
    assert len(losses) == 300 and np.sum(np.isfinite(losses)) >= 290
    first, last = np.nanmean(losses[:50]), np.nanmean(losses[-50:])
    assert last <= 0.85 * first, (first, last)


def test_exports_carry_the_history_and_recommendation_of_their_init_weights(tmp_path):
    from mothernet_jax.pretrained import load_info, update_info

    first = tmp_path / "first.msgpack"
    fast_train(make_config(steps=2), tmp_path / "a", export=first)
    update_info(first, {"multiclass": "one_vs_rest", "finetune_steps": 100})
    # phase 2 starts from phase 1 and exports over its own init file, as the model card's command
    # does; stopping and resuming must not count phase 1 twice
    config = make_config(steps=3, init_weights=str(first))
    fast_train(config, tmp_path / "b", stop_at=1, export=first)
    fast_train(config, tmp_path / "b", export=first)
    info = load_info(first)
    assert [phase["steps"] for phase in info["history"]] == [2, 3]
    assert info["total_steps"] == 5 and info["total_datasets_seen"] == 5 * 8
    assert info["multiclass"] == "one_vs_rest" and info["finetune_steps"] == 100 and info["steps"] == 3
    assert info["history"][1]["train_config"]["init_weights"] == "first.msgpack"  # a file name, no folder
