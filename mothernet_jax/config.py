"""Model configuration: one frozen, keyword-only dataclass and its named presets.

`ModelConfig` fixes the architecture of the hypernetwork (transformer, pooling, weight head) and of
the child MLP it generates. It is hashable, so it can be a static argument of `jax.jit`, and it
round-trips through JSON so that it is stored next to every checkpoint and shipped weight file.

Presets (`preset(name)`):

- ``paper``: the 2024 reference default (class-average pooling), 88,548,490 parameters.
- ``paper_2023``: the 2023 paper model (learned-query output attention), 149,660,810 parameters.
- ``small``: the ~5 M-parameter model the library ships weights for.
- ``tiny``: a 0.34 M-parameter model for tests, smoke runs and CPU training.
- ``tiny_class_average``, ``tiny_output_attention``, ``tiny_full_rank_one_layer``: the three
  configurations of the reference parity fixtures (docs/ARCHITECTURE.md section 6).
- ``tiny-regression``, ``small-regression``: ``tiny`` and ``small`` with task="regression"
  (target-moments pooling, a linear y encoder, a child with one output unit).

`task` ("classification" or "regression") decides what y is: class labels one-hot encoded, or a
float target standardised over the training rows (`generation.generate` does it) entering through
Linear(1 -> d); a regression child has one output unit (the standardised target, trained with MSE).
Class-average pooling needs classes, so regression pools with "target_moments" (the presets: the
mean output and the mean output x target over the training rows), "target_bins" (class-average over
bins of the target), "average" or "output_attention".
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from mothernet_jax import config_base
from mothernet_jax.config_base import ConfigBase

Pooling = Literal["class_average", "output_attention", "average", "target_bins", "target_moments"]
Activation = Literal["gelu", "relu"]
Task = Literal["classification", "regression"]

POOLINGS = ("class_average", "output_attention", "average", "target_bins", "target_moments")
REGRESSION_POOLINGS = ("target_bins", "target_moments", "average", "output_attention")
ACTIVATIONS = ("gelu", "relu")
DTYPES = ("float32", "bfloat16")
TASKS = ("classification", "regression")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig(ConfigBase):
    """Architecture of a MotherNet hypernetwork and of the child MLP it emits."""

    embed_dim: int = 512  # transformer width d
    n_layers: int = 12  # post-norm encoder layers
    n_heads: int = 4  # attention heads; embed_dim must divide evenly
    ffn_dim: int = 1024  # hidden width of each feed-forward block
    pooling: Pooling = "class_average"  # how the training-row outputs become one vector
    pooling_embed_dim: int = 2048  # query width of `output_attention` pooling (unused otherwise)
    head_hidden_size: int = 2048  # hidden width H of the weight head
    head_activation: Activation = "gelu"  # activation of the weight head
    child_hidden_size: int = 512  # width P of the child's hidden layers
    child_hidden_layers: int = 2  # number L of hidden layers of the child (0: a linear model)
    rank: int | None = 32  # low rank r of the child's hidden weights; None generates them in full
    max_features: int = 100  # features are zero-padded to this width
    max_classes: int = 10  # labels are one-hot over this many classes
    dtype: str = "float32"  # compute dtype of the hypernetwork; parameters stay float32
    # -- an extra the reference does not have (off by default: `paper` is the reference exactly) --
    thinking_rows: int = 0  # learned rows (m x d) put before every training set's rows: m * d params
    # -- what y is: "regression" takes a float target and emits a child with one output unit -------
    task: Task = "classification"  # max_classes is unused by "regression"

    # Fields of former versions, never measured (docs/TRAINING.md), at the values that left them off:
    # files that hold them at these values load as before (config_base.ConfigBase.REMOVED)
    REMOVED = {"head_extra_layers": 0, "norm": "layernorm", "norm_first": False, "residual_scale": 1.0}

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"ModelConfig.task must be one of {TASKS}, got {self.task!r}")
        self.check_integers(1, ("embed_dim", "n_layers", "n_heads", "ffn_dim", "pooling_embed_dim",
                                "head_hidden_size", "child_hidden_size", "max_features", "max_classes"))  # fmt: skip
        if self.embed_dim % self.n_heads:
            raise ValueError(
                f"ModelConfig.embed_dim ({self.embed_dim}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.pooling not in POOLINGS:
            raise ValueError(f"ModelConfig.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.task == "regression" and self.pooling not in REGRESSION_POOLINGS:
            raise ValueError(
                f"ModelConfig.pooling {self.pooling!r} needs classes: task='regression' takes one of "
                f"{REGRESSION_POOLINGS}"
            )
        if self.task == "classification" and self.pooling.startswith("target_"):
            raise ValueError(f"ModelConfig.pooling {self.pooling!r} needs a continuous target (task='regression')")
        if self.pooling == "output_attention" and self.pooling_embed_dim % self.n_heads:
            raise ValueError(
                f"ModelConfig.pooling_embed_dim ({self.pooling_embed_dim}) must be divisible by "
                f"n_heads ({self.n_heads}) for output_attention pooling"
            )
        if self.head_activation not in ACTIVATIONS:
            raise ValueError(
                f"ModelConfig.head_activation must be one of {ACTIVATIONS}, got {self.head_activation!r}"
            )
        self.check_integers(0, ("child_hidden_layers", "thinking_rows"))
        if self.rank is not None:
            self.check_integers(1, ("rank",))
        if self.max_classes < 2:
            raise ValueError(f"ModelConfig.max_classes must be at least 2, got {self.max_classes}")
        if self.dtype not in DTYPES:
            raise ValueError(f"ModelConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")

    # -- derived sizes ------------------------------------------------------------------------

    @property
    def low_rank(self) -> bool:
        return self.rank is not None

    @property
    def n_outputs(self) -> int:
        """K, the child's output units: max_classes logits, or one standardised target."""
        return 1 if self.task == "regression" else self.max_classes

    @property
    def y_inputs(self) -> int:
        """Width of the y encoder's input: the one-hot over max_classes, or the one float target."""
        return 1 if self.task == "regression" else self.max_classes

    @property
    def pooled_size(self) -> int:
        """Length of the pooled vector phi that enters the weight head."""
        if self.pooling in ("class_average", "target_bins"):
            return self.max_classes * self.embed_dim
        if self.pooling == "target_moments":
            return 2 * self.embed_dim
        if self.pooling == "output_attention":
            return self.pooling_embed_dim
        return self.embed_dim

    @property
    def n_generated(self) -> int:
        """Length N_out of the weight head's flat output per dataset (docs/ARCHITECTURE.md section 1)."""
        p, k, f = self.child_hidden_size, self.n_outputs, self.max_features
        n_out = (p + 1) * k
        if self.child_hidden_layers == 0:
            return (f + 1) * k
        extra = self.child_hidden_layers - 1
        if self.low_rank:
            return n_out + f * self.rank + p + extra * (p * self.rank + p)
        return n_out + (f + 1) * p + extra * (p * p + p)


