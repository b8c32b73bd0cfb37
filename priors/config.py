"""Prior configuration: one frozen, keyword-only dataclass, its distribution records and presets.

`PriorConfig` holds the static maxima that fix every array shape of a sampled task (rows, features,
classes, MLP depth and width, causes, category levels) and every probability and distribution
parameter of the MotherNet training prior, with the reference values (`microsoft/ticl`,
`mothernet/model_configs.py`, 2024 default) as defaults. It is hashable, so it is a static argument
of `jax.jit`, and it round-trips through JSON next to a checkpoint.

Presets (`preset(name)`):

- ``paper``: 1152 rows, 100 features, 10 classes, exactly the reference prior (the tree prior of
  `priors.tree` is off: ``tree_probability`` 0; ``preset("paper").replace(tree_probability=0.3)``
  mixes it in).
- ``tiny``: the same prior on 128 rows, for tests and CPU smoke runs (same feature and class layout
  as the ``tiny`` model, so the two plug together).
"""

from __future__ import annotations

import dataclasses
import math

from mothernet_jax import config_base
from mothernet_jax.config_base import ConfigBase


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetaGamma:
    """`lower_bound + round(Gamma(shape e^a, scale s / e^a))`, a ~ U(0, ln max_alpha), s ~ U(0, max_scale)."""

    max_alpha: float
    max_scale: float
    lower_bound: int

    def validate(self, name: str) -> None:
        if not self.max_alpha >= 1.0:
            raise ValueError(f"PriorConfig.{name}.max_alpha must be >= 1, got {self.max_alpha!r}")
        if not self.max_scale >= 0.0:
            raise ValueError(f"PriorConfig.{name}.max_scale must be >= 0, got {self.max_scale!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Range:
    """A distribution drawn from between `low` and `high` (0 < low <= high)."""

    low: float
    high: float

    def validate(self, name: str) -> None:
        if not 0.0 < self.low <= self.high:
            raise ValueError(f"PriorConfig.{name} needs 0 < low <= high, got {self.low!r}, {self.high!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetaBeta(_Range):
    """`scale * Beta(b, k)` with b, k ~ U(low, high)."""

    scale: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogUniform(_Range):
    """`exp(U(ln low, ln high))`."""


_RECORDS = {"MetaGamma": MetaGamma, "MetaBeta": MetaBeta, "LogUniform": LogUniform}


@dataclasses.dataclass(frozen=True, kw_only=True)
class PriorConfig(ConfigBase):
    """Static maxima and distribution parameters of the MotherNet training prior."""

    # -- static shapes ---------------------------------------------------------------------------
    n_rows: int = 1152  # rows per dataset (training and test rows together)
    max_features: int = 100  # x is zero-padded to this many columns
    max_classes: int = 10  # labels lie in 0..max_classes-1
    max_layers: int = 10  # MLP layers incl. the first linear; clips 0.75% of depth draws
    max_hidden: int = 256  # MLP width; clips 0.92% of width draws; must be >= 2*max_features+1
    max_causes: int = 32  # causes of a causal SCM; clips 0.05% of draws
    max_category_levels: int = 64  # levels of a categorical column; clips 0.01% of columns
    # Static widths the MLP is computed at (each network runs at the smallest one that holds it);
    # a speed setting, not part of the distribution. The last must equal max_hidden.
    width_buckets: tuple[int, ...] = (32, 64, 128, 192, 256)

    # -- prior bag -------------------------------------------------------------------------------
    gp_probability: float = 0.039  # MLP/SCM prior otherwise (0.961)

    # -- MLP / SCM prior -------------------------------------------------------------------------
    layers: MetaGamma = MetaGamma(max_alpha=2.0, max_scale=3.0, lower_bound=2)
    hidden: MetaGamma = MetaGamma(max_alpha=3.0, max_scale=100.0, lower_bound=4)
    causes: MetaGamma = MetaGamma(max_alpha=3.0, max_scale=7.0, lower_bound=2)
    dropout: MetaBeta = MetaBeta(scale=0.6, low=0.1, high=5.0)
    init_std: LogUniform = LogUniform(low=1e-2, high=12.0)
    noise_std: LogUniform = LogUniform(low=1e-4, high=0.5)
    # meta_choice: logits [1, w_2, .., w_n], w ~ U(low, high); booleans list [True, False]
    choice_weight_low: float = -3.0
    choice_weight_high: float = 5.0
    max_dropout: float = 0.99  # the reference caps the element-wise dropout probability

    # -- GP prior --------------------------------------------------------------------------------
    gp_outputscale: LogUniform = LogUniform(low=1e-5, high=8.0)
    gp_lengthscale: LogUniform = LogUniform(low=1e-5, high=8.0)
    gp_noise_values: tuple[float, ...] = (1e-5, 1e-4, 1e-2)  # drawn with meta_choice
    gp_jitter: float = 1e-5  # relative diagonal jitter (x outputscale) added for float32 Cholesky

    # -- tree prior (`priors.tree`; off by default, so the bag above is the reference prior) ------
    tree_probability: float = 0.0  # a dataset is a tree dataset; else the MLP/GP bag above
    tree_network_features_probability: float = 0.5  # its x from the MLP/SCM network, else independent
    tree_effect_probability: float = 0.5  # the SCM form: some columns are trees of the others
    tree_max_effect_share: float = 0.5  # in the SCM form a column is an effect with p ~ U(0, this)
    # depth of every tree of a dataset (drawn once for the target's, once for the effects'):
    # 2 + round(Gamma), median 3, 90% <= 7, 7.5% clipped to max_tree_depth
    tree_depth: MetaGamma = MetaGamma(max_alpha=2.0, max_scale=4.0, lower_bound=2)
    # trees summed for the target: 1 + round(Gamma), median 2, 90% <= 5, 2.3% clipped to max_trees
    tree_count: MetaGamma = MetaGamma(max_alpha=2.0, max_scale=3.0, lower_bound=1)
    max_tree_depth: int = 8  # static: a tree's split-feature table holds 2^depth - 1 nodes
    max_trees: int = 8
    tree_noise_std: LogUniform = LogUniform(low=1e-3, high=0.3)  # input noise, in column stds

    # -- classification adapter ------------------------------------------------------------------
    two_class_probability: float = 0.5  # else K = round(U(2, K0)), K0 = round(U(2, max_classes))
    ordered_classes_probability: float = 0.0  # class order kept (not permuted)
    reversed_classes_probability: float = 0.5
    categorical_probability: float = 0.2  # a dataset gets categorical columns
    category_levels_scale: float = 10.0  # levels n = max(round(Gamma(1, scale)), 2)
    category_two_levels_probability: float = 0.5  # else round(U(2, n)) levels
    category_ordered_probability: float = 0.3  # codes kept in order (not permuted)
    category_reversed_probability: float = 0.5
    outlier_sigma: float = 4.0
    compatibility_tries: int = 10  # arrangements tried for train/test class compatibility

    # -- regression adapter (`priors.regression`; the classification adapter never reads these) --
    # observation noise added to the raw target, in units of its standard deviation over all rows
    regression_noise_std: LogUniform = LogUniform(low=1e-3, high=1.0)
    regression_heteroscedastic_probability: float = 0.3  # noise scale exp(a z(x)), z a random direction
    regression_heteroscedastic_strength: float = 1.5  # a ~ U(0, this)
    regression_heavy_tailed_probability: float = 0.3  # Student-t noise, else Gaussian
    regression_noise_df: LogUniform = LogUniform(low=1.5, high=30.0)  # its degrees of freedom
    # skewed targets: y <- (exp(b y) - 1) / b, y standardised, b ~ U(0, strength), mirrored w.p. 1/4
    regression_warp_probability: float = 0.5
    regression_warp_strength: float = 1.0
    # discrete targets: y rounded to a grid of this step, in standard deviations of y
    regression_discrete_probability: float = 0.2
    regression_discrete_step: LogUniform = LogUniform(low=0.02, high=1.0)

    # -- missing values (off by default, as in the reference) -----------------------------------
    nan_prob_no_reason: float = 0.0
    nan_prob_a_reason: float = 0.0
    nan_prob_unknown_reason: float = 0.0
    nan_prob_unknown_reason_reason_prior: float = 0.5
    set_value_to_nan: float = 0.9  # else one of -999, 0, 1, 999

    def __post_init__(self):
        self.check_integers(2, ("n_rows", "max_classes", "max_layers", "max_category_levels"))
        self.check_integers(1, ("max_features", "max_hidden", "max_causes", "compatibility_tries",
                                "max_tree_depth", "max_trees"))  # fmt: skip
        if self.max_tree_depth > 12:
            raise ValueError(
                f"PriorConfig.max_tree_depth must be <= 12 (node tables of 2^depth), got {self.max_tree_depth}"
            )
        for field in dataclasses.fields(self):
            kind = _RECORDS.get(str(field.type))
            if kind is not None:
                value = getattr(self, field.name)
                if not isinstance(value, kind):
                    raise ValueError(f"PriorConfig.{field.name} must be a {kind.__name__}, got {value!r}")
                value.validate(field.name)
        for name, maximum in (("tree_depth", "max_tree_depth"), ("tree_count", "max_trees")):
            lower_bound = getattr(self, name).lower_bound
            if not 1 <= lower_bound <= getattr(self, maximum):
                raise ValueError(
                    f"PriorConfig.{name}.lower_bound must lie in 1..{maximum} ({getattr(self, maximum)}), "
                    f"got {lower_bound!r}"
                )
        if self.max_layers < self.layers.lower_bound:
            raise ValueError(
                f"PriorConfig.max_layers ({self.max_layers}) is below layers.lower_bound "
                f"({self.layers.lower_bound})"
            )
        if self.layers.lower_bound < 2:
            raise ValueError(f"PriorConfig.layers.lower_bound must be >= 2, got {self.layers.lower_bound}")
        if self.max_hidden < max(self.hidden.lower_bound, 1):
            raise ValueError(
                f"PriorConfig.max_hidden ({self.max_hidden}) is below hidden.lower_bound "
                f"({self.hidden.lower_bound})"
            )
        if self.max_hidden < 2 * self.max_features + 1:
            raise ValueError(
                f"PriorConfig.max_hidden ({self.max_hidden}) must be >= 2 * max_features + 1 "
                f"({2 * self.max_features + 1}): a causal network reads its features from distinct nodes"
            )
        if self.max_causes < self.causes.lower_bound:
            raise ValueError(
                f"PriorConfig.max_causes ({self.max_causes}) is below causes.lower_bound "
                f"({self.causes.lower_bound})"
            )
        buckets = self.width_buckets
        if (
            not isinstance(buckets, tuple)
            or not buckets
            or any(not isinstance(w, int) or w < 1 for w in buckets)
            or list(buckets) != sorted(set(buckets))
            or buckets[-1] != self.max_hidden
        ):
            raise ValueError(
                "PriorConfig.width_buckets must be a strictly increasing tuple of positive integers "
                f"ending at max_hidden ({self.max_hidden}), got {buckets!r}"
            )
        for name in (
            "gp_probability",
            "tree_probability",
            "tree_network_features_probability",
            "tree_effect_probability",
            "tree_max_effect_share",
            "max_dropout",
            "two_class_probability",
            "ordered_classes_probability",
            "reversed_classes_probability",
            "categorical_probability",
            "category_two_levels_probability",
            "category_ordered_probability",
            "category_reversed_probability",
            "regression_heteroscedastic_probability",
            "regression_heavy_tailed_probability",
            "regression_warp_probability",
            "regression_discrete_probability",
            "nan_prob_no_reason",
            "nan_prob_a_reason",
            "nan_prob_unknown_reason",
            "nan_prob_unknown_reason_reason_prior",
            "set_value_to_nan",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"PriorConfig.{name} is a probability in [0, 1], got {value!r}")
        if not self.choice_weight_low <= self.choice_weight_high:
            raise ValueError("PriorConfig.choice_weight_low must be <= choice_weight_high")
        if not self.gp_noise_values or any(not v > 0 for v in self.gp_noise_values):
            raise ValueError(f"PriorConfig.gp_noise_values must be positive, got {self.gp_noise_values!r}")
        if not self.gp_jitter >= 0:
            raise ValueError(f"PriorConfig.gp_jitter must be >= 0, got {self.gp_jitter!r}")
        if not self.category_levels_scale > 0:
            raise ValueError("PriorConfig.category_levels_scale must be positive")
        for name in ("regression_heteroscedastic_strength", "regression_warp_strength"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 10:
                raise ValueError(f"PriorConfig.{name} must lie in [0, 10], got {value!r}")
        if not (self.outlier_sigma > 0 and math.isfinite(self.outlier_sigma)):
            raise ValueError("PriorConfig.outlier_sigma must be positive and finite")

    # -- derived ---------------------------------------------------------------------------------

    @property
    def max_blocks(self) -> int:
        """Hidden blocks [activation, Linear(H, H), noise] after the first linear layer."""
        return self.max_layers - 1

    @property
    def missing_values(self) -> bool:
        return self.nan_prob_no_reason + self.nan_prob_a_reason + self.nan_prob_unknown_reason > 0


# -- presets -----------------------------------------------------------------------------------


def paper() -> PriorConfig:
    """The reference prior at the paper shapes: 1152 rows, 100 features, 10 classes.
    `python -m priors.compare_reference --n 2400` compares it with the reference statistics: every
    Kolmogorov-Smirnov distance <= 0.07 (bar 0.10), about 3 minutes on a busy 2-core CPU."""
    return PriorConfig()


def tiny() -> PriorConfig:
    """The same prior on 128 rows (100 features, 10 classes, like the ``tiny`` model), for tests
    and CPU smoke runs: a batch of 64 in about 0.2 s on a busy 2-core CPU."""
    return PriorConfig(n_rows=128)


PRESETS = {"paper": paper, "tiny": tiny}


def preset(name: str) -> PriorConfig:
    """The named `PriorConfig`; one of `PRESETS`."""
    return config_base.preset(PRESETS, name, "prior")
