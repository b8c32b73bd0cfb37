"""The meta-training loss curve of a work directory (or several, each continuing the one before), as a PNG.

    python -m mothernet_jax.benchmarks.loss_curve --workdir runs/small-cpu --out docs/small_loss_curve.png

Reads `metrics.jsonl` (one JSON line per logged step) and draws the loss against optimiser steps and
against datasets seen, with a running mean. Prints steps, datasets seen and wall time per work
directory, the figures the model card records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mothernet_jax.benchmarks.figures import pyplot, save


def read_runs(workdirs: list[str]) -> list[dict]:
    from mothernet_jax.train.loop import read_metrics

    runs = []
    for workdir in workdirs:
        metrics = read_metrics(workdir)
        if not metrics:
            raise ValueError(f"{workdir} holds no metrics.jsonl lines")
        runs.append({"workdir": workdir, "metrics": metrics})
    return runs


def summarise(metrics: list[dict]) -> dict:
    """Steps, datasets seen and wall time of one run (a resumed run restarts its elapsed clock)."""
    wall, last_elapsed = 0.0, 0.0
    for m in metrics:
        elapsed = m.get("elapsed_s", 0.0)
        if elapsed < last_elapsed:  # a new process resumed the run
            wall += last_elapsed
        last_elapsed = elapsed
    wall += last_elapsed
    steps = metrics[-1]["step"]
    per_step = metrics[-1].get("datasets_per_step", 0)
    return {"steps": steps, "datasets_seen": steps * per_step, "wall_hours": wall / 3600}


def plot(runs: list[dict], path: str | Path, window: int = 20) -> Path:
    """Loss against datasets seen; each run starts where the one before it ended (a later run
    continues from the earlier one's weights)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    offset = 0
    for run in runs:
        steps = np.array([m["step"] for m in run["metrics"]])
        datasets = offset + steps * run["metrics"][-1].get("datasets_per_step", 1)
        offset = int(datasets[-1])
        has_loss = np.array([m["loss"] is not None for m in run["metrics"]])  # None: no valid dataset
        loss = np.array([m["loss"] for m in run["metrics"] if m["loss"] is not None], float)
        datasets = datasets[has_loss]
        (raw,) = ax.plot(datasets, loss, alpha=0.3, lw=0.8)
        if len(loss) >= window:
            smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
            ax.plot(
                datasets[window - 1 :],
                smooth,
                lw=2,
                color=raw.get_color(),
                label=f"{Path(run['workdir']).name} (mean of {window} logs)",
            )
    ax.set_xlabel("synthetic datasets seen")
    ax.set_ylabel("child cross-entropy on test rows")
    ax.set_title("MotherNet meta-training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save(fig, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", nargs="+", required=True, help="training work directories")
    parser.add_argument("--out", default="bench_out/loss_curve.png", help="PNG path")
    args = parser.parse_args(argv)
    runs = read_runs(args.workdir)
    totals = {"steps": 0, "datasets_seen": 0, "wall_hours": 0.0}
    for run in runs:
        s = summarise(run["metrics"])
        totals = {k: totals[k] + s[k] for k in totals}
        print(
            f"{run['workdir']}: {s['steps']:,} steps, {s['datasets_seen']:,} datasets, {s['wall_hours']:.2f} h wall"
        )
    if len(runs) > 1:
        print(
            f"total: {totals['steps']:,} steps, {totals['datasets_seen']:,} datasets, "
            f"{totals['wall_hours']:.2f} h wall"
        )
    print(f"wrote {plot(runs, args.out)}")


if __name__ == "__main__":
    main()
