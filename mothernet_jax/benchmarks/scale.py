"""MotherNet as the data grows (issue 30): rows, features, classes and regression, against logistic /
ridge regression and gradient boosting, in the default environment and with every pool on one
thread (the map the estimators' row schedule was chosen on: `benchmarks.scale_map`).

    python -m mothernet_jax.benchmarks.scale --out runs/scale
    python -m mothernet_jax.benchmarks.scale --out runs/scale --report-only --figure docs/scale.png

The cases (`CASES`, synthetic, from scikit-learn's generators; never the TabPFN-test datasets): the
issue's 100,000-row task and the same generator at 10,000 and 30,000 rows, 10 / 100 / 500 / 2,000
features, 2 / 10 / 26 / 50 / 100 classes (the issue's 50-class task among them), `make_friedman1`
at 2,000 and 100,000 rows, and the fit cost of a 1,000 x 10 task at 2 / 7 / 26 / 100 classes.
Every method is fitted on the same rows: `MotherNetClassifier()` / `MotherNetRegressor()` at their
defaults, logistic regression (scaled, max_iter 1000) or ridge regression (scaled, RidgeCV), and
HistGradientBoosting at its defaults; score: ROC AUC (multiclass: one-vs-rest, macro) or R² on the
held-out rows; fit: MotherNet's second fit (the first compiles; it is recorded too), the others'
only; predict: the best of 3 calls. Each environment runs in a fresh process (XLA sizes its pool
when JAX starts): "default", as a user's process runs (no thread variables; MotherNet's own NumPy
work at its n_jobs=None), and "one" (`pin_one_thread`: XLA, BLAS and OpenMP at one thread, n_jobs=1).
The cost cases, whose ratios the bounds compare across environments on a shared machine, run in
COST_ROUNDS rounds of fresh processes, the environments alternated, COST_REPEATS warm fits each;
a case's fit time is the median over the rounds of each round's median.
Records go to OUT/records.jsonl as they finish (a rerun skips those there); the report
(OUT/scale.md, the figure) gives a table per environment and the verdict on the issue's bounds
(`verdict`).

"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ENVIRONMENTS = ("default", "one")
METHODS = ("mothernet", "linear", "hgb")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
TEST_ROWS = 10_000
COST_REPEATS = 5  # warm fits timed per cost case and process (their median)
COST_ROUNDS = 3  # fresh processes per environment for the cost cases, the environments alternated


@dataclasses.dataclass(frozen=True)
class Case:
    """task: "classification" or "regression"; data: () -> (X_train, y_train, X_test, y_test);
    cost: only MotherNet's fit time matters (the classes-cost and threads bounds)."""

    task: str
    data: Callable[[], tuple]
    cost: bool = False


def split_rows(X, y, n_train):
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def rows_task(n_train: int, test: int = TEST_ROWS, random_state: int = 7, n_informative: int = 10):
    """The issue's many-rows task: 20 columns, 10 informative, 2 clusters a class, 5% labels flipped."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_train + test, 20, n_informative=n_informative, n_redundant=0, n_clusters_per_class=2,
                               flip_y=0.05, class_sep=0.8, random_state=random_state)  # fmt: skip
    return split_rows(X, y, n_train)


def classes_task(n_classes: int):
    """The issue's many-classes task (4,500 rows, 1,500 for training) at n_classes classes."""
    from sklearn.datasets import make_classification

    X, y = make_classification(4500, 20, n_informative=15, n_redundant=0, n_classes=n_classes,
                               n_clusters_per_class=1, flip_y=0.05, class_sep=0.8, random_state=7)  # fmt: skip
    return split_rows(X, y, 1500)


def features_task(n_features: int, n_train: int = 1000):
    from sklearn.datasets import make_classification

    X, y = make_classification(2 * n_train, n_features, n_informative=min(10, n_features), n_redundant=0,
                               flip_y=0.05, random_state=7)  # fmt: skip
    return split_rows(X, y, n_train)


def friedman_task(n_train: int, test: int = 2000, random_state: int = 7):
    from sklearn.datasets import make_friedman1

    X, y = make_friedman1(n_train + test, 10, noise=1.0, random_state=random_state)
    return split_rows(X, y, n_train)


def cost_task(n_classes: int):
    """The classifier benchmark's 1,000 x 10 task of `n_classes` well-separated classes."""
    from sklearn.datasets import make_classification

    X, y = make_classification(2000, 10, n_informative=10, n_redundant=0, n_classes=n_classes,
                               n_clusters_per_class=1, class_sep=2.0, random_state=0)  # fmt: skip
    return split_rows(X, y, 1000)


