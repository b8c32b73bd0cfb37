"""The meta-training loss curve of a work directory (or several, each continuing the one before), as a PNG.

    python -m mothernet_jax.benchmarks.loss_curve --workdir runs/small-cpu --out docs/small_loss_curve.png
    python -m mothernet_jax.benchmarks.loss_curve --compare --workdir runs/a runs/b --out bench_out/ab.png

Reads `metrics.jsonl` (one JSON line per logged step) and draws the loss against datasets seen, with a
running mean. Where the runs validated (`--validate-every`: lines with `val_auc`), it also draws
`val_auc` against datasets seen and against training wall seconds, one line per work directory,
to `<out stem>_val.png`. By default each work directory continues the one before (a later phase
starts from the earlier one's weights, so its datasets are offset); `--compare` draws independent
runs from zero, to compare recipes in one figure. Prints steps, datasets seen and wall time per
work directory, and the last `val_auc`: the figures the model card records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mothernet_jax.benchmarks.figures import plot_auc_curves, pyplot, save


def read_runs(workdirs: list[str]) -> list[dict]:
    from mothernet_jax.train.metrics import read_metrics

    runs = []
    for workdir in workdirs:
        lines = read_metrics(workdir)
        metrics = [m for m in lines if "loss" in m]
        if not metrics:
            raise ValueError(f"{workdir} holds no metrics.jsonl lines")
        validation = [m for m in lines if m.get("val_auc") is not None]
        runs.append({"workdir": workdir, "metrics": metrics, "validation": validation})
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


def offsets(runs: list[dict], compare: bool) -> list[int]:
    """Datasets seen before each run: 0 for all with `compare`, else the totals of the runs before."""
    if compare:
        return [0] * len(runs)
    out, total = [], 0
    for run in runs:
        out.append(total)
        total += summarise(run["metrics"])["datasets_seen"]
    return out


def plot(runs: list[dict], path: str | Path, window: int = 20, compare: bool = False) -> Path:
    """Loss against datasets seen; each run starts where the one before it ended (a later run
    continues from the earlier one's weights), or at zero with `compare`."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for run, offset in zip(runs, offsets(runs, compare), strict=True):
        steps = np.array([m["step"] for m in run["metrics"]])
        datasets = offset + steps * run["metrics"][-1].get("datasets_per_step", 1)
        has_loss = np.array([m["loss"] is not None for m in run["metrics"]])  # None: no valid dataset
        loss = np.array([m["loss"] for m in run["metrics"] if m["loss"] is not None], float)
        datasets = datasets[has_loss]
        name = Path(run["workdir"]).name
        smoothed = len(loss) >= window
        (raw,) = ax.plot(datasets, loss, alpha=0.3 if smoothed else 1.0, lw=0.8, label=None if smoothed else name)
        if smoothed:
            smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
            ax.plot(
                datasets[window - 1 :],
                smooth,
                lw=2,
                color=raw.get_color(),
                label=f"{name} (mean of {window} logs)",
            )
    ax.set_xlabel("synthetic datasets seen")
    ax.set_ylabel("child cross-entropy on test rows")
    ax.set_title("MotherNet meta-training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save(fig, path)


def plot_validation(runs: list[dict], path: str | Path, compare: bool = False) -> Path:
    """val_auc against datasets seen and against training wall seconds, one line per run."""
    curves = {}
    seconds_offset = 0.0
    for run, offset in zip(runs, offsets(runs, compare), strict=True):
        validation = run["validation"]
        if not validation:
            continue
        seconds = [(0.0 if compare else seconds_offset) + m["seconds"] for m in validation]
        datasets = [offset + m["datasets"] for m in validation]
        curves[Path(run["workdir"]).name] = (datasets, seconds, [m["val_auc"] for m in validation])
        if not compare:
            seconds_offset = seconds[-1]
    title = "MotherNet validation during meta-training"
    return plot_auc_curves(curves, path, seconds_label="training wall seconds", ylabel="val_auc (non-test datasets)",
                           title=title)  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", nargs="+", required=True, help="training work directories")
    parser.add_argument("--out", default="bench_out/loss_curve.png", help="PNG path")
    parser.add_argument(
        "--compare", action="store_true", help="independent runs (all from zero), not phases of one"
    )
    args = parser.parse_args(argv)
    runs = read_runs(args.workdir)
    totals = {"steps": 0, "datasets_seen": 0, "wall_hours": 0.0}
    for run in runs:
        s = summarise(run["metrics"])
        totals = {k: totals[k] + s[k] for k in totals}
        last = run["validation"][-1]["val_auc"] if run["validation"] else None
        print(
            f"{run['workdir']}: {s['steps']:,} steps, {s['datasets_seen']:,} datasets, {s['wall_hours']:.2f} h wall"
            + ("" if last is None else f", last val_auc {last:.4f}")
        )
    if len(runs) > 1 and not args.compare:
        print(
            f"total: {totals['steps']:,} steps, {totals['datasets_seen']:,} datasets, "
            f"{totals['wall_hours']:.2f} h wall"
        )
    print(f"wrote {plot(runs, args.out, compare=args.compare)}")
    if any(run["validation"] for run in runs):
        out = Path(args.out)
        print(f"wrote {plot_validation(runs, out.with_name(out.stem + '_val.png'), compare=args.compare)}")


if __name__ == "__main__":
    main()
