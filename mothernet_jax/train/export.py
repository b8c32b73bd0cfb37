"""What a training run writes for users: the exported weight file and the history it carries.

`export_weights` writes the parameters with `save_pretrained`. The manifest's model config says
float32 whatever the training computed in (bf16 training keeps float32 master weights; a user's
CPU should not compute in bf16), the arrays are stored as `dtype` (float32 by default; bfloat16
halves the file), and its `history` lists every training phase: those the initial weights carried
in (their manifest's history, kept in `<workdir>/lineage.json` so that a resumed run still knows it
after the export has replaced the init file), then this run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from mothernet_jax.settings import RECOMMENDABLE
from mothernet_jax.train.config import ConfigError, TrainConfig

LINEAGE = "lineage.json"  # what the init weights carried in (see `lineage`)
EXPORT_DTYPES = ("float32", "bfloat16")


def lineage(config: TrainConfig, workdir: Path | None, *, fresh: bool) -> dict[str, Any]:
    """What `config.init_weights` carries into this run's export: its training history (a list of
    phases, each {steps, datasets_seen, train_config}) and the classifier's recommendations
    (`settings.RECOMMENDABLE`: the "auto" settings a manifest recommends, which an export keeps).
    Read from the weight file's manifest when the run starts fresh, else from the work directory."""
    saved = None if workdir is None else workdir / LINEAGE
    if saved is not None and saved.exists() and not fresh:
        return json.loads(saved.read_text())
    if not config.init_weights:
        return {}
    from mothernet_jax.pretrained import load_info

    try:
        info = load_info(config.init_weights)
    except FileNotFoundError:  # a weight file without its manifest: no history to carry
        return {}
    except ValueError as error:  # bad JSON
        raise ConfigError(f"init_weights {config.init_weights}: unreadable manifest ({error})") from None
    history = info.get("history") or [
        {key: info[key] for key in ("steps", "datasets_seen", "train_config") if key in info}
    ]
    carried = {"history": history}
    carried.update({key: info[key] for key in RECOMMENDABLE if key in info})
    return carried


def check_export_target(path: str | os.PathLike) -> None:
    """Refuse, before any training, an export path `export_weights` could not write: a wrong
    suffix, a folder, a path under a file. A ConfigError naming the path."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--export {path} is a folder: give a file in it, e.g. {path / 'weights.msgpack'}")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--export {path}: {parent} is a file, not a folder")
            break
    if path.suffix != ".msgpack":
        suggestion = path.with_suffix(".msgpack") if path.suffix else path.parent / (path.name + ".msgpack")
        raise ConfigError(
            f"--export {path}: the weights are a .msgpack file (its manifest goes beside it as .json); "
            f"give e.g. {suggestion}"
        )


def export_weights(
    path: str | os.PathLike,
    params,
    config: TrainConfig,
    *,
    steps: int,
    losses: list[float],
    carried: dict[str, Any],
    stop_reason: str,
    dtype: str = "float32",
) -> None:
    """Write `params` (host arrays, float32) after `steps` optimiser steps of this run's phase.

    losses: this call's per-step losses (NaN where a batch held no valid dataset); the mean of the
    last 50 finite ones is recorded. carried: `lineage(...)`.
    """
    from mothernet_jax.pretrained import save_pretrained

    if dtype not in EXPORT_DTYPES:
        raise ConfigError(f"export dtype must be one of {EXPORT_DTYPES}, got {dtype!r}")
    finite = [loss for loss in losses if math.isfinite(loss)][-50:]
    info = {
        "steps": steps,
        "datasets_seen": config.datasets_seen(steps),
        "loss_last_50": float(np.mean(finite)) if finite else None,
        "train_config": config.to_dict(),
        "stop_reason": stop_reason,
    }
    info.update(_with_history(carried, info))
    save_pretrained(path, params, config.model.replace(dtype="float32"), info=info, dtype=dtype)


def _with_history(carried: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """History (earlier phases plus this run) and its totals, for the export's info."""
    phases = [*carried.get("history", []), {k: info[k] for k in ("steps", "datasets_seen", "train_config")}]
    out = {k: v for k, v in carried.items() if k != "history"}
    out["history"] = phases
    out["total_steps"] = sum(int(p.get("steps", 0)) for p in phases)
    out["total_datasets_seen"] = sum(int(p.get("datasets_seen", 0)) for p in phases)
    return out
