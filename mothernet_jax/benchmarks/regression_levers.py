"""The cost/accuracy map of MotherNetRegressor's levers, on the validation part of the regression data.

    python -m mothernet_jax.benchmarks.regression_levers --data ../shared/regression \
        --out runs/regression_levers --threads 1

Every setting (`SETTINGS`: a name and the regressor parameters it changes, all others `BASE`: the
map's origin of 8 members of 1,024 rows, the children as generated, spelled out, not "auto"), the baselines (ridge regression, HistGradientBoosting) and the controls
(`CONTROLS`, `benchmarks.controls`: the untrained hypernetwork at the weights' default settings,
random ReLU features with the same read-out) are fitted on the
same 5 splits of every validation dataset (`evaluation.regression_split`; the test part is never
read here), one thread each (`levers.cap_threads`), with an untimed warm-up fit per dataset so that
compilation stays out of the times. Writes `OUT/splits.jsonl` and `OUT/summary.md`: mean R², mean
normalised RMSE, median fit and predict seconds and their ratio to HistGradientBoosting's, per
setting (the regression benchmark's table, `benchmarks.regression.summary_table`).
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from mothernet_jax.benchmarks import levers
from mothernet_jax.benchmarks.levers import cap_threads
from mothernet_jax.settings import LIBRARY_DEFAULTS, REGRESSOR

BASE = {name: levers.MAP_BASE.get(name, LIBRARY_DEFAULTS[name]) for name in REGRESSOR}  # as levers.BASE
REFIT = {"output_layer": "refit"}
ES100 = {"finetune_steps": 100, "finetune_holdout": 0.2}  # 100 steps, early stopping on 20% held out
SETTINGS: dict[str, dict] = {
    # the map's origin (BASE: 8 members of 1,024 rows, children as generated) and fewer, smaller members
    "8x1024": {},
    "4x256": {"n_estimators": 4, "max_train_rows": 256},
    # the read-out refitted by ridge regression on every row (estimator.output_layer)
    "8x1024 refit": REFIT,
    "4x512 refit": {"n_estimators": 4, "max_train_rows": 512, **REFIT},
    "2x512 refit": {"n_estimators": 2, "max_train_rows": 512, **REFIT},
    "4x256 refit": {"n_estimators": 4, "max_train_rows": 256, **REFIT},
    # the penalty toward the generated read-out instead of toward zero (issue 29)
    "4x256 refit prior": {"n_estimators": 4, "max_train_rows": 256, "output_layer": "refit_prior"},
    "2x256 refit": {"n_estimators": 2, "max_train_rows": 256, **REFIT},
    "1x256 refit": {"n_estimators": 1, "max_train_rows": 256, **REFIT},
    # fine-tuning (all layers, early stopped), with and without the refitted read-out after it
    "4x256 ft100 es": {"n_estimators": 4, "max_train_rows": 256, **ES100},
    "4x256 ft100 es refit": {"n_estimators": 4, "max_train_rows": 256, **ES100, **REFIT},
}
BASELINES = ("ridge", "hist_gradient_boosting")
CONTROLS = ("untrained", "random_features")  # benchmarks.controls: what the defaults are measured against


def factory(setting: dict, weights=None):
    """A method factory (categorical mask, seed) -> MotherNetRegressor with BASE | setting."""
    from mothernet_jax.estimator.regressor import MotherNetRegressor

    return levers.factory(setting, weights, base=BASE, estimator=MotherNetRegressor)


LEVELS = (0.5, 0.8, 0.9, 0.95)
Z = {0.5: 0.6745, 0.8: 1.2816, 0.9: 1.6449, 0.95: 1.9600}  # the standard normal's two-sided quantiles


def interval_coverage(paths, make, splits: int) -> list[dict]:
    """Per dataset: the share of test rows inside the Gaussian intervals mean +- z std
    (`MotherNetRegressor.predict(X, return_std=True)`) at each of LEVELS, and the 90% interval's
    width over the test target's standard deviation, averaged over `splits` seeded splits."""
    import numpy as np

    from mothernet_jax.evaluation import load_regression_dataset, make_regression_split

    rows = []
    for path in paths:
        dataset = load_regression_dataset(path)
        found = {level: [] for level in LEVELS}
        widths = []
        for index in range(splits):
            split = make_regression_split(dataset.n_rows, seed=0, dataset=dataset.name, index=index)
            model = make(dataset.categorical, split.seed).fit(dataset.x[split.train], dataset.y[split.train])
            mean, std = model.predict(dataset.x[split.test], return_std=True)
            error = np.abs(dataset.y[split.test] - mean)
            for level in LEVELS:
                found[level].append(float(np.mean(error <= Z[level] * std)))
            widths.append(float(np.mean(2 * Z[0.9] * std) / np.std(dataset.y[split.test])))
        rows.append({"dataset": dataset.name, **{lv: float(np.mean(v)) for lv, v in found.items()}, "width": float(np.mean(widths))})
    return rows


