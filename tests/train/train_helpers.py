"""Shared pieces of the training tests: the test config, tree comparison, subprocesses.

Most in-process tests train `make_config()` on the default mesh (the 8 forced CPU devices) with
`fast_train`, so the step compiles once per pytest process (`TrainStep` caches it across `train`
calls; the learning-rate schedule is an argument, so `steps` and `learning_rate` may differ freely).
Subprocesses share the tests' persistent compilation cache (conftest.py), so only the first one
compiles.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import priors
from mothernet_jax.model.mothernet import init_params
from mothernet_jax.train import config as train_config
from mothernet_jax.train import train
from mothernet_jax.train.optimizer import make_optimizer
from mothernet_jax.train.step import init_state, task_losses

REPO = Path(__file__).resolve().parents[2]
COMPILATION_CACHE = Path(tempfile.gettempdir()) / f"mothernet-jax-train-tests-{os.getuid()}"


# The real prior at 128 rows (one split bucket), narrowed so that the step compiles faster: 10
# features (padded to the model's 100 by the step), one static MLP width, at most 4 layers.
TEST_PRIOR = priors.preset("tiny").replace(max_features=10, max_hidden=32, width_buckets=(32,), max_layers=4)


# Compile at XLA's lowest backend optimisation: about half the compile time, slower steps. Tests
# that run few steps use it; subprocesses get the same flag, so their programs are the same.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def fast_train(config, workdir=None, **options):
    """`train` without a progress bar, compiled with FAST_COMPILE."""
    return train(config, workdir, progress=False, compiler_options=FAST_COMPILE, **options)


def mean_task_loss(params, tasks, config: train_config.TrainConfig, split: int = 64):
    """The training loss of `config` (its model and read-out) on `tasks`, split at row `split`, in
    one 128-row bucket: the mean over the valid tasks."""
    per_dataset, valid = task_losses(
        params, tasks, jnp.int32(split), model=config.model, bucket=128, floor=0, read_out=config.read_out
    )
    return jnp.sum(jnp.where(valid, per_dataset, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def descend(loss, config: train_config.TrainConfig, steps: int = 30, peak: float = 3e-3):
    """`steps` steps of `config`'s optimiser on `loss(params)` from `init_params(key(0))`, the learning
    rate warmed up linearly to `peak` over 5 steps; returns the final state and the losses seen."""

    def step(state, learning_rate):
        value, grads = jax.value_and_grad(loss)(state.params)
        updates, opt_state = make_optimizer(config, learning_rate).update(grads, state.opt_state, state.params)
        return state._replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state), value

    state = init_state(config, init_params(jax.random.key(0), config.model))
    compiled = jax.jit(step).lower(state, jnp.float32(0)).compile(compiler_options=FAST_COMPILE)
    losses = []
    for t in range(steps):
        state, value = compiled(state, jnp.float32(peak * min(1.0, (t + 1) / 5)))
        losses.append(float(value))
    assert np.all(np.isfinite(losses)), losses
    return state, losses


def make_config(**changes) -> train_config.TrainConfig:
    """The tiny preset on `TEST_PRIOR`: 8 datasets a step, six steps, a checkpoint every two."""
    defaults = dict(prior=TEST_PRIOR, steps=6, checkpoint_every=2, log_every=1)
    defaults.update(changes)
    return train_config.tiny().replace(**defaults)


def subprocess_env(device_count: int = 8) -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        f"--xla_force_host_platform_device_count={device_count} --xla_backend_optimization_level=0"
    )
    env["JAX_PLATFORMS"] = "cpu"
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(COMPILATION_CACHE))  # conftest.py's, where set
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def start_python(code: str, *args: str, device_count: int = 8, log: Path | None = None) -> subprocess.Popen:
    """`python -c code args...` in the repository, stdout and stderr to `log` (or a pipe)."""
    out = open(log, "w") if log is not None else subprocess.PIPE  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=subprocess_env(device_count),
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(predicate, timeout: float, what: str, process: subprocess.Popen | None = None, poll=0.02):
    """Poll `predicate` until true; fail after `timeout` seconds or if `process` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited ({process.returncode}) before {what}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def committed_steps(workdir: Path) -> list[int]:
    folder = workdir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def temporary_checkpoints(workdir: Path) -> list[str]:
    folder = workdir / "checkpoints"
    if not folder.is_dir():
        return []
    return [p.name for p in folder.iterdir() if "tmp" in p.name]


def truncate_the_arrays(folder: Path) -> None:
    """Damage a checkpoint folder: halve each of orbax's (ocdbt) data files."""
    for path in folder.rglob("*"):
        if path.is_file() and path.parent.name == "d":
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
