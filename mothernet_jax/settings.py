"""The estimators' settings a weight file recommends: one place for their names, checks and the
library's defaults (`CLASSIFIER` and `REGRESSOR` name those each estimator takes).

`MotherNetClassifier`'s and `MotherNetRegressor`'s parameters of these names default to "auto": the
value the weight file's manifest records under the same key (written by `pretrained.update_info`,
carried by training exports), else `LIBRARY_DEFAULTS`. The manifest's checks (`pretrained.MANIFEST_FIELDS`) and the
estimator's parameter checks are the same functions (`check`), so a manifest cannot recommend what
the estimator would refuse. NumPy-free and JAX-free: the weight reader and the estimator both
import it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

MULTICLASS_STRATEGIES = ("native", "one_vs_rest")
FINETUNE_LAYERS = ("all", "output")
# estimator.output_layer fits "refit" (penalised toward zero) and "refit_prior" (toward the generated read-out)
OUTPUT_LAYERS = ("generated", "refit", "refit_prior")


def is_refit(output_layer) -> bool:
    """Whether the read-out is refitted on the training rows (either prior)."""
    return output_layer in ("refit", "refit_prior")


def is_integer(v) -> bool:
    """Any whole number but a bool: Python's int, NumPy's integers (what scipy.stats.randint draws),
    as scikit-learn's parameter validation takes them (`numbers.Integral`)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_number(v) -> bool:
    """Any finite real number but a bool (`numbers.Real`: NumPy's floats and integers included)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _integer(low: int) -> Callable[[Any], bool]:
    return lambda v: is_integer(v) and v >= low


# name -> (test, what it must be, library default, what it does); the defaults apply to weights
# whose manifest says nothing (random weights, a custom config, a fresh training run's export) and
# are the shipped weights' measured settings (docs/FAST_DEFAULTS.md, docs/REGRESSION.md): 4 native
# members of 256 context rows with the refitted read-out, no fine-tuning.
SETTINGS: dict[str, tuple[Callable[[Any], bool], str, Any, str]] = {
    "multiclass": (
        lambda v: v in MULTICLASS_STRATEGIES,
        f"one of {', '.join(MULTICLASS_STRATEGIES)}",
        "native",
        "how k > 2 classes are put to the model",
    ),
    "n_estimators": (_integer(1), "an integer >= 1", 4, "ensemble members"),
    "max_train_rows": (
        lambda v: v is None or _integer(1)(v),
        "an integer >= 1 or None",
        256,
        "training rows each member reads (context rows)",
    ),
    "max_members": (
        lambda v: v is None or _integer(1)(v),
        "an integer >= 1 or None",
        None,
        "one-vs-rest: members in all at most (at least one a class; native above)",
    ),
    "finetune_steps": (_integer(0), "an integer >= 0", 0, "Adam steps on each generated child"),
    "finetune_learning_rate": (
        lambda v: is_number(v) and v > 0,
        "a positive number",
        1e-3,
        "Adam step size of the fine-tuning",
    ),
    "finetune_layers": (
        lambda v: v in FINETUNE_LAYERS,
        f"one of {', '.join(FINETUNE_LAYERS)}",
        "all",
        "which layers of the child the fine-tuning changes",
    ),
    "finetune_rows": (
        lambda v: v is None or _integer(1)(v),
        "an integer >= 1 or None",
        None,
        "training rows per fine-tuning step (null: all)",
    ),
    "finetune_holdout": (
        lambda v: is_number(v) and 0 <= v <= 0.5,
        "a number in [0, 0.5]",
        0.0,
        "share of a member's rows held out to stop the fine-tuning early (0: no early stopping)",
    ),
    "finetune_pool": (
        lambda v: v is None or _integer(2)(v),
        "an integer >= 2 or None",
        None,
        "rows each member's fine-tuning fits and holds out from: its own stratified sample of this many "
        "training rows (null: its context rows)",
    ),
    "output_layer": (
        lambda v: v in OUTPUT_LAYERS,
        f"one of {', '.join(OUTPUT_LAYERS)}",
        "refit",
        "the children's read-out: as generated, or refitted on every training row (ridge / logistic), "
        "penalised toward zero (refit) or toward the generated read-out (refit_prior)",
    ),
}

RECOMMENDABLE = tuple(SETTINGS)
# which settings each estimator takes (a manifest may hold any of RECOMMENDABLE)
CLASSIFIER = RECOMMENDABLE
REGRESSOR = tuple(name for name in RECOMMENDABLE if name not in ("multiclass", "max_members"))
LIBRARY_DEFAULTS = {name: spec[2] for name, spec in SETTINGS.items()}


def check(name: str, value) -> None:
    """ValueError, in one line naming the setting, unless `value` is valid for it."""
    test, expected, _, _ = SETTINGS[name]
    if not test(value):
        raise ValueError(f"{name} must be {expected} or 'auto', got {value!r}")


def resolve(name: str, value, recommended: Mapping[str, Any]):
    """`value`, with "auto" replaced by the manifest's recommendation (else the library default);
    NumPy numbers come back as Python's (np.int64(4) -> 4), so that what fit used reads plainly."""
    if isinstance(value, str) and value == "auto":
        return recommended.get(name, LIBRARY_DEFAULTS[name])
    check(name, value)
    return plain(value)


def plain(value):
    """A NumPy number as Python's int or float; anything else as it is."""
    if is_integer(value):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value


def check_combination(chosen: Mapping[str, Any]) -> None:
    """ValueError, in one line naming the settings, for resolved settings that contradict each
    other: fine-tuning the read-out alone (finetune_layers="output") with the read-out refitted
    afterwards (output_layer="refit"), which would throw the fine-tuning away."""
    if is_refit(chosen.get("output_layer")) and chosen.get("finetune_layers") == "output" and chosen.get(
        "finetune_steps", 0
    ):
        raise ValueError(
            "finetune_layers='output' with output_layer='refit': the refit replaces the read-out that "
            "the fine-tuning changed; fine-tune finetune_layers='all' or keep output_layer='generated'"
        )
