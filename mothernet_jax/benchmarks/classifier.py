"""Speed of MotherNetClassifier next to HistGradientBoosting, and its fit time and peak memory
as the number of classes grows.

    python -m mothernet_jax.benchmarks.classifier [--repeats 5] [--skip-paper] [--threads N]
        [--classes 2 7 26] [--class-repeats 3] [--set KEY=VALUE ...] [--skip-speed]

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

Threads: without --threads, every library runs as a user's process would (the default environment:
XLA's pool and the BLAS and OpenMP pools at their defaults, MotherNet's own NumPy work at its
n_jobs=None). `--threads N` pins every pool of this process and of the processes it starts
(`pin_threads`: XLA's, the BLAS and OpenMP pools by threadpoolctl and by OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS and MKL_NUM_THREADS, MotherNet's n_jobs).

Classes (issue 20's cost as classes grow): for each count in --classes (2, 7 and 26),
`MotherNetClassifier()` with no arguments (its defaults: the shipped weights and what their manifest
recommends), or with the settings of `--set KEY=VALUE` (repeatable; the value is read as JSON where
it parses, else as text: `--set finetune_steps=0 --set multiclass=native`), on make_classification
data of --class-rows training rows (1,000) x 10 features, each count in a fresh process, so that
the peak resident memory (ru_maxrss: Python, JAX, the weights, compilation) belongs to that count
alone. It prints the members, the jitted calls that generate them, the first fit (which compiles),
the median of --class-repeats warm fits, its ratio to the first count's (the 2-class fit), the peak
memory and its ratio to the first count's, the peak's growth during the fits, and the accuracy on
as many held-out rows; then the verdict on the issue's bounds (`VERDICT_BOUNDS`: a 7-class fit at
most 2x the 2-class fit, a 26-class fit at most 5x, and the peak flat: every count's peak within
`MEMORY_FLAT` of the 2-class peak). `--measure-classes K` runs one count in this process and
prints it as JSON (what each fresh process runs; the tests run it small).
"""

from __future__ import annotations

import argparse
import json
import math
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
from mothernet_jax.benchmarks.common import cap_xla_threads, device_line
from mothernet_jax.estimator.classifier import MotherNetClassifier
from mothernet_jax.estimator.member_generation import members_per_call
from mothernet_jax.generation import bucket_rows

VERDICT_BOUNDS = {7: 2.0, 26: 5.0}  # class count -> most its median fit may take, in 2-class fits
MEMORY_FLAT = 1.25  # "flat": no class count's peak memory above this multiple of the 2-class peak


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


