"""ModelConfig: validation, JSON round trip, presets."""

import dataclasses

import pytest

import mothernet_jax as mn
from mothernet_jax.config import PRESETS, ModelConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name):
    config = mn.preset(name)
    assert ModelConfig.from_json(config.to_json()) == config
    assert hash(config) == hash(ModelConfig.from_json(config.to_json()))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"embed_dim": 0}, "embed_dim"),
        ({"embed_dim": 100, "n_heads": 3}, "divisible"),
        ({"pooling": "max"}, "pooling"),
        ({"head_activation": "tanh"}, "head_activation"),
        ({"rank": 0}, "rank"),
        ({"child_hidden_layers": -1}, "child_hidden_layers"),
        ({"dtype": "float16"}, "dtype"),
        ({"max_classes": 1}, "max_classes"),
    ],
)
def test_bad_configs_raise(changes, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**changes)


def test_config_is_keyword_only_and_frozen():
    with pytest.raises(TypeError):
        ModelConfig(512)  # noqa
    with pytest.raises(AttributeError):
        mn.preset("tiny").embed_dim = 3


def test_unknown_preset_and_field_are_named():
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        mn.preset("huge")
    with pytest.raises(ValueError, match="bogus"):
        ModelConfig.from_dict({"bogus": 1})


# -- settings a former version had (config_base.ConfigBase.REMOVED) -----------------------------------

REMOVED_AT_DEFAULT = {"head_extra_layers": 0, "norm": "layernorm", "norm_first": False, "residual_scale": 1.0}


def test_removed_settings_at_their_former_defaults_still_load():
    # as the shipped weights' manifests and older checkpoints hold them
    old = {**mn.preset("small").to_dict(), **REMOVED_AT_DEFAULT}
    assert ModelConfig.from_dict(old) == mn.preset("small")
    assert ModelConfig.REMOVED == REMOVED_AT_DEFAULT
    assert not set(REMOVED_AT_DEFAULT) & {field.name for field in dataclasses.fields(ModelConfig)}
    assert mn.preset("tiny").with_overrides(["norm=layernorm", "residual_scale=1"]) == mn.preset("tiny")


@pytest.mark.parametrize(
    "name, value", [("head_extra_layers", 1), ("norm", "rmsnorm"), ("norm_first", True), ("residual_scale", 0.9),
                    ("head_extra_layers", False)],  # fmt: skip
)
def test_removed_settings_at_other_values_are_refused_in_one_line_naming_them(name, value):
    old = {**mn.preset("small").to_dict(), **REMOVED_AT_DEFAULT, name: value}
    with pytest.raises(ValueError, match=f"^ModelConfig.{name} = .* the setting was removed") as error:
        ModelConfig.from_dict(old)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=f"ModelConfig.{name} = "):
        mn.preset("tiny").with_overrides([f"{name}={value}"])
