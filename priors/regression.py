"""Synthetic regression tasks: the prior bag's raw datasets with a continuous, noisy target.

`sample_regression_batch(key, config, batch_size, split)` is `priors.sample_batch` for
task="regression" (same signature, so the training step takes either as its `sample_fn`);
`sample_regression_task(key, config, split)` draws one dataset. Both return a `RegressionTask`
padded to the static maxima of the `PriorConfig`, jitted (one compilation per configuration,
whatever the key and split) and vmapped like the classification sampler (`priors.bag`): the raw
datasets are the same ones (`bag.sample_adapted`), only the adapter differs. As TabPFN's
regression prior, the target is the raw y the causal graph emits (a node of the MLP/SCM network,
the GP's sample or the tree ensemble's output), and `adapt` per dataset:

1. observation noise: y <- y + sigma std(y) s(x) e, with sigma ~ `regression_noise_std`
   (log-uniform on [1e-3, 1]: relative to the raw target's std over all rows);
   - heteroscedastic with probability `regression_heteroscedastic_probability` (0.3): s(x) =
     exp(a z) / sqrt(mean(exp(2 a z))), a ~ U(0, `regression_heteroscedastic_strength` = 1.5), z a
     random direction N(0, I) through the used raw features (each standardised over the rows),
     itself standardised over the rows and clipped to +-3; else s = 1;
   - heavy-tailed with probability `regression_heavy_tailed_probability` (0.3): e ~ Student-t(df),
     df ~ `regression_noise_df` (log-uniform on [1.5, 30]); else e ~ N(0, 1);
   the noise reads the raw features, before missing values or categorical codes corrupt them;
2. the target's shape (real targets are mostly right-skewed, many discrete: of the 26 datasets in
   ../shared/regression, 20 have skewness above 0.4, median 1.4, and 8 have fewer distinct values
   than a fifth of their rows; the raw targets are symmetric, skewness within +-0.35 for 80%):
   - skewed with probability `regression_warp_probability` (0.5): on y standardised over all rows
     and clipped to +-6, y <- (exp(b y) - 1) / b, b ~ U(0, `regression_warp_strength` = 1), mirrored
     (y <- -warp(-y)) with probability 1/4 (a lognormal's skewness: 1.8 at b = 0.5, 6.2 at b = 1);
   - discrete with probability `regression_discrete_probability` (0.2): y rounded to a grid of step
     h std(y), h ~ `regression_discrete_step` (log-uniform on [0.02, 1]);
3. the feature columns exactly as the classification adapter treats them (`priors.features.columns`:
   missing values, categorical columns, outliers, standardisation, scaling by max_features / F);
4. y standardised over the training rows (rows < split; mean 0, unbiased std 1), then clipped to
   +-100 (only test rows can reach it: a training row lies within sqrt(split - 1) < 34 of the mean).

A dataset is invalid (valid False, y all 0, x zeros where not finite) when a raw value is not
finite, when split < 2 or split >= n_rows (no spread or no test row), or when the training rows'
target is constant (std <= 1e-5 |mean|).

Distribution statistics (`python -m priors.regression_statistics --n 1024`: the paper preset,
batches of 8, split 576, the statistics of `priors.stats.regression_task_statistics`; 65 s on a busy
2-core CPU), measured 2026-12-05 on 1024 datasets (1 invalid), over the valid ones:

    statistic                          mean   median      q10      q90
    n_features_used                  49.336   50.000   11.000   88.000
    heteroscedastic                   0.307    0.000    0.000    1.000
    heavy_tailed                      0.270    0.000    0.000    1.000
    skewed                            0.495    0.000    0.000    1.000
    discrete                          0.219    0.000    0.000    1.000
    has_categorical                   0.184    0.000    0.000    1.000
    has_missing                       0.000    0.000    0.000    0.000   (missing values off by default)
    y_skew                            0.691    0.085   -0.914    3.109
    y_excess_kurtosis                17.139    0.452   -0.151   23.439
    frac_abs_y_gt_3                   0.008    0.005    0.001    0.019
    y_distinct_share                  0.793    1.000    0.033    1.000
    r2_ridge                          0.440    0.496   -0.114    0.993   (fit on rows < 576, R^2 on the rest)
    r2_knn5                           0.229    0.204   -0.219    0.940

`tests/priors/test_prior_regression.py` checks the shares against the config on every run and these
medians on 256 datasets in its slow test.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from priors import bag, features, rng
from priors import distributions as D
from priors.config import PriorConfig

_Z_CLIP = 3.0  # the heteroscedastic direction, in its standard deviations
_WARP_CLIP = 6.0  # the target before its warp, in its standard deviations
_MIRRORED = 0.25  # a warp's probability of skewing to the left
_CONSTANT = 1e-5  # a training target with std <= this * |mean| is constant


class RegressionTask(NamedTuple):
    """Synthetic regression datasets, padded to the static maxima of a `PriorConfig`.

    Leading axes `...` are () for `sample_regression_task` and (batch,) for
    `sample_regression_batch`.
    """

    x: jax.Array  # (..., rows, max_features) float32: standardised, scaled by max_features / F, 0-padded
    y: jax.Array  # (..., rows) float32: standardised over the training rows, clipped to +-100; 0 if invalid
    valid: jax.Array  # (...,) bool: False -> the loss must skip the dataset
    n_features: jax.Array  # (...,) int32: F, the used columns x[..., :F]
    categorical: jax.Array  # (..., max_features) bool: categorical columns
    heteroscedastic: jax.Array  # (...,) bool: the noise scale is a function of x (diagnostic)
    heavy_tailed: jax.Array  # (...,) bool: Student-t noise (diagnostic)
    skewed: jax.Array  # (...,) bool: the target went through an exponential warp (diagnostic)
    discrete: jax.Array  # (...,) bool: the target was rounded to a grid (diagnostic)


def _student_t(stream: jax.Array, df: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Student-t(df) draws: N(0, 1) / sqrt(chi2(df) / df), chi2(df) = 2 Gamma(df / 2)."""
    k_normal, k_gamma = rng.split(stream, 2)
    log_chi2_over_df = jnp.log(2.0 / df) + rng.log_gamma(k_gamma, df / 2.0, shape)
    return rng.normal(k_normal, shape) * jnp.exp(-0.5 * log_chi2_over_df)