def measure_classes(
    n_classes: int, *, rows: int = 1000, settings: dict | None = None, repeats: int = 3
) -> dict:
    """Fit `MotherNetClassifier(**settings)` (no settings: its defaults) on `rows` training rows x 10
    features of n_classes classes and measure it in this process: members, jitted calls, the first
    fit's seconds, the median of `repeats` warm fits (None for 0), peak resident memory (bytes)
    before and after the fits, held-out accuracy."""
    settings = dict(settings or {})
    X, y = make_classification(
        n_samples=2 * rows, n_features=10, n_informative=10, n_redundant=0, n_classes=n_classes,
        n_clusters_per_class=1, class_sep=2.0, random_state=0,
    )  # fmt: skip
    X_train, y_train, X_test, y_test = X[:rows], y[:rows], X[rows:], y[rows:]
    rss_before = peak_rss_bytes()
    start = time.perf_counter()
    clf = MotherNetClassifier(**settings).fit(X_train, y_train)
    first_fit = time.perf_counter() - start
    fits = []
    for _ in range(repeats):
        start = time.perf_counter()
        clf = MotherNetClassifier(**settings).fit(X_train, y_train)
        fits.append(time.perf_counter() - start)
    accuracy = float((clf.predict(X_test) == y_test).mean())
    n_members = len(clf.ensemble_)
    chunk = members_per_call(n_members, bucket_rows(max(m["n_rows"] for m in clf.ensemble_)))
    return {
        "classes": n_classes,
        "rows": rows,
        "settings": {k: repr(v) for k, v in settings.items()},
        "multiclass": clf.multiclass_,
        "members": n_members,
        "members_per_call": chunk,
        "calls": -(-n_members // chunk),
        "first_fit_s": first_fit,
        "fit_s": statistics.median(fits) if fits else None,
        "fit_times_s": fits,
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_before_fit_bytes": rss_before,
        "accuracy": accuracy,
    }


def parse_settings(pairs: list[str]) -> dict:
    """`["n_estimators=4", "multiclass=native"]` -> {"n_estimators": 4, "multiclass": "native"}:
    each value read as JSON where it parses (numbers, null, true), else as text."""
    settings = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE with KEY a MotherNetClassifier argument")
        try:
            settings[key] = json.loads(text)
        except json.JSONDecodeError:
            settings[key] = text
    return settings


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
        help="threads for both sides: BLAS and OpenMP pools, and XLA's CPU pools (PJRT_NPROC)",
    )  # fmt: skip
    parser.add_argument("--skip-speed", action="store_true", help="only the table over class counts")
    parser.add_argument(
        "--classes", type=int, nargs="*", default=[2, 7, 26],
        help="class counts of the fit-time and peak-memory table, the first the reference (none: skip it)",
    )  # fmt: skip
    parser.add_argument("--class-rows", type=int, default=1000, help="training rows of that table")
    parser.add_argument(
        "--class-repeats", type=int, default=3, help="warm fits per class count (their median)"
    )
    parser.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
        help="a MotherNetClassifier argument for that table (repeatable; default: none, its defaults)",
    )  # fmt: skip
    parser.add_argument(
        "--class-estimators", type=int, default=None, help="shortcut for --set n_estimators=N"
    )
    parser.add_argument("--measure-classes", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-warm", action="store_true", help="shortcut for --class-repeats 0")
    args = parser.parse_args(argv)
    try:
        args.settings = parse_settings(args.settings)
    except ValueError as error:
        parser.error(str(error))
    if args.class_estimators is not None:
        args.settings["n_estimators"] = args.class_estimators
    if args.no_warm:
        args.class_repeats = 0
    if args.threads is not None:
        args.xla_threads = pin_threads(args.threads)  # before anything starts JAX's backend
        args.settings.setdefault("n_jobs", args.threads)
    if args.measure_classes is not None:  # one setting, in this (fresh) process
        result = measure_classes(
            args.measure_classes, rows=args.class_rows, settings=args.settings, repeats=args.class_repeats
        )
        print(json.dumps(result))
        return
    run(args)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_threads(threads: int, environ=None) -> str:
    """Every thread pool this benchmark's processes use at `threads`: XLA's (`cap_xla_threads`, which
    holds where JAX has not started its backend), the BLAS and OpenMP pools of this process
    (threadpoolctl, for the rest of its life) and of the processes it starts (`THREAD_VARIABLES` in
    `environ`, default this process's environment). Returns the line the report prints."""
    from threadpoolctl import threadpool_limits

    environ = os.environ if environ is None else environ
    line = cap_xla_threads(threads, environ)
    environ.update({name: str(threads) for name in THREAD_VARIABLES})
    threadpool_limits(limits=threads)  # applied now, kept: the object is not a context here
    return f"{line}; BLAS and OpenMP: {threads}"


def measure_in_subprocess(n_classes: int, args) -> dict:
    """`measure_classes` in a fresh process (its own peak memory); raises RuntimeError with the
    child's last error line where it fails."""
    command = [
        sys.executable, "-m", "mothernet_jax.benchmarks.classifier", "--measure-classes", str(n_classes),
        "--class-rows", str(args.class_rows), "--class-repeats", str(args.class_repeats),
    ]  # fmt: skip
    for key, value in args.settings.items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError((done.stderr.strip().splitlines() or ["no output"])[-1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def verdict(results: list[dict]) -> list[str]:
    """Issue 20's bounds on the measured class counts (`results` as `measure_classes` returns them,
    the 2-class one among them): a line per bound, then 'holds' or 'does not hold' for them all."""
    by_classes = {r["classes"]: r for r in results}
    base = by_classes.get(2)
    lines, holds = [], True
    for classes, bound in VERDICT_BOUNDS.items():
        r = by_classes.get(classes)
        if base is None or r is None or base["fit_s"] is None or r["fit_s"] is None:
            lines.append(f"{classes}-class fit <= {bound:g}x the 2-class fit: not measured")
            holds = False
            continue
        ratio = r["fit_s"] / base["fit_s"]
        ok = ratio <= bound
        holds &= ok
        lines.append(
            f"{classes}-class fit <= {bound:g}x the 2-class fit: {ratio:.2f}x ({'holds' if ok else 'FAILS'})"
        )
    if base is None or len(results) < 2:
        lines.append("peak memory flat: not measured (needs 2 classes and another count)")
        holds = False
    else:
        worst = max(results, key=lambda r: r["peak_rss_bytes"])
        ratio = worst["peak_rss_bytes"] / base["peak_rss_bytes"]
        ok = ratio <= MEMORY_FLAT
        holds &= ok
        lines.append(
            f"peak memory flat (every peak <= {MEMORY_FLAT:g}x the 2-class peak): highest "
            f"{ratio:.2f}x at {worst['classes']} classes ({'holds' if ok else 'FAILS'})"
        )
    lines.append("issue 20's cost as classes grow: " + ("holds" if holds else "does not hold"))
    return lines


def run_classes(args, measure=measure_in_subprocess) -> list[dict]:
    """The fit-time and peak-memory table, one fresh process per class count (`measure`), then the
    verdict; returns the measurements."""
    settings = ", ".join(f"{k}={v!r}" for k, v in args.settings.items())
    print(
        f"# MotherNetClassifier({settings}){'' if settings else ': its defaults'}, {args.class_rows} "
        f"training rows x 10 features; one fresh process per class count; fit: median of "
        f"{args.class_repeats} warm fit{'' if args.class_repeats == 1 else 's'}"
    )
    print(
        f"{'classes':>7s} {'strategy':>11s} {'members':>7s} {'calls':>5s} {'first fit':>10s} "
        f"{'fit':>8s} {'fit/base':>8s} {'peak memory':>11s} {'peak/base':>9s} {'growth':>10s} {'acc':>6s}"
    )
    results = []
    for n_classes in args.classes:
        try:
            r = measure(n_classes, args)
        except RuntimeError as error:
            print(f"{n_classes:7d} failed: {error}")
            continue
        results.append(r)
        base = results[0]
        fit_ratio = r["fit_s"] / base["fit_s"] if r["fit_s"] and base["fit_s"] else math.nan
        fit = f"{r['fit_s']:7.2f}s" if r["fit_s"] is not None else f"{'-':>8s}"
        growth = (r["peak_rss_bytes"] - r["rss_before_fit_bytes"]) / 2**30
        print(
            f"{r['classes']:7d} {r['multiclass']:>11s} {r['members']:7d} {r['calls']:5d} "
            f"{r['first_fit_s']:9.2f}s {fit} {fit_ratio:8.2f} {r['peak_rss_bytes'] / 2**30:7.2f} GiB "
            f"{r['peak_rss_bytes'] / base['peak_rss_bytes']:9.2f} {growth:6.2f} GiB {r['accuracy']:6.3f}"
        )
    if results:
        print(f"# base: {results[0]['classes']} classes; growth: the peak's rise during the fits")
    for line in verdict(results):
        print(f"# {line}")
    return results


def run(args) -> None:
    load = " ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    threads = "library defaults" if args.threads is None else f"{args.threads} ({args.xla_threads})"
    print(f"# {device_line()} cpus={os.cpu_count()} load={load} threads={threads}")
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
                        weights=pair, n_estimators=n, random_state=0, multiclass=mc,
                        n_jobs=args.settings.get("n_jobs"),
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
