"""mothernet_jax: MotherNet in JAX/Flax."""

from mothernet_jax.config import ModelConfig as ModelConfig
from mothernet_jax.config import preset as preset
