"""The regression prior's distribution statistics: `python -m priors.regression_statistics --n 1024`.

Samples n regression datasets (`priors.regression`) in batches of 8 at one split (half the rows),
computes `priors.stats.regression_task_statistics` per dataset and prints the mean, median and
10% / 90% quantiles of each over the valid datasets (the table in `priors.regression`'s docstring).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from priors import regression, stats
from priors.config import PriorConfig, preset


def sample_statistics(n: int, seed: int = 0, config: PriorConfig | None = None, split: int | None = None):
    """{statistic: (n,) float64} of n regression datasets (batches of 8), `priors.stats`."""
    config = config or preset("paper")
    split = config.n_rows // 2 if split is None else split
    key = jax.random.key(seed)
    parts = []
    for i in range(-(-n // 8)):
        task = regression.sample_regression_batch(jax.random.fold_in(key, i), config, 8, split)
        task = jax.device_get(task)
        parts.append(stats.regression_batch_statistics(task, split))
    return {name: np.concatenate([p[name] for p in parts])[:n] for name in stats.REGRESSION_STATISTICS}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Distribution statistics of the regression prior")
    parser.add_argument("--n", type=int, default=1024, help="datasets to sample (default 1024)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="paper")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    values = sample_statistics(args.n, args.seed, preset(args.preset))
    valid = np.asarray(values["ignored"]) == 0
    print(f"{'statistic':<30}{'mean':>9}{'median':>9}{'q10':>9}{'q90':>9}   (over the valid datasets)")
    for name, column in values.items():
        column = np.asarray(column, np.float64)
        column = column if name == "ignored" else column[valid]
        column = column[~np.isnan(column)]
        q10, median, q90 = np.quantile(column, [0.1, 0.5, 0.9])
        print(f"{name:<30}{column.mean():>9.3f}{median:>9.3f}{q10:>9.3f}{q90:>9.3f}")
    seconds = time.perf_counter() - start
    print(f"{args.n} datasets ({np.sum(~valid)} invalid), preset {args.preset}: {seconds:.0f} s")


if __name__ == "__main__":
    main()
