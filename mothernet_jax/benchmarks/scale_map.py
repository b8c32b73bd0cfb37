"""The map the estimators' row schedule (`estimator.schedule`) was chosen on: fine-tuning on a large
sample of the rows (`MAP_SETTINGS`) against none, on synthetic tasks at 1,000 to 30,000 training
rows (regression: 500 to 5,000) and on the validation datasets of at least 4,000 rows
(classification) or 2,000 (regression) split in halves (never the TabPFN-test datasets), every
pool on one thread.

    python -m mothernet_jax.benchmarks.scale_map --out runs/scale_map

Records go to OUT/map.jsonl as they finish (a rerun skips those there); the report (OUT/map.md)
gives, by task kind and training rows, each setting's mean score, its mean gain over no
fine-tuning on the same tasks and its median fit time over no fine-tuning's (both fits warm).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path

from mothernet_jax.benchmarks.scale import (
    friedman_task,
    make_method,
    measure,
    pin_one_thread,
    read_records,
    rows_task,
    split_rows,
)

POOL = {"finetune_pool": 8192, "finetune_rows": 512, "finetune_learning_rate": 3e-3, "finetune_holdout": 0.2,
        "finetune_layers": "all"}  # fmt: skip
MAP_SETTINGS = {
    "none": {"finetune_steps": 0},
    "ft100 pool": {**POOL, "finetune_steps": 100},
    "ft300 pool": {**POOL, "finetune_steps": 300},
}
MAP_SIZES = {"classification": (1000, 3000, 10_000, 30_000), "regression": (500, 1000, 2000, 5000)}
MAP_TEST_ROWS = 5000
MIN_DATASET_ROWS = {"classification": 4000, "regression": 2000}  # validation datasets split in halves


def map_tasks(task: str) -> dict[str, Callable[[int], tuple]]:
    """Synthetic tasks of the map: name -> (training rows -> data)."""
    from sklearn.datasets import make_classification, make_friedman2, make_friedman3

    if task == "classification":
        def three(n):
            X, y = make_classification(n + MAP_TEST_ROWS, 12, n_informative=8, n_redundant=0, n_classes=3,
                                       n_clusters_per_class=2, flip_y=0.05, class_sep=0.8, random_state=13)  # fmt: skip
            return split_rows(X, y, n)

        return {"clusters": lambda n: rows_task(n, MAP_TEST_ROWS),
                "clusters, 6 informative": lambda n: rows_task(n, MAP_TEST_ROWS, random_state=11, n_informative=6),
                "three classes": three}  # fmt: skip

    def friedman(make, noise):
        def data(n):
            X, y = make(n + MAP_TEST_ROWS, noise=noise, random_state=7)
            return split_rows(X, y, n)

        return data

    # noise about a third of each target's spread (friedman1's: 1.0 against a std of about 5)
    return {"friedman1": lambda n: friedman_task(n, MAP_TEST_ROWS), "friedman2": friedman(make_friedman2, 125.0),
            "friedman3": friedman(make_friedman3, 0.1)}  # fmt: skip


def validation_tasks(task: str, folders: list[str]) -> dict[str, tuple]:
    """The validation datasets of at least MIN_DATASET_ROWS[task] rows, each split in halves (seed 0):
    name -> data (categorical columns as numbers for the baselines; MotherNet reads them as given)."""
    from mothernet_jax.evaluation import (
        load_dataset,
        load_regression_dataset,
        make_regression_split,
        make_split,
        regression_dataset_paths,
    )

    out = {}
    if task == "classification":
        from mothernet_jax.train.validate import validation_paths

        paths = [p for folder in folders for p in validation_paths(folder)]
        loaded = [load_dataset(p) for p in paths]
    else:
        loaded = [load_regression_dataset(p) for folder in folders for p in regression_dataset_paths(folder)]
    for data in loaded:
        n = len(data.y)
        if n < MIN_DATASET_ROWS[task]:
            continue
        if task == "classification":
            split = make_split(data.y, seed=0, dataset=data.name, index=0, max_train_rows=n // 2, max_test_rows=n)
        else:
            split = make_regression_split(n, seed=0, dataset=data.name, index=0, max_train_rows=n // 2, max_test_rows=n)
        out[data.name] = (data.x[split.train], data.y[split.train], data.x[split.test], data.y[split.test])
    return out


def run_map(out: Path, task: str, folders: list[str]) -> None:
    """Every MAP_SETTINGS of MotherNet on the map's tasks, one thread; appends to OUT/map.jsonl."""
    path = out / "map.jsonl"
    done = {(r["task"], r["name"], r["n_train"], r["setting"]) for r in read_records(path)}
    jobs = [(name, n, lambda make=make, n=n: make(n)) for name, make in map_tasks(task).items() for n in MAP_SIZES[task]]
    jobs += [(name, len(data[1]), lambda data=data: data) for name, data in validation_tasks(task, folders).items()]
    for name, n, data in jobs:
        if all((task, name, n, s) in done for s in MAP_SETTINGS):
            continue
        rows = data()
        for setting, values in MAP_SETTINGS.items():
            if (task, name, n, setting) in done:
                continue
            make = lambda values=values: make_method("mothernet", task, 1, values)  # noqa: E731
            record = measure(task, make, rows, warm=True)
            record.update(task=task, name=name, setting=setting, synthetic=name in map_tasks(task))
            with path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{task:14s} {name:28s} n={n:6d} {setting:11s} score={record['score']:.4f} "
                  f"fit={record['fit_s']:.2f}s", flush=True)  # fmt: skip


