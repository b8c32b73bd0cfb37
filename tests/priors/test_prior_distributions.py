"""The generator and the meta-distributions against NumPy draws of the reference formulas."""

import jax
import jax.numpy as jnp
import numpy as np

from priors import PriorConfig, gp, rng
from priors import distributions as D
from priors.stats import ks_distance

N = 20_000


def draws(fn, seed=0, n=N):
    """n draws of fn(stream), one stream each."""
    streams = jax.vmap(rng.from_key)(jax.random.split(jax.random.key(seed), n))
    return np.asarray(jax.jit(jax.vmap(fn))(streams))


def test_streams_are_reproducible_and_distinct():
    @jax.jit
    def streams(stream):
        return rng.normal(stream, (1000,)), rng.normal(rng.fold(stream, 1), (1000,)), rng.split(stream, 64)

    stream = rng.from_key(jax.random.key(0))
    a, b, children = streams(stream)
    assert np.array_equal(a, streams(stream)[0])
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.1
    assert len({tuple(c) for c in np.asarray(children)}) == 64


def test_uniform_and_normal():
    @jax.jit
    def draw(stream):
        counter = jnp.arange(50)[::-1]
        return (
            rng.uniform(stream, (200_000,)),
            rng.normal(stream, (200_000,)),
            rng.normal_at(stream, counter),
            rng.normal(stream, (50,))[::-1],
        )

    u, z, at_counter, reversed_draw = (np.asarray(v) for v in draw(rng.from_key(jax.random.key(1))))
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.005
    assert np.isfinite(z).all() and abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert ks_distance(z, np.random.default_rng(0).normal(size=200_000)) < 0.01
    # counters address values: a permuted counter array draws the permuted values
    assert np.array_equal(at_counter, reversed_draw)


def test_gamma_and_beta():
    alphas = (0.1, 0.5, 1.0, 2.7, 20.0)
    gammas = draws(lambda s: rng.gamma(s, jnp.asarray(alphas), (len(alphas),)))
    betas = draws(lambda s: rng.beta(s, jnp.asarray(alphas), 1.3, (len(alphas),)))
    rs = np.random.default_rng(1)
    for column, alpha in enumerate(alphas):
        assert ks_distance(gammas[:, column], rs.gamma(alpha, size=N)) < 0.02, alpha
        assert ks_distance(betas[:, column], rs.beta(alpha, 1.3, size=N)) < 0.02, alpha


def test_uniform_int_has_the_reference_endpoint_behaviour():
    values = draws(lambda s: D.uniform_int(s, 2, 10))
    share = np.bincount(values, minlength=11)[2:] / values.size
    np.testing.assert_allclose(share, [1 / 16] + [1 / 8] * 7 + [1 / 16], atol=0.01)
    assert values.min() == 2 and values.max() == 10


def test_randint_is_numpy_randint():
    values = draws(lambda s: rng.randint(s, 1, 100))
    assert values.min() == 1 and values.max() == 99  # like np.random.randint(1, 100): never 100
    assert abs(values.mean() - 50) < 0.5
    assert np.all(draws(lambda s: rng.randint(s, 5, 5)) == 5)  # safe_randint


def reference_meta_gamma(dist, rs):
    alpha = np.exp(rs.uniform(0, np.log(dist.max_alpha), N))
    scale = rs.uniform(0, dist.max_scale, N)
    return dist.lower_bound + np.round(rs.gamma(alpha, scale / alpha))


def test_meta_gamma_matches_the_reference_formula():
    config = PriorConfig()
    dists = (config.layers, config.hidden, config.causes)
    ours = draws(lambda s: D.meta_gamma(s, dists))
    rs = np.random.default_rng(3)
    for column, dist in enumerate(dists):
        assert ks_distance(ours[:, column].astype(float), reference_meta_gamma(dist, rs)) < 0.02
    # the clipped tail the docstrings quote: about 0.75% of depth draws above 10 layers
    assert 0.004 < np.mean(ours[:, 0] > 10) < 0.011


def test_meta_beta_and_log_uniform():
    config = PriorConfig()
    ours = draws(lambda s: D.meta_beta(s, config.dropout))
    rs = np.random.default_rng(4)
    reference = 0.6 * rs.beta(rs.uniform(0.1, 5, N), rs.uniform(0.1, 5, N))
    assert ks_distance(ours, reference) < 0.02
    ours = draws(lambda s: D.log_uniform(s, (config.init_std,))[0])
    assert ks_distance(np.log(ours), rs.uniform(np.log(0.01), np.log(12), N)) < 0.02


def test_meta_choice():
    ours = draws(lambda s: D.meta_choice(s, 3))
    rs = np.random.default_rng(5)
    logits = np.concatenate([np.ones((N, 1)), rs.uniform(-3, 5, (N, 2))], axis=1)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(np.bincount(ours, minlength=3) / N, p.mean(0), atol=0.015)
    true = draws(lambda s: D.meta_bool(s, 1)[0])
    w = rs.uniform(-3, 5, N)
    assert abs(true.mean() - np.mean(np.e / (np.e + np.exp(w)))) < 0.015


def test_permutation():
    perm = np.asarray(jax.jit(lambda s: rng.permutation(s, 16, 5))(rng.from_key(jax.random.key(2))))
    assert sorted(perm[:5]) == list(range(5)) and list(perm[5:]) == list(range(5, 16))


def test_cholesky_matches_numpy(getkey):
    x = jax.random.normal(getkey(), (144, 3))  # one halving above the LAPACK blocks of <= 72 rows
    a = jnp.exp(-jnp.sum((x[:, None] - x[None]) ** 2, -1)) + 1e-2 * jnp.eye(144)
    factor = jax.jit(gp.cholesky)(a)
    np.testing.assert_allclose(factor, np.linalg.cholesky(np.asarray(a, np.float64)), atol=2e-4)
