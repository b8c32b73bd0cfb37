"""The `mothernet-jax` command: one subcommand per task, e.g. `mothernet-jax train --preset tiny ...`.

From a source checkout with nothing installed: `PYTHONPATH=<checkout> python -m mothernet_jax.cli train ...`.

To add a subcommand, write `add_<name>(subparsers)` that adds its parser and sets
`run=<function(args) -> exit code>` with `set_defaults`, then list it in `COMMANDS`. Import heavy
modules (JAX) inside the run function, so that `--help` stays instant.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Sequence

TRAIN_EPILOG = """\
examples:
  mothernet-jax train --preset tiny --workdir runs/tiny
  mothernet-jax train --preset tiny --workdir runs/tiny --steps 2000 --set learning_rate=3e-4
  mothernet-jax train --preset small --workdir runs/small --time-limit 3300 --export small.msgpack
  mothernet-jax train --preset small --workdir runs/small --budget 3300 --export small.msgpack
  mothernet-jax train --workdir runs/small            # resume with the saved config
  mothernet-jax train --config runs/small/config.json --workdir runs/small2 --set seed=1

Rerunning a command resumes from the latest checkpoint in the work directory. The work directory
holds checkpoints/ (orbax, the config beside the weights), config.json and metrics.jsonl (one JSON
line every log_every steps: step, loss, grad_norm, learning_rate, datasets_per_s, ...; with
--validate-every also lines with val_auc, or val_r2 for a regression model).
SIGINT (Ctrl-C) / SIGTERM, during the compiles too, save a checkpoint and stop with exit code 130 /
143 (128 + the signal's number: the run is not finished; rerun to resume); a second one aborts at
once, in one line. A non-finite loss stops with exit code 1 and keeps the last good checkpoint.
--export writes on every one of these stops (the last good checkpoint after a non-finite loss). One run at a time per work directory (a second is refused;
the lock, workdir/.lock, goes with the process that held it). A resumed run drops the metric lines
past its checkpoint's step, so metrics.jsonl has one line per step.
Use the exported weights: MotherNetClassifier(weights=PATH).fit(X, y) (or load_pretrained(PATH)).
Without installing: PYTHONPATH=. python -m mothernet_jax.cli train ...

--budget SECONDS trains for that much wall-clock time, compiles included, and fits the schedule to
it: warm-up over the first warmup_fraction, cosine decay to min_learning_rate when the budget ends,
whatever the throughput. A resumed run continues the same schedule with what is left of the budget
(the seconds spent are stored with each checkpoint). --steps then caps the steps; where the cap
comes first, the schedule fits the cap instead (it ends on its floor either way).
"""


# exit codes of a run stopped by a signal (checkpoint saved, not finished): 128 + the signal's
# number, as a shell reports a process the signal ended
STOPPED_BY = {"SIGINT": 128 + 2, "SIGTERM": 128 + 15}


def settings_help() -> str:
    """The `--set` keys of `mothernet-jax train`, listed from `TrainConfig`'s fields."""
    from mothernet_jax.config_base import field_names
    from mothernet_jax.train.config import ATTENTION, OPTIMIZERS, TrainConfig

    names = " ".join(name for name in field_names(TrainConfig) if name not in ("model", "prior"))
    return "\n".join(
        [
            "settings for --set (nested with dots; values parsed as JSON, else as strings):",
            *textwrap.wrap(names, 100, initial_indent="  ", subsequent_indent="  "),
            "  model.<field> (e.g. model.dtype=bfloat16)   prior.<field> (e.g. prior.n_rows=256)",
            f"  optimizer is one of {', '.join(OPTIMIZERS)}; attention one of {', '.join(ATTENTION)}",
            "  accumulation is a list of [first step, micro-batches], e.g. accumulation=[[0,1],[1000,2]]",
        ]
    )


def add_train(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="meta-train a MotherNet on the synthetic prior (resumes automatically)",
        description="Meta-train a MotherNet: every step samples synthetic tasks from the prior on the "
        "device, generates their child MLPs and trains on the children's test loss.",
        epilog=TRAIN_EPILOG + "\n" + settings_help() + "\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from mothernet_jax.train.config import PRESETS

    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="the training recipe to start from: tiny (CPU), small (the shipped model, one GPU), "
        "paper (the reference). Optional when resuming: the saved config is used.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="start from a TrainConfig JSON file instead of a preset (e.g. another run's config.json)",
    )
    parser.add_argument(
        "--workdir", required=True, help="directory for checkpoints, config.json and metrics.jsonl"
    )
    parser.add_argument(
        "--steps", type=int, metavar="N", help="optimiser steps in total (also the schedule's length)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, nested with dots (model.dtype=bfloat16); repeatable",
    )
    parser.add_argument(
        "--init-weights",
        metavar="PATH",
        help="start a fresh work directory from these weights (load_pretrained; same model config)",
    )
    parser.add_argument(
        "--export",
        metavar="PATH",
        help="write the final parameters to this .msgpack file (save_pretrained; checked before training); "
        "use them with MotherNetClassifier(weights=PATH)",
    )
    parser.add_argument(
        "--export-dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="storage dtype of the exported arrays (bfloat16 halves the file); inference is float32",
    )
    parser.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="train for this much wall-clock time (compiles included), the learning-rate schedule "
        "fitted to it; resuming continues it (sets budget_s; a positive number)",
    )
    parser.add_argument(
        "--validate-every",
        type=float,
        metavar="SECONDS",
        help="every this many wall seconds, and at the end, score the weights that would be exported "
        "on real datasets that are not TabPFN-test datasets; logs val_auc to metrics.jsonl (a regression "
        "model: val_r2 on ../shared/regression's validation datasets)",
    )
    parser.add_argument(
        "--validation-data",
        metavar="DIR",
        help="folder of .npz datasets for --validate-every (default: ../shared/datasets, for a regression "
        "model ../shared/regression, beside a source checkout); test datasets in it are never read",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="stop cleanly (with a checkpoint) before this much wall-clock time has passed",
    )
    parser.add_argument(
        "--stop-at",
        type=int,
        metavar="STEP",
        help="stop (with a checkpoint) after this step, keeping the schedule of --steps",
    )
    parser.add_argument(
        "--devices", type=int, metavar="N", help="train on the first N devices (default: all)"
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first (multi-host; the cluster is auto-detected "
        "unless --coordinator, --num-processes and --process-id are given)",
    )
    parser.add_argument("--coordinator", metavar="HOST:PORT", help="coordinator address for --distributed")
    parser.add_argument("--num-processes", type=int, metavar="N", help="process count for --distributed")
    parser.add_argument("--process-id", type=int, metavar="I", help="this process's index for --distributed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (metrics still logged)")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as JSON and exit"
    )
    parser.set_defaults(run=run_train)


def train_config(args: argparse.Namespace):
    """The TrainConfig a `train` command line asks for."""
    from pathlib import Path

    from mothernet_jax.train.checkpoint import latest_config
    from mothernet_jax.train.config import TrainConfig, preset

    if args.preset is not None and args.config is not None:
        raise SystemExit("mothernet-jax train: give --preset or --config, not both")
    try:
        if args.preset is not None:
            config = preset(args.preset)
        elif args.config is not None:
            try:
                config = TrainConfig.from_json(Path(args.config).read_text())
            except (ValueError, TypeError) as error:
                raise ValueError(f"--config {args.config}: {error}") from None
        else:
            warn = lambda message: print(f"mothernet-jax train: {message}", file=sys.stderr)
            config = latest_config(args.workdir, warn=warn)
            if config is None:
                raise SystemExit(
                    f"mothernet-jax train: {args.workdir} holds no checkpoint; give --preset or --config"
                )
        if args.steps is not None:
            config = config.replace(steps=args.steps)
        if args.budget is not None:
            if not args.budget > 0:  # 0 would silently mean no budget
                raise ValueError(f"--budget must be a positive number of seconds, got {args.budget:g}")
            config = config.replace(budget_s=args.budget)
        if args.init_weights is not None:
            config = config.replace(init_weights=args.init_weights)
        return config.with_overrides(args.overrides)
    except (ValueError, TypeError, OSError) as error:
        raise SystemExit(f"mothernet-jax train: {error}") from None


def run_train(args: argparse.Namespace) -> int:
    if args.distributed:
        from mothernet_jax.train.mesh import initialize_distributed

        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    config = train_config(args)
    if args.print_config:
        print(config.to_json())
        return 0

    import jax

    from mothernet_jax.train.config import ConfigError
    from mothernet_jax.train.loop import train
    from mothernet_jax.train.mesh import is_main_process, make_mesh
    from mothernet_jax.train.metrics import NonFiniteLossError

    mesh = make_mesh(jax.devices()[: args.devices] if args.devices else None)
    try:
        validator = None
        if args.validate_every is not None:
            from mothernet_jax.train import validate

            validator = validate.for_training(config.model, args.validation_data)
        result = train(
            config,
            args.workdir,
            time_limit=args.time_limit,
            stop_at=args.stop_at,
            export=args.export,
            export_dtype=args.export_dtype,
            mesh=mesh,
            progress=not args.no_progress,
            validator=validator,
            validate_every=args.validate_every,
        )
    except (NonFiniteLossError, ConfigError) as error:
        print(f"mothernet-jax train: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second SIGINT: no checkpoint of this run's steps, no traceback
        print(
            f"mothernet-jax train: aborted; the work directory {args.workdir} keeps its last checkpoint "
            "(rerun the same command to resume)",
            file=sys.stderr,
        )
        return STOPPED_BY["SIGINT"]
    if is_main_process():
        tail = [loss for loss in result.losses if loss == loss][-50:]  # NaN: no valid dataset
        loss = f", mean loss of the last {len(tail)} steps {sum(tail) / len(tail):.4f}" if tail else ""
        budget = ""
        if result.budget_spent_s is not None:
            budget = f", {result.budget_spent_s:.0f} of {config.budget_s:.0f} budget seconds spent"
        print(
            f"mothernet-jax train: step {result.step}/{config.steps} ({result.stop_reason}) in "
            f"{result.seconds:.0f} s{budget}{loss}; work directory {args.workdir}",
            file=sys.stderr,
        )
    return STOPPED_BY.get(result.stop_reason, 0)


COMMANDS: dict[str, Callable] = {"train": add_train}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mothernet-jax", description="MotherNet in JAX: meta-training and tools."
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in COMMANDS.values():
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
