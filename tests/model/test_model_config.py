"""ModelConfig: validation, JSON round trip, presets."""

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
