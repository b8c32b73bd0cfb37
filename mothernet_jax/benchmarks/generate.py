"""Speed of `generate` and of the generated child.

    python -m mothernet_jax.benchmarks.generate [--preset paper] [--repeats 20] [--batch 64]
        [--sizes 1000x100,100x10]

For each training-set size (rows x features) prints the median latency of
- the jitted core with its preprocessing (`generate_batch` on one padded dataset, on device);
- `generate()` called from NumPy without config (its recovery, host checks, row bucketing,
  transfer, the core);
- `jit(generate)` on device arrays, the call a JAX pipeline makes;
- `jit(vmap(generate))` over `--batch` datasets of that size in one call, with its datasets/s next
  to that of `jit(generate)` called once per dataset;
then the child's rows/s on 100,000 rows (jitted JAX and NumPy alone), on whatever backend runs it.
The four generate figures of a size are timed in turn, round after round, so that their ratios
hold on a shared machine. Random weights: speed does not depend on their values. The reference
PyTorch implementation's figures: docs/ARCHITECTURE.md section 5.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

import mothernet_jax as mn
from mothernet_jax.benchmarks.common import device_line, median_seconds
from mothernet_jax.child import numpy_logits, to_numpy
from mothernet_jax.generation import bucket_rows, generate_batch_jit


def _sizes(text: str) -> list[tuple[int, int]]:
    try:
        sizes = [tuple(int(v) for v in part.lower().split("x")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must look like 1000x100,100x10, got {text!r}") from None
    if not sizes or any(len(s) != 2 or min(s) < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must look like 1000x100,100x10, got {text!r}")
    return sizes


def interleaved_medians(fns: list, *, repeats: int, warmup: int = 2) -> list[float]:
    """Median wall time of each fn(), timed in turn within every round, so that a load that comes
    and goes on a shared machine weighs on all of them alike (their ratios stay fair)."""
    for fn in fns:
        for _ in range(warmup):
            jax.block_until_ready(fn())
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="paper", help="model preset (default: paper)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per figure (median)")
    parser.add_argument("--batch", type=int, default=64, help="datasets per jit(vmap(generate)) call")
    parser.add_argument("--sizes", type=_sizes, default=[(1000, 100), (100, 10)], help="rows x features")
    parser.add_argument("--predict-rows", type=int, default=100_000, help="rows for the child's throughput")
    args = parser.parse_args(argv)

    config = mn.preset(args.preset)
    params = jax.device_put(mn.init_params(jax.random.key(0), config))
    rng = np.random.default_rng(0)
    print(f"# generate benchmark: preset={args.preset} ({mn.count_params(config):,} parameters)")
    print(f"# {device_line()}")
    print(f"{'what':52s} {'median':>12s} {'datasets/s':>12s}")
    row = lambda what, seconds, datasets=1: print(
        f"{what:52s} {seconds * 1e3:9.2f} ms {datasets / seconds:12.1f}"
    )
    # params are an argument, not a constant folded into the compiled program
    one = jax.jit(lambda p, X, y: mn.generate(p, X, y, n_classes=config.max_classes))
    many = jax.jit(jax.vmap(lambda p, X, y: mn.generate(p, X, y, n_classes=config.max_classes), (None, 0, 0)))
    child = None
    for n, d in args.sizes:
        X = rng.normal(size=(n, d)).astype(np.float32)
        y = rng.integers(0, config.max_classes, size=n)
        rows = bucket_rows(n)
        X_pad = np.zeros((1, rows, config.max_features), np.float32)
        X_pad[0, :n, :d] = X
        y_pad = np.zeros((1, rows), np.int32)
        y_pad[0, :n] = y
        X_dev, y_dev = jax.device_put(X_pad), jax.device_put(y_pad)
        n_rows, n_feat = jax.device_put(np.array([n])), jax.device_put(np.array([d]))
        X1, y1 = jax.device_put(X), jax.device_put(y.astype(np.int32))
        Xb = jax.device_put(rng.normal(size=(args.batch, n, d)).astype(np.float32))
        yb = jax.device_put(rng.integers(0, config.max_classes, size=(args.batch, n)).astype(np.int32))
        core, full, single, batched = interleaved_medians(
            [
                lambda: generate_batch_jit(params, X_dev, y_dev, n_rows, n_feat, config=config),
                lambda: mn.generate(params, X, y),  # config recovered from the params
                lambda: one(params, X1, y1),
                lambda: many(params, Xb, yb),
            ],
            repeats=args.repeats,
        )
        row(f"generate {n} x {d}, jitted core (on device)", core)
        row(f"generate {n} x {d}, generate() from NumPy", full)
        row(f"generate {n} x {d}, jit(generate)", single)
        row(f"generate {args.batch} x ({n} x {d}), jit(vmap(generate))", batched, args.batch)
        print(
            f"{'  (datasets/s of vmap / of one call per dataset)':52s} {single * args.batch / batched:10.2f} x"
        )
        if child is None:
            child = mn.generate(params, X, y)

    X_test = rng.normal(size=(args.predict_rows, child.mean.shape[0])).astype(np.float32)
    X_test_dev = jax.device_put(X_test)
    logits = jax.jit(mn.child_logits)
    t = median_seconds(lambda: logits(child, X_test_dev), repeats=args.repeats)
    print(f"{'child predict, jitted JAX':52s} {args.predict_rows / t / 1e6:9.2f} M rows/s")
    np_child = to_numpy(child)
    t = median_seconds(lambda: numpy_logits(np_child, X_test), repeats=max(3, args.repeats // 4), warmup=1)
    print(f"{'child predict, NumPy alone (host CPU)':52s} {args.predict_rows / t / 1e6:9.2f} M rows/s")


if __name__ == "__main__":
    main()
