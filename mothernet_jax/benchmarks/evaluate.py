"""Benchmark on real data: the TabPFN-paper protocol, MotherNet and the baselines in one run.

    python -m mothernet_jax.benchmarks.evaluate --data ../shared/datasets --out bench_out/run
    python -m mothernet_jax.benchmarks.evaluate --data ../shared/datasets --datasets tabpfn-test \
        --methods mothernet logistic_regression --weights PATH

Every dataset is split 5 times (see `evaluation.make_split`) and every method is fitted on each split.
The output folder receives `splits.jsonl` (one record per split and method, written as they
finish), `datasets.csv` (one row per dataset and method), `summary.md` (the tables: mean AUC, mean
rank, median fit and predict seconds and their ratio to HistGradientBoosting's) and three figures:
`auc_vs_time.png` (mean AUC against median fit and predict seconds), `ranks.png` (the spread of the
ranks) and `cd_diagram.png` (the critical-difference diagram, drawn by autorank where it is
installed). A method that fails on a dataset is recorded as failed there and the run goes on; a
method that cannot be imported is skipped with the reason.

`--task regression` runs the regressors on ../shared/regression instead (R², normalised RMSE, fit
and predict seconds; see `benchmarks.regression`), on its validation datasets unless `--datasets`
says `test`, `all` or names.

`--threads N` gives every method N threads: n_jobs, the BLAS and OpenMP pools, and XLA's CPU pools
(PJRT_NPROC, set before JAX starts its backend; see `common.cap_xla_threads`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from mothernet_jax.benchmarks import figures, regression, report
from mothernet_jax.benchmarks.common import cap_xla_threads, device_line
from mothernet_jax.benchmarks.methods import METHODS, resolve_methods
from mothernet_jax.evaluation import (
    dataset_paths,
    regression_dataset_paths,
    run_benchmark,
    run_regression_benchmark,
)
from mothernet_jax.progress import Progress

OUTPUT_FILES = (
    "splits.jsonl",
    "datasets.csv",
    "summary.md",
    "auc_vs_time.png",
    "ranks.png",
    "cd_diagram.png",
)
FIGURES = {  # file -> (what it shows, how it is drawn)
    "auc_vs_time.png": ("mean AUC against median fit and predict seconds", figures.plot_auc_vs_time),
    "cd_diagram.png": ("critical-difference diagram (Friedman, Nemenyi)", figures.plot_cd_diagram),
    "ranks.png": ("ranks per dataset: quartiles and mean", figures.plot_ranks),
}


def evaluate(
    data: str | Path,
    out: str | Path,
    *,
    datasets: Sequence[str] | None = None,
    methods: Sequence[str] | Mapping[str, Callable[[np.ndarray, int], object]] | None = None,
    weights: str | None = None,
    multiclass: str = "auto",
    finetune_steps: int | str = "auto",
    splits: int = 5,
    seed: int = 0,
    threads: int | None = None,
    max_datasets: int | None = None,
    warmup: bool = False,
    progress: bool = True,
    header: Mapping[str, str] | None = None,
    task: str = "classification",
) -> list[dict]:
    """Runs the benchmark and writes its outputs into `out`; returns the per-split records.

    task: "classification" (the classifiers on the TabPFN protocol) or "regression" (the
      regressors of `benchmarks.regression`; datasets default to the validation part, multiclass
      does not apply).

    methods: registered names (None: all that import), or {name: factory} to run other methods.
    weights: MotherNet's weight file; None for the shipped weights.
    multiclass: MotherNet's `multiclass` ("auto": what the weight file recommends).
    finetune_steps: MotherNet's `finetune_steps` (Adam steps on each generated child; "auto": what
      the weight file recommends, as `MotherNetClassifier()` does).
    threads: CPU threads per method: `n_jobs` of random forest, KNN, XGBoost and LightGBM, a cap
      on the BLAS and OpenMP pools (histogram boosting, logistic regression, MLP) with threadpoolctl,
      and XLA's CPU pools (MotherNet on CPU) through PJRT_NPROC and XLA_FLAGS, which XLA reads when
      JAX starts its backend: in a process where it has started already, XLA is not capped and the
      header says so. None: each library's default, all cores.
    """
    xla_threads = cap_xla_threads(threads) if threads else ""  # first: before anything starts JAX
    if task not in ("classification", "regression"):
        raise ValueError(f"unknown task {task!r}; choose classification or regression")
    is_regression = task == "regression"
    paths = (regression_dataset_paths if is_regression else dataset_paths)(data, datasets)[:max_datasets]
    skipped: dict[str, str] = {}
    if isinstance(methods, Mapping):
        factories = dict(methods)
    elif is_regression:
        factories, skipped = resolve_methods(
            methods,
            registry=regression.REGRESSION_METHODS,
            weights=weights,
            finetune_steps=finetune_steps,
            n_jobs=threads or -1,
        )
    else:
        factories, skipped = resolve_methods(
            methods,
            weights=weights,
            multiclass=multiclass,
            finetune_steps=finetune_steps,
            n_jobs=threads or -1,
        )
    for name, reason in skipped.items():
        print(f"skipping method {name}: {reason}", file=sys.stderr)
    if not factories:
        raise RuntimeError("no method to run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = _load_average()
    start = time.perf_counter()
    records = []
    total = len(paths) * len(factories) * splits
    with (
        _thread_limit(threads),
        Progress(total, "benchmark", enabled=progress) as bar,
        (out / "splits.jsonl").open("w") as jsonl,
    ):
        run = run_regression_benchmark if is_regression else run_benchmark
        for record in run(paths, factories, splits=splits, seed=seed, warmup=warmup, progress=bar):
            records.append(record)
            jsonl.write(json.dumps(record) + "\n")
            jsonl.flush()
    elapsed = time.perf_counter() - start

    facts = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        **(header or {}),
        "data": f"{data} ({len(paths)} datasets: {', '.join(p.stem for p in paths)})",
        "protocol": f"{splits} splits per dataset, seed {seed}, train rows min(1000, n/2), test rows up to 2000",
        "MotherNet weights": (
            "not run"
            if "mothernet" not in factories
            else f"{weights}, finetune_steps={finetune_steps}"
            if is_regression
            else f"{weights or 'shipped'}, multiclass={multiclass}, finetune_steps={_finetune_label(finetune_steps, weights)}"
        ),
        "threads": (
            f"{threads} per method (--threads: n_jobs, BLAS/OpenMP pools; {xla_threads})"
            if threads
            else "library defaults (all cores)"
        ),
        "JAX": device_line(),  # the backend MotherNet runs on
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "load average (1 min)": f"{load_before} at the start, {_load_average()} at the end",
        "commit": _git_commit(),
        "wall time": f"{elapsed:.0f} s" + (" (with an untimed warm-up fit per dataset)" if warmup else ""),
    }
    if is_regression:
        facts["protocol"] = facts["protocol"].replace(" train rows", " regression_split parts, train rows")
    written = write_outputs(records, out, list(factories), header=facts, skipped=skipped, task=task)
    print(f"wrote splits.jsonl, {', '.join(written)} to {out}", file=sys.stderr)
    return records


def write_outputs(
    records: Sequence[Mapping],
    out: str | Path,
    methods: Sequence[str],
    *,
    header: Mapping[str, str] | None = None,
    skipped: Mapping[str, str] | None = None,
    task: str = "classification",
) -> list[str]:
    """`datasets.csv`, the figures that can be drawn here and `summary.md` into `out`; returns the
    names of the files written. A figure that cannot be drawn (a library missing, too few datasets
    or methods) is left out with one line saying why, on stderr and in the summary.

    task: "classification" (`FIGURES`, `report`'s tables) or "regression" (`regression.FIGURES`,
    its tables)."""
    out = Path(out)
    regress = task == "regression"
    tables = regression if regress else report
    registry = regression.REGRESSION_METHODS if regress else METHODS
    tables.write_dataset_csv(records, out / "datasets.csv")
    written = ["datasets.csv"]
    summary = (
        regression.summarise(records, methods).summary if regress else report.summarise(records, methods)
    )
    drawn = {}
    for name, (description, plot) in (regression.FIGURES if regress else FIGURES).items():
        try:
            if not summary.datasets:
                raise ValueError("no dataset has a score")
            plot(summary, out / name)
        except (ImportError, ValueError) as error:
            drawn[name] = f"not drawn: {error}"
            print(f"no {name}: {error}", file=sys.stderr)
        else:
            drawn[name] = description
            written.append(name)
    descriptions = {name: registry[name].description for name in methods if name in registry}
    markdown = tables.summary_markdown(
        records, methods, header=header, descriptions=descriptions, skipped=skipped, figures=drawn
    )
    (out / "summary.md").write_text(markdown)
    return [*written, "summary.md"]


def _thread_limit(threads: int | None):
    """Caps the BLAS and OpenMP pools at `threads`; a no-op context for None."""
    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    return threadpool_limits(limits=threads)


def _load_average() -> str:
    # Other work on the machine slows multi-threaded methods most: say how busy it was.
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"


def _git_commit() -> str:
    def git(*args: str) -> subprocess.CompletedProcess:
        folder = Path(__file__).parent
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)

    try:
        result = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if result.returncode != 0:
        return "unknown"
    return result.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mothernet_jax.benchmarks.evaluate",
        description="MotherNet against the baselines on real tabular data (TabPFN-paper protocol).",
    )
    parser.add_argument(
        "--task",
        choices=("classification", "regression"),
        default="classification",
        help="classification (default) or regression (the regressors, R² and normalised RMSE)",
    )
    parser.add_argument(
        "--data",
        help="folder of NAME.npz files (default ../shared/datasets, regression ../shared/regression)",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        help="dataset names, 'all' (default), or a group: tabpfn-test (the 20 TabPFN test datasets), "
        "tabpfn-valid, non-test (every dataset but the TabPFN test ones: choose settings on these); "
        "regression: validation (default), test, all or names",
    )
    parser.add_argument("--tabpfn-test", action="store_true", help="shortcut for --datasets tabpfn-test")
    parser.add_argument("--max-datasets", type=int, help="only the first N datasets, by name")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=list(dict.fromkeys([*METHODS, *regression.REGRESSION_METHODS])),
        metavar="METHOD",
        help=f"default: all that import; choose from {', '.join(METHODS)}; regression: "
        f"{', '.join(regression.REGRESSION_METHODS)}",
    )
    parser.add_argument("--weights", help="MotherNet weight file (default: the shipped weights)")
    parser.add_argument(
        "--multiclass",
        choices=("auto", "native", "one_vs_rest"),
        default="auto",
        help="MotherNet's multiclass strategy (default auto: what the weight file recommends)",
    )
    parser.add_argument(
        "--finetune-steps",
        type=_finetune_steps,
        default="auto",
        help="MotherNet's finetune_steps: Adam steps on each generated child (default auto: what the weight file recommends)",
    )
    parser.add_argument("--splits", type=int, default=5, help="random splits per dataset (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits and the methods")
    parser.add_argument("--out", default="bench_out/evaluate", help="output folder (default %(default)s)")
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads per method (n_jobs, BLAS/OpenMP pools and XLA's CPU pools); default: all "
        "cores. 1 keeps times stable on a shared machine",
    )
    parser.add_argument(
        "--warmup", action="store_true", help="one untimed fit per dataset and method first (JIT)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.data is None:
        args.data = "../shared/regression" if args.task == "regression" else "../shared/datasets"
    registry = regression.REGRESSION_METHODS if args.task == "regression" else METHODS
    wrong = [m for m in args.methods or [] if m not in registry]
    if wrong:
        parser.error(
            f"--task {args.task} has no method {', '.join(wrong)}; choose from {', '.join(registry)}"
        )
    if args.tabpfn_test and args.task == "regression":
        parser.error("--tabpfn-test is a classification group; regression takes --datasets test")
    if args.tabpfn_test:
        if args.datasets:
            parser.error("--tabpfn-test and --datasets exclude each other")
        args.datasets = ["tabpfn-test"]
    return args


def _finetune_steps(text: str) -> int | str:
    """argparse type of --finetune-steps: "auto" or an integer >= 0."""
    if text == "auto":
        return text
    try:
        steps = int(text)
    except ValueError:
        steps = -1
    if steps < 0:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 0, got {text!r}")
    return steps


def _finetune_label(finetune_steps: int | str, weights: str | None) -> str:
    """The header's finetune_steps: "auto" shows what it resolves to."""
    if finetune_steps != "auto":
        return str(finetune_steps)
    from mothernet_jax.estimator.weights import weights_info

    return f"auto ({weights_info(weights).get('finetune_steps', 0)})"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m mothernet_jax.benchmarks.evaluate " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    try:
        records = evaluate(
            args.data,
            args.out,
            datasets=args.datasets,
            methods=args.methods,
            weights=args.weights,
            multiclass=args.multiclass,
            finetune_steps=args.finetune_steps,
            splits=args.splits,
            seed=args.seed,
            threads=args.threads,
            max_datasets=args.max_datasets,
            warmup=args.warmup,
            progress=not args.quiet,
            header={"command": f"`{command}`"},
            task=args.task,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    methods = list(dict.fromkeys(r["method"] for r in records))
    if args.task == "regression":
        print(regression.summary_table(regression.summarise(records, methods)))
    else:
        print(report.summary_table(report.summarise(records, methods)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
