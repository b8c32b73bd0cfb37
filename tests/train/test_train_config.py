"""TrainConfig: presets, JSON round trip, --set overrides, schedules, and the CLI's help (no compiling)."""

import json

import pytest

import priors
from mothernet_jax import cli
from mothernet_jax.config import ModelConfig
from mothernet_jax.train import config as train_config
from mothernet_jax.train.config import TrainConfig
from mothernet_jax.train.schedule import BudgetClock, learning_rate


@pytest.mark.parametrize("name", sorted(train_config.PRESETS))
def test_presets_round_trip_through_json(name):
    config = train_config.preset(name)
    assert TrainConfig.from_json(config.to_json()) == config
    assert hash(config) == hash(TrainConfig.from_dict(json.loads(config.to_json())))
    assert config.__doc__ is not None
    doc = train_config.PRESETS[name].__doc__
    assert "mothernet-jax train --preset" in doc and ("CPU" in doc or "H100" in doc)


def test_presets_compute_in_bf16_on_gpu_and_float32_on_cpu():
    assert train_config.preset("tiny").model.dtype == "float32"
    assert train_config.preset("small").model.dtype == "bfloat16"
    paper = train_config.preset("paper")
    assert paper.model == ModelConfig(dtype="bfloat16")
    assert (paper.learning_rate, paper.adam_b1, paper.adam_b2, paper.weight_decay, paper.grad_clip) == (
        3e-5,
        0.9,
        0.999,
        0.0,
        1.0,
    )
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


def test_learning_rate_warms_up_then_decays_to_the_floor():
    config = train_config.tiny().replace(
        steps=1000, warmup_steps=100, learning_rate=1e-3, min_learning_rate=1e-6
    )
    rates = [learning_rate(config, s) for s in range(1001)]
    assert rates[0] == pytest.approx(1e-3 / 101)
    assert all(a < b for a, b in zip(rates[:100], rates[1:101], strict=True))
    assert rates[100] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[100:-1], rates[101:], strict=True))
    assert rates[1000] == pytest.approx(1e-6)


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
    argv = ["train", "--preset", "tiny", "--workdir", str(tmp_path), "--steps", "7"]
    argv += ["--set", "model.dtype=bfloat16", "--set", "learning_rate=2e-4", "--print-config"]
    assert cli.main(argv) == 0
    config = TrainConfig.from_json(capsys.readouterr().out)
    assert config == train_config.tiny().replace(
        steps=7, learning_rate=2e-4, model=train_config.tiny().model.replace(dtype="bfloat16")
    )
    with pytest.raises(SystemExit, match="give --preset"):
        cli.main(["train", "--workdir", str(tmp_path / "empty"), "--print-config"])
    saved = tmp_path / "config.json"
    saved.write_text(config.to_json())
    assert cli.main(["train", "--config", str(saved), "--workdir", str(tmp_path), "--print-config"]) == 0
    assert TrainConfig.from_json(capsys.readouterr().out) == config
