"""Speed of `generate` and of the generated child.

    python -m mothernet_jax.benchmarks.generate [--preset paper] [--repeats 20] [--batch 64]
        [--sizes 1000x100,100x10] [--threads N] [--attention xla]

For each training-set size (rows x features) prints the median latency of
- the jitted core with its preprocessing (`generate_batch` on one padded dataset, on device), with
  its FLOP count, its GFLOP/s and that rate's share of the machine's jitted float32 matrix-product
  rate (1024 x 1024 @ 1024 x 1024 products, 8 a round in the same rounds, so under the same load);
- `generate()` called from NumPy without config (its recovery, host checks, row bucketing,
  transfer, the core);
- `jit(generate)` on device arrays, the call a JAX pipeline makes;
- `jit(vmap(generate))` over `--batch` datasets of that size in one call, with its datasets/s next
  to that of `jit(generate)` called once per dataset;
then the child's rows/s on 100,000 rows (jitted JAX and NumPy alone), on whatever backend runs it.
The four generate figures of a size are timed in turn, round after round, so that their ratios
hold on a shared machine. Random weights: speed does not depend on their values. The header names
the backend, the device and the size of XLA's CPU thread pools (`--threads` caps them). The
FLOP count is XLA's own (`cost_analysis()` of the compiled core), or `core_flops_estimate` where
this jax does not report it. The reference PyTorch implementation's figures: docs/ARCHITECTURE.md
section 5.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import mothernet_jax as mn
from mothernet_jax.benchmarks.common import cap_xla_threads, device_line, median_seconds
from mothernet_jax.config import ModelConfig
from mothernet_jax.generation import bucket_rows, generate_batch_jit
from mothernet_jax.runtime.child import numpy_logits, to_numpy


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


MATMUL_CALLS = 8  # products per timed round: a steadier rate on a shared machine than one product


def matmul_operands(size: int = 1024, seed: int = 0) -> tuple:
    """The jitted float32 product and its two (size, size) operands, on the default device."""
    rng = np.random.default_rng(seed)
    a, b = (jax.device_put(rng.normal(size=(size, size)).astype(np.float32)) for _ in range(2))
    return jax.jit(jnp.matmul), a, b


def matmul_gflops(size: int = 1024, *, repeats: int = 20) -> float:
    """The machine's jitted float32 matrix-product rate, GFLOP/s: 2 size^3 over the median time of
    a (size, size) @ (size, size) product."""
    product, a, b = matmul_operands(size)
    return 2 * size**3 / median_seconds(lambda: product(a, b), repeats=repeats) / 1e9


def compiled_flops(fn, *args, **kwargs) -> float | None:
    """XLA's FLOP count of `fn(*args, **kwargs)` compiled (`cost_analysis()`), or None where this
    jax or backend does not report one. fn: a jitted function (its static arguments stay static)
    or a plain one, which is jitted here; args may be `jax.ShapeDtypeStruct`s."""
    compiled = (fn if hasattr(fn, "lower") else jax.jit(fn)).lower(*args, **kwargs).compile()
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - an analysis this backend cannot give is not an error
        return None
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per computation
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def core_flops_estimate(config: ModelConfig, rows: int) -> float:
    """The matrix products of the core on one dataset padded to `rows` rows, counted 2 per
    multiply-add (elementwise work left out: XLA's count is a few % higher): the encoders, per layer
    the q/k/v, output and FFN projections and the two attention products over all `rows` keys
    (padding included: the static shape computes them), the pooling (class average: one product),
    the weight head, and the low-rank products W_l = A_l S_l."""
    d, ffn, layers = config.embed_dim, config.ffn_dim, config.n_layers
    tokens = rows + config.thinking_rows
    flops = 2 * rows * (config.max_features + config.max_classes) * d
    flops += layers * (2 * tokens * (4 * d * d + 2 * d * ffn) + 4 * tokens * tokens * d)
    if config.pooling == "output_attention":
        e = config.pooling_embed_dim
        flops += 2 * rows * d * 2 * e + 4 * rows * e + 4 * e * e  # k, v; attention; q, out
    else:
        flops += 2 * rows * d * (config.max_classes if config.pooling == "class_average" else 1)
    hidden = config.head_hidden_size
    flops += 2 * hidden * (config.pooled_size + config.n_generated)
    if config.low_rank and config.child_hidden_layers:
        p, r = config.child_hidden_size, config.rank
        flops += 2 * r * p * (config.max_features + (config.child_hidden_layers - 1) * p)
    return float(flops)


def thread_line() -> str:
    """'xla_threads=2 (cpus=2)': the size of XLA's CPU pools (PJRT_NPROC when set, else one per
    CPU this process may run on) and those CPUs; XLA_FLAGS when set."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count()
    threads = os.environ.get("PJRT_NPROC") or cpus
    flags = os.environ.get("XLA_FLAGS")
    return f"xla_threads={threads} (cpus={cpus})" + (f" XLA_FLAGS={flags!r}" if flags else "")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="paper", help="model preset (default: paper)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per figure (median)")
    parser.add_argument("--batch", type=int, default=64, help="datasets per jit(vmap(generate)) call")
    parser.add_argument("--sizes", type=_sizes, default=[(1000, 100), (100, 10)], help="rows x features")
    parser.add_argument("--predict-rows", type=int, default=100_000, help="rows for the child's throughput")
    parser.add_argument("--matmul-size", type=int, default=1024, help="side of the reference matrix product")
    parser.add_argument("--threads", type=int, default=None, help="cap XLA's CPU pools (PJRT_NPROC)")
    parser.add_argument(
        "--attention",
        choices=["xla", "cudnn"],
        default=None,
        help="a jax.nn.dot_product_attention implementation (default: the library's choice; on CPU "
        "its head-major form, transformer.head_major_attention; xla: jax.nn's own form, as before)",
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        print(f"# {cap_xla_threads(args.threads)}")

    config = mn.preset(args.preset)
    params = jax.device_put(mn.init_params(jax.random.key(0), config))
    rng = np.random.default_rng(0)
    print(
        f"# generate benchmark: preset={args.preset} ({mn.count_params(config):,} parameters), "
        f"attention={args.attention or 'default'}"
    )
    print(f"# {device_line()} {thread_line()}")
    product, mat_a, mat_b = matmul_operands(args.matmul_size)
    matmul_flops = 2 * args.matmul_size**3
    print(f"{'what':52s} {'median':>12s} {'datasets/s':>12s}")
    row = lambda what, seconds, datasets=1: print(
        f"{what:52s} {seconds * 1e3:9.2f} ms {datasets / seconds:12.1f}"
    )
    # params are an argument, not a constant folded into the compiled program
    attention = args.attention
    gen = lambda p, X, y: mn.generate(p, X, y, n_classes=config.max_classes, attention=attention)
    one = jax.jit(gen)
    many = jax.jit(jax.vmap(gen, (None, 0, 0)))
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
        core, full, single, batched, matmul = interleaved_medians(
            [
                lambda: generate_batch_jit(params, X_dev, y_dev, n_rows, n_feat, config=config, attention=attention),
                lambda: mn.generate(params, X, y, attention=attention),  # config recovered from the params
                lambda: one(params, X1, y1),
                lambda: many(params, Xb, yb),
                lambda: [product(mat_a, mat_b) for _ in range(MATMUL_CALLS)],
            ],
            repeats=args.repeats,
        )
        matmul /= MATMUL_CALLS
        flops = compiled_flops(
            generate_batch_jit, params, X_dev, y_dev, n_rows, n_feat, config=config, attention=attention
        )
        source = "XLA cost analysis"
        if flops is None:
            flops, source = core_flops_estimate(config, rows), "estimate of its matrix products"
        rate, matmul_rate = flops / core / 1e9, matmul_flops / matmul / 1e9
        row(f"generate {n} x {d}, jitted core (on device)", core)
        print(
            f"{'  (core: GFLOP, GFLOP/s, share of the matmul rate)':52s} {flops / 1e9:9.2f} GF {rate:9.1f} GF/s"
            f" {rate / matmul_rate:6.1%}  ({rows} rows padded, FLOPs from the {source};"
            f" {args.matmul_size}^3 float32 matmul: {matmul_rate:.1f} GFLOP/s)"
        )
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
