"""Synthetic classification tasks from the MotherNet (TabPFN) prior, as jitted JAX samplers.

`sample_task(key, config, split)` draws one dataset and `sample_batch(key, config, batch_size,
split)` many, as a `Task` padded to the static maxima of a `PriorConfig` (`preset("paper")`: 1152
rows, 100 features, 10 classes; `preset("tiny")`: 128 rows). Both are pure functions of the key,
compile once per configuration (the split may be traced) and run inside a jitted train step on any
device. The prior bag is the MLP/SCM prior (`priors.mlp`, 0.961) and the GP prior (`priors.gp`,
0.039), turned into classification tasks by `priors.classification`; `PriorConfig.tree_probability`
(default 0) mixes in datasets whose target is a random decision-tree ensemble (`priors.tree`).
`sample_regression_batch` / `sample_regression_task` (`priors.regression`) draw the same raw
datasets as regression tasks: a `RegressionTask` with a continuous, noisy target.

- `python -m priors.compare_reference --n 2400`: the reference statistics, ours, and the
  Kolmogorov-Smirnov distance per statistic (docs/ARCHITECTURE.md section 6).
- `python -m mothernet_jax.benchmarks.prior`: datasets/s at the paper shapes.
"""

from priors.bag import Task as Task
from priors.bag import dataset_kinds as dataset_kinds
from priors.bag import default_group_size as default_group_size
from priors.bag import sample_batch as sample_batch
from priors.bag import sample_task as sample_task
from priors.config import LogUniform as LogUniform
from priors.config import MetaBeta as MetaBeta
from priors.config import MetaGamma as MetaGamma
from priors.config import PriorConfig as PriorConfig
from priors.config import preset as preset
from priors.regression import RegressionTask as RegressionTask
from priors.regression import sample_regression_batch as sample_regression_batch
from priors.regression import sample_regression_task as sample_regression_task
