"""The exported predictors' former home, kept so that existing code keeps working:
`from mothernet_jax.predictor import load_predictor` (what README showed before the runtime package)
is `mothernet_jax.load_predictor`. New code imports `mothernet_jax.load_predictor`; the predictors
live in `mothernet_jax.runtime.predictor`. NumPy alone, as the runtime."""

from mothernet_jax.runtime.npz import PredictorFileError
from mothernet_jax.runtime.predictor import (
    ClassificationPredictor,
    Predictor,
    RegressionPredictor,
    load_predictor,
)

__all__ = ["ClassificationPredictor", "Predictor", "PredictorFileError", "RegressionPredictor", "load_predictor"]