def _direction(stream: jax.Array, x: jax.Array, n_features: jax.Array) -> jax.Array:
    """z (rows,): a random direction through the used columns of x, each standardised over the rows;
    z standardised over the rows and clipped to +-3 (0 where x has no spread)."""
    used = jnp.arange(x.shape[1]) < n_features
    mean, std = features.masked_mean_std(x, jnp.ones(x.shape, bool))
    scaled = jnp.where(used[None, :] & (std[None, :] > 0), (x - mean[None, :]) / (std[None, :] + 1e-30), 0.0)
    z = rng.matmul(scaled, jnp.where(used, rng.normal(stream, (x.shape[1],)), 0.0))
    z_mean, z_std = features.masked_mean_std(z[:, None], jnp.ones((x.shape[0], 1), bool))
    z = jnp.where(z_std[0] > 0, (z - z_mean[0]) / (z_std[0] + 1e-30), 0.0)
    return jnp.clip(z, -_Z_CLIP, _Z_CLIP)


def add_noise(stream: jax.Array, x: jax.Array, y: jax.Array, n_features: jax.Array, config: PriorConfig):
    """Step 1: y plus observation noise. x: (rows, max_features) raw and finite, zero beyond
    `n_features`; y: (rows,) raw. Returns (y, heteroscedastic, heavy_tailed)."""
    streams = rng.split(stream, 7)
    rows = y.shape[0]
    sigma, df = D.log_uniform(streams[0], (config.regression_noise_std, config.regression_noise_df))
    heteroscedastic = rng.bernoulli(streams[1], config.regression_heteroscedastic_probability)
    heavy_tailed = rng.bernoulli(streams[2], config.regression_heavy_tailed_probability)

    strength = rng.uniform(streams[3], (), 0.0, config.regression_heteroscedastic_strength)
    log_scale = strength * _direction(streams[4], x, n_features)
    log_scale = log_scale - 0.5 * jnp.log(jnp.mean(jnp.exp(2.0 * log_scale)))  # mean s^2 = 1
    scale = jnp.where(heteroscedastic, jnp.exp(log_scale), 1.0)

    noise = jnp.where(heavy_tailed, _student_t(streams[5], df, (rows,)), rng.normal(streams[6], (rows,)))
    _, y_std = features.masked_mean_std(y[:, None], jnp.ones((rows, 1), bool))
    return y + sigma * y_std[0] * scale * noise, heteroscedastic, heavy_tailed


