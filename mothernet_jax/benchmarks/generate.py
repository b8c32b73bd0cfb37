"""Speed of `generate` and of the generated child.

    python -m mothernet_jax.benchmarks.generate [--preset paper] [--repeats 20]

Prints the median latency of `generate` (the jitted forward pass with its preprocessing, and the
whole user call from NumPy) for 1000 x 100 and 100 x 10 training sets, and the child's rows/s on
100,000 rows (jitted JAX and NumPy alone), on whatever backend runs it. Random weights: speed does
not depend on their values. Reference on one H100: 8.7 ms for 1000 x 100 (DESIGN.md section 5).
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import mothernet_jax as mn
from mothernet_jax.benchmarks.common import device_line, median_seconds
from mothernet_jax.child import numpy_logits, to_numpy
from mothernet_jax.generation import _generate_jit, bucket_rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="paper", help="model preset (default: paper)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per figure (median)")
    parser.add_argument("--predict-rows", type=int, default=100_000, help="rows for the child's throughput")
    args = parser.parse_args(argv)

    config = mn.preset(args.preset)
    params = jax.device_put(mn.init_params(jax.random.key(0), config))
    rng = np.random.default_rng(0)
    print(f"# generate benchmark: preset={args.preset} ({mn.count_params(config):,} parameters)")
    print(f"# {device_line()}")
    print(f"{'what':44s} {'median':>12s}")
    child = None
    for n, d in [(1000, 100), (100, 10)]:
        X = rng.normal(size=(n, d)).astype(np.float32)
        y = rng.integers(0, 10, size=n)
        rows = bucket_rows(n)
        X_pad = np.zeros((1, rows, config.max_features), np.float32)
        X_pad[0, :n, :d] = X
        y_pad = np.zeros((1, rows), np.int32)
        y_pad[0, :n] = y
        X_dev, y_dev = jax.device_put(X_pad), jax.device_put(y_pad)
        n_rows, n_feat = jax.device_put(np.array([n])), jax.device_put(np.array([d]))
        core = median_seconds(
            lambda: _generate_jit(params, X_dev, y_dev, n_rows, n_feat, config=config), repeats=args.repeats
        )
        full = median_seconds(lambda: mn.generate(params, X, y, config=config), repeats=args.repeats)
        print(f"{f'generate {n} x {d}, jitted core (on device)':44s} {core * 1e3:10.2f} ms")
        print(f"{f'generate {n} x {d}, generate() from NumPy':44s} {full * 1e3:10.2f} ms")
        if child is None:
            child = mn.generate(params, X, y, config=config)

    X_test = rng.normal(size=(args.predict_rows, 100)).astype(np.float32)
    X_test_dev = jax.device_put(X_test)
    logits = jax.jit(mn.child_logits)
    t = median_seconds(lambda: logits(child, X_test_dev), repeats=args.repeats)
    print(f"{'child predict, jitted JAX':44s} {args.predict_rows / t / 1e6:10.2f} M rows/s")
    np_child = to_numpy(child)
    t = median_seconds(lambda: numpy_logits(np_child, X_test), repeats=max(3, args.repeats // 4), warmup=1)
    print(f"{'child predict, NumPy alone (host CPU)':44s} {args.predict_rows / t / 1e6:10.2f} M rows/s")


if __name__ == "__main__":
    main()
