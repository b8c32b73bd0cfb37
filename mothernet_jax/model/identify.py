"""Which `ModelConfig` a params pytree belongs to, so that `generate(params, X, y)` needs no config.

A params pytree is a plain dict of arrays: it cannot carry its config, and anything attached to
it would not survive `jax.tree.map`, a checkpoint or a trace. What it does carry everywhere, even
as tracers inside jit, vmap and grad, is its tree of names and shapes. The shapes fix most fields
(embed_dim, n_layers, ffn_dim, pooling, head sizes, child sizes, rank, max_features,
max_classes) but not n_heads, head_activation or dtype, so `config_of` matches the names and
shapes against a fixed list of configs (the task shows in the y encoder's input width, 1 for
regression), in this order:

1. the `candidates` the caller passes (say the config a checkpoint was saved with);
2. the presets (`config.PRESETS`);
3. the configs of the weight files shipped in `mothernet_jax/pretrained/` (their JSON manifests).

The configs whose parameter shapes equal those of `params` must agree on every field that changes
the computation, dtype aside; `config_of` returns the first of them. When none matches (a custom
config: its params were made by `init_params(key, config)` with a config that is neither a preset
nor shipped), or two architectures of identical shapes do (say the `paper` preset and a `paper`
candidate with 8 heads), it raises `UnknownConfigError`, which asks for `config=`: it never
guesses. The answer depends on the params' names and shapes and the candidates alone, never on
what the process did before (it is memoised as the pure function it is). Only names and shapes are
read, so a traced call pays for this once, at trace time.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path

import jax

from mothernet_jax.config import PRESETS, ModelConfig
from mothernet_jax.model.mothernet import abstract_params

Signature = tuple[tuple[str, tuple[int, ...]], ...]  # sorted (path, shape) of every leaf

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
QUICK_LEAVES = ("x_encoder/linear/kernel", "weight_head/output/kernel")  # two shapes that rule most out


class UnknownConfigError(ValueError):
    """The config of a params pytree cannot be determined from its shapes: pass `config=`."""


def _key_name(key) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def signature(params) -> Signature:
    """The sorted (path "a/b/c", shape) of every leaf of a params pytree (arrays, tracers or
    `jax.ShapeDtypeStruct`s alike)."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    try:
        return tuple(
            sorted(("/".join(_key_name(k) for k in path), tuple(leaf.shape)) for path, leaf in leaves)
        )
    except AttributeError as error:
        raise UnknownConfigError(
            f"params must be a pytree of arrays (as init_params or load_pretrained return): {error}"
        ) from None


@functools.lru_cache(maxsize=64)
def config_signature(config: ModelConfig) -> Signature:
    """The signature of the params of `config`, from `jax.eval_shape` (nothing allocated)."""
    return signature(abstract_params(config))


def _architecture(config: ModelConfig) -> tuple:
    """The fields that change what the model computes, dtype aside (a precision choice)."""
    fields = config.to_dict()
    fields.pop("dtype")
    if config.pooling != "output_attention":
        fields.pop("pooling_embed_dim")  # unused by the other poolings
    if config.task == "regression":
        fields.pop("max_classes")  # unused: one output unit, a float target
    return tuple(sorted(fields.items()))


@functools.lru_cache(maxsize=1)
def shipped_configs() -> tuple[ModelConfig, ...]:
    """The configs of the weight files shipped with the package (read once: the files are part of
    the installed package)."""
    configs = []
    for manifest in sorted(PRETRAINED_DIR.glob("*.json")):
        try:
            configs.append(ModelConfig.from_dict(json.loads(manifest.read_text())["config"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged manifest is load_pretrained's error to report, not this one's
    return tuple(configs)


def _quick_key(config: ModelConfig) -> tuple:
    return (
        (config.max_features, config.embed_dim),
        (config.head_hidden_size, config.n_generated),
    )


def config_of(params, candidates: Iterable[ModelConfig] | None = None) -> ModelConfig:
    """The `ModelConfig` that `params` belong to, recovered from their names and shapes.

    params: a params pytree (arrays, tracers or shapes). candidates: configs to try before the
    presets and the shipped weights' configs (the first match wins, so a candidate also decides
    the dtype). Raises `UnknownConfigError` (a ValueError) when no config tried has these shapes,
    or several that compute differently do.
    """
    candidates = tuple(candidates or ())
    for candidate in candidates:
        if not isinstance(candidate, ModelConfig):
            raise TypeError(f"candidates must be ModelConfigs, got {type(candidate).__name__}")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    try:
        shapes = tuple(tuple(leaf.shape) for leaf in leaves)
    except AttributeError:
        signature(params)  # raises the error that names what is not an array
        raise
    return _config_of_shapes(treedef, shapes, candidates)


@functools.lru_cache(maxsize=64)
def _config_of_shapes(treedef, shapes: tuple, candidates: tuple[ModelConfig, ...]) -> ModelConfig:
    """`config_of` on the tree structure and leaf shapes alone: a pure function of its arguments,
    memoised because eager `generate` calls ask again and again (an error is not memoised)."""
    params = jax.tree_util.tree_unflatten(treedef, [jax.ShapeDtypeStruct(s, "float32") for s in shapes])
    sig = signature(params)
    shapes = dict(sig)
    quick = tuple(shapes.get(name) for name in QUICK_LEAVES)
    known = list(dict.fromkeys([*candidates, *(f() for f in PRESETS.values()), *shipped_configs()]))
    matches = [c for c in known if _quick_key(c) == quick and config_signature(c) == sig]
    if not matches:
        hint = ""
        if isinstance(params, dict) and set(params) == {"params"}:
            hint = " (these look like Flax variables: pass variables['params'])"
        raise UnknownConfigError(
            "cannot tell which ModelConfig these params belong to: their shapes fit no preset and no "
            f"shipped weight file{hint}, and a custom config cannot be recovered from shapes. Pass "
            "config= (for example mn.generate(params, X, y, config=config))"
        )
    architectures = {_architecture(c) for c in matches}
    if len(architectures) > 1:
        fields = [dict(_architecture(c)) for c in matches]
        differing = sorted(name for name in fields[0] if len({f.get(name) for f in fields}) > 1)
        raise UnknownConfigError(
            f"these params fit {len(architectures)} configs that compute differently (they differ "
            f"in {', '.join(differing)}, which the shapes do not show). Pass config= (for example "
            "mn.generate(params, X, y, config=config))"
        )
    return matches[0]


def resolve_config(params, config: ModelConfig | None) -> ModelConfig:
    """`config` when given (it must be a ModelConfig), else `config_of(params)`."""
    if config is None:
        return config_of(params)
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
    return config