# -- presets -----------------------------------------------------------------------------------


def paper() -> ModelConfig:
    """The 2024 reference default: 12 x 512 post-norm transformer, class-average pooling,
    GELU weight head 5120 -> 2048 -> 25,738, child 100 -> 512 -> 512 -> 10 of rank 32.
    88,548,490 parameters (`python -m mothernet_jax.benchmarks.generate` times it)."""
    return ModelConfig()


def paper_2023() -> ModelConfig:
    """The 2023 paper model: learned-query output-attention pooling (2048 wide), ReLU weight head
    with 4096 hidden units. 149,660,810 parameters."""
    return ModelConfig(
        pooling="output_attention",
        pooling_embed_dim=2048,
        head_hidden_size=4096,
        head_activation="relu",
    )


def small() -> ModelConfig:
    """The shipped model: 6 x 192 transformer (3 heads, FFN 384), class-average pooling, weight head
    1920 -> 448 -> 5,194, child 100 -> 128 -> 128 -> 10 of rank 16; 5,000,458 parameters, so that
    parameters plus Adam state (12 bytes each) fit in 60 MiB.
    Train: `mothernet-jax train --preset small --workdir runs/small`."""
    return ModelConfig(
        embed_dim=192,
        n_layers=6,
        n_heads=3,
        ffn_dim=384,
        head_hidden_size=448,
        child_hidden_size=128,
        rank=16,
    )


def tiny_class_average() -> ModelConfig:
    """Parity fixture `tiny_class_average`: 343,722 parameters."""
    return ModelConfig(embed_dim=64, n_layers=2, n_heads=2, ffn_dim=128, pooling="class_average",
                       pooling_embed_dim=64, head_hidden_size=128, head_activation="gelu",
                       child_hidden_size=32, child_hidden_layers=2, rank=8)  # fmt: skip


def tiny() -> ModelConfig:
    """A 0.34 M-parameter model (the `tiny_class_average` architecture) for tests and CPU smoke
    runs: `mothernet-jax train --preset tiny --workdir runs/tiny`."""
    return tiny_class_average()


def tiny_output_attention() -> ModelConfig:
    """Parity fixture `tiny_output_attention`: 305,290 parameters (`tiny_class_average` with
    output-attention pooling 96 wide and a ReLU weight head)."""
    return tiny_class_average().replace(pooling="output_attention", pooling_embed_dim=96, head_activation="relu")


def tiny_full_rank_one_layer() -> ModelConfig:
    """Parity fixture `tiny_full_rank_one_layer`: 275,418 parameters (one layer, one head, weight
    head 96 wide, child 100 -> 16 -> 10 in full rank)."""
    return tiny_class_average().replace(
        n_layers=1, n_heads=1, head_hidden_size=96, child_hidden_size=16, child_hidden_layers=1, rank=None
    )


def tiny_regression() -> ModelConfig:
    """`tiny` for a continuous target (tests and CPU smoke runs): target-moments pooling, a linear
    y encoder, a child 100 -> 32 -> 32 -> 1 of rank 8."""
    return tiny().replace(task="regression", pooling="target_moments")


def small_regression() -> ModelConfig:
    """The `small` shapes for a continuous target (the regression model the library ships):
    target-moments pooling (phi = [mean h, mean z h] over the training rows, 384 wide), a linear y
    encoder, a child 100 -> 128 -> 128 -> 1 of rank 16.
    Train: `mothernet-jax train --preset small-regression --workdir runs/small-regression`.

    Why target moments (measured on `tiny-regression`, 8 datasets a step, lr 1e-3, CPU): on
    in-context linear regression (400 steps) the loss fell from 1.13 to 0.73 with them, and not at
    all with `average` or `target_bins` pooling (1.12 -> 1.28, as predicting the training mean); on
    the regression prior (800 steps, median loss of the first and last sixth) 1.145 -> 0.924, against
    1.146 -> 1.110 (`average`) and 1.179 -> 1.080 (`target_bins`)."""
    return small().replace(task="regression", pooling="target_moments")


PRESETS = {
    "paper": paper,
    "paper_2023": paper_2023,
    "small": small,
    "tiny": tiny,
    "tiny_class_average": tiny_class_average,
    "tiny_output_attention": tiny_output_attention,
    "tiny_full_rank_one_layer": tiny_full_rank_one_layer,
    "tiny-regression": tiny_regression,
    "small-regression": small_regression,
}


def preset(name: str) -> ModelConfig:
    """The named `ModelConfig`; one of `PRESETS`."""
    return config_base.preset(PRESETS, name, "model")
