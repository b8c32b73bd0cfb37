"""What grows with the training rows: the settings left at "auto" beyond a measured row count.

A weight file's recommendations (`settings`: the manifest, else the library defaults) were measured
where the validation datasets lie, at most 1,000 training rows: 4 members of 256 context rows and
a read-out refitted on every row, no fine-tuning. With many more rows the children's hidden layers,
generated from 256 rows, are what limits them, and fine-tuning them on a large sample of the rows
pays (`python -m mothernet_jax.benchmarks.scale --map`: the map these numbers come from,
docs/FAST_DEFAULTS.md "Many rows"). A `Schedule` says from how many training rows which settings
change; `apply` changes only the settings the user left at "auto" (an explicit value always wins,
as `finetune_steps=0`), as HistGradientBoosting's early_stopping="auto" turns on beyond 10,000 rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Schedule:
    """from_rows: the training rows from which `settings` replace the "auto" ones."""

    from_rows: int
    settings: Mapping[str, Any]


# Fine-tuning on a large sample: all layers, Adam, 512 rows a step drawn from each member's own
# stratified sample of 8,192 training rows (a fifth held out to stop early), then the read-out
# refitted on every row as at any size.
LARGE_DATA_FINETUNE = {
    "finetune_steps": 300,
    "finetune_learning_rate": 3e-3,
    "finetune_rows": 512,
    "finetune_pool": 8192,
    "finetune_holdout": 0.2,
    "finetune_layers": "all",
}
CLASSIFIER = Schedule(from_rows=10_000, settings=LARGE_DATA_FINETUNE)
REGRESSOR = Schedule(from_rows=2_000, settings=LARGE_DATA_FINETUNE)


def apply(chosen: Mapping[str, Any], auto: Collection[str], n_rows: int, schedule: Schedule | None) -> dict:
    """The resolved settings `chosen` with the schedule's values in place of those named in `auto`
    (the ones the user left at "auto") where n_rows reaches schedule.from_rows. The schedule adds
    no fine-tuning where its read-out would be refitted over fine-tuned output layers alone
    (finetune_layers="output" set with output_layer="refit", which `settings.check_combination`
    refuses)."""
    out = dict(chosen)
    if schedule is None or n_rows < schedule.from_rows:
        return out
    for name, value in schedule.settings.items():
        if name in auto and name in out:
            out[name] = value
    if out.get("output_layer") == "refit" and out.get("finetune_layers") == "output" and "finetune_steps" in auto:
        out["finetune_steps"] = chosen["finetune_steps"]
    return out
