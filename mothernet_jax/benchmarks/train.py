"""Training speed: datasets/s end to end (the prior included), step time, compile time and MFU.

    python -m mothernet_jax.benchmarks.train --preset paper          # on a GPU: batch 64, as the reference
    python -m mothernet_jax.benchmarks.train                         # GPU: paper and small; CPU: tiny and small
    python -m mothernet_jax.benchmarks.train --config runs/small/config.json   # a run's configuration

Each preset runs the real training step (`TrainStep`: prior on device -> generate -> child loss ->
AdamW) on every device. It first compiles, as training does, the prior (once: the split is traced)
and the step for every split bucket the run will visit (in parallel threads), printing the seconds
of each and how often the prior was compiled, then runs two untimed steps and times `--steps`
steady steps with the training schedule's random split positions (or a fixed `--split`), blocking
only at the end. MFU counts model FLOPs at the drawn split positions (no padding), forward +
backward = 3 x forward, against the bf16 dense peak of the device (H100 and H200: 989 TFLOP/s);
it is not reported on CPU. The prior alone (the same compiled function) is timed too, for scale.

The reference's figures on one H100 and the goal set against them: docs/ARCHITECTURE.md section 5.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from mothernet_jax.config import ModelConfig
from mothernet_jax.model.mothernet import count_params
from mothernet_jax.train import config as train_config
from mothernet_jax.train.budget import learning_rate
from mothernet_jax.train.mesh import make_mesh
from mothernet_jax.train.stepper import TrainStep

# bf16 dense peak FLOP/s per chip, matched as substrings of `device.device_kind`
PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "TPU v6": 918e12,
    "TPU v5p": 459e12,
    "TPU v5": 197e12,  # v5e ("TPU v5 lite")
    "TPU v4": 275e12,
}

# benchmark batch sizes (global) per backend; the reference's bare step was timed at batch 64
BATCH = {"gpu": {"paper": 64, "small": 512, "tiny": 512}, "cpu": {"paper": 8, "small": 8, "tiny": 8}}
STEPS = {"gpu": 50, "cpu": 10}


def flops_per_dataset(model: ModelConfig, split: int, rows: int) -> float:
    """Model FLOPs of one training step per dataset: 3 x forward (forward + backward), counting the
    transformer on the s training rows (no padding), the encoders, pooling, the weight head and the
    child on the rows - s test rows."""
    d, t, f, k = model.embed_dim, split, model.max_features, model.max_classes
    encoders = 2 * t * (f + k) * d
    layer = 2 * t * (4 * d * d + 2 * d * model.ffn_dim) + 4 * t * t * d
    h = model.head_hidden_size
    head = 2 * (model.pooled_size * h + h * model.n_generated)
    if model.pooling == "output_attention":
        e = model.pooling_embed_dim
        head += 2 * (e * e + 2 * t * d * e + 2 * t * e + e * e)
    p, n_test = model.child_hidden_size, rows - split
    widths = [f] + [p] * model.child_hidden_layers + [k]
    child = 2 * n_test * sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    if model.low_rank:  # W_l = A_l S_l, per dataset
        child += 2 * model.rank * p * sum(widths[:-2])
    return 3.0 * (encoders + model.n_layers * layer + head + child)


def peak_flops(device: jax.Device) -> float | None:
    if device.platform == "cpu":
        return None
    for name, peak in PEAK_BF16.items():
        if name.lower() in device.device_kind.lower():
            return peak
    return None


def bench_config(name: str, backend: str, batch_size: int | None, devices: int) -> train_config.TrainConfig:
    """The preset at the benchmark batch, with one prior call per device (the prior's best speed)."""
    config = train_config.preset(name)
    batch = batch_size or BATCH["gpu" if backend != "cpu" else "cpu"][name]
    if batch % devices:
        raise ValueError(f"batch {batch} does not split over {devices} devices")
    return config.replace(batch_size=batch, prior_batch=batch // devices, accumulation=((0, 1),))


def time_prior(stepper: TrainStep, split: int, repeats: int = 3) -> float:
    """Datasets/s of the training's compiled prior function alone (every device of the mesh)."""
    jax.block_until_ready(stepper.sample(0, split))
    began = time.perf_counter()
    for i in range(repeats):
        jax.block_until_ready(stepper.sample(i + 1, split))
    return repeats * stepper.config.datasets_per_step(0) / (time.perf_counter() - began)


def run(
    name: str,
    *,
    batch_size: int | None = None,
    steps: int | None = None,
    split: int | None = None,
    devices: int | None = None,
    attention: str | None = None,
    dtype: str | None = None,
    prior: bool = True,
    config: train_config.TrainConfig | None = None,
    mesh=None,
    threads: int | None = None,
    compiler_options: dict | None = None,
) -> dict:
    """Compile and time the training step of preset `name` (or of `config` as given: no batch or
    dtype changes); returns the figures as a dict."""
    mesh = mesh if mesh is not None else make_mesh(jax.devices()[:devices] if devices else None)
    device = mesh.devices.flat[0]
    backend = device.platform
    if config is None:
        config = bench_config(name, backend, batch_size, mesh.size)
        if dtype is None and backend == "cpu":
            dtype = "float32"  # bf16 matmuls are emulated (slow) on CPU; nobody trains that way
        if dtype:
            config = config.replace(model=config.model.replace(dtype=dtype))
    if attention:
        config = config.replace(attention=attention)
    steps = steps or STEPS["gpu" if backend != "cpu" else "cpu"]
    stepper = TrainStep(config, mesh, compiler_options=compiler_options)
    rows = stepper.shapes.rows
    splits = [split] * steps if split else [stepper.split(s) for s in range(steps)]
    buckets = sorted({stepper.bucket(s) for s in splits})
    info = {
        "preset": name,
        "backend": backend,
        "device": device.device_kind,
        "devices": mesh.size,
        "jax": jax.__version__,
        "params": count_params(config.model),
        "dtype": config.model.dtype,
        "attention": stepper.attention or "xla (default)",
        "batch_size": config.batch_size,
        "rows": rows,
        "steps": steps,
        "split": split or "random",
        "buckets": buckets,
    }
    print(
        f"\n{name}: {info['params']:,} parameters, {config.model.dtype}, attention {info['attention']}, "
        f"batch {config.batch_size} on {mesh.size} x {device.device_kind}, {rows} rows, "
        f"splits {'fixed at ' + str(split) if split else 'random'} ({len(buckets)} buckets)",
        flush=True,
    )
    state = stepper.init()
    lr = float(learning_rate(config, config.warmup_steps))
    # -- compile as training does: the prior once, then every bucket the timed steps visit -------
    compiled = stepper.compile([(b, 1) for b in buckets], threads=threads)
    compile_seconds = {b: t for (b, _), t in ((k, v) for k, v in compiled.items() if isinstance(k, tuple))}
    prior_compiles = stepper.prior_traces
    for bucket, seconds in compile_seconds.items():
        print(f"  compiled bucket {bucket}: {seconds:.1f} s (lowering + compiling)", flush=True)
    print(
        f"  prior: compiled {prior_compiles} time(s) for {len(buckets)} bucket(s)"
        + (f", {compiled['prior']:.1f} s" if "prior" in compiled else " (earlier in this process)"),
        flush=True,
    )
    # -- two untimed steps, then the timed steady steps: the training path, blocking at the end ---
    if split:
        bucket = stepper.bucket(split)

        def call(state, s, rate):
            return stepper.function(bucket, 1)(
                state, stepper.sample(s, split), np.int32(split), np.float32(rate)
            )
    else:
        call = stepper
    for s in range(2):
        state, metrics = call(state, s, lr)
    jax.block_until_ready((state, metrics))
    began = time.perf_counter()
    for s in range(steps):
        state, metrics = call(state, s, lr)
    jax.block_until_ready((state, metrics))
    seconds = time.perf_counter() - began
    datasets_per_s = sum(config.datasets_per_step(s) for s in range(steps)) / seconds
    flops = float(np.mean([flops_per_dataset(config.model, s, rows) for s in splits]))
    peak = peak_flops(device)
    mfu = datasets_per_s * flops / (peak * mesh.size) if peak else None
    info.update(
        compile_seconds=compiled.get("total", 0.0),
        compile_seconds_per_bucket=compile_seconds,
        prior_compile_seconds=compiled.get("prior"),
        prior_compiles=prior_compiles,
        step_seconds=seconds / steps,
        datasets_per_s=datasets_per_s,
        model_flops_per_dataset=flops,
        mfu=mfu,
        peak_flops=peak,
        final_loss=float(np.asarray(jax.device_get(metrics["loss"]))),
    )
    per_bucket = ", ".join(f"{b}: {t:.1f}" for b, t in compile_seconds.items())
    print(f"  compile: {info['compile_seconds']:.1f} s wall clock in total (per bucket {per_bucket})")
    print(
        f"  steady step: {1e3 * info['step_seconds']:.1f} ms  ->  {datasets_per_s:,.1f} datasets/s end to end"
    )
    mfu_text = (
        f"{100 * mfu:.1f}% of {peak / 1e12:.0f} TFLOP/s x {mesh.size}" if mfu else "n/a on this backend"
    )
    print(f"  model FLOPs per dataset: {flops:.3g}; MFU {mfu_text}")
    if prior:
        info["prior_datasets_per_s"] = time_prior(stepper, splits[0])
        print(
            f"  prior alone (batch {config.batch_size} on {mesh.size} device(s)): "
            f"{info['prior_datasets_per_s']:,.1f} datasets/s"
        )
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset",
        action="append",
        choices=sorted(train_config.PRESETS),
        help="preset(s) to time (default: paper and small on accelerators, tiny and small on CPU)",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="time this TrainConfig JSON file as given (e.g. a run's config.json) instead of presets",
    )
    parser.add_argument(
        "--batch-size", type=int, help="global datasets per step (default: per preset and backend)"
    )
    parser.add_argument("--steps", type=int, help="timed steps (default: 50 on accelerators, 10 on CPU)")
    parser.add_argument(
        "--split",
        type=int,
        help="fix the split position (one bucket, one compile); default: random as training",
    )
    parser.add_argument(
        "--random-splits",
        action="store_true",
        help="on CPU too, random split positions as in training (one compiled step per bucket visited)",
    )
    parser.add_argument("--devices", type=int, help="use the first N devices (default: all)")
    parser.add_argument("--attention", choices=("auto", "xla", "cudnn"), help="override the attention path")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        help="compute dtype (default: the preset's; float32 on CPU)",
    )
    parser.add_argument("--no-prior", action="store_true", help="skip timing the prior alone")
    parser.add_argument("--threads", type=int, help="threads compiling the buckets (default: one per bucket)")
    parser.add_argument("--compilation-cache", metavar="DIR", help="JAX persistent compilation cache folder")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
    backend = jax.default_backend()
    presets = args.preset or (["tiny", "small"] if backend == "cpu" else ["paper", "small"])
    print(f"backend {backend}: {jax.device_count()} x {jax.devices()[0].device_kind}, jax {jax.__version__}")
    fixed = backend == "cpu" and args.split is None and not args.random_splits
    if fixed:
        print(
            "CPU: splits fixed at the mean position (one bucket per preset); --split or --random-splits change it"
        )
    results = []
    if args.config:
        config = train_config.TrainConfig.from_json(Path(args.config).read_text())
        results.append(run("config", config=config, steps=args.steps, split=args.split, devices=args.devices,
                           attention=args.attention, prior=not args.no_prior, threads=args.threads))  # fmt: skip
        presets = args.preset or []
    for name in presets:
        split = args.split
        if fixed:
            split = train_config.preset(name).prior.n_rows // 2
        results.append(
            run(
                name,
                batch_size=args.batch_size,
                steps=args.steps,
                split=split,
                devices=args.devices,
                attention=args.attention,
                dtype=args.dtype,
                prior=not args.no_prior,
                threads=args.threads,
            )
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