def interval_table(rows: list[dict]) -> str:
    """The coverage table: one row per dataset and the mean."""
    head = "| dataset | " + " | ".join(f"{int(lv * 100)}% covers" for lv in LEVELS) + " | 90% width / std(y) |"
    lines = [head, "| --- |" + " ---: |" * (len(LEVELS) + 1)]
    for r in [*rows, {"dataset": "mean", **{k: sum(x[k] for x in rows) / len(rows) for k in (*LEVELS, "width")}}]:
        lines.append(f"| {r['dataset']} | " + " | ".join(f"{r[lv]:.3f}" for lv in LEVELS) + f" | {r['width']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/regression", help="folder of regression .npz datasets")
    parser.add_argument("--out", default="runs/regression_levers", help="output folder")
    parser.add_argument("--settings", nargs="+", default=None, help=f"subset of: {', '.join([*BASELINES, *CONTROLS, *SETTINGS])}")
    parser.add_argument("--weights", default=None, help="regression weights (default: the shipped ones)")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="threads of every method (XLA, BLAS, OpenMP)")
    parser.add_argument(
        "--intervals",
        metavar="SETTING",
        help="instead of the map: the coverage of SETTING's prediction intervals (a refit setting)",
    )
    args = parser.parse_args(argv)
    names = args.settings or [*BASELINES, *CONTROLS, *SETTINGS]
    unknown = [n for n in names if n not in SETTINGS and n not in BASELINES and n not in CONTROLS]
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {', '.join([*BASELINES, *CONTROLS, *SETTINGS])}")
    from mothernet_jax.benchmarks.common import backend_started

    capped = not backend_started()  # in a process that ran JAX already (a test), XLA keeps its pools
    if capped:
        cap_threads(args.threads)

    from mothernet_jax.benchmarks.regression import REGRESSION_METHODS, summary_markdown
    from mothernet_jax.evaluation import regression_dataset_paths, run_regression_benchmark
    from mothernet_jax.progress import Progress

    paths = regression_dataset_paths(args.data, ["validation"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.intervals is not None:
        if args.intervals not in SETTINGS or SETTINGS[args.intervals].get("output_layer") != "refit":
            parser.error(f"--intervals needs a refit setting, one of {[n for n in SETTINGS if 'refit' in n]}")
        text = interval_table(interval_coverage(paths, factory(SETTINGS[args.intervals], args.weights), args.splits))
        (out / "intervals.md").write_text(f"{args.intervals}, {len(paths)} validation datasets x {args.splits} splits\n\n{text}")
        print(text)
        return
    methods = {n: factory(SETTINGS[n], args.weights) for n in names if n in SETTINGS}
    methods.update({n: REGRESSION_METHODS[n].build for n in names if n in BASELINES})
    methods.update({n: partial(REGRESSION_METHODS[n].build, weights=args.weights) for n in names if n in CONTROLS})
    records = []
    with (out / "splits.jsonl").open("w") as jsonl, Progress(
        len(paths) * len(methods) * args.splits, "regression levers"
    ) as bar:
        for record in run_regression_benchmark(paths, methods, splits=args.splits, warmup=True, progress=bar):
            records.append(record)
            jsonl.write(json.dumps(record) + "\n")
            jsonl.flush()
    header = {
        "command": "`python -m mothernet_jax.benchmarks.regression_levers "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items() if v is not None and k != "settings")
        + "`",
        "datasets": f"the {len(paths)} validation datasets of {args.data}, {args.splits} splits each",
        "threads": f"{args.threads} per method" + ("" if capped else " (XLA's pools not capped: JAX had started)"),
        "settings": json.dumps({n: SETTINGS[n] for n in methods if n in SETTINGS}),
    }
    text = summary_markdown(records, list(methods), header=header)
    (out / "summary.md").write_text(text)
    print(text.split("## ")[1] if "## " in text else text)


if __name__ == "__main__":
    main()
