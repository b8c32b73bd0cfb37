"""What grows with the training rows: the settings left at "auto" beyond a measured row count.

A weight file's recommendations (`settings`: the manifest, else the library defaults) were measured
where the validation datasets lie, at most 1,000 training rows: 4 members of 256 context rows and
a read-out refitted on every row, no fine-tuning (within their fit-time budgets). With more rows
the children's hidden layers, generated from 256 rows, are what limits them, and fine-tuning them
on a large sample of the rows pays. The map (`python -m mothernet_jax.benchmarks.scale_map`,
docs/SCALE.md, "The row schedule's map"; one thread) measured 100 and
300 steps of `LARGE_DATA_FINETUNE` against none:

- classification: on synthetic tasks +0.051 AUC at 1,000 rows, +0.071 at 3,000, +0.086 at 10,000
  and +0.069 at 30,000 (300 steps); on the 10 validation datasets of 4,000 to 8,802 rows split in
  halves (2,014 to 4,401 training rows) +0.0019, at about 3 times the fit time;
- regression: on synthetic tasks +0.065 R² at 500 rows to +0.077 at 2,000 and 5,000; on the 4
  validation datasets of 2,000 to 5,000 rows in halves (1,000 to 2,500 training rows) +0.0085.

The rule: fine-tune from the smallest map size above 1,000 training rows from which the mean
gain is at least +0.005 on the real datasets of that size where the map has any, else on the
synthetic tasks: 10,000 rows for the classifier (the real datasets below gain less), 2,000 for the
regressor; 300 steps, which add +0.004 to +0.006 over 100 at those sizes.

A `Schedule` says from how many training rows which settings change; `apply` changes only the
settings the user left at "auto" (an explicit value always wins, as `finetune_steps=0`), as
HistGradientBoosting's early_stopping="auto" turns on beyond 10,000 rows. Members and context rows
do not grow: 1,024 or 2,048 context rows a member instead of 256 scored 0.927 and 0.932 AUC on the
100,000-row task against 0.930 (no fine-tuning).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from mothernet_jax.settings import is_refit


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
    if is_refit(out.get("output_layer")) and out.get("finetune_layers") == "output" and "finetune_steps" in auto:
        out["finetune_steps"] = chosen["finetune_steps"]
    return out
