"""Training configuration: a frozen `TrainConfig` nesting the model and the prior, and its presets.

`TrainConfig` holds everything that decides the trained weights: the model (`ModelConfig`, whose
`dtype` chooses bf16 compute over float32 master weights), the prior (`priors.PriorConfig`), the
optimiser and its schedule, the batch and its growth, the split buckets, the seed, and how often to
checkpoint. It is hashable (a static argument of the jitted step), is stored as JSON next to every
checkpoint, and `with_overrides(["model.dtype=bfloat16", "learning_rate=1e-4"])` reaches nested
fields (the CLI's `--set`).

Presets (`preset(name)`): ``tiny`` (CPU), ``small`` (the shipped model, H100), ``paper`` (reference);
``tiny-regression`` and ``small-regression``: the same recipes for the regression models (the model's
task picks the regression prior and the MSE loss, `step.py`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mothernet_jax import config as model_config
from mothernet_jax import config_base
from mothernet_jax.config import ModelConfig
from mothernet_jax.config_base import ConfigBase

ATTENTION = ("auto", "xla", "cudnn")
OPTIMIZERS = ("adamw", "muon", "schedule_free_adamw")
READ_OUTS = ("generated", "ridge", "logistic")


# The fields only the host reads (how long, the schedule's values, the split range drawn on the host,
# bookkeeping): the compiled step and `init_state` do not, so one compilation serves every value.
HOST_FIELDS = ("steps", "budget_s", "learning_rate", "warmup_steps", "warmup_fraction", "min_learning_rate",
               "accumulation", "max_split", "checkpoint_every", "keep_checkpoints", "log_every",
               "init_weights")  # fmt: skip


class ConfigError(ValueError):
    """A training set-up that cannot run as asked (a bad setting, a work directory trained with
    another model or prior, unreadable initial weights); the CLI prints it as one line."""


def _default_prior():
    import priors

    return priors.preset("paper")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig(ConfigBase):
    """How to meta-train a MotherNet. All step counts are optimiser steps."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)  # dtype: compute dtype
    prior: Any = dataclasses.field(default_factory=_default_prior)  # a priors.PriorConfig
    steps: int = 100_000  # optimiser steps; the schedule's length unless a budget is set (then a cap)
    budget_s: float = 0.0  # > 0: wall-clock seconds (compiles included, over resumes) to train for;
    # the schedule then runs on the fraction of it spent, and the run stops by it (see budget.py)
    seed: int = 0  # every random draw (init, tasks, splits) derives from it
    # -- batch -----------------------------------------------------------------------------------
    batch_size: int = 8  # datasets per micro-batch, over all devices and hosts together
    prior_batch: int = 8  # datasets per `priors.sample_batch` call (fixed, so that the tasks do not
    # depend on the device count); batch_size / prior_batch must be a multiple of the devices
    accumulation: tuple[tuple[int, int], ...] = ((0, 1),)  # (first step, micro-batches per step)
    # -- optimiser: global-norm clipping, then AdamW (or Muon, or schedule-free AdamW) ------------
    # linear warm-up, then cosine decay to a floor
    optimizer: str = "adamw"  # "muon": Muon on the transformer's 2-D weights, Adam elsewhere;
    # "schedule_free_adamw": schedule-free AdamW (evaluated at its averaged weights)
    learning_rate: float = 3e-5  # peak learning rate
    warmup_steps: int = 1_000  # linear warm-up from 0
    warmup_fraction: float = 0.02  # under a budget: the warm-up's share of it, instead of warmup_steps
    min_learning_rate: float = 1e-8  # the cosine decays to this at `steps`
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    grad_clip: float = 1.0  # global-norm clipping; 0 disables
    muon_momentum: float = 0.95  # Muon's Nesterov momentum (optimizer="muon")
    # -- the loss: which read-out scores the child on the test rows -------------------------------
    read_out: str = "generated"  # "generated": the child as emitted; "ridge": its read-out solved in
    # closed form on the task's training rows over its last hidden layer and the inputs, as the
    # estimators' refit reads them (`model.read_out.fit_read_out`), gradients through the solve;
    # "logistic": the same features, L2 logistic regression by unrolled Newton steps (one-vs-rest)
    read_out_prior: bool = False  # penalise the fitted read-out toward the generated one instead of 0
    ema_decay: float = 0.0  # > 0: keep an exponential moving average of the weights, which is what
    # validation and export use (decay min(ema_decay, (1 + t) / (10 + t)) at step t)
    # -- split position: s ~ U{min_split .. rows - 1}; training rows padded to a bucket ----------
    min_split: int = 2
    max_split: int | None = None  # s <= max_split (None: rows - 1); fewer training rows, more test
    # rows per dataset: the test rows only pass through the child, so they are almost free
    split_bucket: int = 128  # training rows are padded to a multiple of this (one compile each)
    attention: str = "auto"  # "auto": fused cuDNN on GPU with bf16, XLA elsewhere; "xla"; "cudnn"
    # -- bookkeeping -----------------------------------------------------------------------------
    checkpoint_every: int = 1_000  # steps between checkpoints (0: only at the end and on stop)
    keep_checkpoints: int = 3  # how many recent checkpoints to keep
    log_every: int = 10  # steps between metric lines in metrics.jsonl
    init_weights: str | None = None  # start a fresh work dir from these weights (load_pretrained)

    # Fields of former versions, never measured (docs/TRAINING.md), at the values that left them off:
    # files that hold them at these values load as before (config_base.ConfigBase.REMOVED)
    REMOVED = {"weight_decay": 0.0, "split_curriculum_steps": 0}

    def __post_init__(self):
        object.__setattr__(self, "accumulation", tuple((int(s), int(k)) for s, k in self.accumulation))
        if not isinstance(self.model, ModelConfig):
            raise TypeError(f"TrainConfig.model must be a ModelConfig, got {type(self.model).__name__}")
        if not dataclasses.is_dataclass(self.prior):
            raise TypeError(
                f"TrainConfig.prior must be a priors.PriorConfig, got {type(self.prior).__name__}"
            )
        self.check_integers(1, ("steps", "batch_size", "prior_batch", "split_bucket", "keep_checkpoints", "log_every"))
        self.check_integers(0, ("seed", "warmup_steps", "checkpoint_every"))
        if self.batch_size % self.prior_batch:
            raise ValueError(
                f"TrainConfig.batch_size ({self.batch_size}) must be a multiple of prior_batch "
                f"({self.prior_batch})"
            )
        if not self.accumulation or self.accumulation[0][0] != 0:
            raise ValueError(f"TrainConfig.accumulation must start at step 0, got {self.accumulation}")
        starts = [s for s, _ in self.accumulation]
        if starts != sorted(set(starts)) or any(k < 1 for _, k in self.accumulation):
            raise ValueError(
                "TrainConfig.accumulation must be (first step, micro-batches >= 1) pairs in increasing "
                f"step order, got {self.accumulation}"
            )
        for field in dataclasses.fields(self):  # e.g. --set learning_rate=abc
            value = getattr(self, field.name)
            if field.type in ("float", float) and (not isinstance(value, int | float) or isinstance(value, bool)):
                raise ValueError(f"TrainConfig.{field.name} must be a number, got {value!r}")
        for name in ("learning_rate", "min_learning_rate", "adam_eps", "grad_clip"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"TrainConfig.{name} must be non-negative, got {getattr(self, name)!r}")
        if not (
            isinstance(self.budget_s, int | float) and math.isfinite(self.budget_s) and self.budget_s >= 0
        ):
            raise ValueError(
                f"TrainConfig.budget_s must be a non-negative number of seconds, got {self.budget_s!r}"
            )
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"TrainConfig.warmup_fraction must lie in [0, 1), got {self.warmup_fraction!r}")
        if not (0 <= self.adam_b1 < 1 and 0 <= self.adam_b2 < 1):
            raise ValueError("TrainConfig.adam_b1 and adam_b2 must lie in [0, 1)")
        if self.min_split < 1:
            raise ValueError(f"TrainConfig.min_split must be at least 1, got {self.min_split}")
        if self.max_split is not None and (
            not isinstance(self.max_split, int) or isinstance(self.max_split, bool) or self.max_split < self.min_split
        ):
            raise ValueError(
                f"TrainConfig.max_split must be None or an integer >= min_split ({self.min_split}), "
                f"got {self.max_split!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not 0 <= self.muon_momentum < 1:
            raise ValueError(f"TrainConfig.muon_momentum must lie in [0, 1), got {self.muon_momentum!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"TrainConfig.ema_decay must lie in [0, 1), got {self.ema_decay!r}")
        if self.read_out not in READ_OUTS:
            raise ValueError(f"TrainConfig.read_out must be one of {READ_OUTS}, got {self.read_out!r}")
        if not isinstance(self.read_out_prior, bool):
            raise ValueError(f"TrainConfig.read_out_prior must be true or false, got {self.read_out_prior!r}")
        if self.attention not in ATTENTION:
            raise ValueError(f"TrainConfig.attention must be one of {ATTENTION}, got {self.attention!r}")

    # -- derived -------------------------------------------------------------------------------

    def micro_batches(self, step: int) -> int:
        """Micro-batches accumulated into optimiser step `step`."""
        count = 1
        for start, k in self.accumulation:
            if step >= start:
                count = k
        return count

    def split_range(self, rows: int) -> range:
        """The split positions a step may draw for tasks of `rows` rows: min_split .. max_split
        (rows - 1 where max_split is None or larger)."""
        high = rows - 1 if self.max_split is None else min(self.max_split, rows - 1)
        return range(self.min_split, high + 1)

    def device_part(self) -> TrainConfig:
        """This config with every field of HOST_FIELDS at its default: what the compiled step and
        the initial state depend on (`TrainStep`'s compilation cache key)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in HOST_FIELDS}
        return self.replace(**defaults)

    def datasets_per_step(self, step: int) -> int:
        """The effective batch of optimiser step `step`."""
        return self.batch_size * self.micro_batches(step)

    def datasets_seen(self, steps: int) -> int:
        """Datasets drawn by the first `steps` optimiser steps."""
        total = 0
        bounds = [s for s, _ in self.accumulation[1:]] + [max(steps, self.accumulation[-1][0])]
        for (start, k), stop in zip(self.accumulation, bounds, strict=True):
            total += self.batch_size * k * max(0, min(stop, steps) - start)
        return total

    # -- serialisation (ConfigBase) ---------------------------------------------------------------

    @classmethod
    def field_from_json(cls, name: str, value: Any) -> Any:
        if name == "prior" and isinstance(value, dict):  # annotated Any: priors imports JAX
            import priors

            return priors.PriorConfig.from_dict(value)
        return super().field_from_json(name, value)


# -- presets -----------------------------------------------------------------------------------------


def tiny() -> TrainConfig:
    """CPU smoke runs and tests: the 0.34 M-parameter `tiny` model on the `tiny` prior.

    `mothernet-jax train --preset tiny --workdir runs/tiny` (500 steps of 8 datasets of 128 rows):
    a few minutes on a 2-core CPU; the loss falls by about a quarter. lr 1e-3 (not the reference 3e-5):
    a model this small trains stably, and much faster, at a high learning rate.
    """
    import priors

    return TrainConfig(model=model_config.tiny(), prior=priors.preset("tiny"), steps=500, batch_size=8,
                       prior_batch=1, learning_rate=1e-3, warmup_steps=20, min_learning_rate=1e-5,
                       checkpoint_every=100, log_every=10)  # fmt: skip


def small() -> TrainConfig:
    """The shipped model: `small` (5,000,458 parameters, bf16 compute) on the paper prior (1152 rows,
    100 features, 10 classes), 512 datasets per step: one H100.

    `mothernet-jax train --preset small --workdir runs/small --budget 3300 --export small.msgpack`.
    30,000 steps = 15.4 M datasets (`--budget` fits the schedule to a wall-clock budget instead;
    `--time-limit` stops cleanly at a wall-clock limit; `python -m mothernet_jax.benchmarks.train`
    measures the speed).
    lr 3e-4 with 500 warm-up steps: a 5 M model tolerates ten times the reference's 3e-5, and a
    large batch needs fewer, larger steps. `prior_batch` 512 draws the whole batch in one prior call
    (its best GPU throughput); on n devices set it to 512 / n.
    """
    import priors

    return TrainConfig(model=model_config.small().replace(dtype="bfloat16"), prior=priors.preset("paper"),
                       steps=30_000, batch_size=512, prior_batch=512, learning_rate=3e-4, warmup_steps=500,
                       min_learning_rate=1e-6, checkpoint_every=1_000, log_every=50)  # fmt: skip


def paper() -> TrainConfig:
    """The reference recipe: the 88.5 M-parameter `paper` model in bf16, the paper prior, AdamW
    lr 3e-5 (betas 0.9/0.999, no weight decay, clip 1.0), warm-up then cosine to 1e-8, batch 8
    growing to 64 by gradient accumulation (x2 at 12.5%, 25% and 50% of the steps).

    `mothernet-jax train --preset paper --workdir runs/paper`: 2 M steps, 86 M datasets (the
    reference drew 262 M in ~60 GPU-days). On one H100 expect days, not hours: micro-batches of 8
    leave the GPU mostly idle (`python -m mothernet_jax.benchmarks.train --preset paper --batch-size 8`
    measures it); for throughput raise `batch_size` and shorten `steps` to the same datasets.
    Several GPUs or hosts: the same command on every host with `--distributed`; `batch_size` is
    global and `batch_size / prior_batch` must be a multiple of the device count.
    """
    import priors

    steps = 2_000_000
    return TrainConfig(
        model=model_config.paper().replace(dtype="bfloat16"),
        prior=priors.preset("paper"),
        steps=steps,
        batch_size=8,
        prior_batch=8,
        accumulation=((0, 1), (steps // 8, 2), (steps // 4, 4), (steps // 2, 8)),
        learning_rate=3e-5,
        warmup_steps=10_000,
        min_learning_rate=1e-8,
        checkpoint_every=5_000,
        log_every=100,
    )


def tiny_regression() -> TrainConfig:
    """`tiny` for the `tiny-regression` model (CPU smoke runs and tests): the same prior config, read
    by the regression prior (`priors.sample_regression_batch`), and the child's squared error on the
    standardised target.
    `mothernet-jax train --preset tiny-regression --workdir runs/tiny-regression`: measured with
    `--steps 800 --validate-every 100000` on the busy 2-core CPU, 64 s of training, the median loss
    falls from about 1.15 to 0.92 and val_r2 (../shared/regression's 17 validation datasets) is 0.387
    (its random initialisation: -0.008)."""
    return tiny().replace(model=model_config.tiny_regression())


def small_regression() -> TrainConfig:
    """`small` for the `small-regression` model (3,789,313 parameters, bf16 compute): the paper
    prior config through the regression prior, 512 datasets per step (one H100), the child's
    squared error on the standardised target.
    `mothernet-jax train --preset small-regression --workdir runs/small-regression --budget 3300`
    (`--export small-regression.msgpack` writes the weights)."""
    return small().replace(model=model_config.small_regression().replace(dtype="bfloat16"))


PRESETS = {
    "tiny": tiny,
    "small": small,
    "paper": paper,
    "tiny-regression": tiny_regression,
    "small-regression": small_regression,
}


def preset(name: str) -> TrainConfig:
    """The named `TrainConfig`; one of `PRESETS`."""
    return config_base.preset(PRESETS, name, "train")
