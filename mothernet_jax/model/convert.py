"""Reference (PyTorch `microsoft/ticl` MotherNet) state_dict arrays -> Flax `params`.

`from_reference(arrays, config)` takes the reference names (as in the parity fixtures, without their
`state/` prefix) mapped to NumPy arrays. PyTorch `Linear` stores weight as (out, in); Flax `Dense`
stores kernel as (in, out).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np

from mothernet_jax.config import ModelConfig
from mothernet_jax.model.mothernet import init_params


def _reference_names(config: ModelConfig) -> dict[str, tuple[tuple[str, ...], str]]:
    """reference name -> (path in params, how to transform: 'T' transpose, '=' as is, ...)."""
    names: dict[str, tuple[tuple[str, ...], str]] = {}

    def linear(ref: str, path: tuple[str, ...]):
        names[f"{ref}.weight"] = (path + ("kernel",), "T")
        names[f"{ref}.bias"] = (path + ("bias",), "=")

    linear("encoder", ("x_encoder", "linear"))
    linear("y_encoder", ("y_encoder", "linear"))
    for i in range(config.n_layers):
        ref, path = f"transformer_encoder.layers.{i}", ("transformer", f"layer_{i}")
        names[f"{ref}.self_attn.in_proj_weight"] = (path + ("attention", "qkv", "kernel"), "T")
        names[f"{ref}.self_attn.in_proj_bias"] = (path + ("attention", "qkv", "bias"), "=")
        linear(f"{ref}.self_attn.out_proj", path + ("attention", "out"))
        linear(f"{ref}.linear1", path + ("ffn_in",))
        linear(f"{ref}.linear2", path + ("ffn_out",))
        for norm in ("norm1", "norm2"):
            names[f"{ref}.{norm}.weight"] = (path + (norm, "scale"), "=")
            names[f"{ref}.{norm}.bias"] = (path + (norm, "bias"), "=")
    if config.pooling == "output_attention":
        ref, path = "decoder.summary_layer", ("output_attention",)
        names[f"{ref}.query"] = (path + ("query",), "query")
        for part in ("q", "k", "v"):
            names[f"{ref}.output_layer.{part}_proj_weight"] = (path + (part, "kernel"), "T")
        names[f"{ref}.output_layer.in_proj_bias"] = (path, "qkv_bias")
        linear(f"{ref}.output_layer.out_proj", path + ("out",))
    linear("decoder.mlp.0", ("weight_head", "hidden_0"))
    linear("decoder.mlp.2", ("weight_head", "output"))
    if config.low_rank:
        for layer in range(config.child_hidden_layers):
            names[f"decoder.shared_weights.{layer}"] = (("weight_head", f"shared_{layer}"), "=")
    return names


def from_reference(arrays: Mapping[str, np.ndarray], config: ModelConfig) -> dict:
    """Flax params for `config` from reference state_dict arrays.

    Raises ValueError when a name is missing or unexpected, or a shape does not fit `config`.
    """
    expected = jax.eval_shape(lambda k: init_params(k, config), jax.random.key(0))
    names = _reference_names(config)
    missing = sorted(set(names) - set(arrays))
    unexpected = sorted(set(arrays) - set(names))
    if missing or unexpected:
        raise ValueError(
            f"reference arrays do not match the config: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}"
        )
    params: dict = {}

    def put(path: tuple[str, ...], value: np.ndarray, ref: str):
        node_expected = expected
        for key in path:
            node_expected = node_expected[key]
        if tuple(node_expected.shape) != value.shape:
            raise ValueError(
                f"{ref}: shape {value.shape} does not fit {'/'.join(path)} {tuple(node_expected.shape)}"
            )
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = np.asarray(value, np.float32)

    for ref, (path, how) in names.items():
        value = np.asarray(arrays[ref])
        if how == "T":
            put(path, value.T, ref)
        elif how == "query":
            put(path, value.reshape(1, -1), ref)
        elif how == "qkv_bias":
            for part, bias in zip(("q", "k", "v"), np.split(value, 3), strict=True):
                put(path + (part, "bias"), bias, ref)
        else:
            put(path, value, ref)
    return params
