"""Speed of MotherNetClassifier next to HistGradientBoosting, and its fit time and peak memory
as the number of classes grows.

    python -m mothernet_jax.benchmarks.classifier [--repeats 5] [--skip-paper] [--threads N]
        [--classes 2 10 26 100] [--skip-speed]

Speed: one dataset (make_classification: 1,000 training rows x 50 features, 10,000 test rows, 3
classes). MotherNet with n_estimators 1 and 8, for the `paper` preset (random weights: speed does
not depend on their values) and the shipped weights (where they are not installed: the reason, and
the same `small` architecture with random weights in their place), and the gradient-boosting
baseline with its defaults, all in this run. Where the shipped weights' manifest recommends
one-vs-rest, which `MotherNetClassifier()` then uses (k times the members), both multiclass
strategies are timed. Fit is timed warm: the first fit (which compiles for this shape) is printed
apart. Every figure is the median of --repeats; ratios are MotherNet's time over the baseline's
(below 1: faster). Prediction is timed on the wall clock and in process CPU time ("cpu", all
threads), which other processes disturb less. Accuracy on the test rows is printed for context only
(random weights are near chance). The load average is printed with the device: on a busy machine,
multi-threaded BLAS and OpenMP (both sides) lose most of their speed waiting for their threads,
and `--threads 1` gives steadier figures.

Classes: for each count in --classes, `MotherNetClassifier()` at its defaults (shipped weights,
8 members, one-vs-rest where the weights recommend it: 8 members per class) on make_classification
data of --class-rows training rows x 10 features (1,040 rows: 40 per class at 26 classes), in a
fresh process each, so that the peak resident memory (ru_maxrss, the whole process: Python, JAX,
the weights, compilation) belongs to that setting alone. It prints the members, the jitted calls
that generate them, the first fit (which compiles), a second fit (warm), the warm fit per member,
the peak memory and the accuracy on as many held-out rows. `--measure-classes K` runs one setting
in this process and prints it as JSON (what each fresh process runs; the tests run it small).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import jax
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier

import mothernet_jax as mn
from mothernet_jax.benchmarks.common import device_line
from mothernet_jax.classifier import MotherNetClassifier
from mothernet_jax.estimator.member_generation import members_per_call
from mothernet_jax.generation import bucket_rows


def _median_seconds(fn, repeats: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def _timings(make, X_train, y_train, X_test, y_test, repeats: int) -> dict[str, float]:
    start = time.perf_counter()
    model = make().fit(X_train, y_train)
    first_fit = time.perf_counter() - start
    fit = _median_seconds(lambda: make().fit(X_train, y_train), repeats)
    model.predict_proba(X_test)  # warm-up
    predict = _median_seconds(lambda: model.predict_proba(X_test), repeats)
    predict_cpu = _median_seconds(lambda: model.predict_proba(X_test), repeats, time.process_time)
    accuracy = float((model.predict(X_test) == y_test).mean())
    return {
        "first_fit": first_fit,
        "fit": fit,
        "predict": predict,
        "predict_cpu": predict_cpu,
        "accuracy": accuracy,
    }


def peak_rss_bytes() -> int:
    """The peak resident memory of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def measure_classes(n_classes: int, *, rows: int, n_estimators: int = 8, warm: bool = True) -> dict:
    """Fit `MotherNetClassifier` (shipped weights, defaults but n_estimators) on `rows` training
    rows x 10 features of n_classes classes and measure it in this process: members, jitted calls,
    first and warm fit seconds, peak resident memory (bytes), held-out accuracy."""
    X, y = make_classification(
        n_samples=2 * rows, n_features=10, n_informative=10, n_redundant=0, n_classes=n_classes,
        n_clusters_per_class=1, class_sep=2.0, random_state=0,
    )  # fmt: skip
    X_train, y_train, X_test, y_test = X[:rows], y[:rows], X[rows:], y[rows:]
    rss_before = peak_rss_bytes()
    start = time.perf_counter()
    clf = MotherNetClassifier(n_estimators=n_estimators, random_state=0).fit(X_train, y_train)
    first_fit = time.perf_counter() - start
    fit = None
    if warm:
        start = time.perf_counter()
        clf = MotherNetClassifier(n_estimators=n_estimators, random_state=0).fit(X_train, y_train)
        fit = time.perf_counter() - start
    accuracy = float((clf.predict(X_test) == y_test).mean())
    n_members = len(clf.ensemble_)
    chunk = members_per_call(n_members, bucket_rows(max(m["n_rows"] for m in clf.ensemble_)))
    return {
        "classes": n_classes,
        "rows": rows,
        "multiclass": clf.multiclass_,
        "members": n_members,
        "members_per_call": chunk,
        "calls": -(-n_members // chunk),
        "first_fit_s": first_fit,
        "fit_s": fit,
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_before_fit_bytes": rss_before,
        "accuracy": accuracy,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per figure (median)")
    parser.add_argument(
        "--skip-paper", action="store_true", help="leave out the paper preset (88 M parameters)"
    )
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--test-rows", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument(
        "--threads", type=int, default=None,
        help="limit BLAS and OpenMP threads (both sides; XLA's own threads are not limited)",
    )  # fmt: skip
    parser.add_argument("--skip-speed", action="store_true", help="only the table over class counts")
    parser.add_argument(
        "--classes", type=int, nargs="*", default=[2, 10, 26, 100],
        help="class counts of the fit-time and peak-memory table (none: skip it)",
    )  # fmt: skip
    parser.add_argument("--class-rows", type=int, default=1040, help="training rows of that table")
    parser.add_argument("--class-estimators", type=int, default=8, help="n_estimators of that table")
    parser.add_argument("--measure-classes", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-warm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_classes is not None:  # one setting, in this (fresh) process
        result = measure_classes(
            args.measure_classes,
            rows=args.class_rows,
            n_estimators=args.class_estimators,
            warm=not args.no_warm,
        )
        print(json.dumps(result))
        return
    if args.threads is None:
        run(args)
    else:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=args.threads):
            run(args)


def run_classes(args) -> None:
    """The fit-time and peak-memory table, one fresh process per class count."""
    print(
        f"# MotherNetClassifier() defaults (shipped weights, n_estimators={args.class_estimators}), "
        f"{args.class_rows} training rows x 10 features; one fresh process per class count"
    )
    print(
        f"{'classes':>7s} {'strategy':>11s} {'members':>7s} {'per call':>8s} {'calls':>5s} "
        f"{'first fit':>10s} {'fit':>8s} {'fit/member':>10s} {'peak memory':>11s} {'acc':>6s}"
    )
    for n_classes in args.classes:
        command = [
            sys.executable, "-m", "mothernet_jax.benchmarks.classifier", "--measure-classes", str(n_classes),
            "--class-rows", str(args.class_rows), "--class-estimators", str(args.class_estimators),
        ]  # fmt: skip
        if args.threads is not None:
            command += ["--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{n_classes:7d} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{r['classes']:7d} {r['multiclass']:>11s} {r['members']:7d} {r['members_per_call']:8d} "
            f"{r['calls']:5d} {r['first_fit_s']:9.2f}s {r['fit_s']:7.2f}s "
            f"{r['fit_s'] / r['members'] * 1e3:8.0f}ms {r['peak_rss_bytes'] / 2**30:8.2f} GiB "
            f"{r['accuracy']:6.3f}"
        )


def run(args) -> None:
    load = " ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    threads = "library defaults" if args.threads is None else args.threads
    print(f"# {device_line()} cpus={os.cpu_count()} load={load} blas/openmp threads={threads}")
    if not args.skip_speed:
        run_speed(args)
    if args.classes:
        run_classes(args)


def run_speed(args) -> None:
    X, y = make_classification(
        n_samples=args.train_rows + args.test_rows,
        n_features=args.features,
        n_informative=10,
        n_classes=3,
        random_state=0,
    )
    X_train, y_train = X[: args.train_rows], y[: args.train_rows]
    X_test, y_test = X[args.train_rows :], y[args.train_rows :]
    print(f"# classifier benchmark: {args.train_rows} training rows x {args.features} features, "
          f"{args.test_rows} test rows, 3 classes; median of {args.repeats}")  # fmt: skip

    baseline = _timings(
        lambda: HistGradientBoostingClassifier(random_state=0), X_train, y_train, X_test, y_test, args.repeats
    )
    rows = [("HistGradientBoostingClassifier", baseline)]
    weights = []
    if not args.skip_paper:
        config = mn.preset("paper")
        weights.append(("paper (random)", (mn.init_params(jax.random.key(0), config), config), ("native",)))
    try:
        from mothernet_jax.pretrained import load_info, load_pretrained

        params, config = load_pretrained()
        recommended = load_info().get("multiclass", "native")  # what MotherNetClassifier() uses
        strategies = ("native", "one_vs_rest") if recommended != "native" else ("native",)
        weights.append((f"shipped ({mn.count_params(config) / 1e6:.1f} M)", (params, config), strategies))
    except Exception as error:  # missing or damaged file: say so, time the same architecture instead
        print(f"# shipped weights skipped: {type(error).__name__}: {error}")
        print("# timing the shipped architecture (`small` preset) with random weights in their place")
        config = mn.preset("small")
        weights.append(("small (random)", (mn.init_params(jax.random.key(0), config), config), ("native",)))
    for name, pair, strategies in weights:
        for multiclass in strategies:
            for n_estimators in (1, 8):
                timing = _timings(
                    lambda pair=pair, n=n_estimators, mc=multiclass: MotherNetClassifier(
                        weights=pair, n_estimators=n, random_state=0, multiclass=mc
                    ),
                    X_train, y_train, X_test, y_test, args.repeats,
                )  # fmt: skip
                label = f", {multiclass}" if len(strategies) > 1 else ""
                rows.append((f"MotherNet {name}{label}, n_estimators={n_estimators}", timing))

    header = (
        f"{'method':58s} {'first fit':>10s} {'fit':>8s} {'predict':>9s} {'cpu':>9s} "
        f"{'fit/HGB':>8s} {'pred/HGB':>8s} {'cpu/HGB':>8s} {'acc':>6s}"
    )
    print(header)
    for name, t in rows:
        print(
            f"{name:58s} {t['first_fit']:9.2f}s {t['fit']:7.2f}s {t['predict'] * 1e3:7.1f}ms "
            f"{t['predict_cpu'] * 1e3:7.1f}ms {t['fit'] / baseline['fit']:8.2f} "
            f"{t['predict'] / baseline['predict']:8.2f} {t['predict_cpu'] / baseline['predict_cpu']:8.2f} "
            f"{t['accuracy']:6.3f}"
        )


if __name__ == "__main__":
    main()
