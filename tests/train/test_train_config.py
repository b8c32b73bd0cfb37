"""TrainConfig: presets, JSON round trip, --set overrides, schedules, and the CLI's help (no compiling)."""

import json

import pytest

import priors
from mothernet_jax import cli
from mothernet_jax.config import ModelConfig
from mothernet_jax.train import config as train_config
from mothernet_jax.train.config import TrainConfig


@pytest.mark.parametrize("name", sorted(train_config.PRESETS))
def test_presets_round_trip_through_json(name):
    config = train_config.preset(name)
    assert TrainConfig.from_json(config.to_json()) == config
    assert hash(config) == hash(TrainConfig.from_dict(json.loads(config.to_json())))
    # the docstring's command (tests/documents) runs this preset: the CLI resolves `--preset name` to it
    args = cli.build_parser().parse_args(["train", "--preset", name, "--workdir", "unused"])
    assert cli.train_config(args) == config


def test_presets_compute_in_bf16_on_gpu_and_float32_on_cpu():
    assert train_config.preset("tiny").model.dtype == "float32"
    assert train_config.preset("small").model.dtype == "bfloat16"
    paper = train_config.preset("paper")
    assert paper.model == ModelConfig(dtype="bfloat16")
    assert (paper.learning_rate, paper.adam_b1, paper.adam_b2, paper.grad_clip) == (3e-5, 0.9, 0.999, 1.0)
    assert paper.min_learning_rate == 1e-8
    assert paper.prior == priors.preset("paper")


def test_reference_batch_grows_from_8_to_64():
    paper = train_config.preset("paper")
    sizes = [paper.datasets_per_step(s) for s in range(0, paper.steps, paper.steps // 16)]
    assert sizes[0] == 8 and sizes[-1] == 64 and sizes == sorted(sizes)
    config = TrainConfig(
        prior=priors.preset("tiny"), batch_size=8, prior_batch=1, accumulation=((0, 1), (10, 2))
    )
    assert [config.micro_batches(s) for s in (0, 9, 10, 100)] == [1, 1, 2, 2]
    assert config.datasets_seen(15) == 8 * 10 + 16 * 5


def test_overrides_reach_nested_fields():
    config = train_config.tiny().with_overrides(
        [
            "model.dtype=bfloat16",
            "learning_rate=1",
            "prior.n_rows=256",
            "accumulation=[[0, 1], [100, 4]]",
            "init_weights=weights/small.msgpack",
            "attention=xla",
        ]
    )
    assert config.model.dtype == "bfloat16"
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config.prior.n_rows == 256
    assert config.accumulation == ((0, 1), (100, 4))
    assert config.init_weights == "weights/small.msgpack"
    assert TrainConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("learning_rat=1", "unknown setting"),
        ("model.width=3", "unknown setting"),
        ("steps.x=3", "no sub-fields"),
        ("no-equals-sign", "key=value"),
        ("batch_size=12", "multiple of prior_batch"),
        ("model.dtype=float16", "dtype"),
        ("accumulation=[[5, 2]]", "start at step 0"),
    ],
)
def test_bad_overrides_are_reported(assignment, message):
    config = train_config.tiny().replace(prior_batch=8, batch_size=16) if "prior_batch" in message else None
    config = config or train_config.tiny()
    with pytest.raises(ValueError, match=message):
        config.with_overrides([assignment])


def test_cli_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    parser = cli.build_parser()
    train_parser = parser._subparsers._group_actions[0].choices["train"]
    for action in train_parser._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, f"{action.option_strings} has no help"
    for field in ("learning_rate", "checkpoint_every", "model.", "prior.", "accumulation"):
        assert field in text


def test_cli_resolves_preset_steps_and_overrides(tmp_path, capsys):
    argv = ["train", "--preset", "tiny", "--workdir", str(tmp_path), "--steps", "7", "--budget", "90"]
    argv += ["--set", "model.dtype=bfloat16", "--set", "learning_rate=2e-4", "--print-config"]
    assert cli.main(argv) == 0
    config = TrainConfig.from_json(capsys.readouterr().out)
    assert config == train_config.tiny().replace(
        steps=7, budget_s=90.0, learning_rate=2e-4, model=train_config.tiny().model.replace(dtype="bfloat16")
    )
    with pytest.raises(SystemExit, match="give --preset"):
        cli.main(["train", "--workdir", str(tmp_path / "empty"), "--print-config"])
    saved = tmp_path / "config.json"
    saved.write_text(config.to_json())
    assert cli.main(["train", "--config", str(saved), "--workdir", str(tmp_path), "--print-config"]) == 0
    assert TrainConfig.from_json(capsys.readouterr().out) == config


