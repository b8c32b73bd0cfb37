"""The optimiser of the train step, and the weights it evaluates.

`make_optimizer(config, learning_rate)`: global-norm clipping, then AdamW, Muon (on the
transformer's 2-D weights, Adam elsewhere) or schedule-free AdamW; the learning rate is an argument
of the step, so the schedule never recompiles it. `ema_rate` is the decay of the weights' moving
average, and `eval_params` picks the weights a run validates and exports (the moving average, the
schedule-free average, or the parameters).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from mothernet_jax.train.config import TrainConfig

# the global L2 norm of a pytree: optax.tree.norm (optax >= 0.2.5; global_norm is deprecated there)
tree_norm = optax.tree.norm if hasattr(optax, "tree") and hasattr(optax.tree, "norm") else optax.global_norm


def _partition(transforms: dict, labels) -> optax.GradientTransformation:
    partition = getattr(optax, "partition", None) or optax.multi_transform  # older optax
    return partition(transforms, labels)


def muon_labels(params) -> Any:
    """ "muon" for the transformer's 2-D weights (its hidden layers), "adam" for the rest: biases,
    norms, the encoders and the weight head, as Muon is usually applied."""

    def label(path, leaf):
        names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
        return "muon" if leaf.ndim == 2 and "transformer" in names else "adam"

    return jax.tree_util.tree_map_with_path(label, params)


def _matrix_dimensions(updates) -> Any:
    """Muon's dimension numbers for its part of the tree (every leaf a plain 2-D matrix); the
    leaves `partition` masked out for Adam stay masked."""
    masked = lambda leaf: isinstance(leaf, optax.MaskedNode)
    return jax.tree.map(
        lambda u: u if masked(u) else optax.contrib.MuonDimensionNumbers(), updates, is_leaf=masked
    )


def _scale_to_adam_rms(rms: float = 0.2) -> optax.GradientTransformation:
    """Scale each orthogonalised Muon update to the RMS of a typical Adam update (0.2), so that
    one learning rate serves the Muon and the Adam parameters (Moonshot's "consistent RMS")."""

    def scale(updates, params=None):
        del params
        masked = lambda leaf: isinstance(leaf, optax.MaskedNode)
        return jax.tree.map(
            lambda u: u if masked(u) else u * (rms * math.sqrt(max(u.shape))), updates, is_leaf=masked
        )

    return optax.stateless(scale)


def make_optimizer(config: TrainConfig, learning_rate: Any = 0.0) -> optax.GradientTransformation:
    """Global-norm clipping, then `config.optimizer` at `learning_rate` (an argument of the step,
    so that the schedule never recompiles it; its value does not change the state's structure).
    The updates it returns are added to the parameters.

    - "adamw": Adam moments (no weight decay, as the reference recipe).
    - "muon": Muon (orthogonalised Nesterov momentum) on the transformer's 2-D weights, scaled to
      Adam's update RMS; Adam on the other parameters.
    - "schedule_free_adamw": schedule-free AdamW (`optax.contrib.schedule_free_adamw`); evaluate it
      at `eval_params`, the averaged weights.
    """
    parts = []
    if config.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(config.grad_clip))
    if config.optimizer == "schedule_free_adamw":
        free = optax.contrib.schedule_free_adamw(
            learning_rate, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps
        )
        parts.append(free)
        return optax.chain(*parts)
    adam = optax.scale_by_adam(b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)
    if config.optimizer == "muon":
        muon = optax.chain(
            optax.contrib.scale_by_muon(
                beta=config.muon_momentum, nesterov=True, weight_dimension_numbers=_matrix_dimensions
            ),
            _scale_to_adam_rms(),
        )
        parts.append(_partition({"muon": muon, "adam": adam}, muon_labels))
    else:
        parts.append(adam)
    parts.append(optax.scale_by_learning_rate(learning_rate, flip_sign=True))
    return optax.chain(*parts)


def ema_rate(config: TrainConfig, step: jax.Array) -> jax.Array:
    """The EMA decay at optimiser step `step`: min(ema_decay, (1 + t) / (10 + t)), so that early
    averages are not dominated by the initial weights."""
    t = step.astype(jnp.float32)
    return jnp.minimum(config.ema_decay, (1.0 + t) / (10.0 + t))


def eval_params(state, config: TrainConfig) -> Any:
    """The weights of a `step.TrainState` to validate and export: the moving average where `ema_decay` is on, else the
    schedule-free average for "schedule_free_adamw", else the parameters."""
    if state.ema is not None:
        return state.ema
    if config.optimizer == "schedule_free_adamw":
        for part in state.opt_state:
            if hasattr(part, "z") and hasattr(part, "b1"):
                return optax.contrib.schedule_free_eval_params(part, state.params)
    return state.params
