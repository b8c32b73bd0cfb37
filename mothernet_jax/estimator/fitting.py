"""What `MotherNetClassifier.fit` and `MotherNetRegressor.fit` share, in the order they do it:
`prepare_fit` (the settings checked and resolved, the table read and its targets checked, the
weights resolved, the "auto" settings scheduled by the training rows, the table encoded, the seed
drawn), then the caller plans its members, then `TrainingTable.generate` (the memory checked, the
fine-tuning set up, the children generated).

Randomness: one seed a fit, drawn from `random_state`, and from it independent streams
(`numpy.random.SeedSequence.spawn`), one for each use (`STREAMS`: the members' plan, the read-out's
subsamples, the fine-tuning's draws), so that no use replays another's draws."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import validate_data

from mothernet_jax import settings
from mothernet_jax.config import ModelConfig
from mothernet_jax.estimator.compile_cache import use_default_cache
from mothernet_jax.estimator.finetune import Finetune
from mothernet_jax.estimator.member_generation import check_memory, generate_children
from mothernet_jax.estimator.plan import MemberPlan
from mothernet_jax.estimator.schedule import Schedule, apply
from mothernet_jax.estimator.weights import resolve_weights, weights_info
from mothernet_jax.runtime.encoding import FeatureEncoder, infer_categorical, plain_dtypes

STREAMS = ("plan", "read_out", "finetune")  # the independent random streams of a fit


def resolve_settings(estimator, names: Iterable[str], weights) -> dict:
    """Every setting of `names`, "auto" resolved by the manifest of `weights` (the estimator's
    `weights=` as it resolves; the library's defaults where the manifest says nothing); ValueError,
    in one line, for settings that contradict each other (`settings.check_combination`)."""
    recommended = weights_info(weights)  # checked with the manifest
    chosen = {name: settings.resolve(name, getattr(estimator, name), recommended) for name in names}
    settings.check_combination(chosen)
    return chosen


def auto_settings(estimator, names: Iterable[str]) -> set[str]:
    """The settings of `names` the estimator leaves at "auto"."""
    return {name for name in names if isinstance(getattr(estimator, name), str) and getattr(estimator, name) == "auto"}


def weights_name(weights) -> str:
    """The estimator's `weights=` as a message names it: "weights 'PATH'", else "the given weights"."""
    return f"weights {str(weights)!r}" if isinstance(weights, str | os.PathLike) else "the given weights"


def categorical_mask(spec, n_features: int, feature_names=None) -> np.ndarray:
    """The bool mask (n_features,) of a `categorical_features` setting other than "auto" (None, a mask,
    indices or column names of `feature_names`); ValueError in one line where it does not fit X."""
    if spec is None:
        return np.zeros(n_features, bool)
    if isinstance(spec, str):
        raise ValueError(f"categorical_features must be 'auto', a mask or indices, got {spec!r}")
    spec = np.asarray(spec)
    if spec.dtype == bool:
        if spec.shape != (n_features,):
            raise ValueError(
                f"the categorical_features mask has shape {spec.shape}; X has {n_features} features"
            )
        return spec.copy()
    if spec.dtype.kind in "USO":
        names = [] if feature_names is None else list(feature_names)
        missing = [s for s in spec.tolist() if s not in names]
        if missing:
            raise ValueError(f"categorical_features names {missing} are not columns of X")
        spec = np.array([names.index(s) for s in spec.tolist()], np.int64)
    if spec.size and (
        spec.dtype.kind not in "iu" or spec.min() < -n_features or spec.max() >= n_features
    ):
        raise ValueError(
            f"categorical_features indices must lie in 0..{n_features - 1}, got {spec.tolist()}"
        )
    mask = np.zeros(n_features, bool)
    mask[spec.astype(np.int64)] = True
    return mask


@dataclasses.dataclass
class TrainingTable:
    """The training table as `prepare_fit` leaves it: encoded, with its targets, weights and seed."""

    chosen: dict  # the resolved settings
    targets: Any  # what `targets(y)` returned
    mask: np.ndarray  # the categorical columns
    feature_names: np.ndarray | None
    encoder: FeatureEncoder
    encoded: np.ndarray
    params: Any
    config: ModelConfig
    seed: int

    def rng(self, stream: str) -> np.random.Generator:
        """The generator of one of `STREAMS`, independent of the others (`SeedSequence.spawn`)."""
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {', '.join(STREAMS)}, got {stream!r}")
        return np.random.default_rng(np.random.SeedSequence(self.seed).spawn(len(STREAMS))[STREAMS.index(stream)])

    def generate(self, y: np.ndarray, plans: list[MemberPlan], **kwargs) -> tuple[list, Finetune]:
        """(children, the fine-tuning used): the memory checked for `plans`, then one child per plan
        generated (and fine-tuned as the settings say) from `y`, the targets as the model reads them."""
        chosen = self.chosen
        check_memory(plans, self.config, f"max_train_rows={chosen['max_train_rows']!r}")
        finetune = Finetune(
            steps=chosen["finetune_steps"],
            learning_rate=chosen["finetune_learning_rate"],
            layers=chosen["finetune_layers"],
            rows=chosen["finetune_rows"],
            holdout=chosen["finetune_holdout"],
        )
        children = generate_children(
            self.params, self.config, self.encoded, y, plans, finetune=finetune, rng=self.rng("finetune"),
            refit=settings.is_refit(chosen["output_layer"]), **kwargs,
        )  # fmt: skip
        return children, finetune


def prepare_fit(
    estimator,
    X,
    y,
    *,
    names: Iterable[str],
    targets: Callable[[np.ndarray], Any],
    check_model: Callable[[ModelConfig], None] | None = None,
    weights=None,
    schedule: Schedule | None = None,
) -> TrainingTable:
    """The estimator's settings of `names` resolved, X read (`validate_data`, which sets
    n_features_in_ and feature_names_in_) and y checked by `targets(y)` (which returns what the
    caller plans with), the "auto" settings scheduled by the training rows (`schedule.apply`), the
    weights resolved (and checked by `check_model(config)`), X encoded, and the fit's seed drawn
    from `estimator.random_state`. weights: what `weights=` None stands for (None: the shipped
    classification weights)."""
    weights = estimator.weights if estimator.weights is not None else weights
    chosen = resolve_settings(estimator, names, weights)
    spec = estimator.categorical_features
    auto_mask = infer_categorical(X) if isinstance(spec, str) and spec == "auto" else None
    X = plain_dtypes(X)
    X, y = validate_data(estimator, X, y, dtype=None, ensure_all_finite=False)
    kept = targets(y)
    chosen = apply(chosen, auto_settings(estimator, names), X.shape[0], schedule)
    settings.check_combination(chosen)
    params, config = resolve_weights(weights)
    if check_model is not None:
        check_model(config)
    use_default_cache()
    feature_names = getattr(estimator, "feature_names_in_", None)
    mask = auto_mask if auto_mask is not None else categorical_mask(spec, X.shape[1], feature_names)
    encoder = FeatureEncoder.fit(X, mask, None if feature_names is None else list(feature_names))
    encoded = encoder.transform(X)
    seed = check_random_state(estimator.random_state).randint(np.iinfo(np.int32).max)
    return TrainingTable(chosen, kept, mask, feature_names, encoder, encoded, params, config, seed)
