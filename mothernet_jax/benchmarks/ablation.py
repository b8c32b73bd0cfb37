"""Recipe ablation: training variants from the same start, judged by `val_auc` at matched compute.

    python -m mothernet_jax.benchmarks.ablation --out runs/ablation --preset small --steps 1500 \
        --validate-every 250 --set prior.n_rows=256 --set prior.two_class_probability=1.0 \
        --variant baseline: --variant lr1e-3:learning_rate=1e-3 \
        --variant muon:optimizer=muon,learning_rate=1e-3

Every variant trains in its own work directory `<out>/<name>` (resumable: rerun the same command
to continue) in a fresh process, so that its process CPU seconds are its own. It trains in chunks
of `--validate-every` steps and validates the weights that would be exported (`optimizer.eval_params`)
after each chunk with `train.validate.Validator` (the non-TabPFN-test datasets), appending lines
with `step`, `datasets`, `seconds` (training wall time so far), `cpu_seconds` (training process CPU
so far, validation excluded) and `val_auc` to `<out>/<name>/metrics.jsonl`. At the end it prints a
table (datasets, CPU seconds, final val_auc, val_auc at the CPU seconds every variant reached) and
draws `val_auc` against datasets and against CPU seconds, one line per variant, to
`<out>/ablation.png`.

`--jobs 2` runs two variants at once (the CPU seconds stay per process; wall times do not compare).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def parse_variant(text: str) -> tuple[str, list[str]]:
    """`name:key=value,key=value` -> (name, ["key=value", ...]); `name:` is the base recipe."""
    name, sep, rest = text.partition(":")
    if not sep or not name:
        raise ValueError(f"--variant expects name:key=value,..., got {text!r}")
    return name, [item for item in rest.split(",") if item]


def run_variant(
    config_json: str, workdir: Path, steps_per_chunk: int, data: str | None, seed_tag: str = ""
) -> None:
    """Train one variant to its `steps`, validating every `steps_per_chunk` steps (in-process)."""
    import jax

    from mothernet_jax.train.config import TrainConfig
    from mothernet_jax.train.loop import train
    from mothernet_jax.train.metrics import METRICS, read_metrics
    from mothernet_jax.train.optimizer import eval_params
    from mothernet_jax.train.validate import Validator, default_data_dir

    config = TrainConfig.from_json(config_json)
    data_dir = data or default_data_dir()
    if data_dir is None:
        raise SystemExit("no validation data: pass --data (a folder of .npz datasets)")
    validator = Validator(data_dir, config.model)
    workdir.mkdir(parents=True, exist_ok=True)
    done = [m for m in read_metrics(workdir) if "val_auc" in m]
    cpu = done[-1]["cpu_seconds"] if done else 0.0
    wall = done[-1]["seconds"] if done else 0.0
    step = done[-1]["step"] if done else None
    if step is None:  # validate the start
        result = train(config, workdir, stop_at=0, progress=False)
        step = 0
        _validate(validator, eval_params(result.state, config), workdir / METRICS, 0, 0, cpu, wall, config)
    while step < config.steps:
        target = min(step + steps_per_chunk, config.steps)
        cpu0, wall0 = time.process_time(), time.monotonic()
        result = train(config, workdir, stop_at=target, progress=False)
        cpu += time.process_time() - cpu0
        wall += time.monotonic() - wall0
        step = result.step
        params = jax.device_get(eval_params(result.state, config))
        _validate(validator, params, workdir / METRICS, step, config.datasets_seen(step), cpu, wall, config)


def _validate(validator, params, path: Path, step, datasets, cpu, wall, config) -> None:
    scores = validator(params)
    line = {
        "step": step,
        "datasets": datasets,
        "seconds": wall,
        "cpu_seconds": cpu,
        "val_auc": scores["val_auc"],
        "val_auc_categorical": scores["val_auc_categorical"],
        "val_auc_untrained": scores.get("val_auc_untrained"),  # the control (the same for every line)
        "val_gap": scores.get("val_gap"),
        "val_seconds": scores["val_seconds"],
        "val_datasets": scores["val_datasets"],
    }
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
    gap = "" if scores.get("val_gap") is None else f", {scores['val_gap']:+.4f} over the untrained control"
    print(f"[ablation] {path.parent.name}: step {step}, val_auc {scores['val_auc']:.4f}{gap}", flush=True)


def curves(out: Path, names: list[str]) -> dict[str, list[dict]]:
    from mothernet_jax.train.metrics import read_metrics

    return {n: [m for m in read_metrics(out / n) if "val_auc" in m] for n in names}


def table(runs: dict[str, list[dict]]) -> str:
    """Markdown: per variant, datasets, CPU seconds, final val_auc and its gap over the untrained
    control, and val_auc interpolated at the largest CPU seconds every variant reached (matched
    compute)."""
    reached = min((r[-1]["cpu_seconds"] for r in runs.values() if r), default=0.0)
    rows = [
        f"| variant | datasets | CPU s | final val_auc | gap to untrained | val_auc at {reached:,.0f} CPU s | best val_auc |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, run in runs.items():
        if not run:
            rows.append(f"| {name} | - | - | - | - | - | - |")
            continue
        cpu = np.array([m["cpu_seconds"] for m in run])
        auc = np.array([m["val_auc"] for m in run])
        matched = float(np.interp(reached, cpu, auc))
        gap = run[-1].get("val_gap")
        gap = "-" if gap is None else f"{gap:+.4f}"
        rows.append(
            f"| {name} | {run[-1]['datasets']:,} | {cpu[-1]:,.0f} | {auc[-1]:.4f} | {gap} | {matched:.4f} | {auc.max():.4f} |"
        )
    return "\n".join(rows)


def plot(runs: dict[str, list[dict]], path: Path) -> Path:
    from mothernet_jax.benchmarks.figures import plot_auc_curves

    curves = {
        name: ([m["datasets"] for m in run], [m["cpu_seconds"] for m in run], [m["val_auc"] for m in run])
        for name, run in runs.items()
        if run
    }
    seconds = "training CPU seconds (validation excluded)"
    ylabel = "val_auc (mean ROC AUC, non-test datasets)"
    return plot_auc_curves(curves, path, seconds_label=seconds, ylabel=ylabel, title="Recipe ablation")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder of the variants' work directories")
    parser.add_argument("--preset", default="small", help="train preset of the base recipe")
    parser.add_argument("--init-weights", help="every variant starts from these weights")
    parser.add_argument("--steps", type=int, required=True, help="optimiser steps per variant")
    parser.add_argument("--validate-every", type=int, required=True, help="steps between validations")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="base recipe change")
    parser.add_argument("--variant", action="append", default=[], help="name:key=value,... (repeatable)")
    parser.add_argument("--data", help="validation datasets folder (default: ../shared/datasets)")
    parser.add_argument("--jobs", type=int, default=1, help="variants trained at once")
    parser.add_argument("--report-only", action="store_true", help="print the table and figure only")
    parser.add_argument("--run-one", nargs=2, metavar=("CONFIG_JSON", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        run_variant(Path(args.run_one[0]).read_text(), Path(args.run_one[1]), args.validate_every, args.data)
        return

    from mothernet_jax.train.config import preset

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = [parse_variant(v) for v in args.variant] or [("baseline", [])]
    names = [n for n, _ in variants]
    if not args.report_only:
        base = preset(args.preset).with_overrides(args.overrides).replace(steps=args.steps)
        if args.init_weights:
            base = base.replace(init_weights=args.init_weights)
        pending = []
        for name, changes in variants:
            config = base.with_overrides(changes)
            (out / name).mkdir(parents=True, exist_ok=True)
            config_path = out / name / "ablation_config.json"
            config_path.write_text(config.to_json() + "\n")
            command = [sys.executable, "-m", "mothernet_jax.benchmarks.ablation", "--out", str(out)]
            command += ["--steps", str(args.steps), "--validate-every", str(args.validate_every)]
            command += [*(["--data", args.data] if args.data else []), "--run-one", str(config_path), str(out / name)]
            pending.append((name, command))
        running: list[tuple[str, subprocess.Popen]] = []
        while pending or running:
            while pending and len(running) < args.jobs:
                name, command = pending.pop(0)
                log = open(out / name / "ablation.log", "a")  # noqa: SIM115 (closed with the process)
                running.append((name, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)))
                print(f"[ablation] started {name}", flush=True)
            time.sleep(2)
            for item in list(running):
                if item[1].poll() is not None:
                    running.remove(item)
                    print(f"[ablation] {item[0]} finished with exit code {item[1].returncode}", flush=True)
    runs = curves(out, names)
    text = table(runs)
    print(text)
    (out / "ablation.md").write_text(text + "\n")
    print(f"wrote {plot(runs, out / 'ablation.png')}")


if __name__ == "__main__":
    main()
