"""Meta-training: a fused, jitted step (on-device prior -> generate -> child loss -> AdamW),
orbax checkpoints with automatic resume, and data parallelism over one mesh of every device.

    from mothernet_jax.train import preset, train
    result = train(preset("tiny").replace(steps=200), "runs/tiny")

The CLI is `mothernet-jax train --preset tiny --workdir runs/tiny`. Names load on first use, so that
`mothernet_jax.train.config` (and `mothernet-jax train --help`) imports without JAX.
"""

from mothernet_jax.lazy import lazy_exports

# public name -> module that defines it, one per line
_EXPORTS = {
    "TrainConfig": "mothernet_jax.train.config",
    "PRESETS": "mothernet_jax.train.config",
    "preset": "mothernet_jax.train.config",
    "train": "mothernet_jax.train.loop",
    "TrainResult": "mothernet_jax.train.loop",
    "NonFiniteLossError": "mothernet_jax.train.metrics",
    "read_metrics": "mothernet_jax.train.metrics",
    "Checkpoints": "mothernet_jax.train.checkpoint",
    "TrainState": "mothernet_jax.train.step",
    "TrainStep": "mothernet_jax.train.stepper",
    "device_step": "mothernet_jax.train.step",
    "task_losses": "mothernet_jax.train.step",
    "make_optimizer": "mothernet_jax.train.optimizer",
    "learning_rate": "mothernet_jax.train.budget",
    "BudgetClock": "mothernet_jax.train.budget",
    "ConfigError": "mothernet_jax.train.config",
    "device_sample": "mothernet_jax.train.step",
    "make_mesh": "mothernet_jax.train.mesh",
    "initialize_distributed": "mothernet_jax.train.mesh",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)
