"""The cost/accuracy map of MotherNetClassifier's levers, on validation datasets only.

    python -m mothernet_jax.benchmarks.levers --out runs/levers --threads 1
    python -m mothernet_jax.benchmarks.levers --out runs/levers --report-only --figure docs/levers.png

Every setting (`SETTINGS`: a name and the classifier parameters it changes), the two baselines
users compare against (logistic regression with scaling, HistGradientBoosting) and the two controls
of every accuracy claim (`CONTROLS`, `benchmarks.controls`: the untrained hypernetwork at the
weights' default settings, one key per split, and random ReLU features with the same read-out) are
fitted on the
same splits of every validation dataset (`validation_paths`: the datasets of `--data` folders that
are not TabPFN-test datasets), with the same threads: XLA's pool is capped with the BLAS and OpenMP
pools (`--threads`), so the seconds compare. Compiled programs are kept for the whole process, and
shapes repeat across datasets (rows are bucketed), so only a setting's first fit at a new shape
compiles: the medians leave those out without an untimed warm-up fit per pair, which `--warmup`
adds (twice the run time); `--compile` measures a first fit's compilation apart. Records are appended to
`OUT/splits.jsonl` as they finish and a rerun skips the pairs already there, so an interrupted map
resumes. The report (`OUT/levers.md`, and the figure): per setting, mean AUC, median fit and predict
seconds, their ratio to HistGradientBoosting's, and whether it lies on the Pareto front of mean AUC
against median fit seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from mothernet_jax.settings import CLASSIFIER, LIBRARY_DEFAULTS

# name -> MotherNetClassifier parameters; every other setting is BASE, spelled out (not "auto", and
# not the library defaults, which moved to the measured defaults after this map), so that a setting
# means the same whatever the weight file recommends or the library's defaults become
MAP_BASE = {"n_estimators": 8, "max_train_rows": 1024, "output_layer": "generated"}  # the map's origin
BASE = {name: MAP_BASE.get(name, LIBRARY_DEFAULTS[name]) for name in CLASSIFIER}
OVR10 = {"multiclass": "one_vs_rest", "max_members": 10, "n_estimators": 4, "max_train_rows": 256}  # the budget
ES100 = {"finetune_steps": 100, "finetune_holdout": 0.2}  # 100 steps, early stopping on 20% held out
REFIT = {"output_layer": "refit"}  # the read-out refitted on every training row (estimator.output_layer)
SETTINGS: dict[str, dict] = {
    # what the shipped weights recommended before this map, and its children as generated
    "ovr 8x1024 ft100": {"multiclass": "one_vs_rest", "finetune_steps": 100},
    "ovr 8x1024": {"multiclass": "one_vs_rest"},
    # native multiclass: members x context rows, no fine-tuning
    "8x512": {"max_train_rows": 512},
    "4x512": {"n_estimators": 4, "max_train_rows": 512},
    "4x256": {"n_estimators": 4, "max_train_rows": 256},
    "2x512": {"n_estimators": 2, "max_train_rows": 512},
    # fine-tuning: steps, layers, learning rate, early stopping, rows per step
    "8x512 ft100": {"max_train_rows": 512, "finetune_steps": 100},
    "8x512 ft30": {"max_train_rows": 512, "finetune_steps": 30},
    "8x512 ft100 es": {"max_train_rows": 512, **ES100},
    "8x512 ft100 out lr1e-2 es": {
        "max_train_rows": 512, **ES100, "finetune_layers": "output", "finetune_learning_rate": 1e-2,
    },
    "4x512 ft100 es": {"n_estimators": 4, "max_train_rows": 512, **ES100},
    "4x512 ft100 rows128 es": {"n_estimators": 4, "max_train_rows": 512, **ES100, "finetune_rows": 128},
    "2x512 ft100 es": {"n_estimators": 2, "max_train_rows": 512, **ES100},
    "4x256 ft100 es": {"n_estimators": 4, "max_train_rows": 256, **ES100},
    "4x512 ft100 out lr1e-2 es": {
        "n_estimators": 4, "max_train_rows": 512, **ES100, "finetune_layers": "output", "finetune_learning_rate": 1e-2,
    },
    # one-vs-rest with a member budget: n_estimators a class, at most max_members in all (native above)
    "ovr<=10 4x256": OVR10,
    "ovr<=10 4x256 ft100 es": {**OVR10, **ES100},
    "ovr<=10 4x512 ft100 es": {**OVR10, **ES100, "max_train_rows": 512},
    "ovr<=16 8x256 ft100 es": {**OVR10, **ES100, "max_members": 16, "n_estimators": 8},
    # cheaper fine-tuning and contexts at that budget
    "ovr<=10 4x256 ft100 es rows64": {**OVR10, **ES100, "finetune_rows": 64},
    "ovr<=10 4x256 ft50 es lr2e-3": {**OVR10, **ES100, "finetune_steps": 50, "finetune_learning_rate": 2e-3},
    "ovr<=10 4x256 ft100 es lr2e-3": {**OVR10, **ES100, "finetune_learning_rate": 2e-3},
    "ovr<=10 4x256 ft100 lr2e-3": {**OVR10, "finetune_steps": 100, "finetune_learning_rate": 2e-3},
    "ovr<=10 4x128 ft100 es": {**OVR10, **ES100, "max_train_rows": 128},
    "ovr<=10 3x256 ft100 es rows64": {**OVR10, **ES100, "n_estimators": 3, "finetune_rows": 64},
    # the refitted read-out: native members, one-vs-rest, after fine-tuning
    "4x256 refit": {"n_estimators": 4, "max_train_rows": 256, **REFIT},
    # the penalty toward the generated read-out instead of toward zero (issue 29)
    "4x256 refit prior": {"n_estimators": 4, "max_train_rows": 256, "output_layer": "refit_prior"},
    "3x256 refit": {"n_estimators": 3, "max_train_rows": 256, **REFIT},
    "2x256 refit": {"n_estimators": 2, "max_train_rows": 256, **REFIT},
    "4x512 refit": {"n_estimators": 4, "max_train_rows": 512, **REFIT},
    "8x256 refit": {"max_train_rows": 256, **REFIT},
    "ovr<=10 4x256 refit": {**OVR10, **REFIT},
    "ovr<=10 4x256 ft100 es refit": {**OVR10, **ES100, **REFIT},
    # fine-tuning on a pool of the rows (estimator.schedule's, issue 30) at the validation sizes
    "4x256 ft100 pool refit": {
        "n_estimators": 4, "max_train_rows": 256, **REFIT, **ES100, "finetune_pool": 8192, "finetune_rows": 512,
        "finetune_learning_rate": 3e-3,
    },
}  # fmt: skip
BASELINES = ("logistic_regression", "hist_gradient_boosting")
CONTROLS = ("untrained", "random_features")  # benchmarks.controls: what the defaults are measured against
GENERATE = ("generate", "generate_logistic", "generate_ridge", "generate_generated", "generate_untrained")  # generate's children, no estimator
REFERENCE = "hist_gradient_boosting"


def cap_threads(threads: int | None) -> None:
    """Cap XLA's CPU pools (`common.xla_thread_environment`) and the BLAS and OpenMP pools at
    `threads`, before JAX starts its backend."""
    if threads is None:
        return
    from mothernet_jax.benchmarks.common import backend_started, xla_thread_environment

    if backend_started():
        raise RuntimeError("cap_threads must run before JAX starts its backend")
    os.environ.update(xla_thread_environment(threads))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)


def validation_paths(folders: Sequence[str | Path]) -> list[Path]:
    """The datasets of the folders that validation may read (`train.validate.validation_paths`: not
    TabPFN-test datasets, by the manifest's split or by name)."""
    from mothernet_jax.train.validate import validation_paths as folder_paths

    return [p for folder in folders for p in folder_paths(folder)]


def factory(setting: dict, weights=None, *, base: dict | None = None, estimator=None):
    """A method factory (categorical mask, seed) -> estimator (default MotherNetClassifier) with
    base (default BASE) | setting."""
    import numpy as np

    if estimator is None:
        from mothernet_jax.estimator.classifier import MotherNetClassifier as estimator
    params = {**(BASE if base is None else base), **setting}

    def make(categorical_mask, seed):
        mask = np.asarray(categorical_mask, dtype=bool)
        return estimator(weights=weights, random_state=seed, categorical_features=mask, **params)

    return make


def run(out: Path, paths: list[Path], names: Sequence[str], *, splits: int, weights=None, warmup=False) -> None:
    """Fit every setting of `names` (and the baselines) on every dataset; append to splits.jsonl."""
    from mothernet_jax.benchmarks.methods import resolve_methods
    from mothernet_jax.evaluation import run_benchmark

    out.mkdir(parents=True, exist_ok=True)
    path = out / "splits.jsonl"
    done = {(r["dataset"], r["method"]) for r in read_records(path)}
    methods = {name: factory(SETTINGS[name], weights) for name in names if name in SETTINGS}
    methods.update(resolve_methods([name for name in names if name in BASELINES], n_jobs=1)[0])
    methods.update(resolve_methods([name for name in names if name in (*CONTROLS, *GENERATE)], weights=weights)[0])
    with path.open("a") as jsonl:
        for p in paths:
            todo = {m: f for m, f in methods.items() if (p.stem, m) not in done}
            if not todo:
                continue
            for record in run_benchmark([p], todo, splits=splits, warmup=warmup):
                jsonl.write(json.dumps(record) + "\n")
                jsonl.flush()
                print(
                    f"{record['dataset']:<32} {record['method']:<28} auc={record['auc']} "
                    f"fit={record['fit_seconds']} {record['status']}",
                    flush=True,
                )


def read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarise(records: list[dict]) -> list[dict]:
    """One row per method over the datasets every method scored: mean AUC, median fit and predict
    seconds, ratios to HistGradientBoosting's medians, Pareto (no method has a higher mean AUC at a
    lower or equal median fit time)."""
    ok = [r for r in records if r["status"] == "ok" and r["auc"] is not None]
    methods = sorted({r["method"] for r in ok})
    by_method = {m: {} for m in methods}
    for r in ok:
        by_method[r["method"]].setdefault(r["dataset"], []).append(r)
    common = set.intersection(*(set(d) for d in by_method.values())) if methods else set()
    rows = []
    for m in methods:
        rs = [r for d in sorted(common) for r in by_method[m][d]]
        rows.append(
            {
                "method": m,
                "datasets": len(common),
                "auc": statistics.fmean(statistics.fmean(x["auc"] for x in by_method[m][d]) for d in common),
                "fit": statistics.median(r["fit_seconds"] for r in rs),
                "predict": statistics.median(r["predict_seconds"] for r in rs),
            }
        )
    reference = next((r for r in rows if r["method"] == REFERENCE), None)
    for r in rows:
        r["fit_ratio"] = r["fit"] / reference["fit"] if reference else float("nan")
        r["predict_ratio"] = r["predict"] / reference["predict"] if reference else float("nan")
        r["pareto"] = not any(o["auc"] > r["auc"] and o["fit"] <= r["fit"] for o in rows if o is not r)
    return sorted(rows, key=lambda r: r["fit"])


def table(rows: list[dict]) -> str:
    lines = [
        "| setting | mean AUC | median fit s | median predict s | fit / HGB | predict / HGB | Pareto |",
        "| --- | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['auc']:.4f} | {r['fit']:.3f} | {r['predict']:.4f} | "
            f"{r['fit_ratio']:.2f} | {r['predict_ratio']:.2f} | {'yes' if r['pareto'] else ''} |"
        )
    return "\n".join(lines)


def figure(rows: list[dict], path: Path, title: str) -> None:
    """Mean AUC against median fit seconds (log), one labelled point per setting, the front joined."""
    from mothernet_jax.benchmarks.figures import pyplot, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 6))
    for r in rows:
        colour = "tab:gray" if r["method"] in BASELINES else "tab:olive" if r["method"] in CONTROLS else "tab:red" if r["pareto"] else "tab:blue"
        ax.scatter(r["fit"], r["auc"], color=colour, zorder=3)
        ax.annotate(r["method"], (r["fit"], r["auc"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["fit"])
    ax.plot([r["fit"] for r in front], [r["auc"] for r in front], color="tab:red", alpha=0.5, lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("median fit seconds (log)")
    ax.set_ylabel("mean ROC AUC")
    ax.grid(alpha=0.3)
    ax.set_title("\n".join(textwrap.wrap(title, 130)), fontsize=7)
    fig.tight_layout()
    save(fig, path)


def compile_cost(threads: int | None) -> dict[str, float]:
    """Seconds of a first fit in a fresh process (compilation included) against a warm second fit,
    without and with JAX's persistent compilation cache (a fresh cache folder, filled by a first
    process, read by a second)."""
    import tempfile

    script = (
        "import time, numpy as np; from mothernet_jax import MotherNetClassifier;"
        "from sklearn.datasets import make_classification;"
        "X, y = make_classification(1000, 10, n_informative=5, n_classes=3, random_state=0);"
        "t = time.perf_counter(); MotherNetClassifier(random_state=0).fit(X, y); a = time.perf_counter() - t;"
        "t = time.perf_counter(); MotherNetClassifier(random_state=0).fit(X, y); b = time.perf_counter() - t;"
        "print(a, b)"
    )
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        for label, extra in (("no cache", {}), ("cache filled", {"JAX_COMPILATION_CACHE_DIR": cache}),
                             ("cache read", {"JAX_COMPILATION_CACHE_DIR": cache})):  # fmt: skip
            env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"} | extra
            env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
            env["MOTHERNET_JAX_COMPILATION_CACHE"] = "0"  # the library's own default cache off
            done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
            first, warm = (float(v) for v in done.stdout.split()[-2:])
            out[f"first fit, {label}"], out[f"warm fit, {label}"] = first, warm
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mothernet_jax.benchmarks.levers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["../shared/datasets", "../shared/datasets-extra"])
    parser.add_argument("--out", required=True, help="folder of splits.jsonl and levers.md")
    parser.add_argument("--settings", nargs="+", help=f"names (default: all and the baselines): {', '.join(SETTINGS)}")
    parser.add_argument("--splits", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="threads of every method, XLA's too (default 1)")
    parser.add_argument("--weights", help="weight file (default: the shipped weights)")
    parser.add_argument("--warmup", action="store_true", help="an untimed fit before each timed one")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also measure a first fit's compilation")
    parser.add_argument("--figure", help="where the figure goes (default OUT/levers.png)")
    args = parser.parse_args(argv)
    from mothernet_jax.benchmarks.common import backend_started

    capped = not backend_started()  # in a process that ran JAX already (a test), XLA keeps its pools
    if capped:
        cap_threads(args.threads)
    out = Path(args.out)
    choices = [*BASELINES, *CONTROLS, *SETTINGS, *GENERATE]
    names = args.settings or choices
    unknown = [n for n in names if n not in choices]
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {', '.join(choices)}")
    paths = validation_paths(args.data)
    start = time.perf_counter()
    if not args.report_only:
        run(out, paths, names, splits=args.splits, weights=args.weights, warmup=args.warmup)
    from mothernet_jax.benchmarks.common import device_line

    records = [r for r in read_records(out / "splits.jsonl") if r["method"] in names]
    rows = summarise(records)
    failed = sorted({(r["dataset"], r["method"]) for r in records if r["status"] != "ok"})
    header = (
        f"{len(paths)} validation datasets ({', '.join(str(d) for d in args.data)}, TabPFN-test left out), "
        f"{args.splits} split(s) each (train rows min(1000, n/2)), threads={args.threads} for every method"
        f"{'' if capped else ' (XLA not capped: JAX had started)'} "
        f"(XLA, BLAS, OpenMP), {device_line()}, {os.cpu_count()} CPU cores"
    )
    text = f"{header}\n\n{table(rows)}\n"
    if failed:
        text += f"\nfailed (left out of the means): {failed}\n"
    if args.compile:
        text += "\nCompilation (3-class 1,000 x 10, the classifier's defaults, fresh processes):\n\n"
        text += "\n".join(f"- {k}: {v:.2f} s" for k, v in compile_cost(args.threads).items()) + "\n"
    (out / "levers.md").write_text(text)
    print(text)
    figure(rows, Path(args.figure or out / "levers.png"), header)
    print(f"{time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
