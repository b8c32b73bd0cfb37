"""Prior sampling speed: `python -m mothernet_jax.benchmarks.prior`.

Prints datasets/s of `priors.sample_batch` at the paper shapes (1152 rows, 100 features, 10
classes) for batches of 8, 64 and 512 on the backend it runs on, with the backend, the device and
the compile time. A print-out, not a timed test. Goals: on a 2-core CPU at least the reference's
124 datasets/s (aiming at twice that); on an H100 at least 20,000 datasets/s. The reference builds
every dataset in Python with fresh PyTorch modules: 266 datasets/s on an H100 whatever the batch,
124/s on an idle 2-core CPU.

Options: `--batches 8 64 512`, `--seconds 10` (timing per batch size), `--preset paper`,
`--group-size N` (datasets per network group; default: `priors.default_group_size`).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

import priors


def measure(config: priors.PriorConfig, batch_size: int, seconds: float, group_size: int | None):
    """(compile seconds, datasets/s): split positions vary as in training (traced, one compile)."""
    key = jax.random.key(0)
    group = group_size or priors.default_group_size(batch_size)
    start = time.perf_counter()
    jax.block_until_ready(priors.sample_batch(key, config, batch_size, 576, group))
    compile_s = time.perf_counter() - start
    calls, elapsed, step = 0, 0.0, 0
    splits = np.random.default_rng(1).integers(2, config.n_rows, 1000)
    start = time.perf_counter()
    while elapsed < seconds or calls < 3:
        task = priors.sample_batch(
            jax.random.fold_in(key, step), config, batch_size, int(splits[step % 1000]), group
        )
        step += 1
        calls += 1
        if calls % 4 == 0 or batch_size >= 512:
            jax.block_until_ready(task)
            elapsed = time.perf_counter() - start
    jax.block_until_ready(task)
    elapsed = time.perf_counter() - start
    return compile_s, calls * batch_size / elapsed, group


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 64, 512])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--group-size", type=int, default=None)
    args = parser.parse_args(argv)
    config = priors.preset(args.preset)
    device = jax.devices()[0]
    backend, count = jax.default_backend(), jax.device_count()
    print(
        f"backend {backend}, device {device.device_kind} ({device}), {count} device(s), {os.cpu_count()} CPUs"
    )
    shapes = f"{config.n_rows} rows, {config.max_features} features, {config.max_classes} classes"
    print(f"prior {args.preset}: {shapes}")
    print(f"{'batch':>6} {'group':>6} {'compile s':>10} {'datasets/s':>11}")
    for batch_size in args.batches:
        compile_s, rate, group = measure(config, batch_size, args.seconds, args.group_size)
        print(f"{batch_size:>6} {group:>6} {compile_s:>10.1f} {rate:>11.0f}", flush=True)


if __name__ == "__main__":
    main()