def test_settings_of_one_nested_config_apply_together():
    settings = ["prior.max_hidden=32", "prior.width_buckets=[32]", "prior.max_features=10", "seed=3"]
    config = train_config.tiny().with_overrides(settings)  # each alone would be refused
    assert (config.prior.max_hidden, config.prior.width_buckets, config.seed) == (32, (32,), 3)
    with pytest.raises(ValueError, match="max_hidden"):
        train_config.tiny().with_overrides(["prior.max_hidden=32"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--steps", "-5"], "TrainConfig.steps must be a positive integer, got -5"),
        (["--budget", "-1"], "--budget must be a positive number of seconds, got -1"),
        (["--budget", "0"], "--budget must be a positive number of seconds, got 0"),  # not "no budget"
        (["--set", "learning_rate=abc"], "TrainConfig.learning_rate must be a number, got 'abc'"),
        (["--set", "warmup_fraction=1.5"], "TrainConfig.warmup_fraction must lie in [0, 1), got 1.5"),
    ],
)
def test_bad_settings_are_one_line_naming_the_problem(tmp_path, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--preset", "tiny", "--workdir", str(tmp_path), *extra])
    assert str(exit_info.value.code) == f"mothernet-jax train: {message}"


def test_a_bad_config_file_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text('{"steps": 3,')
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--config", str(tmp_path / "config.json"), "--workdir", str(tmp_path)])
    text = str(exit_info.value.code)
    assert text.startswith(f"mothernet-jax train: --config {tmp_path / 'config.json'}: ") and "\n" not in text


def test_a_work_directory_of_another_model_and_a_bad_manifest_are_one_line(tmp_path, capsys):
    import jax.numpy as jnp

    from mothernet_jax.train.checkpoint import Checkpoints
    from mothernet_jax.train.step import TrainState

    # a work directory trained with the tiny preset (a checkpoint's config is read before its state)
    checkpoints = Checkpoints(tmp_path / "tiny")
    try:
        checkpoints.save(TrainState(jnp.int32(0), {"w": jnp.zeros(2)}, {}), train_config.tiny(), 0)
    finally:
        checkpoints.close()
    argv = ["train", "--preset", "small", "--workdir", str(tmp_path / "tiny"), "--devices", "1"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"mothernet-jax train: the checkpoint in {tmp_path / 'tiny'} was trained with another model config ("
    )
    assert "\n" not in err
    # initial weights whose manifest is not JSON
    (tmp_path / "w.msgpack").write_bytes(b"weights")
    (tmp_path / "w.json").write_text("{not json")
    argv = ["train", "--preset", "tiny", "--workdir", str(tmp_path / "new"), "--devices", "1"]
    assert cli.main([*argv, "--init-weights", str(tmp_path / "w.msgpack")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mothernet-jax train: init_weights {tmp_path / 'w.msgpack'}: ") and "\n" not in err


def test_a_config_json_of_a_former_version_loads_and_a_removed_setting_in_use_is_refused():
    # config.json and the checkpoints' configs once held these settings (weight decay, the split
    # curriculum; in the model RMSNorm, pre-norm, residual scale, extra head layers), never measured
    # in docs/TRAINING.md and removed: at their former defaults they load as before
    config = train_config.tiny()
    old = json.loads(config.to_json())
    old.update(weight_decay=0.0, split_curriculum_steps=0)
    old["model"].update(head_extra_layers=0, norm="layernorm", norm_first=False, residual_scale=1.0)
    assert TrainConfig.from_json(json.dumps(old)) == config
    assert TrainConfig.REMOVED == {"weight_decay": 0.0, "split_curriculum_steps": 0}
    for key, value, where in [
        ("weight_decay", 0.01, old),
        ("split_curriculum_steps", 100, old),
        ("norm_first", True, old["model"]),
    ]:
        changed = json.loads(json.dumps(old))
        (changed["model"] if where is old["model"] else changed)[key] = value
        with pytest.raises(ValueError, match=rf"^(Train|Model)Config\.{key} = {json.dumps(value)} cannot be honoured"):
            TrainConfig.from_json(json.dumps(changed))
    # the CLI's --set: the same rule
    assert config.with_overrides(["weight_decay=0", "model.norm_first=false"]) == config
    with pytest.raises(ValueError, match="TrainConfig.weight_decay = 0.1 cannot be honoured"):
        config.with_overrides(["weight_decay=0.1"])
    assert "weight_decay" not in cli.settings_help() and "split_curriculum" not in cli.settings_help()