def map_table(records: list[dict]) -> str:
    """Per task kind and training rows: each setting's mean score, its mean gain over "none" and
    its median fit time over "none"'s, over the tasks measured at that size (synthetic) or the
    validation datasets (grouped as "datasets, n/2 rows")."""
    lines = ["| task | training rows | tasks | setting | mean score | gain over none | fit / none's |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: |"]  # fmt: skip
    for task in ("classification", "regression"):
        rs = [r for r in records if r["task"] == task]
        groups = sorted({r["n_train"] if r["synthetic"] else "datasets" for r in rs}, key=lambda g: (isinstance(g, str), g))
        for group in groups:
            members = [r for r in rs if (r["n_train"] if r["synthetic"] else "datasets") == group]
            base = {(r["name"], r["n_train"]): r for r in members if r["setting"] == "none"}
            for setting in MAP_SETTINGS:
                paired = [(r, base[(r["name"], r["n_train"])]) for r in members
                          if r["setting"] == setting and (r["name"], r["n_train"]) in base]  # fmt: skip
                if not paired:
                    continue
                label = (f"{min(b['n_train'] for _, b in paired):,}-{max(b['n_train'] for _, b in paired):,} (n/2)"
                         if group == "datasets" else f"{group:,}")  # fmt: skip
                lines.append(
                    f"| {task} | {label} | {len(paired)} | {setting} | {statistics.fmean(r['score'] for r, _ in paired):.4f} | "
                    f"{statistics.fmean(r['score'] - b['score'] for r, b in paired):+.4f} | "
                    f"{statistics.median(r['fit_s'] / b['fit_s'] for r, b in paired):.2f} |"
                )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mothernet_jax.benchmarks.scale_map", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder of map.jsonl and map.md")
    parser.add_argument("--tasks", nargs="+", default=["classification", "regression"], choices=["classification", "regression"])
    parser.add_argument("--data", nargs="+", default=None, help="dataset folders (default: ../shared's)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pin_one_thread()
    if not args.report_only:
        for task in args.tasks:
            folders = args.data or (["../shared/datasets", "../shared/datasets-extra"] if task == "classification"
                                    else ["../shared/regression"])  # fmt: skip
            run_map(out, task, folders)
    text = map_table(read_records(out / "map.jsonl")) + "\n"
    (out / "map.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
