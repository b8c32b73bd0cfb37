"""Prior sampling speed: `python -m mothernet_jax.benchmarks.prior`.

Prints datasets/s of `priors.sample_batch` at the paper shapes (1152 rows, 100 features, 10
classes) for batches of 8, 64 and 512 on the backend it runs on, with the backend, the device and
the compile time. A print-out, not a timed test. The reference builds every dataset in Python
with fresh PyTorch modules; its sampling speed and the goals set against it: docs/ARCHITECTURE.md section 5.

`--set tree_probability=0.3` (repeatable, any `PriorConfig` field; `tree_depth.max_scale=3`
reaches into a distribution record) times a variant of the preset next to the preset itself:
their calls alternate one by one on the same keys and splits (so the load of a shared machine
falls on both alike, and datasets the variant leaves unchanged cost the same in both), in
`--repeats` rounds of `--seconds` per configuration; the table gives the median datasets/s of
each, the variant / preset ratio of the medians and the range of the per-round ratios.

Options: `--batches 8 64 512`, `--seconds 10` (timing per batch size and round), `--preset paper`,
`--group-size N` (datasets per network group; default: `priors.default_group_size`), `--set
NAME=VALUE`, `--repeats 3`.
"""

from __future__ import annotations

import argparse
import os
import statistics
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


def measure_alternating(
    configs: list[priors.PriorConfig], batch_size: int, seconds: float, group_size: int | None, rounds: int
) -> tuple[list[float], list[list[float]], int]:
    """Time several configurations call by call in turn, on the same keys and splits, so that the
    load of a shared machine falls on all alike. Returns (compile seconds per config, datasets/s per
    config and round, group size); a round lasts until every config has run `seconds`."""
    key = jax.random.key(0)
    group = group_size or priors.default_group_size(batch_size)
    compile_s = []
    for config in configs:
        start = time.perf_counter()
        jax.block_until_ready(priors.sample_batch(key, config, batch_size, 576, group))
        compile_s.append(time.perf_counter() - start)
    splits = np.random.default_rng(1).integers(2, configs[0].n_rows, 1000)
    rates = [[] for _ in configs]
    step = 0
    for _ in range(rounds):
        elapsed, calls = [0.0] * len(configs), 0
        while min(elapsed) < seconds or calls < 2:
            for i, config in enumerate(configs):
                start = time.perf_counter()
                jax.block_until_ready(
                    priors.sample_batch(
                        jax.random.fold_in(key, step), config, batch_size, int(splits[step % 1000]), group
                    )
                )
                elapsed[i] += time.perf_counter() - start
            step += 1
            calls += 1
        for i in range(len(configs)):
            rates[i].append(calls * batch_size / elapsed[i])
    return compile_s, rates, group


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 64, 512])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--group-size", type=int, default=None)
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    config = priors.preset(args.preset)
    try:
        variant = config.with_overrides(args.settings)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    device = jax.devices()[0]
    backend, count = jax.default_backend(), jax.device_count()
    print(
        f"backend {backend}, device {device.device_kind} ({device}), {count} device(s), {os.cpu_count()} CPUs"
    )
    shapes = f"{config.n_rows} rows, {config.max_features} features, {config.max_classes} classes"
    print(f"prior {args.preset}: {shapes}")
    if not args.settings:
        print(f"{'batch':>6} {'group':>6} {'compile s':>10} {'datasets/s':>11}")
        for batch_size in args.batches:
            compile_s, rate, group = measure(config, batch_size, args.seconds, args.group_size)
            print(f"{batch_size:>6} {group:>6} {compile_s:>10.1f} {rate:>11.0f}", flush=True)
        return
    label = " ".join(args.settings)
    print(
        f"variant: {label}; calls alternate with the preset's on the same keys, {args.repeats} rounds "
        f"of {args.seconds:g} s each; medians over rounds"
    )
    print(
        f"{'batch':>6} {'group':>6} {'compile s':>10} {'preset/s':>9} {'variant/s':>10} {'ratio':>6} {'rounds':>10}"
    )
    for batch_size in args.batches:
        compile_s, (preset_rates, variant_rates), group = measure_alternating(
            [config, variant], batch_size, args.seconds, args.group_size, args.repeats
        )
        ratios = [v / p for p, v in zip(preset_rates, variant_rates, strict=True)]
        preset_rate, variant_rate = statistics.median(preset_rates), statistics.median(variant_rates)
        print(
            f"{batch_size:>6} {group:>6} {compile_s[0]:>4.0f}/{compile_s[1]:<5.0f} {preset_rate:>9.0f} "
            f"{variant_rate:>10.0f} {variant_rate / preset_rate:>6.2f} {min(ratios):>4.2f}-{max(ratios):<5.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
