"""Data parallelism: one mesh with a "data" axis over every device of every host.

Parameters and optimiser state are replicated (`P()`); each device samples and processes its own
share of the tasks inside the step (see `step.py`), so no batch ever crosses the host boundary.
After `jax.distributed.initialize()` the same code spans hosts: `jax.devices()` is then global.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """`jax.make_mesh((n,), ("data",))` over `devices` (default: all devices of all processes)."""
    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def put_replicated(tree, mesh: Mesh):
    """Host values (identical on every process) -> global arrays replicated over the mesh."""
    sharding = replicated(mesh)

    def put(leaf):
        value = np.asarray(leaf)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(put, tree)


def host_values(tree):
    """NumPy copies of replicated (possibly multi-host) arrays: each process reads its own copy."""

    def get(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(leaf.addressable_data(0))
        return leaf

    return jax.device_get(jax.tree.map(get, tree))


def agree(reason: str | None) -> str | None:
    """The most urgent stop reason of any process, on every process (one small all-gather): None,
    "time_limit" (any other reason counts as this one), "SIGTERM", "SIGINT"."""
    from jax.experimental import multihost_utils

    codes = [None, "time_limit", "SIGTERM", "SIGINT"]
    code = codes.index(reason) if reason in codes else 1
    return codes[int(np.max(multihost_utils.process_allgather(np.int32(code))))]


def is_main_process() -> bool:
    """True on the process that writes logs and exports (process 0)."""
    return jax.process_index() == 0


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """`jax.distributed.initialize`, with CPU collectives over gloo (harmless on GPU and TPU).

    With no arguments JAX detects the cluster (TPU pods, SLURM, Open MPI, Kubernetes).
    """
    if "jax_cpu_collectives_implementation" in jax.config.values:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