CASES: dict[str, Case] = {
    **{f"cost {k} classes": Case("classification", lambda k=k: cost_task(k), cost=True) for k in (2, 7, 26, 100)},
    **{f"rows {n // 1000}k": Case("classification", lambda n=n: rows_task(n)) for n in (10_000, 30_000, 100_000)},
    **{f"features {d}": Case("classification", lambda d=d: features_task(d)) for d in (10, 100, 500)},
    "features 2000": Case("classification", lambda: features_task(2000, n_train=400)),
    **{f"classes {k}": Case("classification", lambda k=k: classes_task(k)) for k in (2, 10, 26, 50, 100)},
    "friedman1 2k": Case("regression", lambda: friedman_task(2000)),
    "friedman1 100k": Case("regression", lambda: friedman_task(100_000, test=TEST_ROWS)),
}


# -- methods and one record ---------------------------------------------------------------------------------


def make_method(method: str, task: str, n_jobs: int | None, settings: dict | None = None):
    """An unfitted estimator: MotherNet (its defaults, or `settings`), the linear baseline (scaled
    logistic regression / RidgeCV) or HistGradientBoosting."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if method == "mothernet":
        from mothernet_jax import MotherNetClassifier, MotherNetRegressor

        estimator = MotherNetClassifier if task == "classification" else MotherNetRegressor
        return estimator(random_state=0, n_jobs=n_jobs, **(settings or {}))
    if method == "linear":
        model = LogisticRegression(max_iter=1000) if task == "classification" else RidgeCV()
        return make_pipeline(StandardScaler(), model)
    model = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
    return model(random_state=0)


def score(task: str, model, X, y) -> float:
    from sklearn.metrics import r2_score

    from mothernet_jax.evaluation import roc_auc

    if task == "regression":
        return float(r2_score(y, model.predict(X)))
    return roc_auc(y, model.predict_proba(X))


def measure(task: str, make: Callable[[], object], data: tuple, *, warm: bool, cost_repeats: int = 0) -> dict:
    """Fit (twice where `warm`: the second timed), score and time predict (best of 3) on `data`."""
    X_train, y_train, X_test, y_test = data
    start = time.perf_counter()
    model = make().fit(X_train, y_train)
    first = time.perf_counter() - start
    fits = []
    for _ in range(max(cost_repeats, 1 if warm else 0)):
        start = time.perf_counter()
        model = make().fit(X_train, y_train)
        fits.append(time.perf_counter() - start)
    predict = []
    for _ in range(3):
        start = time.perf_counter()
        score_value = score(task, model, X_test, y_test)
        predict.append(time.perf_counter() - start)
    return {"score": score_value, "first_fit_s": first, "fit_s": statistics.median(fits) if fits else first,
            "fit_times_s": fits, "predict_s": min(predict), "n_train": len(y_train), "n_features": X_train.shape[1],
            "n_classes": int(len(np.unique(y_train))) if task == "classification" else None}  # fmt: skip


# -- environments ---------------------------------------------------------------------------------------------


def pin_one_thread() -> None:
    """XLA (before JAX starts its backend), the BLAS and OpenMP pools of this process (threadpoolctl)
    and of any it starts, at one thread."""
    from threadpoolctl import threadpool_limits

    from mothernet_jax.benchmarks.common import backend_started, xla_thread_environment

    if backend_started():
        raise RuntimeError("pin_one_thread must run before JAX starts its backend")
    os.environ.update(xla_thread_environment(1))
    os.environ.update({name: "1" for name in THREAD_VARIABLES})
    threadpool_limits(limits=1)


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def worker(environment: str, out: Path, cases: list[str], round_: int = 0) -> None:
    """Every method on every case in this process, in `environment`; appends to OUT/records.jsonl."""
    if environment == "one":
        pin_one_thread()
    from mothernet_jax.benchmarks.common import device_line

    n_jobs = 1 if environment == "one" else None
    path = out / "records.jsonl"
    done = {(r["environment"], r["case"], r["method"], r.get("round", 0)) for r in read_records(path)}
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    for name in cases:
        case = CASES[name]
        data = case.data()
        for method in ("mothernet",) if case.cost else METHODS:
            if (environment, name, method, round_) in done:
                continue
            make = lambda m=method: make_method(m, case.task, n_jobs)  # noqa: E731
            record = measure(case.task, make, data, warm=method == "mothernet",
                             cost_repeats=COST_REPEATS if case.cost else 0)  # fmt: skip
            record.update(environment=environment, case=name, method=method, task=case.task, device=device_line(),
                          load=load, round=round_)  # fmt: skip
            with path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{environment:8s} {name:18s} {method:10s} score={record['score']:.4f} fit={record['fit_s']:.2f}s "
                  f"predict={record['predict_s']:.3f}s", flush=True)  # fmt: skip


# -- report -------------------------------------------------------------------------------------------------


def by_key(records: list[dict]) -> dict[tuple[str, str, str], dict]:
    """(environment, case, method) -> its record; a case measured in rounds: the first round's,
    its fit_s the median over the rounds (fit_rounds_s: each round's)."""
    rounds: dict[tuple[str, str, str], list[dict]] = {}
    for r in records:
        rounds.setdefault((r["environment"], r["case"], r["method"]), []).append(r)
    out = {}
    for key, rs in rounds.items():
        rs = sorted(rs, key=lambda r: r.get("round", 0))
        out[key] = {**rs[0], "fit_s": statistics.median(r["fit_s"] for r in rs), "fit_rounds_s": [r["fit_s"] for r in rs]}
    return out


def verdict(records: list[dict]) -> list[str]:
    """The issue's bounds on the records, a line each: measured value, bound, holds or FAILS (or
    "not measured")."""
    got = by_key(records)
    lines = []

    def check(label, value, bound, holds):
        if value is None:
            lines.append(f"{label}: not measured")
        else:
            lines.append(f"{label}: {value} (bound {bound}; {'holds' if holds else 'FAILS'})")

    def fit(env, case, method="mothernet"):
        r = got.get((env, case, method))
        return None if r is None else r["fit_s"]

    def ratio(a, b):
        return None if a is None or b is None else a / b

    base = fit("default", "cost 2 classes")
    r = ratio(base, fit("one", "cost 2 classes"))
    check("2-class 1,000 x 10 fit, default environment / one thread", None if r is None else f"{r:.2f}x", "1.25x",
          r is not None and r <= 1.25)  # fmt: skip
    for k, bound in ((7, 2.0), (26, 5.0), (100, 10.0)):
        r = ratio(fit("default", f"cost {k} classes"), base)
        check(f"{k}-class fit / 2-class fit (default environment)", None if r is None else f"{r:.2f}x",
              f"{bound:g}x", r is not None and r <= bound)  # fmt: skip
    mn, lr = got.get(("default", "classes 50", "mothernet")), got.get(("default", "classes 50", "linear"))
    check("50 classes: AUC, MotherNet vs logistic regression",
          None if not (mn and lr) else f"{mn['score']:.4f} vs {lr['score']:.4f}", ">= logistic regression's",
          bool(mn and lr) and mn["score"] >= lr["score"])  # fmt: skip
    mn, gb = got.get(("default", "rows 100k", "mothernet")), got.get(("default", "rows 100k", "hgb"))
    check("100,000 rows: AUC, MotherNet vs gradient boosting",
          None if not (mn and gb) else f"{mn['score']:.4f} vs {gb['score']:.4f}", ">= HGB's - 0.02",
          bool(mn and gb) and mn["score"] >= gb["score"] - 0.02)  # fmt: skip
    r = ratio(fit("default", "rows 100k"), fit("default", "rows 100k", "hgb"))
    check("100,000 rows: fit / gradient boosting's (default environment)", None if r is None else f"{r:.2f}x",
          "2x", r is not None and r <= 2.0)  # fmt: skip
    mn, gb = got.get(("default", "friedman1 2k", "mothernet")), got.get(("default", "friedman1 2k", "hgb"))
    check("make_friedman1, 2,000 rows: R², MotherNet vs gradient boosting",
          None if not (mn and gb) else f"{mn['score']:.4f} vs {gb['score']:.4f}", ">= HGB's - 0.05",
          bool(mn and gb) and mn["score"] >= gb["score"] - 0.05)  # fmt: skip
    return lines


def table(records: list[dict], environment: str) -> str:
    got = by_key(records)
    lines = [
        "| case | rows | features | classes | MotherNet | linear | HGB | fit s: MotherNet | linear | HGB "
        "| MotherNet / HGB | predict s: MotherNet | HGB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in CASES:
        rows = {m: got.get((environment, name, m)) for m in METHODS}
        mn = rows["mothernet"]
        if mn is None:
            continue

        def cell(m, key, fmt):
            return format(rows[m][key], fmt) if rows[m] else "-"

        ratio = f"{mn['fit_s'] / rows['hgb']['fit_s']:.2f}" if rows["hgb"] else "-"
        lines.append(
            f"| {name} | {mn['n_train']:,} | {mn['n_features']} | {mn['n_classes'] or '-'} | "
            f"{cell('mothernet', 'score', '.4f')} | {cell('linear', 'score', '.4f')} | {cell('hgb', 'score', '.4f')} | "
            f"{cell('mothernet', 'fit_s', '.2f')} | {cell('linear', 'fit_s', '.2f')} | {cell('hgb', 'fit_s', '.2f')} | "
            f"{ratio} | {cell('mothernet', 'predict_s', '.3f')} | {cell('hgb', 'predict_s', '.3f')} |"
        )
    return "\n".join(lines)


def figure(records: list[dict], path: Path) -> None:
    """Left: each case's score by method; right: MotherNet's fit time over HGB's, both environments."""
    from mothernet_jax.benchmarks.figures import pyplot, save

    plt = pyplot()
    got = by_key(records)
    names = [n for n in CASES if not CASES[n].cost and got.get(("default", n, "mothernet"))]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    x = np.arange(len(names))
    for i, (method, label) in enumerate((("mothernet", "MotherNet"), ("linear", "logistic / ridge"), ("hgb", "HGB"))):
        values = [got[("default", n, method)]["score"] if ("default", n, method) in got else np.nan for n in names]
        axes[0].bar(x + (i - 1) * 0.27, values, 0.27, label=label)
    axes[0].set_ylim(0.5, 1.0)
    axes[0].set_ylabel("ROC AUC (regression: R²) on held-out rows")
    for environment, marker in (("default", "o"), ("one", "s")):
        ratios = [got[(environment, n, "mothernet")]["fit_s"] / got[(environment, n, "hgb")]["fit_s"]
                  if (environment, n, "hgb") in got and (environment, n, "mothernet") in got else np.nan
                  for n in names]  # fmt: skip
        axes[1].plot(x, ratios, marker=marker, ls="", label=f"{environment} environment")
    axes[1].axhline(1.0, color="gray", lw=0.8)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("MotherNet's fit time / HGB's")
    for ax in axes:
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)


def report(out: Path, figure_path: Path | None) -> str:
    records = read_records(out / "records.jsonl")
    parts = []
    for environment in ENVIRONMENTS:
        rows = [r for r in records if r["environment"] == environment]
        if rows:
            loads = sorted({r["load"] for r in rows})
            parts.append(f"### {environment} environment ({rows[0]['device']}, {os.cpu_count()} CPU cores, "
                         f"load average at the cases' start {loads[0]} to {loads[-1]})\n\n{table(records, environment)}")  # fmt: skip
    parts.append("Bounds (issue 30):\n\n" + "\n".join(f"- {line}" for line in verdict(records)))
    text = "\n\n".join(parts) + "\n"
    (out / "scale.md").write_text(text)
    if records:
        figure(records, figure_path or out / "scale.png")
    return text


# -- command line -----------------------------------------------------------------------------------------------


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mothernet_jax.benchmarks.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder of records.jsonl / map.jsonl and the reports")
    parser.add_argument("--cases", nargs="+", default=list(CASES), help=f"default: all of {', '.join(CASES)}")
    parser.add_argument("--environments", nargs="+", default=list(ENVIRONMENTS), choices=ENVIRONMENTS)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--figure", help="where the figure goes (default OUT/scale.png)")
    parser.add_argument("--rounds", type=int, default=COST_ROUNDS, help="fresh processes per environment, cost cases")
    parser.add_argument("--worker", choices=ENVIRONMENTS, help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.worker:  # one environment, in this fresh process
        worker(args.worker, out, args.cases, args.round)
        return
    if not args.report_only:
        cost = [c for c in args.cases if CASES[c].cost]
        rest = [c for c in args.cases if not CASES[c].cost]
        runs = [(environment, cost, r) for r in range(args.rounds) for environment in args.environments] if cost else []
        runs += [(environment, rest, 0) for environment in args.environments] if rest else []
        for environment, cases, round_ in runs:
            command = [sys.executable, "-m", "mothernet_jax.benchmarks.scale", "--out", str(out), "--worker",
                       environment, "--round", str(round_), "--cases", *cases]  # fmt: skip
            subprocess.run(command, env=default_environment(), check=True)
    print(report(out, Path(args.figure) if args.figure else None))


def default_environment() -> dict[str, str]:
    """This process's environment without the variables that set thread counts (a user's process
    sets none): a worker of the "one" environment pins its own."""
    environ = {k: v for k, v in os.environ.items() if k not in (*THREAD_VARIABLES, "PJRT_NPROC")}
    flags = [f for f in environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_cpu_multi_thread_eigen")]
    environ["XLA_FLAGS"] = " ".join(flags)
    return environ


if __name__ == "__main__":
    main()