def _standardised(y: jax.Array) -> jax.Array:
    """y (rows,) standardised over all rows (0 where it has no spread)."""
    mean, std = features.masked_mean_std(y[:, None], jnp.ones((y.shape[0], 1), bool))
    return jnp.where(std[0] > 0, (y - mean[0]) / (std[0] + 1e-30), 0.0)


def shape_target(stream: jax.Array, y: jax.Array, config: PriorConfig):
    """Step 2: a skewed and / or discrete target. y: (rows,) finite. Returns (y, skewed, discrete);
    y is standardised over all rows before the warp (the adapter standardises it again)."""
    streams = rng.split(stream, 5)
    skewed = rng.bernoulli(streams[0], config.regression_warp_probability)
    discrete = rng.bernoulli(streams[1], config.regression_discrete_probability)
    b = jnp.maximum(rng.uniform(streams[2], (), 0.0, config.regression_warp_strength), 1e-6)
    sign = jnp.where(rng.bernoulli(streams[3], _MIRRORED), -1.0, 1.0)
    step = D.log_uniform(streams[4], (config.regression_discrete_step,))[0]

    y = _standardised(y)
    warped = sign * jnp.expm1(b * sign * jnp.clip(y, -_WARP_CLIP, _WARP_CLIP)) / b
    y = jnp.where(skewed, warped, y)
    _, std = features.masked_mean_std(y[:, None], jnp.ones((y.shape[0], 1), bool))
    grid = step * std[0]
    rounded = jnp.where(grid > 0, jnp.round(y / jnp.where(grid > 0, grid, 1.0)) * grid, y)
    return jnp.where(discrete, rounded, y), skewed, discrete


def adapt(
    stream: jax.Array,
    x: jax.Array,
    y: jax.Array,
    n_features: jax.Array,
    split: jax.Array,
    config: PriorConfig,
) -> RegressionTask:
    """Turn one raw dataset into a regression task (the adapter `bag.sample_adapted` calls).
    x: (rows, max_features) raw features, zero beyond `n_features`; y: (rows,) raw target;
    split: rows < split are training rows."""
    k_noise, k_shape, k_missing, k_categorical = rng.split(stream, 4)
    rows = y.shape[0]
    raw_ok = jnp.all(jnp.isfinite(x)) & jnp.all(jnp.isfinite(y))
    x = jnp.where(raw_ok, x, 0.0)
    y = jnp.where(raw_ok, y, 0.0)

    y, heteroscedastic, heavy_tailed = add_noise(k_noise, x, y, n_features, config)
    y, skewed, discrete = shape_target(k_shape, y, config)
    x, categorical, finite = features.columns(k_missing, k_categorical, x, n_features, config)

    train = (jnp.arange(rows) < split)[:, None]
    mean, std = features.masked_mean_std(y[:, None], train)
    mean, std = mean[0], std[0]
    spread = jnp.isfinite(std) & (std > jnp.maximum(_CONSTANT * jnp.abs(mean), 1e-30))
    y = jnp.clip((y - mean) / jnp.where(spread, std, 1.0), -features.CLIP, features.CLIP)

    valid = raw_ok & finite & (split >= 2) & (split < rows) & spread & jnp.all(jnp.isfinite(y))
    x, y = jnp.where(finite, x, 0.0), jnp.where(valid, y, 0.0)
    return RegressionTask(
        x, y, valid, n_features, categorical, heteroscedastic, heavy_tailed, skewed, discrete
    )


def sample_regression_batch(
    key: jax.Array, config: PriorConfig, batch_size: int, split, group_size: int | None = None
) -> RegressionTask:
    """`batch_size` independent regression datasets: a `RegressionTask` with a leading batch axis.

    The signature and the compilation rules of `priors.sample_batch` (split: int or (batch_size,)
    ints, may be traced; static in config, batch_size, group_size), whose raw datasets it shares.
    """
    return bag.sample_adapted(adapt, key, config, batch_size, split, group_size)


def sample_regression_task(key: jax.Array, config: PriorConfig, split) -> RegressionTask:
    """One regression dataset: the first of `sample_regression_batch(key, config, 1, split)`."""
    return jax.tree.map(lambda a: a[0], sample_regression_batch(key, config, 1, split))
