"""Compare the prior with the reference statistics: `python -m priors.compare_reference --n 2400`.

Samples n datasets at the paper shapes in batches of 8 (the reference's layout: one split position
s ~ U{2..1151} per batch, as its data loader draws), computes every statistic of
docs/ARCHITECTURE.md section 6 with `priors.stats`, and prints the reference median, ours and
the two-sample Kolmogorov-Smirnov distance per statistic. About 2 minutes for 2,400 datasets on a
2-core CPU, most of it scikit-learn.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

import priors
from priors import stats

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "prior_reference" / "reference_prior_stats.npz"
BATCH = 8


def load_reference(path: Path | str = REFERENCE) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {name: np.asarray(data[name], np.float64) for name in stats.STATISTICS}


def sample_statistics(
    n: int, seed: int = 0, config: priors.PriorConfig | None = None
) -> dict[str, np.ndarray]:
    """Statistics of n datasets (rounded up to whole batches of 8), one split position per batch."""
    config = config or priors.preset("paper")
    n_batches = -(-n // BATCH)
    key_split, key = jax.random.split(jax.random.key(seed))
    splits = np.asarray(jax.random.randint(key_split, (n_batches,), 2, config.n_rows))
    parts = []
    for i in range(n_batches):
        task = priors.sample_batch(jax.random.fold_in(key, i), config, BATCH, int(splits[i]))
        parts.append(stats.batch_statistics(jax.device_get(task)))
    return {name: np.concatenate([p[name] for p in parts])[:n] for name in stats.STATISTICS}


def compare(
    ours: dict[str, np.ndarray], reference: dict[str, np.ndarray]
) -> list[tuple[str, float, float, float]]:
    """[(statistic, reference median, our median, KS distance)]."""
    rows = []
    for name in stats.STATISTICS:
        rows.append(
            (
                name,
                float(np.nanmedian(reference[name])),
                float(np.nanmedian(ours[name])),
                stats.ks_distance(ours[name], reference[name]),
            )
        )
    return rows


def format_table(rows, ours, reference) -> str:
    lines = [f"{'statistic':<32}{'reference median':>17}{'ours median':>13}{'KS':>8}"]
    for name, ref_median, our_median, ks in rows:
        lines.append(f"{name:<32}{ref_median:>17.3f}{our_median:>13.3f}{ks:>8.3f}")
    ref_ignored, our_ignored = np.mean(reference["ignored"]), np.mean(ours["ignored"])
    lines.append(
        f"(reference: {reference['ignored'].size} datasets, {ref_ignored:.3f} ignored; "
        f"ours: {ours['ignored'].size}, {our_ignored:.3f} ignored)"
    )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2400, help="datasets to sample (default 2400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--reference", default=str(REFERENCE))
    parser.add_argument("--save", default=None, help="write our statistics to this .npz")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    ours = sample_statistics(args.n, args.seed, priors.preset(args.preset))
    reference = load_reference(args.reference)
    if args.save:
        np.savez(args.save, **ours)
    rows = compare(ours, reference)
    print(format_table(rows, ours, reference))
    worst = max(ks for *_, ks in rows)
    seconds = time.perf_counter() - start
    print(f"max KS {worst:.3f} over {len(rows)} statistics; {seconds:.0f} s on {jax.default_backend()}")


if __name__ == "__main__":
    main()
