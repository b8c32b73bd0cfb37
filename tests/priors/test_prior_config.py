"""PriorConfig: reference defaults, presets, serialisation, and clear errors for bad settings."""

import dataclasses

import pytest

import priors
from priors import LogUniform, MetaBeta, MetaGamma, PriorConfig


def test_defaults_are_the_reference_prior():
    config = PriorConfig()
    assert (config.n_rows, config.max_features, config.max_classes) == (1152, 100, 10)
    assert config.gp_probability == 0.039
    assert config.layers == MetaGamma(max_alpha=2.0, max_scale=3.0, lower_bound=2)
    assert config.hidden == MetaGamma(max_alpha=3.0, max_scale=100.0, lower_bound=4)
    assert config.causes == MetaGamma(max_alpha=3.0, max_scale=7.0, lower_bound=2)
    assert config.dropout == MetaBeta(scale=0.6, low=0.1, high=5.0)
    assert config.init_std == LogUniform(low=0.01, high=12.0)
    assert config.noise_std == LogUniform(low=1e-4, high=0.5)
    assert config.gp_noise_values == (1e-5, 1e-4, 1e-2)
    assert config.categorical_probability == 0.2
    assert config.outlier_sigma == 4.0
    assert config.compatibility_tries == 10
    assert not config.missing_values  # off by default, as in the reference
    assert config.tree_probability == 0.0  # the tree prior is off: the reference prior


def test_presets():
    assert priors.preset("paper") == PriorConfig()
    tiny = priors.preset("tiny")
    assert tiny.n_rows < 1152 and tiny.max_features == 100 and tiny.max_classes == 10
    with pytest.raises(ValueError, match="unknown prior preset"):
        priors.preset("huge")


def test_hashable_and_json_round_trip():
    config = PriorConfig(
        nan_prob_no_reason=0.3,
        width_buckets=(64, 256),
        tree_probability=0.3,
        tree_depth=MetaGamma(max_alpha=1.5, max_scale=2.0, lower_bound=3),
        tree_noise_std=LogUniform(low=0.01, high=0.1),
        regression_noise_df=LogUniform(low=2.0, high=5.0),
        regression_heavy_tailed_probability=0.5,
    )
    assert hash(config) == hash(PriorConfig.from_json(config.to_json()))
    assert PriorConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown PriorConfig fields"):
        PriorConfig.from_dict({"rows": 3})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_rows = 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_rows": 0}, "n_rows"),
        ({"max_features": 0}, "max_features"),
        ({"max_classes": 1}, "max_classes"),
        ({"max_layers": 1}, "max_layers"),
        ({"layers": MetaGamma(max_alpha=2.0, max_scale=3.0, lower_bound=5), "max_layers": 4}, "max_layers"),
        ({"max_hidden": 128, "width_buckets": (128,)}, "2 \\* max_features"),
        ({"max_causes": 1}, "max_causes"),
        ({"width_buckets": (64, 128)}, "width_buckets"),
        ({"width_buckets": (128, 64, 256)}, "width_buckets"),
        ({"gp_probability": 1.5}, "gp_probability"),
        ({"categorical_probability": -0.1}, "categorical_probability"),
        ({"nan_prob_no_reason": 2.0}, "nan_prob_no_reason"),
        ({"dropout": MetaBeta(scale=0.6, low=5.0, high=0.1)}, "dropout"),
        ({"init_std": LogUniform(low=0.0, high=1.0)}, "init_std"),
        ({"gp_noise_values": ()}, "gp_noise_values"),
        ({"compatibility_tries": 0}, "compatibility_tries"),
        ({"tree_probability": 1.5}, "tree_probability"),
        ({"tree_probability": "0.3"}, "tree_probability"),
        ({"tree_network_features_probability": -0.1}, "tree_network_features_probability"),
        ({"tree_effect_probability": 2.0}, "tree_effect_probability"),
        ({"tree_max_effect_share": -1.0}, "tree_max_effect_share"),
        ({"max_tree_depth": 0}, "max_tree_depth"),
        ({"max_tree_depth": 13}, "max_tree_depth"),
        ({"max_tree_depth": 3.0}, "max_tree_depth"),
        ({"max_trees": 0}, "max_trees"),
        ({"tree_depth": 4}, "tree_depth"),
        ({"tree_depth": MetaGamma(max_alpha=0.5, max_scale=3.0, lower_bound=2)}, "tree_depth"),
        ({"tree_depth": MetaGamma(max_alpha=2.0, max_scale=3.0, lower_bound=0)}, "tree_depth"),
        (
            {"tree_depth": MetaGamma(max_alpha=2.0, max_scale=3.0, lower_bound=5), "max_tree_depth": 4},
            "tree_depth",
        ),
        ({"tree_count": MetaGamma(max_alpha=2.0, max_scale=-1.0, lower_bound=1)}, "tree_count"),
        ({"tree_count": MetaGamma(max_alpha=2.0, max_scale=3.0, lower_bound=9)}, "tree_count"),
        ({"tree_noise_std": LogUniform(low=0.0, high=0.3)}, "tree_noise_std"),
        ({"tree_noise_std": MetaBeta(scale=1.0, low=1.0, high=2.0)}, "tree_noise_std"),
        ({"regression_noise_std": LogUniform(low=0.0, high=1.0)}, "regression_noise_std"),
        ({"regression_noise_df": 3.0}, "regression_noise_df"),
        ({"regression_heteroscedastic_probability": 1.5}, "regression_heteroscedastic_probability"),
        ({"regression_heavy_tailed_probability": -0.1}, "regression_heavy_tailed_probability"),
        ({"regression_heteroscedastic_strength": -1.0}, "regression_heteroscedastic_strength"),
        ({"regression_heteroscedastic_strength": True}, "regression_heteroscedastic_strength"),
        ({"regression_warp_probability": 2.0}, "regression_warp_probability"),
        ({"regression_warp_strength": 11.0}, "regression_warp_strength"),
        ({"regression_discrete_probability": -1.0}, "regression_discrete_probability"),
        ({"regression_discrete_step": LogUniform(low=1.0, high=0.5)}, "regression_discrete_step"),
    ],
)
def test_bad_configuration_raises_at_construction(changes, message):
    with pytest.raises(ValueError, match=message):
        PriorConfig(**changes)


def test_bad_batch_size_raises(getkey):
    with pytest.raises(ValueError, match="batch_size"):
        priors.sample_batch(getkey(), PriorConfig(), 0, 10)
