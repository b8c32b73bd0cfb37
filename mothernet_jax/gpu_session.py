"""Train on a GPU in one command: continue training the shipped weights for a wall-clock budget,
export them to OUT, then measure the GPU figures in the time left.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python -m mothernet_jax.gpu_session --out "$OUT" 2>&1 | tee "$OUT/session.log"

It runs from a source checkout with nothing installed, ends by a deadline (`--deadline` seconds
after its start) and writes everything worth keeping under OUT, in files small enough to copy
anywhere (the export in bfloat16: 10 MB for `small`):

1. checks that JAX sees a GPU, else exits at once (code 2; `--allow-cpu` runs anyway);
2. trains `--preset` (small) from the shipped weights with RECIPE below for `--budget` seconds,
   compiles included (the schedule is fitted to the budget), in a work directory outside OUT;
3. exports to OUT/<preset>.msgpack and .json: a float32 inference config and the phase added to
   the history; the arrays stored as bfloat16 like the shipped file (float32 would double it).
   The export happens on every stop, a non-finite loss included (then the last good checkpoint);
   metrics.jsonl is copied beside it;
4. measures the GPU figures (reference anchors: docs/ARCHITECTURE.md section 5), each only if it is
   estimated to end before the deadline (and stopped there), writing OUT/figures.json after each:
   end-to-end training datasets/s and MFU of the trained configuration (its prior alone too),
   training datasets/s and MFU for `paper` (batch 64, one bucket) with its prior alone (both by
   `python -m mothernet_jax.benchmarks.train` in a subprocess, which reads the training's compiled
   functions from the persistent compilation cache), and `generate` latency 1000 x 100 for `paper`.

RECIPE is the one place to change how the session trains.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from mothernet_jax.runtime.npz import atomic_write

# The continuation recipe: `--set` assignments over the preset (see `mothernet-jax train --help`).
RECIPE = (
    # the classifier's members see all of a task's classes (native, up to 10) and refit the
    # read-out: train on the multiclass prior for that read-out (docs/TRAINING.md, phase 7)
    "prior.two_class_probability=0.5",
    "read_out=ridge",
    "seed=14",  # new tasks: the phases so far drew theirs from seeds 0 to 13
    "model.dtype=bfloat16",  # bf16 compute, float32 master weights; cuDNN attention on NVIDIA
    # training rows padded to multiples of 256: 5 compiled shapes of the step (the prior compiles
    # once for all), 1.26x the attention and MLP FLOPs of unpadded splits; 128 would be 9 shapes
    # at 1.14x, 384 three at 1.44x, with each shape's compile time on the GPU not yet measured
    "split_bucket=256",
    "warmup_fraction=0.02",  # the first 2% of the budget
    "checkpoint_every=500",  # the last good state for a non-finite loss (about a minute apart)
    "log_every=50",
)
BUDGET_S = 420.0  # training, compiles included: 7 minutes of a 10-minute session by default
DEADLINE_S = 585.0  # seconds after the start by which the figures must end (as estimated)


def main(argv: list[str] | None = None) -> int:
    """Run the session (see the module docstring); returns the exit code (2: no GPU or a bad setting)."""
    began = time.monotonic()
    args = _parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import jax

    backend = jax.default_backend()
    device = jax.devices()[0]
    print(
        f"gpu_session: backend {backend}, {jax.device_count()} x {device.device_kind}, jax {jax.__version__}"
    )
    if backend != "gpu" and not args.allow_cpu:
        print(
            f"gpu_session: no GPU: JAX's backend is {backend} ({device.device_kind}); this command "
            "trains on a GPU (--allow-cpu runs it anyway)",
            file=sys.stderr,
        )
        return 2

    from mothernet_jax.train.config import ConfigError, preset
    from mothernet_jax.train.loop import train
    from mothernet_jax.train.metrics import NonFiniteLossError

    try:
        config = preset(args.preset).with_overrides([*RECIPE, *args.overrides]).replace(budget_s=args.budget)
    except (ValueError, TypeError) as error:
        print(f"gpu_session: {error}", file=sys.stderr)
        return 2
    init = args.init_weights or _shipped_weights(config)
    if init.lower() != "none":
        config = config.replace(init_weights=init)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mothernet-gpu-session-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cache = workdir / "compilation-cache"  # the figures' subprocesses reuse the training's compilations
    jax.config.update("jax_compilation_cache_dir", str(cache))
    export = out / f"{args.preset}.msgpack"
    print(
        f"gpu_session: training {args.preset} for {args.budget:.0f} s from {config.init_weights} in {workdir}"
    )
    report = {
        "backend": backend,
        "device": device.device_kind,
        "devices": jax.device_count(),
        "jax": jax.__version__,
        "recipe": [*RECIPE, *args.overrides],
        "figures": {},
        "skipped": {},
    }
    figures_path = out / "figures.json"
    try:
        result = train(config, workdir, export=export, export_dtype="bfloat16", progress=True)
        report["training"] = {
            "steps": result.step,
            "first_step": result.first_step,
            "stop_reason": result.stop_reason,
            "seconds": result.seconds,
            "budget_spent_s": result.budget_spent_s,
            "compile_seconds": {str(k): v for k, v in result.compile_seconds.items()},
        }
    except (NonFiniteLossError, ConfigError) as error:  # the export (if any) is written already
        report["training"] = {"error": str(error)}
        print(f"gpu_session: training stopped: {error}", file=sys.stderr)
    except Exception as error:  # an unforeseen failure: keep it in the log, measure the figures still
        traceback.print_exc()
        report["training"] = {"error": f"{type(error).__name__}: {error}"[:2000]}
    if (workdir / "metrics.jsonl").exists():
        shutil.copyfile(workdir / "metrics.jsonl", out / "metrics.jsonl")
    _write_json(figures_path, report)

    deadline = began + args.deadline
    (workdir / "figure_config.json").write_text(config.replace(budget_s=0.0).to_json())
    for name, need, measure in _figures(args, workdir, cache, deadline):
        left = deadline - time.monotonic()
        if left < need:
            report["skipped"][name] = f"{left:.0f} s left, about {need:.0f} s needed"
            print(f"gpu_session: skipped {name}: {report['skipped'][name]}")
            continue
        print(f"gpu_session: measuring {name} ({left:.0f} s left)", flush=True)
        try:
            report["figures"][name] = measure()
        except Exception as error:  # a figure that fails must not lose the others
            report["skipped"][name] = f"{type(error).__name__}: {error}"[:500]
            print(f"gpu_session: {name} failed: {report['skipped'][name]}", file=sys.stderr)
        _write_json(figures_path, report)
    report["seconds"] = time.monotonic() - began
    _write_json(figures_path, report)
    print(
        f"gpu_session: done in {report['seconds']:.0f} s; files in {out}: {sorted(p.name for p in out.iterdir())}"
    )
    return 0


def _figures(args, workdir: Path, cache: Path, deadline: float):
    """(name, seconds it needs, measure) for each figure, most wanted first. The training figures
    run `python -m mothernet_jax.benchmarks.train` in a subprocess, stopped at the deadline."""
    bench = ["--compilation-cache", str(cache)] + (["--steps", str(args.bench_steps)] if args.bench_steps else [])
    trained = ["--config", str(workdir / "figure_config.json"), *bench]
    yield f"train_{args.preset}_as_trained", 40.0, lambda: _benchmark(trained, workdir, deadline)
    for name in args.bench_presets:  # the prior and one bucket to compile
        argv = ["--preset", name, "--split", str(_mean_split(name)), *bench]
        yield f"train_{name}", 100.0, lambda argv=argv: _benchmark(argv, workdir, deadline)
    for name in args.generate_presets:
        yield f"generate_{name}_1000x100", 30.0, lambda name=name: _generate_latency(name)


def _benchmark(argv: list[str], workdir: Path, deadline: float) -> dict:
    """The figures of `python -m mothernet_jax.benchmarks.train ARGV` (its output passed through)."""
    result = workdir / "figure.json"
    result.unlink(missing_ok=True)
    command = [sys.executable, "-m", "mothernet_jax.benchmarks.train", *argv, "--json", str(result)]
    done = subprocess.run(command, timeout=max(1.0, deadline - time.monotonic()), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.train exited with {done.returncode}")
    return json.loads(result.read_text())[0]


def _mean_split(name: str) -> int:
    from mothernet_jax.train.config import preset

    return preset(name).prior.n_rows // 2


def _generate_latency(name: str, repeats: int = 20) -> dict:
    """Median seconds of the jitted `generate` core for a 1000 x 100 training set (random weights)."""
    import jax
    import numpy as np

    import mothernet_jax as mn
    from mothernet_jax.generation import bucket_rows, generate_batch_jit

    config = mn.preset(name)
    params = jax.device_put(mn.init_params(jax.random.key(0), config))
    rng = np.random.default_rng(0)
    n, d = 1000, 100
    rows = bucket_rows(n)
    X = np.zeros((1, rows, config.max_features), np.float32)
    X[0, :n, :d] = rng.normal(size=(n, d))
    y = np.zeros((1, rows), np.int32)
    y[0, :n] = rng.integers(0, 10, size=n)
    X, y = jax.device_put(X), jax.device_put(y)
    n_rows, n_features = jax.device_put(np.array([n])), jax.device_put(np.array([d]))
    began = time.perf_counter()
    jax.block_until_ready(generate_batch_jit(params, X, y, n_rows, n_features, config=config))
    compile_s = time.perf_counter() - began
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        jax.block_until_ready(generate_batch_jit(params, X, y, n_rows, n_features, config=config))
        times.append(time.perf_counter() - began)
    seconds = statistics.median(times)
    print(f"  generate {name} 1000 x 100: {1e3 * seconds:.2f} ms (compile {compile_s:.1f} s)")
    return {"median_ms": 1e3 * seconds, "compile_seconds": compile_s, "params": mn.count_params(config)}


def _shipped_weights(config) -> str:
    """The shipped weight file when its model is the config's (compute dtype aside), else "none"."""
    from mothernet_jax.pretrained import DEFAULT_NAME, PACKAGE_DIR, load_info

    path = PACKAGE_DIR / f"{DEFAULT_NAME}.msgpack"
    try:
        from mothernet_jax.config import ModelConfig

        shipped = ModelConfig.from_dict(load_info(path)["config"])
    except (OSError, ValueError, KeyError):
        return "none"
    return str(path) if shipped.replace(dtype=config.model.dtype) == config.model else "none"


def _write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=1, default=str) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mothernet_jax.gpu_session",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="folder for the export, metrics.jsonl and figures.json")
    parser.add_argument("--preset", default="small", help="training preset (default: small)")
    parser.add_argument(
        "--budget", type=float, default=BUDGET_S, help=f"training seconds, compiles included ({BUDGET_S:.0f})"
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=DEADLINE_S,
        help=f"the figures end by this many seconds after the start, as estimated ({DEADLINE_S:.0f})",
    )
    parser.add_argument(
        "--init-weights",
        help="weights to start from (default: the shipped ones when they fit; 'none': fresh)",
    )
    parser.add_argument("--workdir", help="work directory (default: a new temporary folder)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="added to RECIPE"
    )
    parser.add_argument(
        "--bench-presets", nargs="*", default=["paper"], help="presets whose training speed to measure"
    )
    parser.add_argument(
        "--generate-presets", nargs="*", default=["paper"], help="presets whose generate latency to measure"
    )
    parser.add_argument("--bench-steps", type=int, default=None, help="timed steps per training figure")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (tests)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
