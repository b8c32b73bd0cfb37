"""The estimator's `weights=` parameter resolved: the shipped weights, a weight file, or params with
their config (`pretrained.Weights`, or any `(params, ModelConfig)` pair)."""

from __future__ import annotations

import functools
import os

import jax

from mothernet_jax.config import ModelConfig
from mothernet_jax.pretrained import Weights, load_info, load_pretrained, weight_path


@functools.lru_cache(maxsize=2)
def _load_on_device(path: str | None, stamp: float) -> Weights:
    """A weight file read, checked and put on the device once per (path, modification time)."""
    params, config = load_pretrained(path)
    return Weights(jax.device_put(params), config)


def resolve_weights(weights) -> Weights:
    """None: the shipped weights; a path or a shipped name ("small-regression"): a weight file
    (`pretrained.load_pretrained`); `Weights` or a (params, ModelConfig) pair: as given.
    ValueError for anything else."""
    if weights is None or isinstance(weights, str | os.PathLike):
        path = None if weights is None else str(weight_path(weights).resolve())
        stamp = os.stat(path).st_mtime if path is not None and os.path.exists(path) else 0.0
        return _load_on_device(path, stamp)
    if isinstance(weights, tuple | list) and len(weights) == 2 and isinstance(weights[1], ModelConfig):
        return Weights(weights[0], weights[1])
    raise ValueError(
        "weights must be None (the shipped weights), a path to a weight file, or (params, ModelConfig) "
        f"as mothernet_jax.load_pretrained returns; got {type(weights).__name__}"
    )


def weights_info(weights) -> dict:
    """The manifest of a weight file (None: the shipped weights); {} for params given with their
    config."""
    if weights is None or isinstance(weights, str | os.PathLike):
        return load_info(weights)
    return {}
